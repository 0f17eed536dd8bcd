"""A node's logs, even at debug level, never carry tokens, pass codes or message bodies."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from tests.support.api import connected_pair
from tests.support.process import NodeProcess
from tests.support.sdk import REQUEST_TIMEOUT_SECONDS

pytestmark = pytest.mark.e2e


async def test_debug_logs_keep_secrets_out(database_url: str, tmp_path: Path) -> None:
    node = NodeProcess(
        tmp_path / "data", database_url=database_url, env={"OPENMESSENGER_LOG_LEVEL": "debug"}
    ).start()
    try:
        async with httpx.AsyncClient(base_url=node.url, timeout=REQUEST_TIMEOUT_SECONDS) as http:
            alice, bob = await connected_pair(http)
            code = await alice.issue_code()
            await bob.send(alice.address, "a very private sentence")
            await alice.sync()
    finally:
        node.stop()
    records = [json.loads(line) for line in node.log if line.startswith("{")]
    assert any(r.get("route") == "/v1/messages" and r.get("status") == 201 for r in records)
    logged = "\n".join(node.log)
    for secret in (alice.token, bob.token, code, "a very private sentence"):
        assert secret not in logged
