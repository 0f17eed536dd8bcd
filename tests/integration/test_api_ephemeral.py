"""Disappearing (ephemeral) messages over the real HTTP API and WebSocket stream,
on SQLite and PostgreSQL: one device to one device, from memory, within the hold."""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import websockets

from openmessenger.settings import Settings
from tests.support.api import Dump, connected_pair, register
from tests.support.ephemeral import (
    OlmPair,
    marker,
    next_frame,
    opaque_body,
    rows_holding,
    send_ephemeral,
    stream,
    take,
    take_within,
    until_subscribed,
)
from tests.support.node import NodeThread
from tests.support.sdk import REQUEST_TIMEOUT_SECONDS

HOLD_SECONDS = 2.0
MARGIN_SECONDS = 1.5
"""Expiry is a timer of the node's own; this much late is still within the bound."""


@pytest.fixture
def node_settings(database_url: str, tmp_path: Path) -> Settings:
    return Settings(
        host="127.0.0.1",
        port=0,
        domain="localhost",
        data_dir=tmp_path / "node-data",
        database_url=database_url,
        node_secret=secrets.token_hex(32),
        log_level="warning",
        ephemeral_hold_seconds=HOLD_SECONDS,
    )


async def test_a_device_takes_its_message_once_and_reads_it(http: httpx.AsyncClient) -> None:
    alice, bob = await connected_pair(http)
    olm = OlmPair.open(bob, alice)
    text = marker()

    sent = await send_ephemeral(bob, alice, olm.body(text, lifespan=30), lifespan=30)
    events = await take(alice)

    assert sent.status_code == 202, sent.text
    answer = sent.json()
    assert answer["status"] == "pending" and answer["to"] == alice.address
    assert answer["device"] == alice.device_id and answer["lifespan_seconds"] == 30
    [event] = events
    assert event["type"] == "ephemeral" and "position" not in event
    message = event["message"]
    assert message["id"] == answer["id"]
    assert (message["from"], message["sender_device"]) == (bob.address, bob.device_id)
    assert (message["to"], message["device"]) == (alice.address, alice.device_id)
    assert message["lifespan_seconds"] == 30
    assert olm.open_body(message["body"]).text == text
    assert await take(alice) == []  # handed over and forgotten
    assert await take(bob) == []  # the sender has nothing to take either


async def test_it_goes_live_to_the_named_device_on_a_stream_that_asks(
    http: httpx.AsyncClient,
) -> None:
    alice, bob = await connected_pair(http)
    async with stream(alice, "since=0&ephemeral=1") as ws:
        await until_subscribed(ws, bob, alice)
        sent = (await send_ephemeral(bob, alice)).json()
        ordinary = await bob.send(alice.address, "an ordinary message")
        frames = [await next_frame(ws), await next_frame(ws)]

    by_type = {f["type"]: f for f in frames}
    assert set(by_type) == {"ephemeral", "message"}
    assert by_type["ephemeral"]["message"]["id"] == sent["id"]
    assert by_type["message"]["message"]["id"] == ordinary.json()["id"]
    assert by_type["message"]["position"] >= 1
    assert await take(alice) == []


async def test_a_stream_that_does_not_ask_never_carries_one(http: httpx.AsyncClient) -> None:
    alice, bob = await connected_pair(http)
    async with stream(alice, "since=0") as ws:
        sent = (await send_ephemeral(bob, alice)).json()
        await bob.send(alice.address, "after the disappearing one")
        first = await next_frame(ws)

    assert first["type"] == "message"
    # Still waiting: an older client's stream neither sees nor takes it.
    assert [e["message"]["id"] for e in await take(alice)] == [sent["id"]]


async def test_only_mode_carries_no_ordinary_messages(http: httpx.AsyncClient) -> None:
    alice, bob = await connected_pair(http)
    await bob.send(alice.address, "stored, for sync")
    async with stream(alice) as ws:
        sent = (await send_ephemeral(bob, alice)).json()
        first = await next_frame(ws)

    assert first["type"] == "ephemeral" and first["message"]["id"] == sent["id"]
    assert len(await alice.sync()) == 1


async def test_a_bad_stream_mode_is_closed_with_4400(http: httpx.AsyncClient) -> None:
    alice, _ = await connected_pair(http)
    async with stream(alice, "ephemeral=sometimes") as ws:
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await next_frame(ws)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4400


async def test_an_undelivered_message_expires_within_the_hold_and_the_sender_is_told(
    http: httpx.AsyncClient,
) -> None:
    alice, bob = await connected_pair(http)
    async with stream(bob) as ws:
        await until_subscribed(ws, alice, bob)
        started = time.monotonic()
        sent = (await send_ephemeral(bob, alice)).json()
        notice = await next_frame(ws, timeout=HOLD_SECONDS + MARGIN_SECONDS)
        waited = time.monotonic() - started

    assert notice == {
        "type": "ephemeral.expired",
        "id": sent["id"],
        "to": alice.address,
        "device": alice.device_id,
        "sent_at": sent["sent_at"],
        "expired_at": sent["expires_at"],
    }
    assert HOLD_SECONDS - 0.1 <= waited <= HOLD_SECONDS + MARGIN_SECONDS
    assert await take(alice) == []  # dropped: the device that comes back later gets nothing


