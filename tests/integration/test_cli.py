"""The ``openmessenger`` device commands against a real node: what a person at a
terminal, or a script reading ``--json`` lines, sees. Commands run in-process
(typer's CliRunner); ``listen`` runs as a real process so Ctrl-C is real."""

from __future__ import annotations

import json
import queue
import signal
import socket
import stat
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import pytest
from typer.testing import CliRunner, Result

from openmessenger.cli.main import app
from tests.support.process import cli_process

MESSAGE_FIELDS = {
    "id",
    "conversation_id",
    "seq",
    "from",
    "sender_device",
    "to",
    "text",
    "sent_at",
    "status",
    "encryption",
    "error",
    "media_type",
    "metadata",
    "app",
}
LINE_TIMEOUT_SECONDS = 20

Run = Callable[..., Result]


def json_lines(result: Result) -> list[dict[str, Any]]:
    return [json.loads(line) for line in result.stdout.splitlines()]


def one_json_line(result: Result) -> dict[str, Any]:
    [line] = json_lines(result)
    return line


def address_of(run: Run, profile: str) -> str:
    return str(one_json_line(run(profile, "whoami", "--json"))["address"])


def connect_pair(run: Run) -> tuple[str, str]:
    """Alice gives Bob a code, Bob connects; returns their addresses."""
    alice, bob = address_of(run, "alice"), address_of(run, "bob")
    pass_code = one_json_line(run("alice", "code", "--json"))["pass_code"]
    run("bob", "connect", alice, pass_code)
    return alice, bob


def is_rfc3339_utc(value: str) -> bool:
    return value.endswith("Z") and value[10] == "T"


def test_whoami_registers_and_prints_one_json_line(run: Run, cli_home: Path) -> None:
    me = one_json_line(run("alice", "whoami", "--json"))

    assert set(me) == {"address", "display_name", "device_id"}
    assert me["address"].endswith("*localhost")
    assert me["display_name"] is None
    profile = cli_home / "profiles" / "alice"
    assert stat.S_IMODE(profile.stat().st_mode) == 0o700
    assert stat.S_IMODE((profile / "state.json").stat().st_mode) == 0o600
    assert one_json_line(run("alice", "whoami", "--json")) == me


def test_profiles_are_separate_devices(run: Run) -> None:
    assert address_of(run, "alice") != address_of(run, "bob")


def test_name_sets_the_display_name(run: Run) -> None:
    run("alice", "name", "Alice")

    me = one_json_line(run("alice", "whoami", "--json"))
    assert me["display_name"] == "Alice"
    assert "Alice" in run("alice", "whoami").stdout


def test_an_invalid_name_is_one_line_on_stderr(run: Run) -> None:
    result = run("alice", "name", "<Alice>", exit_code=1)

    assert result.stdout == ""
    [line] = result.stderr.splitlines()
    assert line.startswith("error: invalid_input: display_name")


def test_code_json_has_the_code_and_its_expiry(run: Run) -> None:
    bob = address_of(run, "bob")

    open_code = one_json_line(run("alice", "code", "--json"))
    bound_code = one_json_line(run("alice", "code", "--for", bob, "--json"))

    assert set(open_code) == {"id", "pass_code", "expires_at", "for"}
    assert len(open_code["pass_code"]) == 6 and open_code["pass_code"].isdigit()
    assert is_rfc3339_utc(open_code["expires_at"])
    assert open_code["for"] is None
    assert bound_code["for"] == bob


def test_code_list_shows_used_and_live_codes(run: Run) -> None:
    alice, bob = address_of(run, "alice"), address_of(run, "bob")
    used = one_json_line(run("alice", "code", "--json"))
    live = one_json_line(run("alice", "code", "--json"))
    run("bob", "connect", alice, used["pass_code"])

    listed = {c["id"]: c for c in json_lines(run("alice", "code", "--list", "--json"))}

    assert set(listed[used["id"]]) >= {"id", "state", "for", "created_at", "expires_at", "used_by"}
    assert listed[used["id"]]["state"] == "used"
    assert listed[used["id"]]["used_by"] == bob
    assert listed[live["id"]]["state"] == "live"
    assert "pass_code" not in listed[live["id"]]  # the node keeps no digits to show


