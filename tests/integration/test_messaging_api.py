"""Connect and message over the real HTTP API, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from tests.support.api import connected_pair, register


@pytest.fixture
async def http(node_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=node_url, timeout=10) as client:
        yield client


async def test_connected_devices_exchange_messages_in_order(http: httpx.AsyncClient) -> None:
    alice, bob = await connected_pair(http)
    for text in ["one", "two", "three"]:
        response = await bob.send(alice.address, text)
        assert response.status_code == 201, response.text
    reply = await alice.send(bob.address, "hi bob")
    assert reply.status_code == 201

    events = await alice.sync()
    assert [e["message"]["body"] for e in events] == ["one", "two", "three"]
    assert [e["message"]["from"] for e in events] == [bob.address] * 3
    positions = [e["position"] for e in events]
    assert positions == sorted(positions) and len(set(positions)) == 3
    assert [e["message"]["seq"] for e in events] == [1, 2, 3]
    assert {e["message"]["conversation_id"] for e in events} == {
        reply.json()["conversation_id"]
    }
    # Once synced, nothing is repeated.
    assert await alice.sync(since=positions[-1]) == []
    assert [e["message"]["body"] for e in await bob.sync()] == ["hi bob"]
