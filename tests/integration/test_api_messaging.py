"""Connect and message over the real HTTP API, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio

import httpx

from tests.support.api import Dump, connected_pair, register, rows_mentioning


async def test_connected_devices_exchange_messages_in_order(http: httpx.AsyncClient) -> None:
    alice, bob = await connected_pair(http)
    for text in ["one", "two", "three"]:
        response = await bob.send(alice.address, text)
        assert response.status_code == 201, response.text
    reply = await alice.send(bob.address, "hi bob")
    assert reply.status_code == 201

    events = await alice.sync()
    assert [alice.text(e["message"]) for e in events] == ["one", "two", "three"]
    assert [e["message"]["from"] for e in events] == [bob.address] * 3
    positions = [e["position"] for e in events]
    assert positions == sorted(positions) and len(set(positions)) == 3
    assert [e["message"]["seq"] for e in events] == [1, 2, 3]
    assert {e["message"]["conversation_id"] for e in events} == {reply.json()["conversation_id"]}
    # Once synced, nothing is repeated.
    assert await alice.sync(since=positions[-1]) == []
    assert await bob.texts() == ["hi bob"]


async def test_no_connection_no_message(http: httpx.AsyncClient, dump: Dump) -> None:
    alice, _ = await connected_pair(http)
    stranger = await register(http)
    refused = await stranger.send(alice.address, "buy now")
    unknown = await stranger.send("1234567890*localhost", "buy now")
    assert (refused.status_code, refused.json()) == (unknown.status_code, unknown.json())
    assert refused.json()["code"] == "refused"
    assert await alice.sync() == []
    assert rows_mentioning(await dump(), "buy now") == []


async def test_a_retried_send_is_stored_and_delivered_once(
    http: httpx.AsyncClient, dump: Dump
) -> None:
    alice, bob = await connected_pair(http)
    first = await bob.send(alice.address, "only once", txn="txn-1")
    again = await bob.send(alice.address, "only once", txn="txn-1")
    racing = await asyncio.gather(
        *(bob.send(alice.address, "raced", txn="txn-2") for _ in range(5))
    )
    by_header = [
        await bob.post(
            "/v1/messages", {"to": alice.address, "body": "hdr"}, headers={"Idempotency-Key": "k"}
        )
        for _ in range(2)
    ]
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json() == first.json()
    assert sorted(r.status_code for r in racing) == [200, 200, 200, 200, 201]
    assert len({r.json()["id"] for r in racing}) == 1
    assert [r.status_code for r in by_header] == [201, 200]
    assert await alice.texts() == ["only once", "raced", "hdr"]
    assert len((await dump())["messages"]) == 3


async def test_one_device_cannot_read_anothers_conversations(http: httpx.AsyncClient) -> None:
    alice, bob = await connected_pair(http)
    eve = await register(http)
    sent = (await bob.send(alice.address, "private")).json()
    assert await eve.sync() == []
    history = await eve.get(f"/v1/conversations/{sent['conversation_id']}/messages")
    assert history.status_code == 404
    assert "private" not in history.text
    forged = await http.get("/v1/sync", headers={"Authorization": f"Bearer {bob.token}x"})
    assert forged.status_code == 401 and forged.json()["code"] == "unauthenticated"


async def test_history_is_oldest_first_and_pages(http: httpx.AsyncClient) -> None:
    alice, bob = await connected_pair(http)
    for i in range(5):
        sender, to = (alice, bob.address) if i % 2 else (bob, alice.address)
        await sender.send(to, f"m{i}")
    contact = (await alice.get("/v1/connections")).json()["contacts"][0]
    path = f"/v1/conversations/{contact['conversation_id']}/messages"
    first = (await alice.get(path, params={"limit": 3})).json()["messages"]
    rest = (await alice.get(path, params={"after_seq": first[-1]["seq"]})).json()["messages"]
    assert [alice.text(m) for m in first + rest] == ["m0", "m1", "m2", "m3", "m4"]
    assert [m["seq"] for m in first + rest] == [1, 2, 3, 4, 5]
    assert (await bob.get(path)).json()["messages"] == first + rest


async def test_every_send_answers_in_one_shape(http: httpx.AsyncClient) -> None:
    """Plain sends take the node's fast path, sends with an Idempotency-Key header
    the framework's route: a client cannot tell them apart."""
    alice, bob = await connected_pair(http)
    plain = await bob.send(alice.address, "one")
    keyed = await bob.post(
        "/v1/messages", {"to": alice.address, "body": "two"}, headers={"Idempotency-Key": "k2"}
    )
    assert (plain.status_code, keyed.status_code) == (201, 201)
    assert plain.headers["content-type"] == keyed.headers["content-type"] == "application/json"
    assert set(plain.json()) == set(keyed.json())
    assert [plain.json()["seq"], keyed.json()["seq"]] == [1, 2]
    metrics = (await http.get("/metrics")).text
    assert 'route="/v1/messages",status="201"} 2.0' in metrics
