"""``openmessenger admin apps``: an operator makes apps, keys and media types for
the node's registered accounts, on the node's host (its data directory and
database) or remotely with the operator token, and what they make works over
the real HTTP API."""

from __future__ import annotations

import asyncio
import json
import re
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from typer.testing import CliRunner, Result

from openmessenger.cli.main import app as cli
from openmessenger.crypto.app_keys import AppKeyPair
from openmessenger.settings import Settings
from tests.support.api import register
from tests.support.apps import ApiApp, connect_to, registered
from tests.support.node import NodeThread, SettableClock
from tests.support.sdk import REQUEST_TIMEOUT_SECONDS
from tests.support.tls import CertificateAuthority

OPERATOR_TOKEN = "operator-token-for-tests-0123456789abcdef"
ORDER_SCHEMA = {
    "type": "object",
    "properties": {"order_id": {"type": "string", "pattern": "^[A-Z][0-9]+$"}},
    "required": ["order_id"],
    "additionalProperties": False,
}


@pytest.fixture
def node_settings(node_settings: Settings) -> Settings:
    """As ``serve`` runs by default: the node keeps its secret in its data directory.
    It also takes remote operator commands with OPERATOR_TOKEN."""
    return node_settings.model_copy(
        update={"node_secret": None, "operator_token": SecretStr(OPERATOR_TOKEN)}
    )


@pytest.fixture
def here(node_settings: Settings) -> list[str]:
    """Flags for a local command: the node's data directory and database."""
    assert node_settings.database_url is not None
    return ["--data-dir", str(node_settings.data_dir), "--database-url", node_settings.database_url]


@pytest.fixture
def remote(node_url: str) -> list[str]:
    """Flags for a remote command: the node's URL and operator token."""
    return ["--url", node_url, "--operator-token", OPERATOR_TOKEN]


async def admin(*args: str, exit_code: int = 0, env: dict[str, str] | None = None) -> Result:
    """``openmessenger admin ARGS`` (in a thread: the command runs its own event loop)."""
    result = await asyncio.to_thread(CliRunner().invoke, cli, ["admin", *args], env=env)
    assert result.exit_code == exit_code, (result.stdout, result.stderr, result.exception)
    return result


def shown(label: str, output: str) -> str:
    found = re.search(rf"^{label}: (\S+)$", output, re.MULTILINE)
    assert found, output
    return found.group(1)


def json_lines(output: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in output.splitlines()]


async def works(http: httpx.AsyncClient, key: str, account_id: str) -> int:
    """The status of ``GET /v1/me`` as the app's device in ``account_id`` with ``key``."""
    headers = {"Authorization": f"Bearer {key}", "Openmessenger-Account": account_id}
    return (await http.get("/v1/me", headers=headers)).status_code


# --- on the node's host ----------------------------------------------------------------


async def test_an_operator_makes_an_app_whose_key_works_over_http(
    http: httpx.AsyncClient, clock: SettableClock, here: list[str]
) -> None:
    owner = await registered(http, clock)
    made = await admin(
        "apps", "create", "--owner", owner.address, "--id", "shop", "--name", "Shop", *here
    )
    out = made.stdout
    assert out.startswith(f"created app shop (Shop) for {owner.address}\n")
    key = shown("api key", out)
    seed = shown("signing seed", out)
    assert key.startswith("omk_")
    assert "The API key and the signing seed are shown this once" in out

    shop = ApiApp(http, "shop", key, seed)
    user = await shop.create_account("Customer")  # POST /v1/apps/shop/accounts: 201
    assert await works(http, key, user["account_id"]) == 200
    # The owner sees the app as theirs, with the same app key.
    mine = (await owner.get("/v1/apps")).json()["apps"]
    assert [a["id"] for a in mine] == ["shop"]

    listed = await admin("apps", "list", "--json", *here)
    (row,) = json_lines(listed.stdout)
    assert row == {**mine[0], "owner": owner.address}
    text = await admin("apps", "list", "--owner", owner.address, *here)
    assert text.stdout.startswith(f"shop\t{owner.address}\tShop\tcreated ")

    # The owner's own key pair: no seed to show; --json has the API's shape.
    public_key = AppKeyPair.generate().public_key
    made = await admin(
        "apps", "create", "--owner", owner.address, "--id", "shop-two", "--name", "Shop 2",
        "--signing-key", public_key, "--json", *here,
    )  # fmt: skip
    created = json.loads(made.stdout)
    assert set(created) == {"app", "api_key", "signing_seed"}
    assert created["signing_seed"] is None
    assert created["app"]["signing_key"] == public_key
    assert created["api_key"]["key"].startswith("omk_")
    assert created["api_key"]["scopes"] == [
        "accounts",
        "data",
        "media-types",
        "messages",
        "webhooks",
    ]


