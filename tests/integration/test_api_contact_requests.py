"""Two-way contact requests and blocks over the real API: off by default, one
silent answer for every request that does not reach its owner, and a blocked
address refused exactly like a stranger."""

from __future__ import annotations

import asyncio
import json
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import websockets

from openmessenger.settings import Settings
from tests.support.api import ApiDevice, Dump, connected_pair, register, rows_mentioning
from tests.support.apps import create_app, registered
from tests.support.node import SettableClock

RATE = 4
TIMEOUT = 10


@pytest.fixture
def node_settings(node_settings: Settings) -> Settings:
    """A small hourly request limit, to reach it in a test."""
    return node_settings.model_copy(update={"contact_request_rate_limit": f"{RATE}/hour"})


def answer_of(response: httpx.Response) -> tuple[int, bytes, dict[str, str]]:
    """What the sender sees of an answer: status, body and headers (but the date)."""
    headers = {k: v for k, v in response.headers.items() if k.lower() != "date"}
    return response.status_code, response.content, headers


async def request(sender: ApiDevice, to: str, note: str | None = None) -> httpx.Response:
    return await sender.post("/v1/requests", {"to": to, "note": note})


async def accepting(owner: ApiDevice, who: str = "anyone") -> None:
    response = await owner.http.put(
        "/v1/preferences",
        json={"name": "accept_requests", "value": who, "level": "account"},
        headers=owner.auth,
    )
    assert response.status_code == 200, response.text


async def pending(owner: ApiDevice) -> list[dict[str, Any]]:
    response = await owner.get("/v1/requests")
    assert response.status_code == 200, response.text
    found: list[dict[str, Any]] = response.json()["requests"]
    return found


def ws_url(http: httpx.AsyncClient) -> str:
    return str(http.base_url).replace("http://", "ws://").rstrip("/") + "/v1/stream?since=0"


async def first_stream_event(http: httpx.AsyncClient, device: ApiDevice) -> dict[str, Any]:
    async with websockets.connect(ws_url(http), additional_headers=device.auth) as ws:
        event: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))
    return event


async def delivered_answer(http: httpx.AsyncClient) -> tuple[int, bytes, dict[str, str]]:
    """The answer to a request that did reach its owner."""
    owner, sender = await register(http, "Open"), await register(http, "Asker")
    await accepting(owner)
    response = await request(sender, owner.address, "hello")
    assert len(await pending(owner)) == 1
    return answer_of(response)


async def test_with_requests_off_no_request_reaches_a_user(
    http: httpx.AsyncClient, dump: Dump
) -> None:
    delivered = await delivered_answer(http)
    assert delivered[0] == 202 and json.loads(delivered[1]) == {"status": "sent"}
    target, stranger = await register(http, "Target"), await register(http, "Stranger")

    dropped = await request(stranger, target.address, "let me in: marker-off")

    assert answer_of(dropped) == delivered  # the sender cannot tell
    assert await pending(target) == []
    assert await target.sync() == []
    stored = await dump()
    assert rows_mentioning(stored, "marker-off") == []
    assert len(stored["contact_requests"]) == 1  # the delivered one only
    # The stream has nothing either: the first event it ever shows is a later message.
    friend = await register(http, "Friend")
    code = await target.issue_code()
    assert (await friend.connect(target.address, code)).status_code == 201
    assert (await friend.send(target.address, "first real message")).status_code == 201
    event = await first_stream_event(http, target)
    assert target.text(event["message"]) == "first real message"


async def test_an_unknown_address_gets_the_same_answer(http: httpx.AsyncClient) -> None:
    delivered = await delivered_answer(http)
    sender = await register(http)
    dropped = await request(sender, "999999999999*localhost")
    assert answer_of(dropped) == delivered


async def test_verified_drops_an_anonymous_sender_and_delivers_a_registered_one(
    http: httpx.AsyncClient, clock: SettableClock, dump: Dump
) -> None:
    delivered = await delivered_answer(http)
    owner = await register(http, "Picky")
    await accepting(owner, "verified")
    anonymous = await register(http, "Anon")
    verified = await registered(http, clock, "Verified")

    dropped = await request(anonymous, owner.address, "marker-anonymous")
    arrived = await request(verified, owner.address, "from a verified sender")

    assert answer_of(dropped) == answer_of(arrived) == delivered
    [only] = await pending(owner)
    assert only["sender"] == verified.address and only["sender_verified"] is True
    assert only["note"] == "from a verified sender"
    assert rows_mentioning(await dump(), "marker-anonymous") == []