async def test_a_sender_without_a_stream_finds_the_notice_by_polling(
    http: httpx.AsyncClient,
) -> None:
    alice, bob = await connected_pair(http)
    sent = (await send_ephemeral(bob, alice)).json()

    [notice] = await take_within(bob, HOLD_SECONDS + MARGIN_SECONDS)

    assert (notice["type"], notice["id"]) == ("ephemeral.expired", sent["id"])
    assert await take(bob) == []
    assert await take(alice) == []


async def test_only_the_named_device_hears_it(http: httpx.AsyncClient) -> None:
    # Linked second devices of the same accounts: tests/integration/test_sdk_ephemeral.py.
    alice, bob = await connected_pair(http)
    carol = await register(http)
    code = await alice.issue_code()
    assert (await carol.connect(alice.address, code)).status_code == 201
    async with stream(carol) as carol_ws, stream(bob) as bob_ws:
        await until_subscribed(carol_ws, alice, carol)
        await until_subscribed(bob_ws, alice, bob)
        await send_ephemeral(bob, alice)
        await send_ephemeral(alice, carol, txn="after")
        await send_ephemeral(alice, bob, txn="after")
        carol_next, bob_next = await next_frame(carol_ws), await next_frame(bob_ws)

    assert carol_next["message"]["from"] == alice.address
    assert bob_next["message"]["from"] == alice.address


async def test_a_stranger_gets_the_generic_refusal_and_the_target_hears_nothing(
    http: httpx.AsyncClient, dump: Dump
) -> None:
    alice, bob = await connected_pair(http)
    stranger = await register(http)
    body = opaque_body(stranger)
    async with stream(alice) as ws:
        await until_subscribed(ws, bob, alice)
        refused = await send_ephemeral(stranger, alice, body)
        ordinary = await stranger.send(alice.address, "buy now")
        unknown = await stranger.post(
            "/v1/ephemeral",
            {"to": "1234567890*localhost", "device": "x", "body": body, "lifespan_seconds": 60},
        )
        after = (await send_ephemeral(bob, alice, txn="after")).json()
        first = await next_frame(ws)

    assert refused.status_code == 403
    assert refused.json() == ordinary.json() == unknown.json()
    assert refused.json()["code"] == "refused"
    assert first["message"]["id"] == after["id"]
    assert rows_holding(await dump(), [json.loads(body)["olm"]["body"]]) == []


async def test_a_one_way_connection_refuses_disappearing_replies(http: httpx.AsyncClient) -> None:
    alice, bob = await register(http), await register(http)
    code = await alice.issue_code()
    response = await bob.post(
        "/v1/connections",
        {"address": alice.address, "pass_code": code, "allow_replies": False},
    )
    assert response.status_code == 201

    assert (await send_ephemeral(bob, alice)).status_code == 202
    reply = await send_ephemeral(alice, bob)

    assert (reply.status_code, reply.json()["code"]) == (403, "refused")


async def test_a_retry_is_relayed_once_under_the_same_id(http: httpx.AsyncClient) -> None:
    alice, bob = await connected_pair(http)
    body = opaque_body(bob)
    first = await send_ephemeral(bob, alice, body, txn="txn-1")
    again = await send_ephemeral(bob, alice, body, txn="txn-1")
    by_header = await bob.post(
        "/v1/ephemeral",
        {"to": alice.address, "device": alice.device_id, "body": body, "lifespan_seconds": 60},
        headers={"Idempotency-Key": "txn-1"},
    )

    racing = await asyncio.gather(
        *(send_ephemeral(bob, alice, body, txn="txn-2") for _ in range(5))
    )

    assert (first.status_code, again.status_code, by_header.status_code) == (202, 200, 200)
    assert again.json() == first.json() == by_header.json()
    assert sorted(r.status_code for r in racing) == [200, 200, 200, 200, 202]
    assert len({r.json()["id"] for r in racing}) == 1
    assert [e["message"]["id"] for e in await take(alice)] == [
        first.json()["id"],
        racing[0].json()["id"],
    ]
    # Taken already: a late retry is relayed again under the same id, so the
    # receiving client recognises the copy and drops it.
    late = await send_ephemeral(bob, alice, body, txn="txn-1")
    assert (late.status_code, late.json()["id"]) == (202, first.json()["id"])