async def test_only_a_registered_account_of_this_node_owns_apps(
    http: httpx.AsyncClient, here: list[str]
) -> None:
    anonymous = await register(http, "Anon")
    refused = await admin(
        "apps", "create", "--owner", anonymous.address, "--id", "shop", "--name", "Shop", *here,
        exit_code=1,
    )  # fmt: skip
    assert refused.stderr.startswith("error: registration_required: ")
    assert anonymous.address in refused.stderr
    unknown = await admin(
        "apps", "create", "--owner", "1234567*localhost", "--id", "shop", "--name", "Shop", *here,
        exit_code=1,
    )  # fmt: skip
    assert (
        unknown.stderr == "error: account_not_found: No account 1234567*localhost on this node.\n"
    )
    typo = await admin(
        "apps", "create", "--owner", "alice", "--id", "shop", "--name", "Shop", *here, exit_code=2
    )
    assert "--owner" in typo.stderr
    bad_id = await admin(
        "apps", "create", "--owner", anonymous.address, "--id", "Shop!", "--name", "S", *here,
        exit_code=2,
    )  # fmt: skip
    assert "--id" in bad_id.stderr
    assert (await admin("apps", "list", *here)).stdout == "no apps\n"
    assert (await admin("apps", "list", "--json", *here)).stdout == ""


async def test_keys_made_rotated_and_revoked_on_the_host_work_and_stop_over_http(
    http: httpx.AsyncClient, clock: SettableClock, here: list[str]
) -> None:
    owner = await registered(http, clock)
    made = await admin(
        "apps", "create", "--owner", owner.address, "--id", "shop", "--name", "Shop", *here
    )
    first_key = shown("api key", made.stdout)
    first_id = shown("api key id", made.stdout)
    user = await ApiApp(http, "shop", first_key, None).create_account()

    issued = await admin(
        "apps", "keys", "create", "shop", "--scope", "messages", "--label", "worker", "--json",
        *here,
    )  # fmt: skip
    worker = json.loads(issued.stdout)
    assert worker["scopes"] == ["messages"] and worker["label"] == "worker"
    assert await works(http, worker["key"], user["account_id"]) == 200
    # Scoped: this key cannot make accounts.
    scoped = await http.post(
        "/v1/apps/shop/accounts", json={}, headers={"Authorization": f"Bearer {worker['key']}"}
    )
    assert scoped.status_code == 403 and scoped.json()["code"] == "scope_missing"

    listed = json_lines((await admin("apps", "keys", "list", "shop", "--json", *here)).stdout)
    assert {k["id"] for k in listed} == {first_id, worker["id"]}
    assert all("key" not in k for k in listed)
    text = (await admin("apps", "keys", "list", "shop", *here)).stdout
    assert f"{worker['id']}\tactive\tmessages\tworker\n" in text

    revoked = await admin("apps", "keys", "revoke", "shop", worker["id"], *here)
    assert revoked.stdout == f"revoked key {worker['id']} of app shop\n"
    # The node remembers a valid key for at most 10 seconds.
    clock.advance(timedelta(seconds=11))
    assert await works(http, worker["key"], user["account_id"]) == 401
    again = await admin("apps", "keys", "revoke", "shop", worker["id"], *here, exit_code=1)
    assert again.stderr.startswith("error: api_key_not_found: ")

    rotated = await admin(
        "apps", "keys", "rotate", "shop", first_id, "--grace-seconds", "60", *here
    )
    new_key = shown("api key", rotated.stdout)
    assert f"old key {first_id} works until " in rotated.stdout
    assert await works(http, first_key, user["account_id"]) == 200
    assert await works(http, new_key, user["account_id"]) == 200
    clock.advance(timedelta(seconds=61))
    assert await works(http, first_key, user["account_id"]) == 401
    assert await works(http, new_key, user["account_id"]) == 200
    states = (await admin("apps", "keys", "list", "shop", *here)).stdout
    # (The CLI tells "expires" from "expired" by the wall clock; this node's clock is moved.)
    assert re.search(rf"^{first_id}\texpire[sd] 20", states, re.MULTILINE), states
    assert f"{worker['id']}\trevoked " in states

    unknown = await admin("apps", "keys", "list", "nope", *here, exit_code=1)
    assert unknown.stderr.startswith("error: app_not_found: ")
    bad_scope = await admin("apps", "keys", "create", "shop", "--scope", "all", *here, exit_code=2)
    assert "--scope" in bad_scope.stderr


