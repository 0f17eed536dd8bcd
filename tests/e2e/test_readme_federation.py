"""The README's two-node walk-through, run verbatim through scripts/two-nodes.

The commands are read from README.md itself. The test runs ``scripts/two-nodes``
as the README says, with a small driver in place of the interactive shell: the
driver runs each command the test hands it, in the environment a user's shell
would have there, and reports what it printed. Only the example addresses and
code are replaced by the ones earlier commands printed, as the README says to.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.support.federation import require_netns

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
ALICE = "4821937012*alpha.test"
CODE = "042917"
BOB = "7305518246*beta.test"

# Stands in for the user at the shell: one JSON argv per line in, one JSON result out.
DRIVER = r"""
import json, subprocess, sys
for line in sys.stdin:
    try:
        done = subprocess.run(
            json.loads(line), stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60
        )
        result = {"returncode": done.returncode, "stdout": done.stdout, "stderr": done.stderr}
    except subprocess.TimeoutExpired:
        result = {"returncode": None, "stdout": "", "stderr": "timed out after 60 s"}
    print(json.dumps(result), flush=True)
"""


def walkthrough() -> list[list[str]]:
    text = README.read_text()
    section = text.split("## Two federating nodes on one machine", 1)[1]
    block = section.split("```sh", 1)[1].split("```", 1)[0]
    commands = [shlex.split(line, comments=True) for line in block.splitlines()]
    return [c for c in commands if c]


def test_the_walkthrough_is_in_the_readme() -> None:
    commands = walkthrough()
    assert commands[0] == ["scripts/two-nodes"]
    assert commands[-1] == ["exit"]
    inside = commands[1:-1]
    assert {c[0] for c in inside} == {"openmessenger"}
    verbs = [c[1] for c in inside]
    assert verbs == [
        "name",
        "whoami",
        "code",
        "name",
        "connect",
        "send",
        "sync",
        "send",
        "sync",
        "send",
    ]
    assert "--wait" in inside[-1]


def test_two_nodes_federate_as_the_readme_shows(tmp_path: Path) -> None:
    require_netns()
    commands = walkthrough()
    log = tmp_path / "two-nodes.log"
    with log.open("w") as stderr:
        harness = subprocess.Popen(
            [str(REPO / commands[0][0]), sys.executable, "-c", DRIVER],
            cwd=REPO,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
    assert harness.stdin is not None and harness.stdout is not None

    def run(args: list[str]) -> dict[str, Any]:
        assert harness.stdin is not None and harness.stdout is not None
        harness.stdin.write(json.dumps(args) + "\n")
        harness.stdin.flush()
        line = harness.stdout.readline()
        assert line, f"scripts/two-nodes ended early:\n{log.read_text()}"
        result: dict[str, Any] = json.loads(line)
        assert result["returncode"] == 0, (args, result)
        return result

    seen = {ALICE: "", CODE: "", BOB: ""}
    syncs: list[str] = []
    try:
        for command in commands[1:-1]:
            args = [seen.get(arg) or arg for arg in command]
            printed = run(args)["stdout"]
            verb = args[1]
            if verb == "whoami":
                seen[ALICE] = found(r"\d+\*alpha\.test", printed)
            if verb == "code":
                seen[CODE] = found(r"\b\d{6}\b", printed)
            if verb == "sync":
                syncs.append(printed)
                if not seen[BOB]:
                    seen[BOB] = found(r"\d+\*beta\.test", printed)
        # `send --wait` exited 0 (checked above): Alice's node must have it by now.
        last = run(
            ["openmessenger", "sync", "--server", "https://alpha.test", "--profile", "alice"]
        )
    finally:
        harness.stdin.close()  # the "exit": the driver ends, both nodes stop
        harness.wait(timeout=60)
    assert harness.returncode == 0, log.read_text()
    alice_sync, bob_sync = syncs
    assert "Hello from beta" in alice_sync
    assert "Hello from alpha" in bob_sync
    assert "Still there?" in last["stdout"]


def found(pattern: str, text: str) -> str:
    match = re.search(pattern, text)
    assert match, (pattern, text)
    return match.group(0)
