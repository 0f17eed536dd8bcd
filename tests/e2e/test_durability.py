"""A message acknowledged to its sender survives ``kill -9`` of the node."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.support.api import connected_pair
from tests.support.process import NodeProcess
from tests.support.sdk import REQUEST_TIMEOUT_SECONDS

pytestmark = pytest.mark.e2e


async def test_acknowledged_messages_survive_kill_9(database_url: str, tmp_path: Path) -> None:
    node = NodeProcess(tmp_path / "data", database_url=database_url).start()
    try:
        async with httpx.AsyncClient(base_url=node.url, timeout=REQUEST_TIMEOUT_SECONDS) as http:
            alice, bob = await connected_pair(http)
            acknowledged = []
            for i in range(20):
                response = await bob.send(alice.address, f"durable {i}")
                assert response.status_code == 201
                acknowledged.append(response.json()["id"])
        node.kill()

        node.start()
        async with httpx.AsyncClient(base_url=node.url, timeout=REQUEST_TIMEOUT_SECONDS) as http:
            alice.http = http
            events = await alice.sync()
    finally:
        node.stop()
    assert [e["message"]["id"] for e in events] == acknowledged
    assert [alice.text(e["message"]) for e in events] == [f"durable {i}" for i in range(20)]