async def test_a_media_type_added_from_a_file_checks_what_the_app_sends(
    http: httpx.AsyncClient, clock: SettableClock, here: list[str], tmp_path: Path
) -> None:
    owner = await registered(http, clock)
    made = await admin(
        "apps", "create", "--owner", owner.address, "--id", "shop", "--name", "Shop", *here
    )
    shop = ApiApp(http, "shop", shown("api key", made.stdout), None)
    user = await shop.create_account("Customer")
    friend = await register(http, "Friend")
    await connect_to(shop, user["account_id"], friend)
    schema = tmp_path / "order.json"
    schema.write_text(json.dumps(ORDER_SCHEMA))

    added = await admin(
        "apps", "media-types", "add", "shop", "order", "--schema", str(schema), *here
    )
    assert added.stdout == "registered app.shop.order\n"
    (listed,) = json_lines(
        (await admin("apps", "media-types", "list", "shop", "--json", *here)).stdout
    )
    assert listed["name"] == "app.shop.order" and listed["schema"] == ORDER_SCHEMA

    async def send(metadata: dict[str, Any]) -> httpx.Response:
        body = {"to": friend.address, "body": "your order", "media_type": "app.shop.order"}
        return await shop.act(
            user["account_id"], "POST", "/v1/messages", {**body, "metadata": metadata}
        )

    sent = await send({"order_id": "A17"})
    assert sent.status_code == 201, sent.text
    bad = await send({"order_id": "17"})
    assert bad.status_code == 422 and bad.json()["field"] == "metadata.order_id"
    extra = await send({"order_id": "A17", "price": 3})
    assert extra.status_code == 422
    (event,) = await friend.sync()
    assert event["message"]["media_type"] == "app.shop.order"

    # A schema never changes under sent messages.
    again = await admin(
        "apps", "media-types", "add", "shop", "order", "--schema", str(schema), *here, exit_code=1
    )
    assert again.stderr.startswith("error: media_type_exists: ")
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    refused = await admin(
        "apps", "media-types", "add", "shop", "x", "--schema", str(broken), *here, exit_code=2
    )
    assert "--schema" in refused.stderr
    not_a_schema = tmp_path / "array.json"
    not_a_schema.write_text('{"type": "array"}')
    wrong = await admin(
        "apps", "media-types", "add", "shop", "x", "--schema", str(not_a_schema), *here,
        exit_code=2,
    )  # fmt: skip
    assert wrong.stderr.startswith("error: invalid_input: schema.type: ")


