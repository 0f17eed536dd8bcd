"""A block holds across nodes: messages from a blocked address on another of our
nodes are refused with the answer an unknown connection gets (Openmsg SM_E001),
nothing is stored, and unblocking lets them through again."""

from __future__ import annotations

import httpx

from tests.integration.federation.test_two_nodes import federated_pair, received, settled
from tests.support.federation import FederatedNode
from tests.support.node import dump_database


async def test_a_blocked_remote_contact_is_refused_and_nothing_is_stored(
    clients: tuple[httpx.AsyncClient, httpx.AsyncClient], alpha: FederatedNode
) -> None:
    alice, bob = await federated_pair(clients)
    before = await alpha.call(dump_database(alpha.node))
    blocked = await alice.post(f"/v1/contacts/{bob.address}/block")
    assert blocked.status_code == 201, blocked.text

    sent = await bob.send(alice.address, "marker-remote-blocked")
    assert sent.status_code == 201, sent.text

    # Bob's node hears the refusal an unknown connection gets, and gives up.
    assert await settled(bob, sent.json()["id"]) == "failed"
    metrics = (await clients[0].get("/metrics")).text
    assert 'code="SM_E001",endpoint="message-receive"' in metrics
    assert await alice.sync() == []
    after = await alpha.call(dump_database(alpha.node))
    for table in ("messages", "device_streams", "openmsg_received"):
        assert after[table] == before[table], table

    unblocked = await alice.http.delete(f"/v1/contacts/{bob.address}/block", headers=alice.auth)
    assert unblocked.status_code == 204
    again = await bob.send(alice.address, "unblocked now")
    assert await settled(bob, again.json()["id"]) == "delivered"
    assert await received(alice, 1) == ["unblocked now"]
