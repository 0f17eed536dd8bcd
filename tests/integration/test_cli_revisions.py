"""``openmessenger edit / delete / read / receipts`` as real processes against a real
node: what a person at a terminal sees, and what a script reads from ``--json``."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.support.process import cli_process

PROCESS_TIMEOUT_SECONDS = 60


class Result:
    def __init__(self, code: int, stdout: str, stderr: str) -> None:
        self.code, self.stdout, self.stderr = code, stdout, stderr

    def json(self) -> Any:
        return json.loads(self.stdout)

    def lines(self) -> list[Any]:
        return [json.loads(line) for line in self.stdout.splitlines()]


Cli = Callable[..., Result]


@pytest.fixture
def cli(cli_home: Path, node_url: str) -> Cli:
    def invoke(profile: str, *args: str, exit_code: int = 0) -> Result:
        process = cli_process(cli_home, node_url, *args, "--profile", profile)
        stdout, stderr = process.communicate(timeout=PROCESS_TIMEOUT_SECONDS)
        assert process.returncode == exit_code, (stdout, stderr)
        return Result(process.returncode, stdout, stderr)

    return invoke


def address(cli: Cli, profile: str) -> str:
    return str(cli(profile, "whoami", "--json").json()["address"])


def connect(cli: Cli, owner: str, other: str) -> None:
    code = cli(owner, "code", "--json").json()["pass_code"]
    cli(other, "connect", address(cli, owner), code)


def test_edit_delete_and_receipts_from_the_terminal(cli: Cli) -> None:
    alice, bob = address(cli, "alice"), address(cli, "bob")
    connect(cli, "alice", "bob")
    sent = cli("alice", "send", bob, "meet at 5", "--json").json()
    other = cli("alice", "send", bob, "bring cake", "--json").json()

    edited = cli("alice", "edit", sent["id"], "meet at 6", "--json").json()
    assert (edited["media_type"], edited["text"]) == ("message.edit", "meet at 6")

    synced = cli("bob", "sync", "--json").lines()  # says "delivered" as it reads
    assert [m["text"] for m in synced] == ["meet at 5", "bring cake", "meet at 6"]
    history = cli("bob", "history", alice).stdout.splitlines()
    assert len(history) == 2
    assert history[0].endswith(f"{alice}: meet at 6") and "(edited)" in history[0]
    assert "(edited)" not in history[1]

    assert cli("bob", "read", sent["id"]).stdout.strip() == "read receipts sent for 1 message(s)"
    shown = cli("alice", "receipts", sent["id"]).stdout.splitlines()
    assert [line.split(" [")[0] for line in shown] == [
        f"✓ delivered by {bob}",
        f"✓✓ read by {bob}",
    ]
    as_json = cli("alice", "receipts", sent["id"], "--json").lines()
    assert [(r["reader"], r["kind"]) for r in as_json] == [(bob, "delivered"), (bob, "read")]

    refused = cli("bob", "delete", sent["id"], exit_code=1)
    assert "not_message_sender" in refused.stderr
    refused = cli("bob", "edit", sent["id"], "mine now", exit_code=1)
    assert "not_message_sender" in refused.stderr

    deleted = cli("alice", "delete", other["id"])
    assert deleted.stdout.strip() == f"deleted {other['id']} for everyone"
    after = cli("bob", "history", alice).stdout.splitlines()
    assert len(after) == 1 and after[0].endswith(f"{alice}: meet at 6")


def test_no_read_receipt_leaves_the_terminal_when_they_are_off(cli: Cli) -> None:
    bob = address(cli, "bob")
    connect(cli, "alice", "bob")
    cli("bob", "prefs", "set", "send_receipts", "off")
    sent = cli("alice", "send", bob, "still there?", "--json").json()
    cli("bob", "sync")

    assert cli("bob", "read", sent["id"]).stdout.strip() == "no read receipts sent"
    assert cli("alice", "receipts", sent["id"]).stdout.strip() == "no receipts yet"
