"""Two of our nodes federating over real HTTPS on their own loopback addresses:
what users on each side see, through the same client API as on one node."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import httpx

from openmessenger.core.ids import Domain
from tests.support.api import ApiDevice, register
from tests.support.federation import FederatedNode, client_of
from tests.support.tls import CertificateAuthority

DEADLINE_SECONDS = 20


async def eventually(check: Callable[[], Awaitable[Any]], what: str) -> Any:
    """Poll an observable outcome (an API answer) until it holds, with a deadline."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + DEADLINE_SECONDS
    pause = 0.005
    while True:
        result = await check()
        if result:
            return result
        if loop.time() > deadline:
            raise AssertionError(f"never happened: {what}")
        await asyncio.sleep(pause)
        pause = min(pause * 2, 0.2)


async def status_of(device: ApiDevice, message_id: str) -> str:
    response = await device.get(f"/v1/messages/{message_id}")
    assert response.status_code == 200, response.text
    return str(response.json()["status"])


async def settled(device: ApiDevice, message_id: str) -> str:
    async def done() -> str | None:
        status = await status_of(device, message_id)
        return None if status == "accepted" else status

    return str(await eventually(done, f"message {message_id} settled"))


async def off_loop(action: Callable[[], object]) -> None:
    """Stop or start a node without blocking this loop: a TLS connection the test's
    clients hold is closed with a close_notify that this loop must answer."""
    await asyncio.to_thread(action)


def advance(delta: timedelta, *nodes: FederatedNode) -> None:
    """Move the nodes' clocks together (Openmsg refuses hashes more than 60 s off)."""
    for node in nodes:
        node.clock.advance(delta)


async def texts(device: ApiDevice) -> list[str]:
    return await device.texts()


async def received(device: ApiDevice, count: int) -> list[str]:
    async def enough() -> list[str] | None:
        found = await texts(device)
        return found if len(found) >= count else None

    found: list[str] = await eventually(enough, f"{count} messages for {device.address}")
    return found


async def federated_pair(
    clients: tuple[httpx.AsyncClient, httpx.AsyncClient],
) -> tuple[ApiDevice, ApiDevice]:
    """Alice on alpha.test issues a code; Bob on beta.test connects with it."""
    on_alpha, on_beta = clients
    alice = await register(on_alpha, "Alice")
    bob = await register(on_beta, "Bob")
    code = await alice.issue_code()
    response = await bob.connect(alice.address, code)
    assert response.status_code == 201, response.text
    return alice, bob


async def test_a_code_from_another_node_connects_and_messages_flow_both_ways(
    clients: tuple[httpx.AsyncClient, httpx.AsyncClient],
) -> None:
    alice, bob = await federated_pair(clients)
    assert alice.address.endswith("*alpha.test") and bob.address.endswith("*beta.test")
    # Display names travelled with the handshake, both ways.
    (bobs_view,) = (await bob.get("/v1/connections")).json()["contacts"]
    (alices_view,) = (await alice.get("/v1/connections")).json()["contacts"]
    assert (bobs_view["address"], bobs_view["display_name"]) == (alice.address, "Alice")
    assert (alices_view["address"], alices_view["display_name"]) == (bob.address, "Bob")

    sent = await bob.send(alice.address, "Hello from beta")
    assert sent.status_code == 201, sent.text
    assert sent.json()["status"] == "accepted"
    assert await received(alice, 1) == ["Hello from beta"]
    assert await settled(bob, sent.json()["id"]) == "delivered"

    reply = await alice.send(bob.address, "Hello back from alpha")
    assert reply.status_code == 201, reply.text
    assert await received(bob, 1) == ["Hello back from alpha"]
    assert await settled(alice, reply.json()["id"]) == "delivered"

    # Operators see what other nodes were answered.
    metrics = (await clients[0].get("/metrics")).text
    assert 'openmessenger_openmsg_answers_total{code="SM_S888",endpoint="message-receive"} 1.0' in (
        metrics
    )

    # Each side keeps the conversation in order, with who said what.
    history = (
        await alice.get(f"/v1/conversations/{alices_view['conversation_id']}/messages")
    ).json()["messages"]
    assert [(m["from"], alice.text(m)) for m in history] == [
        (bob.address, "Hello from beta"),
        (alice.address, "Hello back from alpha"),
    ]


