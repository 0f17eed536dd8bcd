"""Groups with participants on two of our nodes over real TLS: the host (the
creator's node) keeps the one order, the other node keeps a replica for its own
accounts, every message is end to end, and a stranger can never be added."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from openmessenger.client import Client, Message
from openmessenger.client.e2e import DecryptionError
from openmessenger.client.errors import ApiError, RefusedError
from openmessenger.client.groups import group_event
from openmessenger.client.revisions import apply_revisions
from openmessenger.protocol import group_federation as gwire
from openmessenger.protocol import groups_api
from openmessenger.storage import tables
from tests.integration.test_sdk_groups import connect, linked, raw_history, texts
from tests.support.federation import FederatedNode, OpenDevice, signed_by, until
from tests.support.v1peer import V1Peer


async def group_texts(device: Client, group_id: str, count: int) -> list[str]:
    """Sync until ``count`` texts of the group arrived (events left out)."""
    found: list[Message] = []

    async def enough() -> bool:
        found.extend(await device.sync())
        return len(texts(found, group_id)) >= count

    await until(enough, f"{count} group messages on {device.address}")
    return texts(found, group_id)


async def events_of(device: Client, group_id: str, wanted: str) -> list[str]:
    """Sync until a membership event ``wanted`` of the group arrived; the events seen."""
    seen: list[str] = []

    async def arrived() -> bool:
        for message in await device.sync():
            event = group_event(message)
            if message.conversation_id == group_id and event is not None:
                seen.append(str(event["event"]))
            elif message.conversation_id == group_id:
                raise AssertionError(f"{device.address} got a message: {message.text!r}")
        return wanted in seen

    await until(arrived, f"the {wanted} event on {device.address}")
    return seen


async def joined_everywhere(device: Client, group_id: str, *addresses: str | None) -> None:
    """Wait until the device's node knows these participants joined."""

    async def known() -> bool:
        return set(addresses) <= set((await device.group(group_id)).joined())

    await until(known, f"{addresses} joined, as {device.address}'s node knows")


async def two_node_group(
    alpha: FederatedNode, beta: FederatedNode, devices: OpenDevice
) -> tuple[Client, Client, str]:
    """Alice's group on alpha with Bob on beta, joined."""
    alice, bob = devices(alpha, "alice"), devices(beta, "bob")
    await connect(alice, bob)
    group = await alice.create_group("Across", [str(bob.address)])
    await until(bob.groups, "the invitation on beta")
    await bob.join_group(group.id)
    await joined_everywhere(alice, group.id, alice.address, bob.address)
    return alice, bob, group.id


async def rows(node: FederatedNode, table: Any) -> list[Any]:
    async def read() -> list[Any]:
        async with node.node.database.connect() as conn:
            return list((await conn.execute(select(table))).all())

    return await node.call(read())


async def off_loop(action: Callable[[], object]) -> None:
    await asyncio.to_thread(action)


