"""The Openmsg known-answer vectors (computed with PHP and libsodium), kept in
the ``shared/`` folder cloned beside the repository."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

VECTORS_PATH = Path(__file__).resolve().parents[3] / "shared" / "openmsg-vectors.json"


def load_vectors() -> dict[str, Any]:
    """The vectors file; a skip when it is absent, a failure when it is absent under CI."""
    if not VECTORS_PATH.is_file():
        reason = f"Openmsg vectors file {VECTORS_PATH} is missing (clone shared/ beside the repo)"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    return dict(json.loads(VECTORS_PATH.read_text(encoding="utf-8")))