async def test_a_wrong_code_from_another_node_is_refused_and_nobody_hears_of_it(
    clients: tuple[httpx.AsyncClient, httpx.AsyncClient],
) -> None:
    on_alpha, on_beta = clients
    alice = await register(on_alpha, "Alice")
    bob = await register(on_beta, "Bob")
    code = await alice.issue_code()
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    response = await bob.connect(alice.address, wrong)
    assert response.status_code == 403
    assert response.json()["code"] == "refused"
    assert (await alice.get("/v1/connections")).json()["contacts"] == []
    assert (await bob.get("/v1/connections")).json()["contacts"] == []
    assert await alice.sync() == []
    # Sending without a connection is refused on the sender's own node.
    assert (await bob.send(alice.address, "let me in")).status_code == 403
    # The real code still works.
    assert (await bob.connect(alice.address, code)).status_code == 201


async def test_a_message_sent_while_the_peer_is_down_arrives_once_it_is_back(
    clients: tuple[httpx.AsyncClient, httpx.AsyncClient],
    alpha: FederatedNode,
    beta: FederatedNode,
) -> None:
    alice, bob = await federated_pair(clients)
    await off_loop(beta.stop)
    sent = await alice.send(bob.address, "are you there?")
    assert sent.status_code == 201, sent.text
    message_id = sent.json()["id"]
    # The first attempt finds nobody: the message waits in the outbox.
    await alpha.call(outbox_attempted(alpha))
    assert await status_of(alice, message_id) == "accepted"

    # alpha restarts in the middle of its retries: nothing is lost.
    await off_loop(alpha.restart)
    await off_loop(beta.start)
    advance(timedelta(minutes=10), alpha, beta)  # past any backoff
    alpha.node.outbox.kick()
    assert await settled(alice, message_id) == "delivered"
    assert await received(bob, 1) == ["are you there?"]
    # Exactly once, even after more retries would have been due.
    advance(timedelta(minutes=10), alpha, beta)
    alpha.node.outbox.kick()
    assert await texts(bob) == ["are you there?"]


async def outbox_attempted(node: FederatedNode) -> None:
    """Wait until the outbox has tried (and scheduled a retry of) what it holds."""
    from sqlalchemy import select

    from openmessenger.storage.tables import openmsg_outbox

    async def tried() -> bool:
        async with node.node.database.connect() as conn:
            rows = (
                await conn.execute(select(openmsg_outbox.c.attempts, openmsg_outbox.c.lease_until))
            ).all()
        return bool(rows) and all(r.attempts >= 1 and r.lease_until is None for r in rows)

    await eventually(tried, "the outbox tried once")


async def test_an_undeliverable_message_fails_after_the_give_up_time(
    federation_node_factory: Callable[..., FederatedNode],
    test_ca: CertificateAuthority,
) -> None:
    alpha = federation_node_factory("alpha.test", federation_give_up_seconds=30)
    beta = federation_node_factory("beta.test")
    async with client_of(alpha, test_ca) as on_alpha, client_of(beta, test_ca) as on_beta:
        alice, bob = await federated_pair((on_alpha, on_beta))
        await off_loop(beta.stop)
        sent = await alice.send(bob.address, "into the void")
        message_id = sent.json()["id"]
        await alpha.call(outbox_attempted(alpha))
        assert await status_of(alice, message_id) == "accepted"
        alpha.clock.advance(timedelta(seconds=31))
        alpha.node.outbox.kick()
        assert await settled(alice, message_id) == "failed"