async def test_app_commands_refuse_a_data_dir_without_the_node_secret(
    http: httpx.AsyncClient, clock: SettableClock, node_settings: Settings, tmp_path: Path
) -> None:
    owner = await registered(http, clock)
    elsewhere = tmp_path / "not-the-node"
    assert node_settings.database_url is not None
    result = await admin(
        "apps", "create", "--owner", owner.address, "--id", "shop", "--name", "Shop",
        "--data-dir", str(elsewhere), "--database-url", node_settings.database_url,
        exit_code=2,
    )  # fmt: skip
    assert "the node secret is not in" in result.stderr
    assert not (elsewhere / "node_secret").exists()
    assert (await owner.get("/v1/apps")).json()["apps"] == []


# --- remotely, with the operator token ----------------------------------------------------


async def test_remote_commands_do_the_same_through_the_operator_api(
    http: httpx.AsyncClient,
    clock: SettableClock,
    remote: list[str],
    node_url: str,
    tmp_path: Path,
) -> None:
    owner = await registered(http, clock)
    made = await admin(
        "apps", "create", "--owner", owner.address, "--id", "shop", "--name", "Shop", *remote
    )
    assert made.stdout.startswith(f"created app shop (Shop) for {owner.address}\n")
    key, first_id = shown("api key", made.stdout), shown("api key id", made.stdout)
    assert OPERATOR_TOKEN not in made.stdout + made.stderr
    user = await ApiApp(http, "shop", key, None).create_account()
    assert await works(http, key, user["account_id"]) == 200

    # The token from the environment, or from a file.
    env = {"OPENMESSENGER_ADMIN_URL": node_url, "OPENMESSENGER_OPERATOR_TOKEN": OPERATOR_TOKEN}
    (row,) = json_lines((await admin("apps", "list", "--json", env=env)).stdout)
    assert row["id"] == "shop" and row["owner"] == owner.address
    token_file = tmp_path / "operator-token"
    token_file.write_text(OPERATOR_TOKEN + "\n")
    by_file = ["--url", node_url, "--operator-token-file", str(token_file)]

    issued = json.loads(
        (await admin("apps", "keys", "create", "shop", "--label", "ci", "--json", *by_file)).stdout
    )
    assert await works(http, issued["key"], user["account_id"]) == 200
    await admin("apps", "keys", "revoke", "shop", issued["id"], *by_file)
    # Through the node itself: no wait.
    assert await works(http, issued["key"], user["account_id"]) == 401

    rotated = await admin(
        "apps", "keys", "rotate", "shop", first_id, "--grace-seconds", "0", "--json", *remote
    )
    new_key = json.loads(rotated.stdout)["key"]
    assert await works(http, key, user["account_id"]) == 401
    assert await works(http, new_key, user["account_id"]) == 200

    schema = tmp_path / "order.json"
    schema.write_text(json.dumps(ORDER_SCHEMA))
    added = await admin(
        "apps", "media-types", "add", "shop", "order", "--schema", str(schema), "--json", *remote
    )
    assert json.loads(added.stdout)["name"] == "app.shop.order"
    listed = (await admin("apps", "media-types", "list", "shop", *remote)).stdout
    assert listed.startswith("app.shop.order\tcreated ")

    # The switches too, printing what the local commands print.
    assert (await admin("maintenance", "on", *remote)).stdout == "maintenance on\n"
    assert (await admin("maintenance", "--json", *remote)).stdout == '{"on": true}\n'
    assert (await admin("maintenance", "off", *remote)).stdout == "maintenance off\n"
    assert (await admin("domains", "block", "Spam.Example.", *remote)).stdout == (
        "blocked spam.example\n"
    )
    assert (await admin("domains", "block", "spam.example", *remote)).stdout == (
        "spam.example was already blocked\n"
    )
    assert (await admin("domains", "list", *remote)).stdout == "spam.example\n"
    assert (await admin("domains", "list", "--json", *remote)).stdout == (
        '{"domain": "spam.example"}\n'
    )
    unblocked = await admin("domains", "unblock", "spam.example", "--json", *remote)
    assert json.loads(unblocked.stdout) == {
        "domain": "spam.example",
        "blocked": False,
        "changed": True,
    }

    refused = await admin(
        "apps", "create", "--owner", "1234567*localhost", "--id", "x-app", "--name", "X",
        *remote, exit_code=1,
    )  # fmt: skip
    assert (
        refused.stderr == "error: account_not_found: No account 1234567*localhost on this node.\n"
    )


