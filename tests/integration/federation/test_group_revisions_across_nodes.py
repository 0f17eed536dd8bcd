"""Edits and deletions for everyone in a group hosted on another of our nodes,
over real TLS: a participant whose account is on a member node changes its own
messages through the group's host, which checks them as for its own
participants and fans them out; every member on every node sees the change
(live, by sync, in history), a deletion erases the ciphertext on both nodes,
the change waits while the host is down, and a member node that lies about
whom it speaks for or which message it means changes nothing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from openmessenger.client import Client, Message
from openmessenger.client.errors import ApiError
from openmessenger.client.groups import group_event
from openmessenger.client.revisions import apply_revisions
from openmessenger.protocol import group_federation as gwire
from openmessenger.protocol import revisions_api
from openmessenger.storage import tables
from tests.integration.federation.test_groups_across_nodes import (
    group_texts,
    joined_everywhere,
    off_loop,
    rows,
    two_node_group,
)
from tests.integration.federation.test_revisions_across_nodes import Live
from tests.integration.test_sdk_groups import connect, linked, raw_history
from tests.support.federation import FederatedNode, OpenDevice, signed_by, until


def shown(messages: list[Message]) -> list[tuple[str, bool]]:
    """What a person sees of a group: each text and whether it was edited."""
    return [
        (m.text if m.error is None else f"error: {m.error}", m.edited_at is not None)
        for m in apply_revisions(messages)
        if group_event(m) is None
    ]


async def everyone_sees(group_id: str, wanted: list[tuple[str, bool]], *who: Client) -> bool:
    """Whether each device's group history shows ``wanted``."""
    for device in who:
        if shown(await device.group_history(group_id)) != wanted:
            return False
    return True


async def messages_of(node: FederatedNode) -> dict[str, Any]:
    return {r.id: r for r in await rows(node, tables.messages)}


async def _no_forwards(node: FederatedNode) -> bool:
    return await rows(node, tables.group_forwards) == []


def federation_of(node: FederatedNode) -> Any:
    found = node.node.services.groups.federation
    assert found is not None
    return found


async def test_a_member_on_another_node_edits_and_deletes_its_own_group_message_everywhere(
    alpha: FederatedNode, beta: FederatedNode, devices: OpenDevice
) -> None:
    alice, carol, bob = devices(alpha, "alice"), devices(alpha, "carol"), devices(beta, "bob")
    await connect(alice, bob)
    await connect(alice, carol)
    bob_phone = await linked(bob, devices(beta, "bob-phone"))
    group = await alice.create_group("Across", [str(bob.address), str(carol.address)])
    gid = group.id
    await until(bob.groups, "the invitation on beta")
    await bob.join_group(gid)
    await carol.join_group(gid)
    await joined_everywhere(bob, gid, alice.address, bob.address, carol.address)
    await joined_everywhere(alice, gid, alice.address, bob.address, carol.address)

    sent = await bob.send_to_group(gid, "lunch at noon")
    assert await group_texts(alice, gid, 1) == ["lunch at noon"]
    assert await group_texts(carol, gid, 1) == ["lunch at noon"]
    assert await group_texts(bob_phone, gid, 1) == ["lunch at noon"]
    live = Live(alice)
    try:
        edit = await bob.edit(sent.id, "lunch at one", client_txn_id="bob-edit-1")

        # Bob's answer is what it is on one node: the edit, ordered by the host.
        assert (edit.media_type, edit.replaces, edit.status) == (
            "message.edit",
            sent.id,
            "delivered",
        )
        assert edit.seq > sent.seq
        arrived = await live.wait_for(lambda m: m.media_type == "message.edit", "the edit live")
        assert (arrived.id, arrived.replaces, arrived.text, arrived.error) == (
            edit.id,
            sent.id,
            "lunch at one",
            None,
        )
        assert arrived.sender == bob.address

        # By sync and in history on both nodes, in one order.
        async def edited_everywhere() -> bool:
            return await everyone_sees(gid, [("lunch at one", True)], alice, carol, bob, bob_phone)

        await until(edited_everywhere, "the edit in every history")
        on_alpha, on_beta = await messages_of(alpha), await messages_of(beta)
        assert on_alpha[edit.id].seq == on_beta[edit.id].seq == edit.seq
        assert on_alpha[sent.id].edited_at is not None and on_beta[sent.id].edited_at is not None
        synced = [m for m in await bob_phone.sync() if m.media_type == "message.edit"]
        assert [(m.id, m.text) for m in synced] == [(edit.id, "lunch at one")]

        # A retry of the same edit (its answer lost) is the same edit on the host.
        [stored] = [m for m in await raw_history(alice, gid) if m.id == edit.id]
        retry = gwire.GroupReviseRequest(
            group_id=gid,
            sender=str(bob.address),
            sender_device=str(bob.device_id),
            revision="edit",
            replaces=sent.id,
            body=stored.body,
            client_txn_id="bob-edit-1",
            sent_at=datetime.now(UTC),
        )
        again = gwire.GroupSendAnswer.model_validate(
            await signed_by(beta, "alpha.test", gwire.GROUP_REVISE_PATH, retry)
        )
        assert (again.message.id, again.message.created) == (edit.id, False)

        gone = await bob.delete_for_everyone(sent.id)

        # The tombstone, as on one node (bob's node erased its copy at once).
        assert (gone.id, gone.media_type) == (sent.id, "message.deleted")
        assert gone.deleted_at is not None
        event = await live.wait_for(lambda m: m.media_type == "message.delete", "the deletion")
        assert (event.replaces, event.sender) == (sent.id, bob.address)
    finally:
        await live.close()

    async def deleted_everywhere() -> bool:
        return await everyone_sees(gid, [], alice, carol, bob, bob_phone)

    await until(deleted_everywhere, "the deletion in every history")
    deletions = [m for m in await carol.sync() if m.media_type == "message.delete"]
    assert [m.replaces for m in deletions] == [sent.id]
    # The ciphertext of the message and of its edit is gone from both nodes' tables.
    for node in (alpha, beta):
        found = await messages_of(node)
        for erased in (sent.id, edit.id):
            assert found[erased].deleted_at is not None, node.domain
            assert found[erased].media_type == "message.deleted"
            assert '"ciphertext"' not in found[erased].body
    assert await rows(beta, tables.group_forwards) == []
    # Deleted, it can be neither edited nor deleted again.
    for attempt in (bob.edit(sent.id, "back"), bob.delete_for_everyone(sent.id)):
        with pytest.raises(ApiError) as refused:
            await attempt
        assert (refused.value.status, refused.value.code) == (409, "message_deleted")