def test_a_withdrawn_code_is_refused(run: Run) -> None:
    alice = address_of(run, "alice")
    issued = one_json_line(run("alice", "code", "--json"))

    run("alice", "code", "--withdraw", issued["id"])

    run("bob", "connect", alice, issued["pass_code"], exit_code=1)
    [code] = json_lines(run("alice", "code", "--list", "--json"))
    assert code["state"] == "withdrawn"


def test_connect_and_contacts(run: Run) -> None:
    run("alice", "name", "Alice")
    alice, bob = address_of(run, "alice"), address_of(run, "bob")
    pass_code = one_json_line(run("alice", "code", "--json"))["pass_code"]

    connected = one_json_line(run("bob", "connect", alice, pass_code, "--json"))

    assert connected["address"] == alice
    assert connected["display_name"] == "Alice"
    [contact] = json_lines(run("alice", "contacts", "--json"))
    assert set(contact) == {
        "address",
        "display_name",
        "connected_at",
        "conversation_id",
        "accepts_messages",
        "peer_accepts_messages",
        "encryption",
    }
    assert contact["address"] == bob
    assert contact["encryption"] == "end-to-end"
    assert contact["accepts_messages"] is contact["peer_accepts_messages"] is True
    assert contact["conversation_id"] == connected["conversation_id"]
    assert is_rfc3339_utc(contact["connected_at"])


def test_connect_no_replies_lets_only_the_initiator_send(run: Run) -> None:
    alice, newsletter = address_of(run, "alice"), address_of(run, "newsletter")
    pass_code = one_json_line(run("alice", "code", "--json"))["pass_code"]
    run("newsletter", "connect", alice, pass_code, "--no-replies")
    [contact] = json_lines(run("alice", "contacts", "--json"))
    assert contact["peer_accepts_messages"] is False
    sent = one_json_line(run("newsletter", "send", alice, "Issue 1", "--wait", "--json"))
    assert sent["status"] == "delivered"
    refused = run("alice", "send", newsletter, "unsubscribe", exit_code=1)
    assert refused.stderr.strip() == "error: refused"


def test_a_wrong_code_is_refused_with_one_generic_line(run: Run) -> None:
    alice = address_of(run, "alice")
    pass_code = one_json_line(run("alice", "code", "--json"))["pass_code"]
    wrong = f"{(int(pass_code) + 1) % 1_000_000:06d}"

    result = run("bob", "connect", alice, wrong, "--json", exit_code=1)

    assert result.stdout == ""
    assert result.stderr == "error: refused\n"
    assert run("alice", "contacts", "--json").stdout == ""


def test_send_then_sync_prints_the_message_once(run: Run) -> None:
    alice, bob = connect_pair(run)

    sent = one_json_line(run("bob", "send", alice, "hello alice", "--json"))
    received = one_json_line(run("alice", "sync", "--json"))

    assert set(sent) == MESSAGE_FIELDS
    assert set(received) == MESSAGE_FIELDS | {"position"}
    assert received["id"] == sent["id"]
    assert received["from"] == bob
    assert received["to"] == alice
    assert received["text"] == "hello alice"
    assert is_rfc3339_utc(received["sent_at"])
    assert run("alice", "sync", "--json").stdout == ""


def test_human_lines_show_time_sender_name_and_text(run: Run) -> None:
    alice, bob = connect_pair(run)
    run("bob", "name", "Bob")
    run("bob", "send", alice, "hi there")

    [line] = run("alice", "sync").stdout.splitlines()

    assert line.startswith("[")
    assert line.endswith(f"] {bob} (Bob): hi there")
    assert run("alice", "sync").stdout == "no new messages\n"


def test_a_message_cannot_drive_the_readers_terminal(run: Run) -> None:
    alice, _ = connect_pair(run)
    run("bob", "send", alice, "red\x1b[31m alert\nfake line")

    [line] = run("alice", "sync").stdout.splitlines()

    assert "\x1b" not in line
    assert line.endswith("red\\x1b[31m alert\\nfake line")


