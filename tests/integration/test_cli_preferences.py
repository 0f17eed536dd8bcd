"""``openmessenger prefs``, ``request``, ``requests``, ``block``, ``unblock`` and
``blocks`` against a real node: what a person at a terminal sees."""

from __future__ import annotations

import json
from pathlib import Path

from tests.integration.test_cli import Run, address_of, connect_pair, json_lines, one_json_line
from tests.support.process import cli_process

PROCESS_TIMEOUT = 60


def test_prefs_set_get_and_clear_follow_the_levels(run: Run) -> None:
    _, bob = connect_pair(run)
    assert one_json_line(run("alice", "prefs", "get", "mute", "--json")) == {
        "name": "mute",
        "value": False,
        "level": "default",
    }
    run("alice", "prefs", "set", "mute", "on")
    run("alice", "prefs", "set", "mute", "off", "--contact", bob)
    stored = one_json_line(
        run("alice", "prefs", "set", "disappearing_timer", "90", "--device", "--json")
    )
    assert stored == {"name": "disappearing_timer", "value": 90, "level": "device"}

    everything = {p["name"]: p for p in json_lines(run("alice", "prefs", "get", "--json"))}
    assert set(everything) == {
        "accept_requests",
        "accept_apps",
        "mute",
        "disappearing_timer",
        "send_receipts",
    }
    assert (everything["mute"]["value"], everything["mute"]["level"]) == (True, "account")
    with_bob = run("alice", "prefs", "get", "mute", "--contact", bob).stdout
    assert with_bob == "mute\tfalse\t(contact)\n"
    assert (
        run("alice", "prefs", "get", "disappearing_timer").stdout
        == "disappearing_timer\t90\t(device)\n"
    )

    run("alice", "prefs", "clear", "mute", "--contact", bob)
    assert (
        run("alice", "prefs", "get", "mute", "--contact", bob).stdout == "mute\ttrue\t(account)\n"
    )
    run("alice", "prefs", "set", "accept_apps", "shop,games")
    assert (
        run("alice", "prefs", "get", "accept_apps").stdout == "accept_apps\tgames,shop\t(account)\n"
    )
    run("alice", "prefs", "set", "accept_apps", "any")
    assert run("alice", "prefs", "get", "accept_apps").stdout == "accept_apps\tany\t(default)\n"


def test_prefs_refuse_bad_input_naming_the_field(run: Run) -> None:
    address_of(run, "alice")
    wrong_level = run("alice", "prefs", "set", "accept_requests", "anyone", "--device", exit_code=1)
    assert wrong_level.stderr.startswith("error: invalid_input: level: ")
    wrong_value = run("alice", "prefs", "set", "mute", "maybe", exit_code=1)
    assert wrong_value.stderr.startswith("error: invalid_input: value: ")
    wrong_name = run("alice", "prefs", "set", "volume", "11", exit_code=1)
    assert wrong_name.stderr.startswith("error: invalid_input: name: ")
    stranger = run(
        "alice", "prefs", "set", "mute", "on", "--contact", "12345*localhost", exit_code=1
    )
    assert "contact_not_found" in stranger.stderr
    both = run("alice", "prefs", "set", "mute", "on", "--account", "--device", exit_code=2)
    assert "only one of" in both.stderr
    assert one_json_line(run("alice", "prefs", "get", "mute", "--json"))["level"] == "default"


def test_requests_from_the_terminal(run: Run) -> None:
    owner, asker = address_of(run, "owner"), address_of(run, "asker")
    # Off by default: the asker hears the same as when it arrives.
    off = run("asker", "request", owner, "--note", "hello?")
    assert off.stdout == f"request sent to {owner}\n"
    assert run("owner", "requests").stdout == "no requests\n"

    run("owner", "prefs", "set", "accept_requests", "anyone")
    on = run("asker", "request", owner, "--note", "hello!")
    assert on.stdout == off.stdout
    [waiting] = json_lines(run("owner", "requests", "--json"))
    assert (waiting["from"], waiting["note"], waiting["verified"]) == (asker, "hello!", False)

    contact = one_json_line(run("owner", "requests", "accept", waiting["id"], "--json"))
    assert contact["address"] == asker
    run("asker", "send", owner, "we are connected")
    assert "we are connected" in run("owner", "sync").stdout

    blocked = one_json_line(run("owner", "block", asker, "--json"))
    assert blocked["address"] == asker
    assert run("owner", "blocks").stdout.startswith(f"{asker}\tsince ")
    refused = run("asker", "send", owner, "let me through", exit_code=1)
    assert refused.stderr == "error: refused\n"
    assert run("owner", "unblock", asker).stdout == f"unblocked {asker}\n"
    assert run("owner", "blocks").stdout == "no blocks\n"
    run("asker", "send", owner, "thank you")
    assert "thank you" in run("owner", "sync").stdout


def test_declining_from_the_terminal(run: Run) -> None:
    owner = address_of(run, "owner")
    run("owner", "prefs", "set", "accept_requests", "anyone")
    run("asker", "request", owner)
    [waiting] = json_lines(run("owner", "requests", "--json"))
    assert (
        run("owner", "requests", "decline", waiting["id"]).stdout == f"declined {waiting['id']}\n"
    )
    run("asker", "request", owner)
    assert run("owner", "requests").stdout == "no requests\n"
    missing = run("owner", "requests", "accept", waiting["id"], exit_code=1)
    assert "request_not_found" in missing.stderr
    remote = run("asker", "request", "42*elsewhere.example", exit_code=1)
    assert "peer_unavailable" in remote.stderr  # a node that cannot be asked


def test_prefs_and_requests_as_real_processes(run: Run, node_url: str, cli_home: Path) -> None:
    """The installed command, as a user runs it (not in-process)."""
    owner, asker = address_of(run, "owner"), address_of(run, "asker")

    def command(profile: str, *args: str) -> tuple[int, str, str]:
        process = cli_process(cli_home, node_url, *args, "--profile", profile)
        out, err = process.communicate(timeout=PROCESS_TIMEOUT)
        return process.returncode, out, err

    assert command("owner", "prefs", "set", "accept_requests", "verified") == (
        0,
        "accept_requests\tverified\t(account)\n",
        "",
    )
    code, out, _ = command("owner", "prefs", "get", "accept_requests", "--json")
    assert code == 0 and json.loads(out) == {
        "name": "accept_requests",
        "value": "verified",
        "level": "account",
    }
    # An anonymous sender is dropped silently where only verified ones may ask.
    assert command("asker", "request", owner) == (0, f"request sent to {owner}\n", "")
    assert command("owner", "requests") == (0, "no requests\n", "")
    code, _, err = command("owner", "prefs", "set", "accept_requests", "sometimes")
    assert code == 1 and err.startswith("error: invalid_input: value: ")
    assert command("owner", "block", asker)[0] == 0
    code, out, _ = command("owner", "blocks", "--json")
    assert code == 0 and json.loads(out)["address"] == asker
