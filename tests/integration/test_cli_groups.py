"""``openmessenger group ...`` as real processes against a real node: what a
person at a terminal sees, and what a script reads from ``--json``."""

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


Cli = Callable[..., Result]


@pytest.fixture
def cli(cli_home: Path, node_url: str) -> Cli:
    """``cli("alice", "group", "list")``: the command as a process, exit code checked."""

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


def test_a_group_from_creation_to_removal(cli: Cli) -> None:
    alice, bob, carol, mallory = (address(cli, p) for p in ("alice", "bob", "carol", "mallory"))
    connect(cli, "alice", "bob")
    connect(cli, "alice", "carol")

    created = cli("alice", "group", "create", "Friends", bob, carol, "--json").json()
    gid = created["id"]
    assert created["mode"] == "history"
    assert [(m["address"], m["role"], m["state"]) for m in created["members"]] == [
        (alice, "owner", "joined"),
        (bob, "member", "invited"),
        (carol, "member", "invited"),
    ]
    # A stranger cannot be added: the one generic refusal.
    refused = cli("alice", "group", "invite", gid, mallory, exit_code=1)
    assert refused.stderr == "error: refused\n"
    assert cli("mallory", "group", "list").stdout == "no groups\n"

    listed = cli("bob", "group", "list").stdout
    assert gid in listed and "Friends" in listed and "invited" in listed
    cli("bob", "group", "join", gid)
    cli("carol", "group", "join", gid)
    # A member may not invite, nor make itself admin.
    forbidden = cli("bob", "group", "invite", gid, mallory, exit_code=1)
    assert forbidden.stderr.startswith("error: group_forbidden")
    assert cli("bob", "group", "role", gid, bob, "admin", exit_code=1).stderr.startswith(
        "error: group_forbidden"
    )

    sent = cli("alice", "group", "send", gid, "hello group", "--json").json()
    assert (sent["to"], sent["conversation_id"], sent["text"]) == (gid, gid, "hello group")
    bob_sync = cli("bob", "sync").stdout.splitlines()
    assert any(
        "[group Friends]" in line and line.endswith(f"{alice}: hello group") for line in bob_sync
    )
    assert any(line.endswith(f"* {bob} joined") for line in bob_sync)

    shown = cli("alice", "group", "show", gid).stdout.splitlines()
    assert shown[0].startswith(f"{gid}\tFriends\t3 participants")
    assert any(line.strip().startswith(f"{bob}\tmember\tjoined") for line in shown[1:])

    removed = cli("alice", "group", "remove", gid, carol, "--json").json()
    assert carol not in [m["address"] for m in removed["members"]]
    cli("alice", "group", "send", gid, "carol is gone")

    carol_sync = cli("carol", "sync", "--json").stdout
    assert "hello group" in carol_sync and "carol is gone" not in carol_sync
    carol_history = cli("carol", "group", "history", gid).stdout.splitlines()
    assert carol_history[-1].endswith(f"* {alice} removed {carol}")
    assert not any("carol is gone" in line for line in carol_history)
    bob_history = [
        json.loads(line)
        for line in cli("bob", "group", "history", gid, "--json").stdout.split("\n")
        if line
    ]
    assert [m["text"] for m in bob_history if m["media_type"] == "text"] == [
        "hello group",
        "carol is gone",
    ]

    assert cli("bob", "group", "leave", gid).stdout == "left\n"
    assert cli("bob", "group", "list").stdout == "no groups\n"