def test_history_is_oldest_first(run: Run) -> None:
    alice, bob = connect_pair(run)
    run("bob", "send", alice, "one")
    run("alice", "send", bob, "two")
    run("bob", "send", alice, "three")

    lines = json_lines(run("alice", "history", bob, "--json"))

    assert [m["text"] for m in lines] == ["one", "two", "three"]
    assert [m["from"] for m in lines] == [bob, alice, bob]
    assert [m["seq"] for m in lines] == sorted(m["seq"] for m in lines)
    assert all(set(m) == MESSAGE_FIELDS for m in lines)


def test_sending_to_a_stranger_is_refused(run: Run) -> None:
    alice = address_of(run, "alice")

    result = run("mallory", "send", alice, "buy now", exit_code=1)

    assert result.stderr == "error: refused\n"
    assert run("alice", "sync", "--json").stdout == ""


def test_an_unreachable_node_exits_3_with_one_line(cli_home: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    env = {"OPENMESSENGER_HOME": str(cli_home)}

    result = CliRunner().invoke(
        app, ["whoami", "--server", f"http://127.0.0.1:{closed_port}"], env=env
    )

    assert result.exit_code == 3
    [line] = result.stderr.splitlines()
    assert line.startswith(f"error: cannot reach http://127.0.0.1:{closed_port}")


def test_a_profile_remembers_its_node(run: Run, node_url: str, cli_home: Path) -> None:
    me = one_json_line(run("alice", "whoami", "--json"))

    without_server = CliRunner().invoke(
        app, ["whoami", "--json", "--profile", "alice"], env={"OPENMESSENGER_HOME": str(cli_home)}
    )

    assert without_server.exit_code == 0, without_server.stderr
    assert json.loads(without_server.stdout) == me


def test_a_bad_profile_name_is_a_usage_error(run: Run) -> None:
    result = run("../escape", "whoami", exit_code=2)

    assert "--profile" in result.stderr


# -- listen, as a real process ---------------------------------------------------


class LineReader:
    """Lines of a process's stdout, read by a thread, taken with a timeout."""

    def __init__(self, stream: IO[str]) -> None:
        self._lines: queue.Queue[str] = queue.Queue()
        self._thread = threading.Thread(target=self._pump, args=(stream,), daemon=True)
        self._thread.start()

    def _pump(self, stream: IO[str]) -> None:
        for line in stream:
            self._lines.put(line)

    def next(self) -> str:
        return self._lines.get(timeout=LINE_TIMEOUT_SECONDS)


@pytest.fixture
def spawn_listen(node_url: str, cli_home: Path) -> Iterator[Callable[[str], subprocess.Popen[str]]]:
    processes: list[subprocess.Popen[str]] = []

    def spawn(profile: str) -> subprocess.Popen[str]:
        process = cli_process(cli_home, node_url, "listen", "--json", "--profile", profile)
        processes.append(process)
        return process

    yield spawn
    for process in processes:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_listen_prints_backlog_and_live_messages_and_exits_0_on_ctrl_c(
    run: Run, spawn_listen: Callable[[str], subprocess.Popen[str]]
) -> None:
    alice, bob = connect_pair(run)
    run("bob", "send", alice, "before listening")
    listener = spawn_listen("alice")
    assert listener.stdout is not None and listener.stderr is not None
    lines = LineReader(listener.stdout)

    backlog = json.loads(lines.next())
    run("bob", "send", alice, "while listening")
    live = json.loads(lines.next())
    listener.send_signal(signal.SIGINT)
    exit_code = listener.wait(timeout=LINE_TIMEOUT_SECONDS)

    assert backlog["text"] == "before listening"
    assert live["text"] == "while listening"
    assert set(live) == MESSAGE_FIELDS | {"position"}
    assert live["from"] == bob
    assert live["position"] > backlog["position"]
    assert exit_code == 0
    assert "Traceback" not in listener.stderr.read()
    assert run("alice", "sync", "--json").stdout == ""  # listened counts as synced
