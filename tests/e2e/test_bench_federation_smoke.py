"""The federation benchmark runs end to end (tiny), so it never rots: two nodes over
HTTPS in the private namespace, a message flow between them, and both figures."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.federation import require_netns

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
FIELDS = {
    "backend",
    "federation_msgs_per_s",
    "federation_p50_ms",
    "federation_p99_ms",
    "federation_rate_for_latency",
}


def test_the_federation_benchmark_smoke_run_reports_both_figures(tmp_path: Path) -> None:
    require_netns()
    command = ["-m", "bench.run", "--scenario", "federation", "--smoke", "--out", str(tmp_path)]
    subprocess.run(
        [sys.executable, *command],
        cwd=REPO,
        check=True,
        timeout=240,
    )
    (result_file,) = (tmp_path / "results").glob("*-federation.json")
    report = json.loads(result_file.read_text())
    (row,) = report["summary"]
    assert set(row) >= FIELDS and row["backend"] == "sqlite"
    assert row["federation_msgs_per_s"] > 0
    assert 0 < row["federation_p50_ms"] <= row["federation_p99_ms"] < math.inf
    (result,) = report["results"]
    # Every message sent on beta reached a WebSocket on alpha, and the sender's
    # node heard that it was delivered (the Openmsg answer, after the confirm callback).
    for runs in (*result["saturation"].values(), *result["latency"].values()):
        delivered, sent = map(int, runs["delivered_of_sent"].split("/"))
        assert sent > 0 and delivered == sent
        assert set(runs["status_sample"]) == {"delivered"}
    assert "federation (smoke)" in (tmp_path / "RESULTS.md").read_text()