async def test_accepting_connects_the_two_and_messages_flow(http: httpx.AsyncClient) -> None:
    owner, sender = await register(http, "Owner"), await register(http, "Sender")
    await accepting(owner)
    # Before an answer, the sender may not write.
    assert (await sender.send(owner.address, "too early")).status_code == 403
    await request(sender, owner.address, "hi, it's me")
    [pending_request] = await pending(owner)
    assert pending_request["sender_display_name"] == "Sender"
    assert pending_request["sender_verified"] is False

    accepted = await owner.post(f"/v1/requests/{pending_request['id']}/accept")

    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["address"] == sender.address
    assert await pending(owner) == []
    sent = await sender.send(owner.address, "now we talk")
    assert sent.status_code == 201, sent.text
    assert await owner.texts() == ["now we talk"]
    assert (await owner.send(sender.address, "hello back")).status_code == 201
    assert await sender.texts() == ["hello back"]
    # Accepting twice is not possible; the request is settled.
    again = await owner.post(f"/v1/requests/{pending_request['id']}/accept")
    assert again.status_code == 404 and again.json()["code"] == "request_not_found"


async def test_declined_senders_are_dropped_silently_from_then_on(http: httpx.AsyncClient) -> None:
    delivered = await delivered_answer(http)
    owner, sender = await register(http, "Owner"), await register(http, "Pest")
    await accepting(owner)
    await request(sender, owner.address, "first")
    [first] = await pending(owner)

    declined = await owner.post(f"/v1/requests/{first['id']}/decline")
    assert declined.status_code == 204
    again = await request(sender, owner.address, "second try")

    assert answer_of(again) == delivered
    assert await pending(owner) == []
    assert (await sender.send(owner.address, "hello?")).status_code == 403


async def test_another_accounts_request_cannot_be_answered(http: httpx.AsyncClient) -> None:
    owner, sender, nosy = [await register(http) for _ in range(3)]
    await accepting(owner)
    await request(sender, owner.address)
    [found] = await pending(owner)
    for action in ("accept", "decline"):
        response = await nosy.post(f"/v1/requests/{found['id']}/{action}")
        assert response.status_code == 404 and response.json()["code"] == "request_not_found"
    assert len(await pending(owner)) == 1


async def test_one_pending_request_per_pair_however_often_it_is_sent(
    http: httpx.AsyncClient,
) -> None:
    delivered = await delivered_answer(http)
    owner, sender = await register(http, "Owner"), await register(http, "Eager")
    await accepting(owner)
    answers = await asyncio.gather(*(request(sender, owner.address, f"n{i}") for i in range(3)))
    assert all(answer_of(a) == delivered for a in answers)
    [only] = await pending(owner)
    assert only["sender"] == sender.address


async def test_the_hourly_limit_counts_dropped_requests_too(http: httpx.AsyncClient) -> None:
    sender = await register(http, "Spammer")
    targets = [await register(http, f"T{i}") for i in range(RATE + 1)]
    await accepting(targets[0])
    # Requests nobody takes count as much as delivered ones: the limit says nothing.
    for target in targets[:RATE]:
        assert (await request(sender, target.address)).status_code == 202
    over = await request(sender, targets[RATE].address)
    assert over.status_code == 429, over.text
    assert over.json()["code"] == "rate_limited" and int(over.headers["Retry-After"]) >= 1
    assert await pending(targets[RATE]) == []
    # Another sender is not held back by this one.
    other = await register(http, "Other")
    assert (await request(other, targets[0].address)).status_code == 202
    assert len(await pending(targets[0])) == 2


async def test_a_remote_address_on_an_unreachable_node_is_refused_plainly(
    http: httpx.AsyncClient,
) -> None:
    # A node that cannot be asked what it speaks is not guessed; an Openmsg v1
    # node gets 409 requests_remote_unsupported
    # (tests/integration/federation/test_requests_across_nodes.py).
    sender = await register(http)
    response = await request(sender, "123456*elsewhere.example")
    assert response.status_code == 502
    assert response.json()["code"] == "peer_unavailable"


async def test_bad_input_names_the_field(http: httpx.AsyncClient) -> None:
    sender = await register(http)
    too_long = await request(sender, "1234*localhost", "x" * 281)
    assert too_long.status_code == 422 and too_long.json()["field"] == "note"
    bad_address = await request(sender, "not an address")
    assert bad_address.status_code == 422 and bad_address.json()["field"] == "to"
    own = await request(sender, sender.address)
    assert own.status_code == 422 and own.json()["field"] == "to"