@pytest.mark.parametrize(
    ("change", "status", "code", "field"),
    [
        ({"body": "x" * 8193}, 422, "message_too_large", "body"),
        ({"body": "not an olm body"}, 422, "invalid_input", "body"),
        ({"body": "<another device's key>"}, 422, "invalid_input", "body"),
        ({"lifespan_seconds": 0}, 422, "invalid_input", "lifespan_seconds"),
        ({"lifespan_seconds": 7 * 24 * 3600 + 1}, 422, "invalid_input", "lifespan_seconds"),
        ({"device": None}, 422, "invalid_input", "device"),
        ({"to": "not an address"}, 422, "invalid_input", "to"),
        ({"device": "no-such-device"}, 404, "device_not_found", None),
        # Another node's address that is no contact: the generic refusal, nothing asked
        # of that node (across nodes: tests/integration/federation/test_ephemeral_across_nodes.py).
        ({"to": "1234567*elsewhere.example"}, 403, "refused", None),
    ],
)
async def test_bad_input_is_refused_by_name_and_nothing_is_held(
    http: httpx.AsyncClient,
    change: dict[str, object],
    status: int,
    code: str,
    field: str | None,
) -> None:
    alice, bob = await connected_pair(http)
    request: dict[str, object] = {
        "to": alice.address,
        "device": alice.device_id,
        "body": opaque_body(bob),
        "lifespan_seconds": 60,
    }
    if change.get("body") == "<another device's key>":
        change = {"body": opaque_body(alice)}
    request.update(change)
    request = {k: v for k, v in request.items() if v is not None}

    response = await bob.post("/v1/ephemeral", request)

    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == code
    assert response.json().get("field") == field
    assert await take(alice) == []


async def test_an_app_device_of_the_node_cannot_be_the_target(
    http: httpx.AsyncClient, running_node: NodeThread
) -> None:
    alice, bob = await connected_pair(http)

    async def mark_node_held() -> None:
        from sqlalchemy import update

        from openmessenger.storage.tables import devices

        assert running_node.node is not None
        async with running_node.node.database.connect() as conn:
            await conn.execute(
                update(devices).where(devices.c.id == alice.device_id).values(node_held=True)
            )
            await conn.commit()

    await running_node.call(mark_node_held())
    response = await send_ephemeral(bob, alice)

    assert response.status_code == 409
    assert response.json()["code"] == "ephemeral_device_unsupported"


@pytest.fixture
def small_relay(node_settings: Settings) -> Iterator[str]:
    settings = node_settings.model_copy(
        update={"ephemeral_max_pending_per_device": 2, "ephemeral_max_pending_total": 3}
    )
    node = NodeThread(settings).start()
    try:
        yield node.url
    finally:
        node.stop()


async def test_the_relay_is_bounded_per_device_and_in_total(small_relay: str) -> None:
    async with httpx.AsyncClient(base_url=small_relay, timeout=REQUEST_TIMEOUT_SECONDS) as http:
        alice, bob = await connected_pair(http)
        carol = await register(http)
        code = await carol.issue_code()
        assert (await alice.connect(carol.address, code)).status_code == 201

        two = [await send_ephemeral(bob, alice) for _ in range(2)]
        third = await send_ephemeral(bob, alice)
        for_carol = await send_ephemeral(alice, carol)
        full = await send_ephemeral(alice, bob)
        await take(alice)
        room_again = await send_ephemeral(alice, bob)

    assert [r.status_code for r in two] == [202, 202]
    assert third.status_code == 429
    assert (third.json()["code"], third.json()["field"]) == ("limit_exceeded", "device")
    assert for_carol.status_code == 202
    assert (full.status_code, full.json()["code"]) == (503, "ephemeral_relay_full")
    assert room_again.status_code == 202


async def test_a_broken_connection_does_not_lose_what_it_never_got(
    http: httpx.AsyncClient,
) -> None:
    """A stream that is gone before a message reaches it leaves the message waiting."""
    alice, bob = await connected_pair(http)
    async with stream(alice) as ws:
        await until_subscribed(ws, bob, alice)
    sent = (await send_ephemeral(bob, alice)).json()

    assert [e["message"]["id"] for e in await take(alice)] == [sent["id"]]


async def test_a_blocked_sender_gets_the_generic_refusal(http: httpx.AsyncClient) -> None:
    alice, bob = await connected_pair(http)
    blocked = await alice.post(f"/v1/contacts/{bob.address}/block")
    assert blocked.status_code == 201, blocked.text

    refused = await send_ephemeral(bob, alice)
    ordinary = await bob.send(alice.address, "hello?")
    await alice.http.delete(f"/v1/contacts/{bob.address}/block", headers=alice.auth)
    after_unblock = await send_ephemeral(bob, alice)

    assert refused.status_code == 403
    assert refused.json() == ordinary.json()
    assert [e["message"]["id"] for e in await take(alice)] == [after_unblock.json()["id"]]


async def test_the_conversations_policy_applies(http: httpx.AsyncClient) -> None:
    alice, bob = await connected_pair(http)
    conversation = (await bob.send(alice.address, "hi")).json()["conversation_id"]
    response = await alice.http.put(
        f"/v1/conversations/{conversation}/policy",
        json={"max_message_bytes": 200},
        headers=alice.auth,
    )
    assert response.status_code == 200, response.text

    too_large = await send_ephemeral(bob, alice)

    assert too_large.status_code == 422
    assert (too_large.json()["code"], too_large.json()["field"]) == ("message_too_large", "body")
    assert await take(alice) == []