async def test_a_member_on_another_node_reads_and_writes_in_the_hosts_order(
    alpha: FederatedNode, beta: FederatedNode, devices: OpenDevice
) -> None:
    alice, carol, bob = devices(alpha, "alice"), devices(alpha, "carol"), devices(beta, "bob")
    await connect(alice, bob)
    await connect(alice, carol)
    bob_phone = await linked(bob, devices(beta, "bob-phone"))

    group = await alice.create_group("Across", [str(bob.address), str(carol.address)])
    gid = group.id
    # The invitation travelled over alice and bob's connection to bob's node.
    [invited] = await until(bob.groups, "the invitation on beta")
    assert (invited.id, invited.state, invited.created_by) == (gid, "invited", alice.address)
    joined = await bob.join_group(gid)
    assert joined.state == "joined"
    await carol.join_group(gid)
    await joined_everywhere(bob, gid, alice.address, bob.address, carol.address)
    assert {m.address: m.state for m in (await alice.group(gid)).members} == {
        alice.address: "joined",
        bob.address: "joined",
        carol.address: "joined",
    }

    await alice.send_to_group(gid, "one")
    sent = await bob.send_to_group(gid, "two")  # ordered by alpha, which answered at once
    await carol.send_to_group(gid, "three")
    await alice.send_to_group(gid, "four")
    everything = ["one", "two", "three", "four"]

    assert sent.seq > 0
    assert await group_texts(alice, gid, 2) == ["two", "three"]
    assert await group_texts(carol, gid, 3) == ["one", "two", "four"]
    assert await group_texts(bob, gid, 3) == ["one", "three", "four"]
    # Bob's other device gets everything, its own account's message too, in one order.
    assert await group_texts(bob_phone, gid, 4) == everything
    # One order on both nodes: the same seqs.
    on_alpha = [(m.text, m.seq) for m in await alice.group_history(gid) if group_event(m) is None]
    on_beta = [
        (m.text, m.seq) for m in await bob_phone.group_history(gid) if group_event(m) is None
    ]
    assert on_alpha == on_beta and [t for t, _ in on_alpha] == everything
    assert ("two", sent.seq) in on_alpha

    # Bob leaves from his node: the host fans out no more to him, and the
    # session rotates, so he cannot read what follows.
    await bob.leave_group(gid)
    assert bob.address not in {m.address for m in (await alice.group(gid)).members}
    await alice.send_to_group(gid, "after bob left")
    assert await group_texts(carol, gid, 1) == ["after bob left"]
    after = [m for m in await raw_history(alice, gid) if m.media_type == "text"][-1]
    engine = await bob.end_to_end()
    with pytest.raises(DecryptionError, match="not given the key"):
        await engine.open(after)
    assert "left" in await events_of(bob_phone, gid, "left")
    assert texts(await bob_phone.sync(), gid) == []
    assert await bob.groups() == []
    assert texts(await bob.group_history(gid), gid) == everything


async def test_a_removed_member_cannot_read_on_and_a_stranger_is_never_added(
    alpha: FederatedNode, beta: FederatedNode, devices: OpenDevice
) -> None:
    alice, bob, gid = await two_node_group(alpha, beta, devices)
    dave = devices(beta, "dave")  # on bob's node, not connected with alice
    await dave.whoami()

    # Alice cannot invite a stranger...
    with pytest.raises(RefusedError):
        await alice.invite_to_group(gid, str(dave.address))
    # ...and even a host that signs an invitation of a stranger adds nobody: bob's
    # node takes a participant only when invited by an address it is connected with.
    now = datetime.now(UTC)
    forged_event = gwire.WireGroupMessage(
        id=secrets.token_hex(16),
        seq=1000,
        sender=str(alice.address),
        sender_device="",
        body=f"{alice.address} invited {dave.address}",
        sent_at=now,
        encryption="transport-encrypted",
        media_type="group.member",
        metadata=f'{{"address":"{dave.address}","by":"{alice.address}","event":"invited"}}',
        to=[str(dave.address)],
    )
    invitee = gwire.WireMember(
        address=str(dave.address), role="member", kind="human", state="invited"
    )
    for group_id in (gid, secrets.token_hex(16)):  # the same group, and a new one
        forged = gwire.GroupDeliverRequest(
            group=gwire.WireGroup(
                id=group_id, name="Spam", created_by=str(alice.address), created_at=now
            ),
            members=[invitee],
            messages=[forged_event],
        )
        await signed_by(alpha, "beta.test", gwire.GROUP_DELIVER_PATH, forged)
    assert await dave.groups() == []
    assert await dave.sync() == []
    stored = await rows(beta, tables.conversation_members)
    assert dave.address not in {r.address for r in stored}

    # Removed by the host, bob gets the event and nothing after it.
    await alice.send_to_group(gid, "before the removal")
    assert await group_texts(bob, gid, 1) == ["before the removal"]
    await alice.remove_from_group(gid, str(bob.address))
    await alice.send_to_group(gid, "after the removal")
    assert "removed" in await events_of(bob, gid, "removed")
    before, after = [m for m in await raw_history(alice, gid) if m.media_type == "text"]
    engine = await bob.end_to_end()
    with pytest.raises(DecryptionError, match="not given the key"):
        await engine.open(after)
    assert (await engine.open(before)).text == "before the removal"
    assert await bob.groups() == []
    assert texts(await bob.group_history(gid), gid) == ["before the removal"]
    # He cannot post either: the host refuses, his node keeps nothing.
    with pytest.raises(ApiError) as refused:
        await bob.send_to_group(gid, "let me back in")
    assert refused.value.code == "group_not_found"
    assert await rows(beta, tables.group_forwards) == []


