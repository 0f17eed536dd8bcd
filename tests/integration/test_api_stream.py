"""Live delivery over /v1/stream: backlog first, then live, in order, once."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
import websockets

from tests.support.api import ApiDevice, connected_pair

TIMEOUT = 10


def ws_url(http: httpx.AsyncClient, since: int = 0) -> str:
    return str(http.base_url).replace("http://", "ws://").rstrip("/") + f"/v1/stream?since={since}"


async def next_event(ws: Any) -> dict[str, Any]:
    event: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))
    return event


def connect(http: httpx.AsyncClient, device: ApiDevice, since: int = 0) -> Any:
    return websockets.connect(ws_url(http, since), additional_headers=device.auth)


async def test_a_listening_device_receives_live_messages_in_order(http: httpx.AsyncClient) -> None:
    alice, bob = await connected_pair(http)
    await bob.send(alice.address, "before listening")
    async with connect(http, alice) as ws:
        backlog = await next_event(ws)
        assert alice.text(backlog["message"]) == "before listening"
        for text in ("live 1", "live 2", "live 3"):
            await bob.send(alice.address, text)
        live = [await next_event(ws) for _ in range(3)]
    assert [alice.text(e["message"]) for e in live] == ["live 1", "live 2", "live 3"]
    positions = [backlog["position"]] + [e["position"] for e in live]
    assert positions == list(range(positions[0], positions[0] + 4))
    assert live[0]["message"]["from"] == bob.address and live[0]["type"] == "message"


async def test_resuming_from_a_position_skips_what_was_seen(http: httpx.AsyncClient) -> None:
    alice, bob = await connected_pair(http)
    for text in ("a", "b", "c"):
        await bob.send(alice.address, text)
    seen = (await alice.sync())[1]["position"]
    async with connect(http, alice, since=seen) as ws:
        assert alice.text((await next_event(ws))["message"]) == "c"
        await bob.send(alice.address, "d")
        assert alice.text((await next_event(ws))["message"]) == "d"


async def test_concurrent_senders_arrive_once_each_in_stream_order(http: httpx.AsyncClient) -> None:
    alice, bob = await connected_pair(http)
    async with connect(http, alice) as ws:
        sends = await asyncio.gather(*(bob.send(alice.address, f"m{i}") for i in range(30)))
        assert all(r.status_code == 201 for r in sends)
        events = [await next_event(ws) for _ in range(30)]
    positions = [e["position"] for e in events]
    assert positions == sorted(positions) and len(set(positions)) == 30
    assert sorted(alice.text(e["message"]) for e in events) == sorted(f"m{i}" for i in range(30))
    # The conversation's order is one line: seq 1..30 with no fork.
    assert sorted(e["message"]["seq"] for e in events) == list(range(1, 31))


async def test_a_stream_carries_only_its_own_devices_events(http: httpx.AsyncClient) -> None:
    alice, bob = await connected_pair(http)
    carol, dave = await connected_pair(http)
    async with connect(http, carol) as ws:
        await bob.send(alice.address, "for alice")
        await dave.send(carol.address, "for carol")
        event = await next_event(ws)
    assert carol.text(event["message"]) == "for carol"


@pytest.mark.parametrize("token", ["", "Bearer wrong"])
async def test_a_stream_without_a_valid_token_is_closed(
    http: httpx.AsyncClient, token: str
) -> None:
    headers = {"Authorization": token} if token else {}
    async with websockets.connect(ws_url(http), additional_headers=headers) as ws:
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), TIMEOUT)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401


@pytest.mark.parametrize("since", ["abc", "-1", "1.5"])
async def test_a_bad_since_is_closed_with_4400(http: httpx.AsyncClient, since: str) -> None:
    alice, _ = await connected_pair(http)
    url = ws_url(http).replace("since=0", f"since={since}")
    async with websockets.connect(url, additional_headers=alice.auth) as ws:
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), TIMEOUT)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4400