async def test_a_blocked_contact_is_refused_like_a_stranger_and_nothing_is_stored(
    http: httpx.AsyncClient, dump: Dump
) -> None:
    alice, bob = await connected_pair(http)
    stranger = await register(http, "Stranger")
    not_connected = await stranger.send(alice.address, "who are you")
    before = await dump()

    blocked = await alice.post(f"/v1/contacts/{bob.address}/block")
    assert blocked.status_code == 201, blocked.text
    refused = await bob.send(alice.address, "marker-blocked")

    assert refused.status_code == not_connected.status_code == 403
    assert refused.json() == not_connected.json()
    assert refused.json()["code"] == "refused"
    assert await alice.texts() == []
    after = await dump()
    for table in ("messages", "device_streams"):
        assert after[table] == before[table], table
    listed = (await alice.get("/v1/blocks")).json()["blocks"]
    assert [b["address"] for b in listed] == [bob.address]
    assert (await alice.post(f"/v1/contacts/{bob.address}/block")).status_code == 200

    unblocked = await alice.http.delete(f"/v1/contacts/{bob.address}/block", headers=alice.auth)
    assert unblocked.status_code == 204
    assert (await bob.send(alice.address, "back again")).status_code == 201
    assert await alice.texts() == ["back again"]
    assert (await alice.get("/v1/blocks")).json()["blocks"] == []


async def test_blocking_drops_a_pending_request_and_any_later_one(
    http: httpx.AsyncClient,
) -> None:
    delivered = await delivered_answer(http)
    owner, sender = await register(http, "Owner"), await register(http, "Sender")
    await accepting(owner)
    await request(sender, owner.address, "please")
    assert len(await pending(owner)) == 1

    assert (await owner.post(f"/v1/contacts/{sender.address}/block")).status_code == 201
    assert await pending(owner) == []
    again = await request(sender, owner.address, "please please")
    assert answer_of(again) == delivered
    assert await pending(owner) == []

    # Unblocked, it may ask once more.
    await owner.http.delete(f"/v1/contacts/{sender.address}/block", headers=owner.auth)
    await request(sender, owner.address, "third time")
    assert [r["note"] for r in await pending(owner)] == ["third time"]


async def test_blocking_bad_addresses_names_the_field(http: httpx.AsyncClient) -> None:
    alice = await register(http)
    bad = await alice.post("/v1/contacts/nonsense/block")
    assert bad.status_code == 422 and bad.json()["field"] == "address"
    own = await alice.post(f"/v1/contacts/{alice.address}/block")
    assert own.status_code == 422 and own.json()["field"] == "address"


async def test_deleting_accounts_takes_their_requests_blocks_and_preferences(
    http: httpx.AsyncClient, dump: Dump
) -> None:
    owner, sender = await register(http, "Owner"), await register(http, "Sender")
    await accepting(owner)
    await request(sender, owner.address, "pending when I leave")
    await owner.post("/v1/contacts/5555*localhost/block")
    await sender.post("/v1/contacts/1234*localhost/block")
    exported = (await owner.get("/v1/account/export")).json()
    assert [p["name"] for p in exported["preferences"]] == ["accept_requests"]
    assert [b["address"] for b in exported["blocks"]] == ["5555*localhost"]
    assert [r["note"] for r in exported["contact_requests"]] == ["pending when I leave"]

    # The sender leaves first: its request to the owner goes with it.
    assert (await sender.http.delete("/v1/account", headers=sender.auth)).status_code == 204
    assert await pending(owner) == []
    assert (await owner.http.delete("/v1/account", headers=owner.auth)).status_code == 204
    stored = await dump()
    for table in ("preferences", "contact_requests", "address_blocks"):
        assert stored[table] == [], table


async def test_an_app_cannot_let_anyone_in_for_its_user(
    http: httpx.AsyncClient, clock: SettableClock
) -> None:
    shop = await create_app(await registered(http, clock), "shop")
    bot = await shop.create_account("Shop bot")
    mallory = await register(http, "Mallory")
    # Letting someone in is the person's choice: refused to the app, whatever the id.
    for method, path in (
        ("POST", "/v1/requests/anything/accept"),
        ("POST", "/v1/requests/anything/decline"),
        ("DELETE", f"/v1/contacts/{quote(mallory.address)}/block"),
    ):
        refused = await shop.act(bot["account_id"], method, path)
        assert (refused.status_code, refused.json()["code"]) == (403, "not_for_apps"), path
    # Keeping someone out is not: an app may block an abuser for its user.
    blocked = await shop.act(
        bot["account_id"], "POST", f"/v1/contacts/{quote(mallory.address)}/block"
    )
    assert blocked.status_code == 201, blocked.text
