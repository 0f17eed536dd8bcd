"""The group port contract (``GroupRepository`` and ``MessageRepository.append_group``)
on every backend: participants, the group's one order, and whose streams a
group message joins."""

from __future__ import annotations

import asyncio
from dataclasses import replace

from openmessenger.core.groups import GroupAppend, Member, MemberKind, MemberState, Role
from openmessenger.core.ids import AccountId, ConversationId, MessageId
from openmessenger.core.records import Account
from openmessenger.services.ports import Transaction
from openmessenger.storage.database import Database
from tests.contract.test_repositories import make_account, make_device, new_id, now


def participant(
    group_id: ConversationId,
    account: Account,
    role: Role = Role.MEMBER,
    state: MemberState = MemberState.JOINED,
    seq: int | None = 1,
) -> Member:
    return Member(
        conversation_id=group_id,
        account_id=account.id,
        address=account.address,
        role=role,
        kind=MemberKind.HUMAN,
        app_id=None,
        state=state,
        invited_by=None,
        invited_seq=seq,
        joined_seq=seq if state is MemberState.JOINED else None,
        left_seq=None,
        joined_at=now() if state is MemberState.JOINED else None,
        updated_at=now(),
    )


def group_message(
    group_id: ConversationId,
    sender: Account,
    device: str,
    receivers: tuple[AccountId, ...],
    txn: str | None = None,
) -> GroupAppend:
    return GroupAppend(
        message_id=MessageId(new_id()),
        conversation_id=group_id,
        sender=sender.address,
        sender_device=device,
        body='{"alg": "om.megolm.v1"}',
        client_txn_id=txn,
        sent_at=now(),
        encryption="end-to-end",
        receivers=receivers,
    )


async def make_group(tx: Transaction, owner: Account) -> ConversationId:
    group_id = ConversationId(new_id())
    await tx.groups.create(group_id, "Friends", owner.address, now())
    await tx.groups.put_member(participant(group_id, owner, Role.OWNER))
    return group_id


async def test_participants_are_kept_listed_in_order_and_replaced(database: Database) -> None:
    async with database.uow() as tx:
        owner, bob, carol = [await make_account(tx) for _ in range(3)]
        group_id = await make_group(tx, owner)
        await tx.groups.put_member(participant(group_id, carol, seq=3))
        await tx.groups.put_member(participant(group_id, bob, state=MemberState.INVITED, seq=2))
        await tx.commit()

    async with database.uow() as tx:
        group = await tx.groups.lock(group_id)
        assert group is not None and (group.name, group.mode.value) == ("Friends", "history")
        assert [m.address for m in await tx.groups.members(group_id)] == [
            owner.address,
            bob.address,
            carol.address,
        ]
        bob_now = await tx.groups.member(group_id, bob.id)
        assert bob_now is not None and bob_now.state is MemberState.INVITED
        await tx.groups.put_member(replace(bob_now, state=MemberState.JOINED, joined_seq=4))
        await tx.commit()

    async with database.uow() as tx:
        [(listed, me)] = await tx.groups.of_account(bob.id)
        assert (listed.id, me.state, me.joined_seq) == (group_id, MemberState.JOINED, 4)
        assert await tx.groups.share_group(bob.id, carol.address)
        assert await tx.groups.get(ConversationId(new_id())) is None
        stranger = await make_account(tx)
        assert not await tx.groups.share_group(stranger.id, owner.address)
        assert await tx.groups.of_account(stranger.id) == []


async def test_a_group_message_joins_the_receivers_streams_but_the_senders(
    database: Database,
) -> None:
    async with database.uow() as tx:
        owner, bob, outsider = [await make_account(tx) for _ in range(3)]
        phone, laptop = await make_device(tx, owner.id), await make_device(tx, owner.id)
        bob_device = await make_device(tx, bob.id)
        outsider_device = await make_device(tx, outsider.id)
        group_id = await make_group(tx, owner)
        await tx.commit()

    receivers = (owner.id, bob.id)
    async with database.uow() as tx:
        first = await tx.messages.append_group(
            group_message(group_id, owner, phone.id, receivers, txn="t1")
        )
        second = await tx.messages.append_group(
            group_message(group_id, bob, bob_device.id, receivers)
        )
        await tx.commit()
    assert first.message is not None and second.message is not None
    assert (first.message.seq, second.message.seq) == (1, 2)
    assert str(first.message.recipient) == group_id
    assert {e.device_id for e in first.events} == {laptop.id, bob_device.id}
    assert {e.device_id for e in second.events} == {phone.id, laptop.id}

    async with database.uow() as tx:
        again = await tx.messages.append_group(
            group_message(group_id, owner, phone.id, receivers, txn="t1")
        )
        assert not again.created and again.message == first.message
        assert [e.message.id for e in await tx.messages.stream(laptop.id, 0, 10)] == [
            first.message.id,
            second.message.id,
        ]
        assert await tx.messages.stream(outsider_device.id, 0, 10) == []
        assert [m.seq for m in await tx.messages.history(group_id, 0, 10)] == [1, 2]


async def test_concurrent_group_sends_get_one_order(database: Database) -> None:
    async with database.uow() as tx:
        owner = await make_account(tx)
        device = await make_device(tx, owner.id)
        reader = await make_device(tx, owner.id)
        group_id = await make_group(tx, owner)
        await tx.commit()

    async def one_send() -> int:
        async with database.uow() as tx:
            await tx.groups.lock(group_id)
            result = await tx.messages.append_group(
                group_message(group_id, owner, device.id, (owner.id,))
            )
            await tx.commit()
        assert result.message is not None
        return result.message.seq

    seqs = await asyncio.gather(*(one_send() for _ in range(10)))
    assert sorted(seqs) == list(range(1, 11))
    async with database.uow() as tx:
        events = await tx.messages.stream(reader.id, 0, 20)
    assert [e.position for e in events] == list(range(1, 11))
    assert [e.message.seq for e in events] == list(range(1, 11))
