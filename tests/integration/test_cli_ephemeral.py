"""``openmessenger send --ephemeral`` and ``listen --ephemeral`` as real processes,
against a real node with an 8-second hold: what a person at a terminal sees."""

from __future__ import annotations

import json
import queue
import secrets
import signal
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import pytest
from typer.testing import Result

from openmessenger.settings import Settings
from tests.support.ephemeral import marker
from tests.support.process import cli_process

HOLD_SECONDS = 8.0
LINE_TIMEOUT_SECONDS = 20

Run = Callable[..., Result]
Spawn = Callable[..., subprocess.Popen[str]]


@pytest.fixture
def node_settings(database_url: str, tmp_path: Path) -> Settings:
    return Settings(
        host="127.0.0.1",
        port=0,
        domain="localhost",
        data_dir=tmp_path / "node-data",
        database_url=database_url,
        node_secret=secrets.token_hex(32),
        log_level="warning",
        ephemeral_hold_seconds=HOLD_SECONDS,
    )


class Lines:
    """Lines of a process's stdout, read by a thread, taken with a timeout."""

    def __init__(self, stream: IO[str]) -> None:
        self._lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._pump, args=(stream,), daemon=True).start()

    def _pump(self, stream: IO[str]) -> None:
        for line in stream:
            self._lines.put(line)

    def next(self) -> str:
        return self._lines.get(timeout=LINE_TIMEOUT_SECONDS)


@pytest.fixture
def spawn(node_url: str, cli_home: Path) -> Iterator[Spawn]:
    processes: list[subprocess.Popen[str]] = []

    def start(profile: str, *args: str) -> subprocess.Popen[str]:
        process = cli_process(cli_home, node_url, *args, "--profile", profile)
        processes.append(process)
        return process

    yield start
    for process in processes:
        if process.poll() is None:
            process.kill()
            process.wait()


def one_json(result: Result) -> dict[str, Any]:
    [line] = result.stdout.splitlines()
    parsed: dict[str, Any] = json.loads(line)
    return parsed


def connect_pair(run: Run) -> tuple[str, str]:
    alice = str(one_json(run("alice", "whoami", "--json"))["address"])
    bob = str(one_json(run("bob", "whoami", "--json"))["address"])
    code = one_json(run("alice", "code", "--json"))["pass_code"]
    run("bob", "connect", alice, code)
    return alice, bob


def finished(process: subprocess.Popen[str]) -> tuple[int, str, str]:
    out, err = process.communicate(timeout=LINE_TIMEOUT_SECONDS)
    return process.returncode, out, err


def test_send_ephemeral_reaches_a_listening_device_with_its_timer(run: Run, spawn: Spawn) -> None:
    alice, bob = connect_pair(run)
    listener = spawn("alice", "listen", "--ephemeral", "--json")
    assert listener.stdout is not None
    lines = Lines(listener.stdout)
    text = marker()

    code, out, err = finished(spawn("bob", "send", "--ephemeral", alice, text, "--lifespan", "30"))
    received = json.loads(lines.next())
    run("bob", "send", alice, "an ordinary one")
    ordinary = json.loads(lines.next())
    listener.send_signal(signal.SIGINT)
    exit_code = listener.wait(timeout=LINE_TIMEOUT_SECONDS)

    assert (code, err) == (0, "")
    assert out.startswith(f"sent to {alice} (device ")
    assert "[disappears 30 s after it arrives;" in out
    assert received["type"] == "ephemeral"
    assert (received["text"], received["from"], received["error"]) == (text, bob, None)
    assert received["lifespan_seconds"] == 30 and 0 < received["disappears_in"] <= 30
    assert (ordinary["text"], ordinary["from"]) == ("an ordinary one", bob)
    assert exit_code == 0


def test_the_text_line_shows_the_timer(run: Run, spawn: Spawn) -> None:
    alice, _ = connect_pair(run)
    listener = spawn("alice", "listen", "--ephemeral")
    assert listener.stdout is not None
    lines = Lines(listener.stdout)

    run("bob", "send", "--ephemeral", alice, "see you at 8")
    line = lines.next()

    assert "[disappears in 60 s]" in line
    assert line.rstrip().endswith(": see you at 8")


def test_the_sender_sees_an_expiry(run: Run, spawn: Spawn) -> None:
    alice, _ = connect_pair(run)
    sent = one_json(run("bob", "send", "--ephemeral", alice, "nobody reads this", "--json"))
    listener = spawn("bob", "listen", "--ephemeral", "--json")
    assert listener.stdout is not None

    notice = json.loads(Lines(listener.stdout).next())

    assert sent["status"] == "pending" and sent["to"] == alice
    assert notice == {
        "type": "ephemeral.expired",
        "id": sent["id"],
        "to": alice,
        "device": sent["device"],
        "sent_at": sent["sent_at"],
        "expired_at": sent["expires_at"],
    }


def test_refusals_and_bad_usage(run: Run) -> None:
    alice, _ = connect_pair(run)

    stranger = run("carol", "send", "--ephemeral", alice, "buy now", exit_code=1)
    loose_flag = run("bob", "send", alice, "hi", "--device", "x", exit_code=2)
    no_device = run("bob", "send", "--ephemeral", alice, "hi", "--device", "nope", exit_code=1)

    assert stranger.stderr == "error: refused\n"
    assert "--ephemeral" in loose_flag.stderr
    assert "device" in no_device.stderr and "not a trusted device" in no_device.stderr
