"""Receipts, edits and deletions of 1:1 messages between two of our nodes over
real TLS: what the other side's devices see (live, by sync, in history), that a
deletion erases the ciphertext on both nodes, retries while a node is down, and
what a node that lies about whom it speaks for, or about which message it
means, gets (nothing changes)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from typing import Any, TypeVar

import pytest
from sqlalchemy import select

from openmessenger.client import Client, Message
from openmessenger.client.errors import ApiError
from openmessenger.client.revisions import Receipt, apply_revisions
from openmessenger.protocol import message_federation as mwire
from openmessenger.protocol import revisions_api
from openmessenger.services.message_federation import MessageFederation
from openmessenger.storage import tables
from tests.integration.test_api_revisions import megolm_body
from tests.integration.test_sdk_groups import connect, linked
from tests.support.federation import FederatedNode, OpenDevice, signed_by, until
from tests.support.v1peer import V1Peer

DEADLINE_SECONDS = 30
T = TypeVar("T")

NodeFactory = Callable[..., FederatedNode]


async def rows(node: FederatedNode, table: Any) -> list[Any]:
    async def read() -> list[Any]:
        async with node.node.database.connect() as conn:
            return list((await conn.execute(select(table))).all())

    return await node.call(read())


async def messages_of(node: FederatedNode) -> dict[str, Any]:
    return {r.id: r for r in await rows(node, tables.messages)}


def remote(node: FederatedNode) -> MessageFederation:
    found = node.node.services.revisions.remote
    assert found is not None
    return found


def shown(messages: list[Message]) -> list[tuple[str, bool]]:
    """What a person sees: each message's text and whether it was edited."""
    return [
        (m.text if m.error is None else f"error: {m.error}", m.edited_at is not None)
        for m in apply_revisions(messages)
    ]


async def arrive(device: Client, count: int) -> list[Message]:
    """Sync until ``count`` messages arrived (delivery between nodes is asynchronous)."""
    found: list[Message] = []

    async def enough() -> bool:
        found.extend(await device.sync())
        return len(found) >= count

    await until(enough, f"{count} messages on {device.address}")
    return found


async def delivered(sender: Client, recipient: Client, text: str) -> tuple[Message, Message]:
    """``sender`` sends ``text``; once its node delivered it, the recipient's copy
    (the other node stores it under an id of its own)."""
    sent = await sender.send(str(recipient.address), text)
    assert (await sender.wait_until_settled(sent)).status == "delivered"
    [copy] = await arrive(recipient, 1)
    assert copy.text == text and copy.id != sent.id
    return sent, copy