async def test_maintenance_holds_messages_back_and_a_blocked_domain_fails_them(
    clients: tuple[httpx.AsyncClient, httpx.AsyncClient],
    alpha: FederatedNode,
    beta: FederatedNode,
) -> None:
    alice, bob = await federated_pair(clients)
    await alpha.call(alpha.node.services.admin.set_maintenance(True))
    advance(timedelta(seconds=2), alpha, beta)  # past the switches' one-second cache
    held = await bob.send(alice.address, "during maintenance")
    await beta.call(outbox_attempted(beta))
    assert await status_of(bob, held.json()["id"]) == "accepted"
    assert await alice.sync() == []

    await alpha.call(alpha.node.services.admin.set_maintenance(False))
    advance(timedelta(minutes=10), alpha, beta)  # past the cache and any backoff
    beta.node.outbox.kick()
    assert await settled(bob, held.json()["id"]) == "delivered"
    assert await received(alice, 1) == ["during maintenance"]

    await alpha.call(alpha.node.services.admin.block(Domain("beta.test")))
    advance(timedelta(seconds=2), alpha, beta)
    refused = await bob.send(alice.address, "after the block")
    assert await settled(bob, refused.json()["id"]) == "failed"
    # And alice cannot reach the blocked domain either.
    assert (await alice.send(bob.address, "hello?")).status_code == 403
    assert await texts(alice) == ["during maintenance"]


async def test_a_one_way_connection_takes_no_replies(
    clients: tuple[httpx.AsyncClient, httpx.AsyncClient],
) -> None:
    on_alpha, on_beta = clients
    alice = await register(on_alpha, "Alice")
    newsletter = await register(on_beta, "Newsletter")
    code = await alice.issue_code()
    response = await newsletter.post(
        "/v1/connections",
        {"address": alice.address, "pass_code": code, "allow_replies": False},
    )
    assert response.status_code == 201, response.text
    (contact,) = (await alice.get("/v1/connections")).json()["contacts"]
    assert contact["peer_accepts_messages"] is False
    news = await newsletter.send(alice.address, "Issue 1")
    assert await settled(newsletter, news.json()["id"]) == "delivered"
    assert (await alice.send(newsletter.address, "unsubscribe")).status_code == 403


async def test_our_nodes_describe_themselves_and_carry_long_texts_between_them(
    clients: tuple[httpx.AsyncClient, httpx.AsyncClient],
    alpha: FederatedNode,
) -> None:
    on_alpha, _ = clients
    descriptor = (await on_alpha.get("/.well-known/openmessenger")).json()
    assert descriptor["domain"] == "alpha.test"
    assert {"openmsg/1", "openmessenger/1"} <= set(descriptor["protocols"])
    assert "long-text" in descriptor["capabilities"]

    alice, bob = await federated_pair(clients)
    long_text = "Ünïcode and more. " * 1000  # 18,000 characters: beyond v1's 2,000
    sent = await bob.send(alice.address, long_text)
    assert sent.status_code == 201, sent.text
    assert await received(alice, 1) == [long_text]
    assert await settled(bob, sent.json()["id"]) == "delivered"


async def test_an_extended_request_with_a_bad_signature_is_refused_and_stores_nothing(
    clients: tuple[httpx.AsyncClient, httpx.AsyncClient],
    alpha: FederatedNode,
) -> None:
    on_alpha, _ = clients
    alice, _bob = await federated_pair(clients)
    body = b'{"receiving_openmsg_address_id": "1"}'
    forged = await on_alpha.post(
        "/openmsg/x-openmessenger/message-receive/",
        content=body,
        headers={
            "Content-Type": "application/json",
            "Openmessenger-Origin": "beta.test",
            "Openmessenger-Timestamp": str(int(alpha.clock.now().timestamp())),
            "Openmessenger-Nonce": "a-nonce-never-seen-before",
            "Openmessenger-Signature": "A" * 86 + "==",
        },
    )
    assert forged.status_code == 200
    assert forged.json()["response_code"] == "SM_E003"
    assert await alice.sync() == []