async def test_while_the_host_is_down_the_change_waits_and_is_given_up_in_the_end(
    alpha: FederatedNode, beta: FederatedNode, devices: OpenDevice
) -> None:
    alice, bob, gid = await two_node_group(alpha, beta, devices)
    first = await bob.send_to_group(gid, "first")
    second = await bob.send_to_group(gid, "second")
    assert await group_texts(alice, gid, 2) == ["first", "second"]

    await off_loop(alpha.stop)
    pending = await bob.edit(first.id, "first, edited", client_txn_id="edit-while-down")
    # Kept for the host: accepted, no seq yet, as a group message sent meanwhile.
    assert (pending.status, pending.seq, pending.replaces) == ("accepted", 0, first.id)
    again = await bob.edit(first.id, "first, edited", client_txn_id="edit-while-down")
    assert again.id == pending.id
    standing = await bob.delete_for_everyone(second.id)
    # The message as it still stands: the deletion comes in the host's order.
    assert (standing.id, standing.deleted_at) == (second.id, None)
    waiting = await rows(beta, tables.group_forwards)
    assert sorted((r.revision, r.replaces) for r in waiting) == [
        ("delete", second.id),
        ("edit", first.id),
    ]

    await off_loop(alpha.start)
    for node in (alpha, beta):
        node.clock.advance(timedelta(minutes=10))  # past any backoff, together
    federation_of(beta).kick()

    async def caught_up() -> bool:
        return await everyone_sees(gid, [("first, edited", True)], alice, bob)

    await until(caught_up, "the edit and the deletion on both nodes")
    await until(lambda: _no_forwards(beta), "beta's forwards settled")
    for node in (alpha, beta):
        assert (await messages_of(node))[second.id].deleted_at is not None

    # A host that never comes back: given up after federation_give_up_seconds.
    await off_loop(alpha.stop)
    await bob.edit(first.id, "never arrives")
    assert len(await rows(beta, tables.group_forwards)) == 1
    for node in (alpha, beta):
        node.clock.advance(timedelta(seconds=beta.settings.federation_give_up_seconds + 60))
    federation_of(beta).kick()
    await until(lambda: _no_forwards(beta), "given up")
    await off_loop(alpha.start)
    assert shown(await alice.group_history(gid)) == [("first, edited", True)]
    assert shown(await bob.group_history(gid)) == [("first, edited", True)]

    # The host holds the edit to the group's policy, as a message.
    await alice.set_conversation_policy(gid, max_message_bytes=4096)
    with pytest.raises(ApiError) as too_large:
        await bob.edit(first.id, "x" * 4000)
    assert (too_large.value.status, too_large.value.code) == (422, "message_too_large")
    assert await rows(beta, tables.group_forwards) == []
    assert shown(await alice.group_history(gid)) == [("first, edited", True)]


