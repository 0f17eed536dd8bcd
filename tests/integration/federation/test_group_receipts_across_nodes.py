"""Receipts of group messages between two of our nodes over real TLS: a member on
another node getting or reading a message reaches its sender's devices, and the
reverse; ``send_receipts`` off sends none; a receipt that reaches the sender's
node before the host's fan-out waits for the message and holds up nothing
else; a node acknowledges only for its own participants, only messages they
may read."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from openmessenger.client import Message
from openmessenger.client.revisions import Receipt
from openmessenger.protocol import message_federation as mwire
from openmessenger.protocol import revisions_api
from openmessenger.storage import tables
from tests.integration.federation.test_group_revisions_across_nodes import federation_of
from tests.integration.federation.test_groups_across_nodes import (
    group_texts,
    joined_everywhere,
    rows,
    two_node_group,
)
from tests.integration.federation.test_revisions_across_nodes import (
    delivered,
    messages_of,
    next_receipt,
    remote,
)
from tests.integration.test_sdk_groups import connect, linked
from tests.support.federation import FederatedNode, OpenDevice, signed_by, until

NodeFactory = Callable[..., FederatedNode]


def seen_by(receipts: list[Receipt]) -> list[tuple[str, str]]:
    return [(str(r.reader), r.kind) for r in receipts]


async def on_node(node: FederatedNode, message_id: str) -> bool:
    return message_id in await messages_of(node)


async def receipts_on(node: FederatedNode, message_id: str) -> list[Any]:
    return [r for r in await rows(node, tables.receipts) if r.message_id == message_id]


async def queue_of(node: FederatedNode) -> list[Any]:
    return await rows(node, tables.openmsg_revisions_out)


async def test_group_receipts_reach_the_sender_on_the_other_node_both_ways_unless_turned_off(
    alpha: FederatedNode, beta: FederatedNode, devices: OpenDevice
) -> None:
    alice, carol, bob = devices(alpha, "alice"), devices(alpha, "carol"), devices(beta, "bob")
    await connect(alice, bob)
    await connect(alice, carol)
    bob_phone = await linked(bob, devices(beta, "bob-phone"))
    gid = (await alice.create_group("Receipts", [str(bob.address), str(carol.address)])).id
    await until(bob.groups, "the invitation on beta")
    await bob.join_group(gid)
    await carol.join_group(gid)
    await joined_everywhere(bob, gid, alice.address, bob.address, carol.address)

    # Alice (on the host) hears that bob, on beta, got and read her message.
    alice_live = alice.listen_receipts()
    try:
        hello = await alice.send_to_group(gid, "hello")
        assert await group_texts(bob, gid, 1) == ["hello"]  # the SDK says "delivered"
        got = await next_receipt(alice_live)
        assert (got.message_id, got.reader, got.kind) == (hello.id, bob.address, "delivered")
        await bob.mark_read(hello.id)
        got = await next_receipt(alice_live)
        assert (got.message_id, got.reader, got.kind) == (hello.id, bob.address, "read")
    finally:
        await alice_live.aclose()
    assert seen_by(await alice.receipts(hello.id)) == [
        (bob.address, "delivered"),
        (bob.address, "read"),
    ]

    # Bob (on beta) hears that alice and carol, on the host, got and read his.
    bob_live = bob.listen_receipts()
    try:
        hi = await bob.send_to_group(gid, "hi all")
        # Taken by his node from the host's fan-out before anyone reads it (a
        # receipt that outruns it waits: the next test).
        await until(lambda: on_node(beta, hi.id), "bob's message back on beta")
        assert await group_texts(alice, gid, 1) == ["hi all"]  # her own stays hers
        got = await next_receipt(bob_live)
        assert (got.message_id, got.reader, got.kind) == (hi.id, alice.address, "delivered")
        await alice.mark_read(hi.id)
        await carol.mark_read(hi.id)
        later = [await next_receipt(bob_live), await next_receipt(bob_live)]
        assert sorted((r.message_id, str(r.reader), r.kind) for r in later) == sorted(
            [(hi.id, alice.address, "read"), (hi.id, carol.address, "read")]
        )
    finally:
        await bob_live.aclose()
    # Every device of bob's account has the same feed; the host recorded nothing.
    synced = await bob_phone.sync_receipts()
    assert sorted(seen_by([r for r in synced if r.message_id == hi.id])) == sorted(
        [(alice.address, "delivered"), (alice.address, "read"), (carol.address, "read")]
    )
    assert await receipts_on(alpha, hi.id) == []
    await until(lambda: _empty(queue_of(beta)), "beta's queue settled")

    # Bob turns receipts off: nothing leaves beta, alice learns nothing.
    await bob.set_preference("send_receipts", False)
    quiet = await alice.send_to_group(gid, "did you read this?")
    assert (await group_texts(bob, gid, 1))[-1] == "did you read this?"
    # Bob's own raw acknowledgement, past his SDK, is dropped by his node too.
    raw = revisions_api.ReceiptsIn(kind="read", message_ids=[quiet.id])
    assert (await bob._call("POST", "/receipts", body=raw)).json()["receipts"] == []
    # Back on: the next message's receipt goes through (so the silence above was
    # the preference, not a slow queue).
    await bob.set_preference("send_receipts", True)
    again = await alice.send_to_group(gid, "and now?")
    await group_texts(bob, gid, 1)
    await bob.mark_read(again.id)

    async def read_again() -> bool:
        return (bob.address, "read") in seen_by(await alice.receipts(again.id))

    await until(read_again, "bob's read receipt for the last message")
    assert await alice.receipts(quiet.id) == []
    await until(lambda: _empty(queue_of(beta)), "beta's queue settled")
    await until(lambda: _empty(queue_of(alpha)), "alpha's queue settled")


async def _empty(found: Any) -> bool:
    return not await found


async def test_a_receipt_that_outruns_the_hosts_fan_out_waits_for_the_message(
    alpha: FederatedNode, beta: FederatedNode, devices: OpenDevice
) -> None:
    alice, bob, gid = await two_node_group(alpha, beta, devices)
    fan_out = federation_of(alpha)
    await alpha.call(fan_out.stop())  # the host orders messages but sends none on

    hi = await bob.send_to_group(gid, "hi")
    assert hi.seq > 0  # ordered by the host
    assert await group_texts(alice, gid, 1) == ["hi"]  # alice's SDK says "delivered"
    assert not await on_node(beta, hi.id)

    # Beta cannot take the receipt yet: it answers "later" and alpha keeps it.
    async def answered_later() -> bool:
        return [(r.message_id, r.attempts) for r in await queue_of(alpha)] == [(hi.id, 1)]

    await until(answered_later, "alpha's first try of the receipt")
    assert await receipts_on(beta, hi.id) == []

    # It holds up nothing else for beta: a 1:1 receipt goes past it.
    direct, alice_copy = await delivered(bob, alice, "just between us")
    await alice.mark_read(alice_copy.id)

    async def direct_read() -> bool:
        return (alice.address, "read") in seen_by(await bob.receipts(direct.id))

    await until(direct_read, "the 1:1 receipt on beta")

    async def only_the_group_receipt_waits() -> bool:
        return [r.message_id for r in await queue_of(alpha)] == [hi.id]

    await until(only_the_group_receipt_waits, "alpha done with the 1:1 receipts")
    assert await receipts_on(beta, hi.id) == []

    # The fan-out resumes; once beta has the message the receipt is taken.
    async def resume() -> None:
        fan_out.start()
        fan_out.kick()

    await alpha.call(resume())
    await until(lambda: on_node(beta, hi.id), "the message on beta")
    for node in (alpha, beta):
        node.clock.advance(timedelta(minutes=10))  # past any backoff, together

    async def kick() -> None:
        remote(alpha).kick()

    await alpha.call(kick())

    async def acknowledged() -> bool:
        return seen_by(await bob.receipts(hi.id)) == [(alice.address, "delivered")]

    await until(acknowledged, "alice's receipt on beta")
    await until(lambda: _empty(queue_of(alpha)), "alpha's queue settled")


async def test_a_node_acknowledges_only_for_its_own_participants_and_what_they_may_read(
    alpha: FederatedNode,
    beta: FederatedNode,
    federation_node_factory: NodeFactory,
    devices: OpenDevice,
) -> None:
    gamma = federation_node_factory("gamma.test")
    alice, carol = devices(alpha, "alice"), devices(alpha, "carol")
    bob, erin = devices(beta, "bob"), devices(beta, "erin")
    await connect(alice, bob)
    await connect(alice, carol)
    await connect(alice, erin)
    gid = (await alice.create_group("Checked", [str(bob.address), str(carol.address)])).id
    other = (await alice.create_group("Other", [str(carol.address)])).id
    await carol.join_group(gid)
    await joined_everywhere(alice, gid, alice.address, carol.address)
    early = await alice.send_to_group(gid, "before bob joined")
    from_carol = await carol.send_to_group(gid, "carol here")
    await until(bob.groups, "the invitation on beta")
    await bob.join_group(gid)
    await joined_everywhere(bob, gid, alice.address, bob.address, carol.address)
    later = await alice.send_to_group(gid, "after bob joined")
    bob_address = str(bob.address)
    to_bob = await alice.send(bob_address, "a 1:1 message")
    assert (await alice.wait_until_settled(to_bob)).status == "delivered"
    from_bob = await bob.send_to_group(gid, "from bob")
    await until(lambda: on_node(beta, from_bob.id), "bob's message back on beta")

    in_other = await alice.send_to_group(other, "in another group")

    def receipt(
        of: Message,
        *,
        reader: str,
        sender: str,
        group_id: str = gid,
        message_id: str | None = None,
        seq: int | None = None,
    ) -> mwire.RevisionsRequest:
        return mwire.RevisionsRequest(
            items=[
                mwire.GroupReceiptItem(
                    group_id=group_id,
                    message_id=message_id or of.id,
                    seq=seq or of.seq,
                    sender=sender,
                    reader=reader,
                    kind="read",
                    at=alpha.clock.now(),
                )
            ]
        )

    async def post(node: FederatedNode, to: str, request: mwire.RevisionsRequest) -> Any:
        answer = await signed_by(node, to, mwire.MESSAGE_REVISIONS_PATH, request)
        assert answer is not None
        return answer

    refused = {"ok": True, "results": ["refused"]}
    alice_address = str(alice.address)
    # Beta, to the host, for: a message bob joined too late to read, a member it
    # does not have (erin), the wrong sender, a message of another group, a
    # message the host never ordered, the wrong seq, a 1:1 message named as the
    # group's.
    as_bob = {"reader": bob_address, "sender": alice_address}
    for request in (
        receipt(early, **as_bob),
        receipt(later, reader=str(erin.address), sender=alice_address),
        receipt(later, reader=bob_address, sender=str(carol.address)),
        receipt(in_other, **as_bob),
        receipt(later, **as_bob, message_id=in_other.id),
        receipt(later, **as_bob, message_id="m" * 32),
        receipt(later, **as_bob, seq=later.seq + 1),
        receipt(later, **as_bob, message_id=to_bob.id),
    ):
        assert await post(beta, "alpha.test", request) == refused
    # Beta speaking for alice, gamma for one of its own who is no participant:
    # refused outright, and one generic refusal.
    forged = receipt(from_carol, reader=alice_address, sender=str(carol.address))
    assert (await post(beta, "alpha.test", forged))["response_code"] == "SM_E001"
    stranger = receipt(later, reader="9999*gamma.test", sender=alice_address)
    assert await post(gamma, "alpha.test", stranger) == refused

    # The host, to beta (a member's node): a message beyond the last beta has of
    # the group waits ("later": its fan-out, and news of who joined, may still
    # be on the way), but only in a group beta knows, from one of its
    # participants; anything up to its last is checked as on the host.
    beyond = {"message_id": "n" * 32, "seq": from_bob.seq + 100}
    for reader in (alice_address, "9999*alpha.test"):
        assert await post(
            alpha, "beta.test", receipt(from_bob, reader=reader, sender=bob_address, **beyond)
        ) == {"ok": True, "results": ["later"]}
    as_alice = {"reader": alice_address, "sender": bob_address}
    for request in (
        receipt(from_bob, **as_alice, group_id=other, **beyond),
        receipt(from_bob, reader=alice_address, sender=str(erin.address), **beyond),
        receipt(from_bob, reader="9999*alpha.test", sender=bob_address),
        receipt(from_bob, **as_alice, message_id="n" * 32),
    ):
        assert await post(alpha, "beta.test", request) == refused

    # Nothing was recorded anywhere ...
    assert await alice.receipts(early.id) == []
    assert await alice.receipts(later.id) == []
    assert await carol.receipts(from_carol.id) == []
    assert await bob.receipts(from_bob.id) == []
    # ... while the same request for what bob may read is taken (the control).
    honest = receipt(later, **as_bob)
    assert await post(beta, "alpha.test", honest) == {"ok": True, "results": ["applied"]}
    assert seen_by(await alice.receipts(later.id)) == [(bob.address, "read")]


async def test_a_receipt_goes_from_one_member_node_to_another_not_through_the_host(
    alpha: FederatedNode,
    beta: FederatedNode,
    federation_node_factory: NodeFactory,
    devices: OpenDevice,
) -> None:
    gamma = federation_node_factory("gamma.test")
    alice, bob, gina = devices(alpha, "alice"), devices(beta, "bob"), devices(gamma, "gina")
    await connect(alice, bob)
    await connect(alice, gina)
    gid = (await alice.create_group("Three nodes", [str(bob.address), str(gina.address)])).id
    for member in (bob, gina):
        await until(member.groups, f"the invitation on {member.address}")
        await member.join_group(gid)
    await joined_everywhere(bob, gid, alice.address, bob.address, gina.address)
    await joined_everywhere(gina, gid, alice.address, bob.address, gina.address)

    hi = await bob.send_to_group(gid, "hello from beta")
    await until(lambda: on_node(beta, hi.id), "bob's message back on beta")
    assert await group_texts(gina, gid, 1) == ["hello from beta"]
    await gina.mark_read(hi.id)

    async def read_by_gina() -> bool:
        return seen_by(await bob.receipts(hi.id)) == [
            (gina.address, "delivered"),
            (gina.address, "read"),
        ]

    await until(read_by_gina, "gina's receipts on beta")
    # Straight from gamma to beta: the host never held them.
    assert await receipts_on(alpha, hi.id) == []
    assert await queue_of(alpha) == []
    await until(lambda: _empty(queue_of(gamma)), "gamma's queue settled")
