"""A real SOCKS5 proxy (pproxy) on loopback, for tests of proxied federation."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass


class ProcessLog:
    """Collects a child's output lines on a thread; waits on a condition, not a clock."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        assert process.stdout is not None
        self._stream = process.stdout
        self._lines: list[str] = []
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._pump, daemon=True)
        self._thread.start()

    def close(self) -> None:
        """After the child has exited: let the pump reach EOF, then close the pipe."""
        self._thread.join(timeout=10)
        self._stream.close()

    def _pump(self) -> None:
        for line in self._stream:
            with self._changed:
                self._lines.append(line.rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            self._lines.append("<EOF>")
            self._changed.notify_all()

    def wait_for(self, pattern: str, timeout: float = 10.0) -> re.Match[str]:
        regex = re.compile(pattern)

        def found() -> re.Match[str] | None:
            return next(filter(None, map(regex.search, self._lines)), None)

        with self._changed:
            ended = self._changed.wait_for(
                lambda: found() or "<EOF>" in self._lines, timeout=timeout
            )
            hit = found()
        if hit is None:
            why = "pproxy exited" if ended is True else "timed out"
            raise AssertionError(f"{pattern!r} not seen ({why}): {self._lines}")
        return hit

    @property
    def text(self) -> str:
        with self._changed:
            return "\n".join(self._lines)


@dataclass(frozen=True)
class Socks:
    url: str
    log: ProcessLog


# pproxy 2.7.9 installs uvloop when it can import it (the bench extra brings it),
# then calls asyncio.get_event_loop(), which uvloop refuses without a current
# loop. Hide uvloop and give pproxy a loop of its own.
PPROXY_MAIN = """
import asyncio, sys
sys.modules["uvloop"] = None
asyncio.set_event_loop(asyncio.new_event_loop())
from pproxy.server import main
main(sys.argv[1:])
"""


@contextmanager
def running_socks_proxy() -> Iterator[Socks]:
    """A pproxy SOCKS5 server on a loopback port it picks itself, logging each connection."""
    process = subprocess.Popen(
        [sys.executable, "-u", "-c", PPROXY_MAIN, "-l", "socks5://127.0.0.1:0", "-v"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    log = ProcessLog(process)
    try:
        # pproxy prints this once its socket listens; port 0 avoids a port race.
        port = log.wait_for(r"Serving on \S+ 127\.0\.0\.1:(\d+) by socks5").group(1)
        yield Socks(url=f"socks5h://127.0.0.1:{port}", log=log)
    finally:
        process.terminate()
        process.wait(timeout=10)
        log.close()
