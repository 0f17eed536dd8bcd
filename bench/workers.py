"""Load-generator processes (``bench.loadgen``) as the runner drives them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil


@dataclass
class Worker:
    process: subprocess.Popen[str]
    result_path: Path
    cpu_s: float = 0.0
    cpu_at_go_s: float = 0.0

    @classmethod
    def start(cls, mode: str, config: dict[str, Any]) -> Worker:
        fd, result_path = tempfile.mkstemp(prefix="om-loadgen-", suffix=".json")
        os.close(fd)
        config = {**config, "result_path": result_path}
        process = subprocess.Popen(
            [sys.executable, "-m", "bench.loadgen", mode],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
        )
        worker = cls(process, Path(result_path))
        worker.say(json.dumps(config))
        return worker

    def say(self, line: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()

    def mark_go(self) -> None:
        """Note the CPU time used so far (start-up), so that ``run_cpu_s`` leaves it out."""
        times = psutil.Process(self.process.pid).cpu_times()
        self.cpu_at_go_s = times.user + times.system

    @property
    def run_cpu_s(self) -> float:
        """CPU time since ``mark_go`` (all of it if never marked); known after ``result``."""
        return self.cpu_s - self.cpu_at_go_s

    def wait_ready(self) -> None:
        assert self.process.stdout is not None
        line = self.process.stdout.readline().strip()
        if line != "ready":
            raise RuntimeError(f"load generator failed to start: {line!r}")

    def result(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        if self.process.stdout.readline().strip() != "done":
            raise RuntimeError("load generator ended without a result")
        result: dict[str, Any] = json.loads(self.result_path.read_text())
        self.result_path.unlink()
        # wait4 gives the child's own CPU time: the generator's cost is reported.
        _, _, usage = os.wait4(self.process.pid, 0)
        self.process.returncode = 0
        self.cpu_s = usage.ru_utime + usage.ru_stime
        return result

    def close(self) -> None:
        if self.process.stdin is not None and not self.process.stdin.closed:
            self.process.stdin.close()


def start_all(mode: str, configs: list[dict[str, Any]]) -> list[Worker]:
    workers = [Worker.start(mode, c) for c in configs]
    for worker in workers:
        worker.wait_ready()
    return workers


def split(items: list[Any], parts: int) -> list[list[Any]]:
    parts = max(1, min(parts, len(items)))
    return [items[i::parts] for i in range(parts)]