async def test_a_wrong_operator_token_is_refused_and_never_shown(node_url: str) -> None:
    wrong = "not-the-operator-token-0123456789abcdef"
    for args in (["maintenance", "on"], ["apps", "list"], ["domains", "block", "spam.example"]):
        result = await admin(*args, "--url", node_url, "--operator-token", wrong, exit_code=1)
        assert result.stderr == "error: operator_token_invalid: The operator token is not valid.\n"
        assert wrong not in result.stdout + result.stderr
    env = {"OPENMESSENGER_OPERATOR_TOKEN": OPERATOR_TOKEN}
    # Nothing was switched.
    assert (await admin("maintenance", "--url", node_url, env=env)).stdout == "maintenance off\n"
    assert (await admin("domains", "list", "--url", node_url, env=env)).stdout == ""


@contextmanager
def started(settings: Settings, clock: SettableClock) -> Iterator[NodeThread]:
    node = NodeThread(settings, clock=clock).start()
    try:
        yield node
    finally:
        node.stop()


async def test_a_node_without_an_operator_token_has_no_operator_api(
    node_settings: Settings, clock: SettableClock
) -> None:
    bare = node_settings.model_copy(update={"operator_token": None})
    with started(bare, clock) as node:
        result = await admin(
            "maintenance", "on", "--url", node.url, "--operator-token", OPERATOR_TOKEN, exit_code=1
        )
        assert result.stderr.startswith("error: operator_api_disabled: ")
        async with httpx.AsyncClient(base_url=node.url, timeout=REQUEST_TIMEOUT_SECONDS) as http:
            answer = await http.get(
                "/v1/admin/maintenance", headers={"Authorization": f"Bearer {OPERATOR_TOKEN}"}
            )
    assert answer.status_code == 404 and answer.json()["code"] == "operator_api_disabled"


async def test_remote_runs_need_a_token_a_safe_url_and_a_reachable_node(
    node_url: str, tmp_path: Path, here: list[str]
) -> None:
    token = ["--operator-token", OPERATOR_TOKEN]
    no_token = await admin("maintenance", "--url", node_url, exit_code=2)
    assert "operator token" in no_token.stderr
    both = await admin("maintenance", "--url", node_url, *token, *here, exit_code=2)
    assert "--data-dir" in both.stderr
    stray = await admin("maintenance", *token, *here, exit_code=2)
    assert "--operator-token" in stray.stderr and "only go with --url" in stray.stderr
    clear = await admin("maintenance", "--url", "http://node.example", *token, exit_code=2)
    assert "https://" in clear.stderr
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{probe.getsockname()[1]}"
    down = await admin("maintenance", "--url", closed, *token, exit_code=3)
    assert down.stderr.startswith(f"error: could not reach {closed}/v1/admin/")
    missing = await admin(
        "maintenance", "--url", node_url, "--operator-token-file", str(tmp_path / "no"), exit_code=2
    )
    assert "--operator-token-file" in missing.stderr


async def test_a_private_ca_is_trusted_with_ca_file(
    node_settings: Settings, clock: SettableClock, tmp_path: Path
) -> None:
    authority = CertificateAuthority(tmp_path / "ca")
    files = authority.server_files("localhost", "127.0.0.1")
    tls = node_settings.model_copy(update={"tls_cert": files.cert, "tls_key": files.key})
    with started(tls, clock) as node:
        assert node.url.startswith("https://")
        token = ["--url", node.url, "--operator-token", OPERATOR_TOKEN]
        untrusted = await admin("maintenance", *token, exit_code=3)
        assert "certificate" in untrusted.stderr.lower()
        trusted = await admin("maintenance", *token, "--ca-file", str(authority.ca_bundle))
        assert trusted.stdout == "maintenance off\n"
        by_env = await admin("maintenance", *token, env={"SSL_CERT_FILE": str(authority.ca_bundle)})
        assert by_env.stdout == "maintenance off\n"
