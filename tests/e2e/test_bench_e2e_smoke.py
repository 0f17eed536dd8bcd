"""The end-to-end encryption benchmark runs (tiny), so it never rots: real SDK
clients encrypt, the node stores, every recipient decrypts everything."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]


def test_the_e2e_benchmark_smoke_run_decrypts_everything(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "bench.e2e", "--smoke", "--out", str(tmp_path)],
        cwd=REPO,
        check=True,
        timeout=300,
        stdout=subprocess.DEVNULL,
    )
    (result_file,) = tmp_path.glob("e2e-*.json")
    report = json.loads(result_file.read_text())
    assert report["crypto"]["encrypt_plus_decrypt_us_p50"] > 0
    assert report["send"]["sent"] > 0 and report["send"]["all_decrypted"] is True