async def test_an_admin_on_another_node_invites_and_removes_through_the_host(
    alpha: FederatedNode, beta: FederatedNode, devices: OpenDevice
) -> None:
    alice, bob, gid = await two_node_group(alpha, beta, devices)
    carol = devices(alpha, "carol")  # on the host's node, bob's contact only
    erin = devices(beta, "erin")  # on bob's node, bob's contact only
    frank = devices(beta, "frank")  # nobody's contact
    await connect(carol, bob)
    await connect(bob, erin)
    await frank.whoami()

    with pytest.raises(ApiError) as forbidden:
        await bob.invite_to_group(gid, str(erin.address))
    assert forbidden.value.code == "group_forbidden"
    await alice.set_group_role(gid, str(bob.address), "admin")

    async def bob_is_admin() -> bool:
        return (await bob.group(gid)).role == "admin"

    await until(bob_is_admin, "bob's role on beta")
    with pytest.raises(RefusedError):
        await bob.invite_to_group(gid, str(frank.address))
    await bob.invite_to_group(gid, str(erin.address))
    await bob.invite_to_group(gid, str(carol.address))
    for invitee in (erin, carol):
        [invited] = await until(invitee.groups, f"the invitation of {invitee.address}")
        assert (invited.id, invited.state) == (gid, "invited")
        await invitee.join_group(gid)
    await joined_everywhere(bob, gid, alice.address, bob.address, carol.address, erin.address)
    assert {m.address: m.invited_by for m in (await alice.group(gid)).members} == {
        alice.address: None,
        bob.address: alice.address,
        carol.address: bob.address,
        erin.address: bob.address,
    }

    await alice.send_to_group(gid, "welcome")
    assert await group_texts(erin, gid, 1) == ["welcome"]
    assert await group_texts(carol, gid, 1) == ["welcome"]
    # The admin removes a member from his node: the host decides and fans it out.
    await bob.remove_from_group(gid, str(erin.address))
    assert erin.address not in {m.address for m in (await alice.group(gid)).members}
    assert await erin.groups() == []
    assert await frank.groups() == []


async def test_an_openmsg_v1_peer_gets_a_clear_409(
    alpha: FederatedNode, v1peer: V1Peer, devices: OpenDevice
) -> None:
    alice = devices(alpha, "alice")
    await alice.connect(v1peer.address, v1peer.issue_code())

    with pytest.raises(ApiError) as made:
        await alice.create_group("Mixed", [v1peer.address])
    assert (made.value.status, made.value.code) == (409, "group_remote_unsupported")
    group = await alice.create_group("Alone")
    with pytest.raises(ApiError) as invited:
        await alice.invite_to_group(group.id, v1peer.address)
    assert (invited.value.status, invited.value.code) == (409, "group_remote_unsupported")
    assert [g.name for g in await alice.groups()] == ["Alone"]


async def test_a_message_sent_while_the_host_is_down_arrives_once_it_is_back_and_policy_holds(
    alpha: FederatedNode, beta: FederatedNode, devices: OpenDevice
) -> None:
    alice, bob, gid = await two_node_group(alpha, beta, devices)
    engine = await bob.end_to_end()
    body = await engine.encrypt_for_group(gid, [alice.address, bob.address], "while alpha was down")  # type: ignore[list-item]
    request = groups_api.GroupSendIn(body=body, client_txn_id="while-down-1")

    await off_loop(alpha.stop)
    sent = await bob._call("POST", f"/groups/{gid}/messages", body=request)
    assert sent.status_code == 202, sent.text
    assert (sent.json()["status"], sent.json()["seq"]) == ("accepted", 0)
    again = await bob._call("POST", f"/groups/{gid}/messages", body=request)
    assert (again.status_code, again.json()["id"]) == (200, sent.json()["id"])
    [kept] = await rows(beta, tables.group_forwards)
    assert kept.client_txn_id == "while-down-1"

    await off_loop(alpha.start)
    for node in (alpha, beta):
        node.clock.advance(timedelta(minutes=10))  # past any backoff, together
    federation = beta.node.services.groups.federation
    assert federation is not None
    federation.kick()
    assert await group_texts(alice, gid, 1) == ["while alpha was down"]
    await until(lambda: _empty(rows(beta, tables.group_forwards)), "the forward settled on beta")
    # Ordered once by the host, and given back to bob's node at its seq.
    on_alpha = [m for m in await alice.group_history(gid) if m.text == "while alpha was down"]
    assert len(on_alpha) == 1 and on_alpha[0].seq > 0

    async def on_beta() -> list[Message]:
        return [m for m in await bob.group_history(gid) if m.text == "while alpha was down"]

    [mirrored] = await until(on_beta, "the message back on beta")
    assert mirrored.seq == on_alpha[0].seq

    # The host holds a member on another node to the group's policy too.
    await alice.set_conversation_policy(gid, max_message_bytes=4096)
    with pytest.raises(ApiError) as too_large:
        await bob.send_to_group(gid, "x" * 4000)
    assert (too_large.value.status, too_large.value.code, too_large.value.field) == (
        422,
        "message_too_large",
        "body",
    )
    assert await rows(beta, tables.group_forwards) == []
    assert "x" * 4000 not in [m.text for m in await alice.group_history(gid)]


