"""The end-to-end commands at a terminal: ``link``, ``devices``, ``backup``,
``verify``, and how messages show their protection. ``link`` waits for its
approval, so it runs as a real process; the rest in-process."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.test_cli import LineReader, Run, address_of, connect_pair, one_json_line
from tests.support.process import cli_process


@pytest.fixture
def link_process(node_url: str, cli_home: Path) -> Iterator[subprocess.Popen[str]]:
    """``openmessenger link`` as profile "laptop", waiting for approval."""
    process = cli_process(cli_home, node_url, "link", "--json", "--profile", "laptop")
    yield process
    if process.poll() is None:
        process.kill()
    process.wait()


def test_link_a_laptop_and_approve_it_from_the_phone(
    run: Run, link_process: subprocess.Popen[str]
) -> None:
    phone = address_of(run, "phone")
    assert link_process.stdout is not None
    lines = LineReader(link_process.stdout)
    request = json.loads(lines.next())

    approved = one_json_line(run("phone", "devices", "approve", request["code"], "--json"))
    linked = json.loads(lines.next())

    assert linked["address"] == phone
    assert link_process.wait(timeout=20) == 0
    assert approved["device_id"] == linked["device_id"]
    assert approved["fingerprint"] == request["fingerprint"]
    listed = run("phone", "devices", "list", "--json").stdout.splitlines()
    devices = [json.loads(line) for line in listed]
    assert len(devices) == 2 and linked["device_id"] in {d["device_id"] for d in devices}
    assert all(d["signed"] for d in devices)
    assert sum(d["current"] for d in devices) == 1


def test_a_mistyped_link_code_is_refused(run: Run, link_process: subprocess.Popen[str]) -> None:
    address_of(run, "phone")
    assert link_process.stdout is not None
    code = json.loads(LineReader(link_process.stdout).next())["code"]
    digits, _, check = code.partition("-")
    wrong = f"{digits}-{'A' * len(check) if check != 'A' * len(check) else 'B' * len(check)}"

    result = run("phone", "devices", "approve", wrong, exit_code=1)

    assert "check letters" in result.stderr
    assert len(run("phone", "devices", "list", "--json").stdout.splitlines()) == 1


def test_verify_shows_the_same_safety_number_on_both_sides(run: Run) -> None:
    alice, bob = connect_pair(run)

    seen_by_alice = one_json_line(run("alice", "verify", bob, "--json"))["safety_number"]
    seen_by_bob = one_json_line(run("bob", "verify", alice, "--json"))["safety_number"]

    assert seen_by_alice == seen_by_bob
    assert len(seen_by_alice.replace(" ", "")) == 60 and seen_by_alice.replace(" ", "").isdigit()
    assert seen_by_alice in run("bob", "verify", alice).stdout


def test_messages_and_contacts_say_they_are_end_to_end(run: Run) -> None:
    alice, _bob = connect_pair(run)
    run("bob", "send", alice, "sealed for alice")

    [message] = [json.loads(line) for line in run("alice", "sync", "--json").stdout.splitlines()]
    [contact] = [
        json.loads(line) for line in run("alice", "contacts", "--json").stdout.splitlines()
    ]

    assert (message["text"], message["encryption"]) == ("sealed for alice", "end-to-end")
    assert contact["encryption"] == "end-to-end"
    assert "end-to-end" in run("alice", "contacts").stdout


def test_backup_and_restore_on_a_new_device(run: Run) -> None:
    alice, bob = connect_pair(run)
    run("bob", "send", alice, "kept in the backup")
    run("alice", "sync")
    key = one_json_line(run("alice", "backup", "setup", "--json"))["recovery_key"]

    restored = one_json_line(
        run("new-phone", "backup", "restore", alice, "--recovery-key", key, "--json")
    )
    history = [
        json.loads(line)["text"]
        for line in run("new-phone", "history", bob, "--json").stdout.splitlines()
    ]

    assert restored["address"] == alice
    assert history == ["kept in the backup"]


def test_a_wrong_recovery_key_is_refused(run: Run) -> None:
    alice = address_of(run, "alice")
    run("alice", "backup", "setup")
    typo = "J5G" + "A" * 53

    result = run("thief", "backup", "restore", alice, "--recovery-key", typo, exit_code=1)

    assert result.stderr.startswith("error:")


def test_revoke_and_replace_a_device(run: Run, link_process: subprocess.Popen[str]) -> None:
    address_of(run, "phone")
    assert link_process.stdout is not None
    lines = LineReader(link_process.stdout)
    code = json.loads(lines.next())["code"]
    run("phone", "devices", "approve", code)
    laptop = json.loads(lines.next())["device_id"]

    run("phone", "devices", "revoke", laptop)
    replaced = one_json_line(run("phone", "devices", "replace", "phone-2", "--json"))

    remaining = [
        json.loads(line)["device_id"]
        for line in run("phone-2", "devices", "list", "--json").stdout.splitlines()
    ]
    assert remaining == [replaced["device_id"]]
    assert run("laptop", "sync", exit_code=1).stderr.startswith("error:")
    assert run("phone", "sync", exit_code=1).stderr.startswith("error:")
