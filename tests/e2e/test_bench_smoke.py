"""The benchmark harness runs end to end (tiny), so it never rots."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
FIELDS = {
    "backend",
    "ceiling_rps",
    "send_msgs_per_s",
    "send_ratio_to_ceiling",
    "delivery_p50_ms_at_1000",
    "delivery_p99_ms_at_1000",
    "ws_idle_connections",
    "ws_rss_kib_per_conn",
}


@pytest.mark.usefixtures("postgres_admin_url")  # PostgreSQL must be startable here
def test_the_benchmark_smoke_run_reports_every_field(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "bench.run", "--smoke", "--out", str(tmp_path)],
        cwd=REPO,
        check=True,
        timeout=600,
    )
    (result_file,) = (tmp_path / "results").glob("*.json")
    report = json.loads(result_file.read_text())
    assert [r["backend"] for r in report["summary"]] == ["sqlite", "sqlite-full", "postgres"]
    for row in report["summary"]:
        assert set(row) >= FIELDS
        assert row["send_msgs_per_s"] > 0 and row["ws_idle_connections"] > 0
    assert "(smoke)" in (tmp_path / "RESULTS.md").read_text()
