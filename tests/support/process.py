"""Real node processes for end-to-end tests: ``openmessenger serve`` as a user runs it."""

from __future__ import annotations

import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

_LISTENING = re.compile(r"^listening on (https?://\S+)")


def openmessenger_command() -> list[str]:
    found = shutil.which("openmessenger", path=str(Path(sys.executable).parent))
    return [found] if found else [sys.executable, "-m", "openmessenger.cli.main"]


def cli_process(
    cli_home: Path, node_url: str, *args: str, stdin: bool = False
) -> subprocess.Popen[str]:
    """``openmessenger ARGS`` as a real process (for commands that wait or ask),
    with its profiles in ``cli_home`` and ``node_url`` as its server."""
    env = {"OPENMESSENGER_HOME": str(cli_home), "OPENMESSENGER_SERVER": node_url, "PATH": ""}
    return subprocess.Popen(
        [*openmessenger_command(), *args],
        stdin=subprocess.PIPE if stdin else None,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


@dataclass
class NodeProcess:
    """``openmessenger serve`` on a free port; ``url`` is known once it logged that it listens."""

    data_dir: Path
    database_url: str | None = None
    node_secret: str = field(default_factory=lambda: secrets.token_hex(32))
    env: dict[str, str] = field(default_factory=dict)
    url: str = ""
    log: list[str] = field(default_factory=list)
    _process: subprocess.Popen[str] | None = None

    def start(self, timeout: float = 60) -> NodeProcess:
        command = [
            *openmessenger_command(),
            "serve",
            "--port",
            "0",
            "--data-dir",
            str(self.data_dir),
        ]
        if self.database_url:
            command += ["--database-url", self.database_url]
        env = {**os.environ, "OPENMESSENGER_NODE_SECRET": self.node_secret, **self.env}
        # A fresh event and reader for each start: the reader of a process killed
        # before must not report this one as listening (on the old port).
        listening = threading.Event()
        self.url = ""
        self._process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
        )
        threading.Thread(
            target=self._read_log, args=(self._process, listening), daemon=True
        ).start()
        if not listening.wait(timeout) or not self.url:
            self.kill()
            raise RuntimeError("the node did not start:\n" + "\n".join(self.log[-30:]))
        return self

    def _read_log(self, process: subprocess.Popen[str], listening: threading.Event) -> None:
        assert process.stdout is not None
        for line in process.stdout:
            self.log.append(line.rstrip())
            found = _LISTENING.search(line)
            if found:
                self.url = found.group(1)
                listening.set()
        listening.set()  # the process ended: stop waiting

    def kill(self) -> None:
        """``kill -9``: no shutdown code runs."""
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signal.SIGKILL)
            self._process.wait(timeout=30)

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signal.SIGINT)
            try:
                self._process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()
