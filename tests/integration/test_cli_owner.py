"""The account owner's commands: register (TOTP, at a real terminal process),
make an app, choose apps, export and delete the account."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pyotp
import pytest

from tests.integration.test_cli import LineReader, Run, address_of, connect_pair, one_json_line
from tests.support.process import cli_process


@pytest.fixture
def registered_owner(run: Run, node_url: str, cli_home: Path) -> Iterator[str]:
    """Profile "owner", registered with TOTP through ``openmessenger register --totp``."""
    address = address_of(run, "owner")
    process = cli_process(
        cli_home,
        node_url,
        "register",
        "--totp",
        "--owner-kind",
        "organisation",
        "--json",
        "--profile",
        "owner",
        stdin=True,
    )
    try:
        assert process.stderr is not None and process.stdin is not None
        first = LineReader(process.stderr).next()
        uri = first.split(": ", 1)[1]
        process.stdin.write(pyotp.parse_uri(uri).now() + "\n")
        process.stdin.flush()
        out, err = process.communicate(timeout=30)
        assert process.returncode == 0, err
        assert json.loads(out) == {
            "address": address,
            "kind": "registered",
            "owner_kind": "organisation",
        }
        yield address
    finally:
        if process.poll() is None:
            process.kill()


def test_a_registered_owner_makes_an_app_and_its_key_works(
    run: Run, registered_owner: str, node_url: str
) -> None:
    created = one_json_line(run("owner", "apps", "create", "shop", "--name", "Shop", "--json"))
    assert created["app_id"] == "shop" and created["api_key"].startswith("omk_")
    assert run("owner", "apps", "list").stdout == "shop\n"
    refused = run("owner", "delete-account", "--yes", exit_code=1)
    assert refused.stderr.startswith("error: ") and "account_owns_apps" in refused.stderr
    answer = httpx.post(
        f"{node_url}/v1/apps/shop/accounts",
        json={"display_name": "Customer"},
        headers={"Authorization": f"Bearer {created['api_key']}"},
    )
    assert answer.status_code == 201, answer.text


def test_an_anonymous_account_is_told_to_register_first(run: Run) -> None:
    result = run("anon", "apps", "create", "shop", "--name", "Shop", exit_code=1)
    assert result.stderr.startswith("error: ") and "registration_required" in result.stderr


def test_choosing_apps_exporting_and_deleting(run: Run) -> None:
    alice, bob = connect_pair(run)
    run("bob", "send", alice, "hello alice")
    assert run("alice", "apps", "allow", "shop", "bank").stdout == "from anyone: shop, bank\n"
    assert one_json_line(run("alice", "apps", "allow", "bank", "--json")) == {
        "contact": None,
        "apps": ["bank"],
    }
    assert "any app" in run("alice", "apps", "allow", "--any", "--contact", bob).stdout
    exported = json.loads(run("alice", "export").stdout)
    assert exported["account"][0]["address"] == alice
    assert [row["apps"] for row in exported["app_allowlists"]] == [["bank"]]
    assert len(exported["messages"]) == 1
    refused = run("alice", "delete-account", exit_code=2)
    assert "--yes" in refused.stderr
    assert run("alice", "delete-account", "--yes").stdout == f"deleted {alice}\n"
    gone = run("bob", "send", alice, "are you there?", exit_code=1)
    assert "refused" in gone.stderr


def test_an_owner_deletes_an_app_then_the_account(run: Run, registered_owner: str) -> None:
    one_json_line(run("owner", "apps", "create", "shop", "--name", "Shop", "--json"))
    deleted = one_json_line(run("owner", "apps", "delete", "shop", "--yes", "--json"))
    assert deleted == {"app_id": "shop", "accounts": 0}
    assert run("owner", "apps", "list").stdout == ""
    gone = one_json_line(run("owner", "delete-account", "--yes", "--json"))
    assert gone == {"deleted": registered_owner}