async def _empty(found: Awaitable[list[Any]]) -> bool:
    return not await found


async def test_an_edit_and_a_deletion_reach_the_other_node_which_erases_its_copy(
    alpha: FederatedNode, beta: FederatedNode, devices: OpenDevice
) -> None:
    alice, bob, gid = await two_node_group(alpha, beta, devices)
    sent = await alice.send_to_group(gid, "the first draft")
    assert await group_texts(bob, gid, 1) == ["the first draft"]
    stored_on_beta = {r.id: r.body for r in await rows(beta, tables.messages)}
    assert sent.id in stored_on_beta

    await alice.edit(sent.id, "the second draft")

    async def edited_on_beta() -> bool:
        latest = apply_revisions(await bob.group_history(gid))
        return [m.text for m in latest if group_event(m) is None] == ["the second draft"]

    await until(edited_on_beta, "the edit on beta")
    kept = {r.id: r for r in await rows(beta, tables.messages)}
    edits = [r for r in kept.values() if r.replaces == sent.id]
    assert len(edits) == 1 and kept[sent.id].edited_at is not None

    await alice.delete_for_everyone(sent.id)

    async def erased_on_beta() -> bool:
        found = {r.id: r for r in await rows(beta, tables.messages)}
        return found[sent.id].deleted_at is not None

    await until(erased_on_beta, "the deletion on beta")
    after = {r.id: r for r in await rows(beta, tables.messages)}
    # Neither the message's ciphertext nor its edit's is left on beta.
    for erased in (sent.id, edits[0].id):
        assert after[erased].deleted_at is not None
        assert '"ciphertext"' not in after[erased].body
    latest = apply_revisions(await bob.group_history(gid))
    assert [m.text for m in latest if group_event(m) is None] == []


async def test_a_member_node_cannot_pass_off_a_send_as_one_of_the_hosts_devices(
    alpha: FederatedNode, beta: FederatedNode, devices: OpenDevice
) -> None:
    alice, bob, gid = await two_node_group(alpha, beta, devices)
    sent = await alice.send_to_group(gid, "mine", client_txn_id="alice-txn-1")
    assert await group_texts(bob, gid, 1) == ["mine"]
    [original] = [m for m in await raw_history(bob, gid) if m.id == sent.id]

    # Bob's node signs a send of bob's that names alice's device and the transaction
    # id alice used: it must neither get alice's message back nor hide from her device.
    forged = gwire.GroupSendRequest(
        group_id=gid,
        sender=str(bob.address),
        sender_device=str(alice.device_id),
        body=original.body,
        client_txn_id="alice-txn-1",
        sent_at=datetime.now(UTC),
    )
    answer = await signed_by(beta, "alpha.test", gwire.GROUP_SEND_PATH, forged)
    stored = gwire.GroupSendAnswer.model_validate(answer).message
    assert stored.created and stored.id != sent.id

    async def alice_got_it() -> bool:
        return stored.id in {m.id for m in await alice.sync()}

    await until(alice_got_it, "the forwarded send in alice's stream")
    # Sent again, it is the same message: retries of one peer send stay idempotent.
    again = await signed_by(beta, "alpha.test", gwire.GROUP_SEND_PATH, forged)
    assert gwire.GroupSendAnswer.model_validate(again).message.id == stored.id
