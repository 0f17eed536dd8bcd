"""The README's two-minute tour, run verbatim against a real node process.

The commands are read from README.md itself, so the tour cannot drift from
what works. Only the example address and code are replaced by the ones the
earlier commands printed, as the README tells the reader to do.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
from pathlib import Path

import pytest

from tests.support.process import NodeProcess, openmessenger_command

pytestmark = pytest.mark.e2e

README = Path(__file__).resolve().parents[2] / "README.md"
EXAMPLE_ADDRESS = "4821937012*localhost"
EXAMPLE_CODE = "042917"


def tour_commands() -> list[list[str]]:
    text = README.read_text()
    section = text.split("## A two-minute tour", 1)[1]
    block = section.split("```sh", 1)[1].split("```", 1)[0]
    commands = [shlex.split(line, comments=True) for line in block.splitlines()]
    return [c for c in commands if c and c[0] == "openmessenger"]


def test_the_tour_is_in_the_readme() -> None:
    verbs = [c[1] for c in tour_commands()]
    assert verbs == ["name", "whoami", "code", "connect", "send", "sync", "listen", "history"]


def test_the_readme_tour_works_verbatim(tmp_path: Path) -> None:
    node = NodeProcess(tmp_path / "node").start()
    env = {
        **os.environ,
        "OPENMESSENGER_HOME": str(tmp_path / "home"),
        "OPENMESSENGER_SERVER": node.url,
    }
    seen = {EXAMPLE_ADDRESS: "", EXAMPLE_CODE: ""}
    printed: dict[str, str] = {}
    try:
        for command in tour_commands():
            args = [seen.get(arg) or arg for arg in command[1:]]
            verb = args[0]
            if verb == "listen":
                printed[verb] = listen_for_one_line(args, env)
                continue
            result = subprocess.run(
                [*openmessenger_command(), *args],
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert result.returncode == 0, (command, result.stderr)
            printed[verb] = result.stdout
            if verb == "whoami":
                found = re.search(r"\d+\*localhost", result.stdout)
                assert found, result.stdout
                seen[EXAMPLE_ADDRESS] = found.group(0)
            if verb == "code":
                found = re.search(r"\b\d{6}\b", result.stdout)
                assert found, result.stdout
                seen[EXAMPLE_CODE] = found.group(0)
    finally:
        node.stop()
    assert "Alice" in printed["whoami"]
    assert "Hello Alice" in printed["sync"]
    history = [json_line(line)["text"] for line in printed["history"].splitlines()]
    assert history == ["Hello Alice", "Still there?"]
    # listen starts from what sync already printed: nothing is shown twice.
    assert "Hello Alice" not in printed["listen"]


def listen_for_one_line(args: list[str], env: dict[str, str]) -> str:
    """Run ``listen`` until Bob sends once more, then Ctrl-C it as a user would."""
    listener = subprocess.Popen(
        [*openmessenger_command(), *args, "--json"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        alice = json_line(
            subprocess.run(
                [*openmessenger_command(), "whoami", "--profile", "alice", "--json"],
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
                check=True,
            ).stdout
        )["address"]
        subprocess.run(
            [*openmessenger_command(), "send", alice, "Still there?", "--profile", "bob"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        assert listener.stdout is not None
        line = listener.stdout.readline()
        assert json_line(line)["text"] == "Still there?"
    finally:
        listener.send_signal(signal.SIGINT)
        listener.wait(timeout=30)
    assert listener.returncode == 0, listener.stderr.read() if listener.stderr else ""
    return line


def json_line(text: str) -> dict[str, object]:
    import json

    value: dict[str, object] = json.loads(text.splitlines()[0])
    return value
