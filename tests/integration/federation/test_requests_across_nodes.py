"""Contact requests between addresses on two of our nodes, over real TLS: the
target's node applies exactly the local rules, the sender hears one answer
whatever became of the request (and so does its node), and accepting connects
the two by the ordinary pass-code handshake, so messages flow both ways."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from pydantic import BaseModel

from openmessenger.protocol import request_federation as rwire
from openmessenger.services.request_federation import RequestFederation
from tests.integration.federation.test_cli_across_nodes import Cli
from tests.integration.federation.test_two_nodes import received, settled
from tests.support.api import ApiDevice, register
from tests.support.apps import registered
from tests.support.federation import FederatedNode, client_of, signed_by
from tests.support.node import dump_database
from tests.support.tls import CertificateAuthority
from tests.support.v1peer import V1Peer

Clients = tuple[httpx.AsyncClient, httpx.AsyncClient]
Answer = tuple[int, bytes, dict[str, str]]


def answer_of(response: httpx.Response) -> Answer:
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


async def contacts(device: ApiDevice) -> list[str]:
    response = await device.get("/v1/connections")
    assert response.status_code == 200, response.text
    return [c["address"] for c in response.json()["contacts"]]


async def table(node: FederatedNode, name: str) -> list[dict[str, object]]:
    return (await node.call(dump_database(node.node)))[name]


def requests_of(node: FederatedNode) -> RequestFederation:
    found = node.node.services.contact_requests.federation
    assert isinstance(found, RequestFederation)
    return found


async def signed(node: FederatedNode, to: FederatedNode, path: str, body: BaseModel) -> object:
    """A request that ``node`` signs for ``to``, whatever it says (an attacker's)."""
    return await signed_by(node, to.domain, path, body)


def send_request(sender: str, to: str, *, verified: bool = False) -> rwire.RequestSendRequest:
    return rwire.RequestSendRequest(
        sender=sender, sender_name="Mallory", sender_verified=verified, to=to, note="hi"
    )


async def delivered_answer(on_alpha: httpx.AsyncClient, on_beta: httpx.AsyncClient) -> Answer:
    """The answer to a request from beta that did reach its owner on alpha."""
    owner, sender = await register(on_alpha, "Open"), await register(on_beta, "Asker")
    await accepting(owner)
    response = await request(sender, owner.address, "hello")
    assert len(await pending(owner)) == 1
    return answer_of(response)


async def test_a_request_from_another_node_is_accepted_and_messages_flow_both_ways(
    clients: Clients, alpha: FederatedNode, beta: FederatedNode
) -> None:
    on_alpha, on_beta = clients
    alice, bob = await register(on_alpha, "Alice"), await register(on_beta, "Bob")
    await accepting(alice)
    assert (await bob.send(alice.address, "too early")).status_code == 403

    descriptor = (await on_alpha.get("/.well-known/openmessenger")).json()
    assert "requests" in descriptor["capabilities"]
    sent = await request(bob, alice.address, "We met at the climbing wall")
    assert sent.status_code == 202 and sent.json() == {"status": "sent"}

    [found] = await pending(alice)
    assert found["sender"] == bob.address
    assert found["sender_display_name"] == "Bob"
    assert found["sender_verified"] is False
    assert found["note"] == "We met at the climbing wall"
    # A request is not a connection: nobody may write yet.
    assert await contacts(alice) == [] and await contacts(bob) == []
    assert (await bob.send(alice.address, "still too early")).status_code == 403

    accepted = await alice.post(f"/v1/requests/{found['id']}/accept")
    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["address"] == bob.address
    assert accepted.json()["display_name"] == "Bob"
    assert await pending(alice) == []
    # Both nodes hold the ordinary connection of a pass code.
    assert await contacts(alice) == [bob.address]
    assert await contacts(bob) == [alice.address]
    assert await table(beta, "outgoing_contact_requests") == []
    assert [c["state"] for c in await table(alpha, "pass_codes")] == ["used"]

    hello = await bob.send(alice.address, "Hello from beta")
    assert hello.status_code == 201, hello.text
    assert await received(alice, 1) == ["Hello from beta"]
    assert await settled(bob, hello.json()["id"]) == "delivered"
    reply = await alice.send(bob.address, "Hello back from alpha")
    assert reply.status_code == 201, reply.text
    assert await received(bob, 1) == ["Hello back from alpha"]
    assert await settled(alice, reply.json()["id"]) == "delivered"

    # Settled: accepting again finds nothing, and a new request is dropped.
    again = await alice.post(f"/v1/requests/{found['id']}/accept")
    assert (again.status_code, again.json()["code"]) == (404, "request_not_found")
    assert (await request(bob, alice.address, "again?")).status_code == 202
    assert await pending(alice) == []


async def test_verified_only_takes_a_sender_its_node_vouches_for(
    clients: Clients, beta: FederatedNode
) -> None:
    on_alpha, on_beta = clients
    delivered = await delivered_answer(on_alpha, on_beta)
    picky = await register(on_alpha, "Picky")
    await accepting(picky, "verified")
    anonymous = await register(on_beta, "Anon")
    verified = await registered(on_beta, beta.clock, "Verified")

    dropped = await request(anonymous, picky.address, "marker-anonymous")
    arrived = await request(verified, picky.address, "from a verified sender")

    assert answer_of(dropped) == answer_of(arrived) == delivered
    [only] = await pending(picky)
    assert only["sender"] == verified.address and only["sender_verified"] is True
    assert only["note"] == "from a verified sender"


async def test_the_sender_cannot_tell_what_became_of_a_request_on_another_node(
    clients: Clients, alpha: FederatedNode, beta: FederatedNode
) -> None:
    on_alpha, on_beta = clients
    delivered = await delivered_answer(on_alpha, on_beta)
    assert delivered[0] == 202 and json.loads(delivered[1]) == {"status": "sent"}
    closed = await register(on_alpha, "Closed")  # requests off: the default
    blocker, decliner = await register(on_alpha, "Blocker"), await register(on_alpha, "Decliner")
    for owner in (blocker, decliner):
        await accepting(owner)
    bob = await register(on_beta, "Bob")
    await blocker.post(f"/v1/contacts/{bob.address}/block")
    await request(bob, decliner.address, "first")
    [first] = await pending(decliner)
    assert (await decliner.post(f"/v1/requests/{first['id']}/decline")).status_code == 204
    stored = await table(alpha, "remote_contact_requests")

    attempts = {
        "requests off": closed.address,
        "unknown address": "999999999999*alpha.test",
        "blocked": blocker.address,
        "declined before": decliner.address,
    }
    for what, to in attempts.items():
        dropped = await request(bob, to, f"marker {what}")
        assert answer_of(dropped) == delivered, what
    assert await table(alpha, "remote_contact_requests") == stored
    for owner in (closed, blocker, decliner):
        assert await pending(owner) == []
        assert await owner.sync() == []

    # A repeat, many times at once: one request waits, however often it is sent.
    eager = await register(on_alpha, "Eager")
    await accepting(eager)
    answers = await asyncio.gather(*(request(bob, eager.address, f"n{i}") for i in range(3)))
    assert all(answer_of(a) == delivered for a in answers)
    assert [r["sender"] for r in await pending(eager)] == [bob.address]

    # Nor can the sender's node: alpha answers it the same, stored or dropped.
    fresh = await register(on_alpha, "Fresh")
    await accepting(fresh)
    mallory = f"7777777*{beta.domain}"
    took = await signed(beta, alpha, rwire.REQUEST_SEND_PATH, send_request(mallory, fresh.address))
    refused = [
        await signed(beta, alpha, rwire.REQUEST_SEND_PATH, send_request(mallory, to))
        for to in (fresh.address, closed.address, blocker.address, "1*alpha.test")
    ]
    assert took == {"ok": True}
    assert refused == [took] * len(refused)
    assert [r["sender"] for r in await pending(fresh)] == [mallory]


async def test_a_node_speaks_only_for_its_own_addresses(
    clients: Clients,
    alpha: FederatedNode,
    beta: FederatedNode,
    federation_node_factory: Callable[..., FederatedNode],
) -> None:
    on_alpha, on_beta = clients
    alice, bob = await register(on_alpha, "Alice"), await register(on_beta, "Bob")
    carol = await register(on_alpha, "Carol")
    await accepting(alice)
    gamma = federation_node_factory("gamma.test")

    # beta signs requests "from" an address of alpha and of gamma: refused, nothing kept.
    for impostor in (carol.address, f"123456*{gamma.domain}"):
        answer = await signed(
            beta, alpha, rwire.REQUEST_SEND_PATH, send_request(impostor, alice.address)
        )
        assert isinstance(answer, dict) and answer["error"] is True, answer
        assert answer["response_code"] == "SM_E001"
    # ...nor for an address of its own on the target's side.
    wrong = await signed(
        beta, alpha, rwire.REQUEST_SEND_PATH, send_request(bob.address, f"5*{gamma.domain}")
    )
    assert isinstance(wrong, dict) and wrong["error"] is True
    assert await pending(alice) == []
    assert await table(alpha, "remote_contact_requests") == []

    # An accept must come from the target's own node: gamma cannot accept for alice.
    await request(bob, alice.address, "hi")
    code = await alice.issue_code(bob.address)
    forged = rwire.RequestAcceptRequest(target=alice.address, sender=bob.address, pass_code=code)
    answer = await signed(gamma, beta, rwire.REQUEST_ACCEPT_PATH, forged)
    assert isinstance(answer, dict) and answer["response_code"] == "SM_E001", answer
    assert await contacts(bob) == [] and await contacts(alice) == []
    # The real answer still works.
    [found] = await pending(alice)
    assert (await alice.post(f"/v1/requests/{found['id']}/accept")).status_code == 200
    assert await contacts(bob) == [alice.address]


async def test_an_accept_for_a_request_never_made_connects_nothing(
    clients: Clients, alpha: FederatedNode, beta: FederatedNode
) -> None:
    on_alpha, on_beta = clients
    alice, bob = await register(on_alpha, "Alice"), await register(on_beta, "Bob")
    # alpha hands beta a valid code of alice's, bound to bob, who never asked.
    code = await alice.issue_code(bob.address)
    offer = rwire.RequestAcceptRequest(target=alice.address, sender=bob.address, pass_code=code)
    answer = await signed(alpha, beta, rwire.REQUEST_ACCEPT_PATH, offer)
    assert answer == {"ok": True, "connected": False}
    assert await contacts(bob) == [] and await contacts(alice) == []
    assert await bob.sync() == []
    assert [c["state"] for c in await table(alpha, "pass_codes")] == ["live"]
    for name in ("connections", "openmsg_links"):
        assert await table(beta, name) == [], name

    # Nor once bob asked someone else, nor for a target bob has blocked.
    dave = await register(on_alpha, "Dave")
    await accepting(dave)
    await request(bob, dave.address, "hi Dave")
    assert await signed(alpha, beta, rwire.REQUEST_ACCEPT_PATH, offer) == answer
    await bob.post(f"/v1/contacts/{dave.address}/block")
    dave_code = await dave.issue_code(bob.address)
    blocked = rwire.RequestAcceptRequest(
        target=dave.address, sender=bob.address, pass_code=dave_code
    )
    assert await signed(alpha, beta, rwire.REQUEST_ACCEPT_PATH, blocked) == answer
    assert await contacts(bob) == []


async def test_declining_tells_the_senders_node_nothing_and_blocking_drops_the_request(
    clients: Clients, alpha: FederatedNode, beta: FederatedNode
) -> None:
    on_alpha, on_beta = clients
    alice, bob, carol = (
        await register(on_alpha, "Alice"),
        await register(on_beta, "Bob"),
        await register(on_beta, "Carol"),
    )
    await accepting(alice)
    await request(bob, alice.address, "bob here")
    await request(carol, alice.address, "carol here")
    waiting = {r["sender"]: r for r in await pending(alice)}
    assert set(waiting) == {bob.address, carol.address}
    bobs = waiting[bob.address]

    assert (await alice.post(f"/v1/requests/{bobs['id']}/decline")).status_code == 204
    assert (await alice.post(f"/v1/contacts/{carol.address}/block")).status_code == 201
    assert await pending(alice) == []
    # Beta still believes both asked: nothing travelled.
    outgoing = await table(beta, "outgoing_contact_requests")
    assert len(outgoing) == 2
    # Unblocked, carol may ask again; bob, declined, may not.
    await alice.http.delete(f"/v1/contacts/{carol.address}/block", headers=alice.auth)
    await request(bob, alice.address, "please")
    await request(carol, alice.address, "again")
    assert [(r["sender"], r["note"]) for r in await pending(alice)] == [(carol.address, "again")]

    # Deleting the accounts takes these rows along, on both nodes.
    assert (await alice.http.delete("/v1/account", headers=alice.auth)).status_code == 204
    assert (await bob.http.delete("/v1/account", headers=bob.auth)).status_code == 204
    assert (await carol.http.delete("/v1/account", headers=carol.auth)).status_code == 204
    assert await table(alpha, "remote_contact_requests") == []
    assert await table(beta, "outgoing_contact_requests") == []


async def test_request_limits_hold_across_nodes(
    federation_node_factory: Callable[..., FederatedNode], test_ca: CertificateAuthority
) -> None:
    rate = 3
    alpha = federation_node_factory("alpha.test", contact_request_rate_limit=f"{rate}/hour")
    beta = federation_node_factory("beta.test", contact_request_rate_limit=f"{rate}/hour")
    async with client_of(alpha, test_ca) as on_alpha, client_of(beta, test_ca) as on_beta:
        targets = [await register(on_alpha, f"T{i}") for i in range(rate + 1)]
        for target in targets:
            await accepting(target)
        bob = await register(on_beta, "Bob")
        # The sender's own node holds its limit, before anything travels.
        for target in targets[:rate]:
            assert (await request(bob, target.address)).status_code == 202
        over = await request(bob, targets[rate].address)
        assert (over.status_code, over.json()["code"]) == (429, "rate_limited")
        assert await pending(targets[rate]) == []

        # A node that would not keep it meets the target node's limit: answered
        # the same, but nothing more is stored.
        flooder = f"4242424*{beta.domain}"
        answers = [
            await signed(beta, alpha, rwire.REQUEST_SEND_PATH, send_request(flooder, t.address))
            for t in targets
        ]
        assert answers == [{"ok": True}] * len(targets)
        reached = [t for t in targets if flooder in {r["sender"] for r in await pending(t)}]
        assert len(reached) == rate


async def test_an_accept_waits_while_the_senders_node_is_down(
    clients: Clients, alpha: FederatedNode, beta: FederatedNode
) -> None:
    on_alpha, on_beta = clients
    alice, bob = await register(on_alpha, "Alice"), await register(on_beta, "Bob")
    await accepting(alice)
    await request(bob, alice.address, "hi")
    [found] = await pending(alice)

    await asyncio.to_thread(beta.stop)
    down = await alice.post(f"/v1/requests/{found['id']}/accept")
    assert (down.status_code, down.json()["code"]) == (502, "peer_unavailable")
    assert [r["id"] for r in await pending(alice)] == [found["id"]]
    assert await contacts(alice) == []
    await asyncio.to_thread(beta.start)
    up = await alice.post(f"/v1/requests/{found['id']}/accept")
    assert up.status_code == 200, up.text
    assert await contacts(alice) == [bob.address]


async def test_an_openmsg_v1_peer_gets_a_plain_409(clients: Clients, v1peer: V1Peer) -> None:
    alice = await register(clients[0], "Alice")
    response = await request(alice, v1peer.address, "hello?")
    assert response.status_code == 409
    assert response.json()["code"] == "requests_remote_unsupported"
    # Nothing of it reached the peer.
    assert [r.path for r in v1peer.requests if "request" in r.path] == []


async def test_from_the_terminal_a_request_across_nodes_connects_the_two(
    alpha: FederatedNode, beta: FederatedNode, test_ca: CertificateAuthority, tmp_path: Path
) -> None:
    cli = Cli(tmp_path / "home", test_ca)
    await cli(alpha, "alice", "name", "Alice")
    await cli(beta, "bob", "name", "Bob")
    alice = (await cli(alpha, "alice", "whoami"))["address"]
    bob = (await cli(beta, "bob", "whoami"))["address"]
    await cli(alpha, "alice", "prefs", "set", "accept_requests", "anyone")

    sent = await cli(beta, "bob", "request", alice, "--note", "from the other node")
    assert sent == {"to": alice, "status": "sent"}
    waiting = await cli(alpha, "alice", "requests")
    assert (waiting["from"], waiting["display_name"], waiting["verified"], waiting["note"]) == (
        bob,
        "Bob",
        False,
        "from the other node",
    )
    contact = await cli(alpha, "alice", "requests", "accept", waiting["id"])
    assert (contact["address"], contact["display_name"]) == (bob, "Bob")

    assert (await cli(beta, "bob", "send", alice, "hi Alice", "--wait"))["status"] == "delivered"
    arrived = await cli(alpha, "alice", "sync")
    assert (arrived["from"], arrived["text"]) == (bob, "hi Alice")
    assert (await cli(alpha, "alice", "send", bob, "hi Bob", "--wait"))["status"] == "delivered"
    arrived = await cli(beta, "bob", "sync")
    assert (arrived["from"], arrived["text"]) == (alice, "hi Bob")