async def test_a_member_node_can_change_nothing_it_does_not_speak_for(
    alpha: FederatedNode, beta: FederatedNode, devices: OpenDevice
) -> None:
    alice, bob, gid = await two_node_group(alpha, beta, devices)
    carol = devices(alpha, "carol")
    await connect(alice, carol)
    other = await alice.create_group("Other", [str(bob.address), str(carol.address)])
    await until(lambda: _invited(bob, other.id), "the second invitation on beta")
    await bob.join_group(other.id)
    await carol.join_group(other.id)
    await joined_everywhere(alice, other.id, alice.address, bob.address, carol.address)
    alices = await alice.send_to_group(gid, "alice's words")
    carols = await carol.send_to_group(other.id, "carol's words")
    bobs = await bob.send_to_group(other.id, "bob's words in the other group")
    direct = await alice.send(str(bob.address), "just between us")
    assert await group_texts(bob, gid, 1) == ["alice's words"]
    [copy] = [m for m in await raw_history(bob, gid) if m.id == alices.id]

    # Bob cannot edit or delete alice's message, from his node's API...
    edit_in = revisions_api.EditIn(body=copy.body, encryption="end-to-end", client_txn_id="x-1")
    for method, path, body in (
        ("POST", f"/messages/{alices.id}/edits", edit_in),
        ("DELETE", f"/messages/{alices.id}", None),
    ):
        with pytest.raises(ApiError) as refused:
            await bob._call(method, path, body=body)
        assert (refused.value.status, refused.value.code) == (403, "not_message_sender")
    assert await rows(beta, tables.group_forwards) == []
    before = await messages_of(alpha)

    def forged(**fields: Any) -> gwire.GroupReviseRequest:
        values: dict[str, Any] = {
            "group_id": gid,
            "sender": str(bob.address),
            "sender_device": str(bob.device_id),
            "revision": "edit",
            "replaces": alices.id,
            "body": copy.body,
            "client_txn_id": "forged-1",
            "sent_at": datetime.now(UTC),
        }
        return gwire.GroupReviseRequest(**(values | fields))

    refusals = {
        # ...nor can his node, signing for him...
        "someone else's message": forged(),
        "someone else's deletion": forged(revision="delete", body=None),
        # ...or for an address of another domain (the host's own)...
        "a sender of alpha": forged(sender=str(alice.address)),
        "a sender of alpha deleting": forged(
            sender=str(alice.address), revision="delete", body=None
        ),
        # ...or naming a message of another group, or no group's at all.
        "another group's message": forged(replaces=carols.id, revision="delete", body=None),
        "his own message in another group": forged(replaces=bobs.id),
        "a 1:1 message": forged(replaces=direct.id, revision="delete", body=None),
        "a 1:1 message, group-less": forged(
            group_id=other.id, replaces=direct.id, revision="delete", body=None
        ),
    }
    expected = {
        "someone else's message": "not_message_sender",
        "someone else's deletion": "not_message_sender",
        "a sender of alpha": "SM_E001",
        "a sender of alpha deleting": "SM_E001",
    }
    for what, request in refusals.items():
        answer = await signed_by(beta, "alpha.test", gwire.GROUP_REVISE_PATH, request)
        assert isinstance(answer, dict), what
        assert answer.get("code", answer.get("response_code")) == expected.get(
            what, "message_not_found"
        ), (what, answer)
    assert await messages_of(alpha) == before

    # Removed, bob can no longer change even his own message.
    mine = await bob.send_to_group(gid, "bob's own")
    assert await group_texts(alice, gid, 1) == ["bob's own"]
    await alice.remove_from_group(gid, str(bob.address))

    async def removed_on_beta() -> bool:
        return await bob.groups() == [] or gid not in {g.id for g in await bob.groups()}

    await until(removed_on_beta, "the removal on beta")
    before = await messages_of(alpha)
    for method, path, body in (
        ("POST", f"/messages/{mine.id}/edits", edit_in),
        ("DELETE", f"/messages/{mine.id}", None),
    ):
        with pytest.raises(ApiError) as refused:
            await bob._call(method, path, body=body)
        assert (refused.value.status, refused.value.code) == (403, "group_forbidden")
    removed = forged(replaces=mine.id, revision="delete", body=None)
    answer = await signed_by(beta, "alpha.test", gwire.GROUP_REVISE_PATH, removed)
    assert isinstance(answer, dict) and answer.get("ok") is False
    assert await messages_of(alpha) == before
    assert await rows(beta, tables.group_forwards) == []
    assert shown(await alice.group_history(gid)) == [("alice's words", False), ("bob's own", False)]


async def _invited(device: Client, group_id: str) -> bool:
    return group_id in {g.id for g in await device.groups()}