class Live:
    """What a device's live stream handed over, collected in the background."""

    def __init__(self, device: Client) -> None:
        self.seen: list[Message] = []
        self._task = asyncio.create_task(self._follow(device))

    async def _follow(self, device: Client) -> None:
        async for message in device.listen():
            self.seen.append(message)

    async def wait_for(self, wanted: Callable[[Message], bool], what: str) -> Message:
        async def found() -> Message | None:
            return next((m for m in self.seen if wanted(m)), None)

        return await until(found, what)

    async def close(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


async def off_loop(action: Callable[[], object]) -> None:
    await asyncio.to_thread(action)


async def test_an_edit_and_a_deletion_reach_every_device_on_the_other_node_and_erase_both_copies(
    alpha: FederatedNode, beta: FederatedNode, devices: OpenDevice
) -> None:
    alice, bob = devices(alpha, "alice"), devices(beta, "bob")
    await connect(bob, alice)
    alice_laptop = await linked(alice, devices(alpha, "alice-laptop"))
    bob_phone = await linked(bob, devices(beta, "bob-phone"))
    await alice_laptop.sync()
    await bob_phone.sync()
    sent, copy = await delivered(alice, bob, "see you at 5")
    live = Live(bob_phone)
    try:
        await live.wait_for(lambda m: m.id == copy.id, "the message live on bob's phone")

        edit = await alice.edit(sent.id, "see you at 6")

        assert (edit.media_type, edit.replaces) == ("message.edit", sent.id)
        # Live on bob's other device, and opened: the plaintext names alice's id
        # of the message, beta's copy its own.
        arrived = await live.wait_for(lambda m: m.media_type == "message.edit", "the edit live")
        assert (arrived.replaces, arrived.text, arrived.error) == (copy.id, "see you at 6", None)
        assert arrived.sender == alice.address
        # By sync and in history, exactly as on one node.
        [synced] = await arrive(bob, 1)
        assert (synced.replaces, synced.text) == (copy.id, "see you at 6")
        assert shown(await bob.history(str(alice.address))) == [("see you at 6", True)]
        assert shown(await alice_laptop.sync()) == [("see you at 6", True)]
        # The recipient cannot edit or delete the sender's message.
        for attempt in (bob.edit(copy.id, "I say when"), bob.delete_for_everyone(copy.id)):
            with pytest.raises(ApiError) as refused:
                await attempt
            assert (refused.value.status, refused.value.code) == (403, "not_message_sender")
        on_beta = await messages_of(beta)
        [beta_edit] = [r for r in on_beta.values() if r.replaces == copy.id]
        assert on_beta[copy.id].edited_at is not None

        gone = await alice.delete_for_everyone(sent.id)

        assert gone.deleted_at is not None
        event = await live.wait_for(lambda m: m.media_type == "message.delete", "the deletion")
        assert event.replaces == copy.id
    finally:
        await live.close()
    [deletion] = await arrive(bob, 1)
    assert (deletion.media_type, deletion.replaces) == ("message.delete", copy.id)
    assert shown(await bob.history(str(alice.address))) == []
    assert shown(await alice_laptop.sync()) == []
    # The ciphertext of the message and of its edit is gone from both nodes' tables.
    for node, erased in ((alpha, (sent.id, edit.id)), (beta, (copy.id, beta_edit.id))):
        found = await messages_of(node)
        for message_id in erased:
            assert found[message_id].deleted_at is not None
            assert found[message_id].media_type == "message.deleted"
            assert '"ciphertext"' not in found[message_id].body
    assert await rows(alpha, tables.openmsg_revisions_out) == []
    assert await rows(alpha, tables.openmsg_sent) == []  # the reference went with it


async def next_receipt(stream: AsyncIterator[Receipt]) -> Receipt:
    return await asyncio.wait_for(anext(stream), timeout=DEADLINE_SECONDS)


async def test_receipts_reach_the_senders_devices_on_the_other_node_unless_turned_off(
    alpha: FederatedNode, beta: FederatedNode, devices: OpenDevice
) -> None:
    alice, bob = devices(alpha, "alice"), devices(beta, "bob")
    await connect(alice, bob)
    alice_laptop = await linked(alice, devices(alpha, "alice-laptop"))
    live = alice.listen_receipts()
    try:
        sent = await alice.send(str(bob.address), "are you there?")
        assert (await alice.wait_until_settled(sent)).status == "delivered"

        [copy] = await arrive(bob, 1)  # the SDK says "delivered" for what it hands over
        got = await next_receipt(live)
        assert (got.message_id, got.reader, got.kind) == (sent.id, bob.address, "delivered")

        assert await bob.mark_read(copy.id) == []  # recorded on alice's node, not here
        got = await next_receipt(live)
        assert (got.message_id, got.reader, got.kind) == (sent.id, bob.address, "read")

        # Bob turns receipts off: none leave his node.
        await bob.set_preference("send_receipts", False)
        quiet, quiet_copy = await delivered(alice, bob, "did you read this?")
        assert await bob.mark_read(quiet_copy.id) == []
        # Bob's own raw acknowledgement is dropped by his node as well.
        raw = revisions_api.ReceiptsIn(kind="read", message_ids=[quiet_copy.id])
        assert (await bob._call("POST", "/receipts", body=raw)).json()["receipts"] == []
        assert await rows(beta, tables.openmsg_revisions_out) == []
        # Back on: the next receipt alice gets is for the next message.
        await bob.set_preference("send_receipts", True)
        later, later_copy = await delivered(alice, bob, "and now?")
        raw = revisions_api.ReceiptsIn(kind="delivered", message_ids=[later_copy.id])
        await bob._call("POST", "/receipts", body=raw)
        got = await next_receipt(live)
        assert (got.message_id, got.kind) == (later.id, "delivered")
    finally:
        await live.aclose()
    assert await alice.receipts(quiet.id) == []
    synced = await alice_laptop.sync_receipts()
    assert [(r.message_id, r.reader, r.kind) for r in synced] == [
        (sent.id, bob.address, "delivered"),
        (sent.id, bob.address, "read"),
        (later.id, bob.address, "delivered"),
    ]
    assert [(r.reader, r.kind) for r in await alice.receipts(sent.id)] == [
        (bob.address, "delivered"),
        (bob.address, "read"),
    ]
    await until(lambda: _empty(rows(beta, tables.openmsg_revisions_out)), "beta's queue empty")


async def _empty(found: Awaitable[list[Any]]) -> bool:
    return not await found


async def test_while_the_other_node_is_down_revisions_wait_and_are_given_up_in_the_end(
    alpha: FederatedNode, beta: FederatedNode, devices: OpenDevice
) -> None:
    alice, bob = devices(alpha, "alice"), devices(beta, "bob")
    await connect(alice, bob)
    first, first_copy = await delivered(alice, bob, "first")
    second, second_copy = await delivered(alice, bob, "second")

    await off_loop(beta.stop)
    await alice.edit(first.id, "first, edited")
    await alice.delete_for_everyone(second.id)
    waiting = await rows(alpha, tables.openmsg_revisions_out)
    assert len(waiting) == 2

    await off_loop(beta.start)
    for node in (alpha, beta):
        node.clock.advance(timedelta(minutes=10))  # past any backoff, together
    remote(alpha).kick()

    async def caught_up() -> bool:
        return shown(await bob.history(str(alice.address))) == [("first, edited", True)]

    await until(caught_up, "the edit and the deletion on beta")
    await until(lambda: _empty(rows(alpha, tables.openmsg_revisions_out)), "alpha's queue empty")
    assert (await messages_of(beta))[second_copy.id].deleted_at is not None

    # A retry whose answer was lost changes nothing: the same edit is stored once.
    [reference] = [r for r in await rows(alpha, tables.openmsg_sent) if r.message_id == first.id]
    [edit_row] = [r for r in (await messages_of(alpha)).values() if r.replaces == first.id]
    deleted_nonce = await second_nonce(beta, second_copy.id)
    again = mwire.RevisionsRequest(
        items=[
            mwire.EditItem(
                sender=str(alice.address),
                recipient=str(bob.address),
                nonce=reference.nonce,
                id=edit_row.id,
                replaces=first.id,
                body=edit_row.body,
                sent_at=edit_row.sent_at,
            ),
            mwire.DeleteItem(
                sender=str(alice.address),
                recipient=str(bob.address),
                nonce=deleted_nonce,
                sent_at=edit_row.sent_at,
            ),
        ]
    )
    before = await messages_of(beta)
    answer = mwire.RevisionsAnswer.model_validate(
        await signed_by(alpha, "beta.test", mwire.MESSAGE_REVISIONS_PATH, again)
    )
    assert answer.results == ["applied", "applied"]
    assert await messages_of(beta) == before
    assert shown(await bob.history(str(alice.address))) == [("first, edited", True)]

    # A node that never comes back: given up after federation_give_up_seconds.
    await off_loop(beta.stop)
    await alice.edit(first.id, "never arrives")
    assert len(await rows(alpha, tables.openmsg_revisions_out)) == 1
    for node in (alpha, beta):  # the clocks move together
        node.clock.advance(timedelta(seconds=alpha.settings.federation_give_up_seconds + 60))
    remote(alpha).kick()
    await until(lambda: _empty(rows(alpha, tables.openmsg_revisions_out)), "given up")
    # The sender's own devices keep their edit; the other node never heard of it.
    assert shown(await alice.history(str(bob.address))) == [("never arrives", True)]
    await off_loop(beta.start)
    assert shown(await bob.history(str(alice.address))) == [("first, edited", True)]
    assert [r.id for r in await rows(beta, tables.messages) if r.replaces == first_copy.id] != []


async def second_nonce(node: FederatedNode, message_id: str) -> str:
    """The nonce the receiving node keeps for a message it took."""
    found = await rows(node, tables.openmsg_received)
    [nonce] = [r.nonce for r in found if r.message_id == message_id]
    return str(nonce)


async def test_a_node_can_change_nothing_it_does_not_speak_for(
    alpha: FederatedNode,
    beta: FederatedNode,
    federation_node_factory: NodeFactory,
    devices: OpenDevice,
) -> None:
    gamma = federation_node_factory("gamma.test")
    alice, carol = devices(alpha, "alice"), devices(alpha, "carol")
    bob, erin = devices(beta, "bob"), devices(beta, "erin")
    await connect(alice, bob)
    await connect(alice, erin)
    await connect(carol, bob)
    to_bob, bob_copy_ = await delivered(alice, bob, "for bob")
    to_erin, erin_copy = await delivered(alice, erin, "for erin")
    from_carol, carol_copy = await delivered(carol, bob, "from carol")
    nonces = {r.message_id: r.nonce for r in await rows(alpha, tables.openmsg_sent)}
    on_alpha, on_beta = await messages_of(alpha), await messages_of(beta)

    def delete(sender: Client, recipient: Client, nonce: str) -> mwire.RevisionsRequest:
        return mwire.RevisionsRequest(
            items=[
                mwire.DeleteItem(
                    sender=str(sender.address),
                    recipient=str(recipient.address),
                    nonce=nonce,
                    sent_at=alpha.clock.now(),
                )
            ]
        )

    async def post(node: FederatedNode, to: str, request: mwire.RevisionsRequest) -> Any:
        answer = await signed_by(node, to, mwire.MESSAGE_REVISIONS_PATH, request)
        assert answer is not None
        return answer

    # Gamma speaking for alice (of alpha): refused outright.
    refused = await post(gamma, "beta.test", delete(alice, bob, nonces[to_bob.id]))
    assert (refused["error"], refused["response_code"]) == (True, "SM_E001")
    # Alpha naming a message that does not exist, one alice sent to someone else,
    # and one someone else sent bob: one generic refusal each.
    for request in (
        delete(alice, bob, "A" * 32),
        delete(alice, bob, nonces[to_erin.id]),
        delete(alice, bob, nonces[from_carol.id]),
    ):
        assert await post(alpha, "beta.test", request) == {"ok": True, "results": ["refused"]}
    # Bob's node trying to edit alice's message (the recipient's edit): refused,
    # and a receipt naming a reader of another node: refused outright.
    edit_by_bob = mwire.RevisionsRequest(
        items=[
            mwire.EditItem(
                sender=str(bob.address),
                recipient=str(alice.address),
                nonce=nonces[to_bob.id],
                id="x" * 32,
                replaces=to_bob.id,
                body=megolm_body()[0],
                sent_at=beta.clock.now(),
            )
        ]
    )
    assert await post(beta, "alpha.test", edit_by_bob) == {"ok": True, "results": ["refused"]}
    receipt_for_bob = mwire.RevisionsRequest(
        items=[
            mwire.ReceiptItem(
                sender=str(alice.address),
                recipient=str(bob.address),
                nonce=nonces[to_bob.id],
                kind="read",
                at=gamma.clock.now(),
            )
        ]
    )
    refused = await post(gamma, "alpha.test", receipt_for_bob)
    assert refused["response_code"] == "SM_E001"

    # Nothing changed anywhere.
    assert await messages_of(alpha) == on_alpha
    assert await messages_of(beta) == on_beta
    assert "read" not in [r.kind for r in await alice.receipts(to_bob.id)]
    for device, copy in ((bob, bob_copy_), (erin, erin_copy), (bob, carol_copy)):
        assert copy.id in [m.id for m in await device.history(str(copy.sender))]
    assert shown(await bob.history(str(alice.address))) == [("for bob", False)]


async def test_a_peer_without_the_capability_keeps_getting_409(
    alpha: FederatedNode, v1peer: V1Peer, devices: OpenDevice
) -> None:
    alice = devices(alpha, "alice")
    await alice.connect(v1peer.address, v1peer.issue_code())
    sent = await alice.send(v1peer.address, "to a v1 node")
    assert (await alice.wait_until_settled(sent)).status == "delivered"

    with pytest.raises(ApiError) as deleting:
        await alice.delete_for_everyone(sent.id)
    assert (deleting.value.status, deleting.value.code) == (409, "revision_remote_unsupported")
    edit = revisions_api.EditIn(body=megolm_body()[0])
    with pytest.raises(ApiError) as editing:
        await alice._call("POST", f"/messages/{sent.id}/edits", body=edit)
    assert (editing.value.status, editing.value.code) == (409, "revision_remote_unsupported")
    # Receipts for what the v1 node sends stay on alpha: nothing is queued for it.
    link = v1peer.link(v1peer.address, alice.address or "")
    reply = await v1peer.post("alpha.test", "message-receive", json=v1peer.message(link, "hi"))
    assert reply.json().get("success") is True, reply.text
    [incoming] = await alice.sync()
    await alice.mark_read(incoming.id)
    await until(lambda: _empty(rows(alpha, tables.openmsg_revisions_out)), "nothing waiting")
    assert v1peer.received(mwire.MESSAGE_REVISIONS_PATH) == []
    assert (await alice.message(sent.id)).deleted_at is None


async def test_retention_and_account_deletion_take_the_references_and_queued_revisions(
    alpha: FederatedNode, beta: FederatedNode, devices: OpenDevice
) -> None:
    alice, bob = devices(alpha, "alice"), devices(beta, "bob")
    await connect(alice, bob)
    old, _ = await delivered(alice, bob, "kept a minute")
    await alice.set_conversation_policy(old.conversation_id, retention_seconds=60)
    await off_loop(beta.stop)
    await alice.edit(old.id, "kept a minute, edited")
    assert len(await rows(alpha, tables.openmsg_revisions_out)) == 1
    assert [r.message_id for r in await rows(alpha, tables.openmsg_sent)] == [old.id]

    alpha.clock.advance(timedelta(minutes=5))
    swept = await alpha.call(alpha.node.services.policies.sweep_retention())

    assert swept == 2  # the message and its edit, with what pointed at them
    assert await rows(alpha, tables.openmsg_revisions_out) == []
    assert await rows(alpha, tables.openmsg_sent) == []

    waiting = await alice.send(str(bob.address), "never delivered")  # beta is down
    await alice.edit(waiting.id, "never delivered, edited")
    assert [r.message_id for r in await rows(alpha, tables.openmsg_sent)] == [waiting.id]
    assert len(await rows(alpha, tables.openmsg_revisions_out)) == 1

    await alice.delete_account()

    for table in (tables.openmsg_sent, tables.openmsg_revisions_out, tables.openmsg_outbox):
        assert await rows(alpha, table) == []
    assert await rows(alpha, tables.messages) == []


async def test_either_side_edits_its_own_and_an_edit_before_delivery_follows_the_message(
    alpha: FederatedNode, beta: FederatedNode, devices: OpenDevice
) -> None:
    alice, bob = devices(alpha, "alice"), devices(beta, "bob")
    await connect(alice, bob)
    # Bob, on beta, edits what he sent alice; alice's read receipt reaches him.
    sent, copy = await delivered(bob, alice, "lunch?")
    await bob.edit(sent.id, "lunch at 12?")
    [edit] = await arrive(alice, 1)
    assert (edit.replaces, edit.text, edit.error) == (copy.id, "lunch at 12?", None)
    assert shown(await alice.history(str(bob.address))) == [("lunch at 12?", True)]
    await alice.mark_read(copy.id)

    async def read_by_alice() -> bool:
        return ("read", alice.address) in [(r.kind, r.reader) for r in await bob.receipts(sent.id)]

    await until(read_by_alice, "alice's read receipt on beta")

    # Alice edits a message beta has not taken yet: the edit waits for it.
    await off_loop(beta.stop)
    early = await alice.send(str(bob.address), "meet at 7")
    assert early.status == "accepted"
    await alice.edit(early.id, "meet at 8")
    await off_loop(beta.start)
    for node in (alpha, beta):
        node.clock.advance(timedelta(minutes=10))  # past any backoff, together
    alpha.node.outbox.kick()
    remote(alpha).kick()

    async def edited_on_beta() -> bool:
        latest = shown(await bob.history(str(alice.address)))
        return latest == [("lunch at 12?", True), ("meet at 8", True)]

    await until(edited_on_beta, "the message and then its edit on beta")


async def test_a_timestamp_without_a_time_zone_is_refused_as_malformed(
    alpha: FederatedNode, beta: FederatedNode
) -> None:
    items = [
        {
            "type": "receipt",
            "sender": f"1234567890*{beta.domain}",
            "recipient": f"0987654321*{alpha.domain}",
            "nonce": "A" * 32,
            "kind": "read",
            "at": "2026-11-22T10:00:00",  # naive: which 10 o'clock?
        }
    ]
    answer = await signed_by(alpha, beta.domain, mwire.MESSAGE_REVISIONS_PATH, {"items": items})
    assert isinstance(answer, dict) and answer["response_code"] == "SM_E000", answer
