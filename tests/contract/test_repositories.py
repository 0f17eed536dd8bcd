"""The storage port contract (``services/ports.py``), run against every backend:
a SQLite file and a real PostgreSQL, through ``SqlUnitOfWork``."""

from __future__ import annotations

import asyncio
import base64
import os
import secrets
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from uuid import uuid4

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from openmessenger.core.envelope import DeliveryStatus, Message, StreamEvent
from openmessenger.core.ids import (
    AccountId,
    Address,
    ConversationId,
    DeviceId,
    MessageId,
    PassCodeId,
)
from openmessenger.core.passcodes import OPEN_POOL, CodeState
from openmessenger.core.records import Account, AccountKind, Contact, Device, PassCode
from openmessenger.services.ports import Transaction, UnitOfWork
from openmessenger.storage.database import SqlUnitOfWork

CONCURRENT_WRITERS = 20


# --- helpers -----------------------------------------------------------------------


def new_id() -> str:
    return uuid4().hex


def now() -> datetime:
    return datetime.now(UTC)


def new_address(domain: str = "alpha.test") -> Address:
    return Address(f"{secrets.randbelow(10**12)}*{domain}")


def new_ed25519_key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


def new_hmac() -> str:
    return secrets.token_hex(32)


def assert_utc(value: datetime | None, expected: datetime) -> None:
    assert value is not None
    assert value.tzinfo is not None and value.utcoffset() == timedelta(0)
    assert value == expected


async def make_account(tx: Transaction, address: Address | None = None) -> Account:
    account = await tx.accounts.create(
        account_id=AccountId(new_id()),
        address=address or new_address(),
        kind=AccountKind.ANONYMOUS,
        now=now(),
    )
    assert account is not None
    return account


async def make_device(tx: Transaction, account_id: AccountId) -> Device:
    device = Device(
        id=DeviceId(new_id()),
        account_id=account_id,
        ed25519_key=new_ed25519_key(),
        curve25519_key=new_ed25519_key(),
        created_at=now(),
    )
    await tx.devices.create(device)
    return device


async def make_conversation(tx: Transaction) -> ConversationId:
    conversation_id = ConversationId(new_id())
    await tx.connections.create_conversation(conversation_id, now())
    return conversation_id


def message_for(
    conversation_id: ConversationId,
    seq: int,
    sender: Account,
    device: Device,
    recipient: Address,
    body: str = "hello",
) -> Message:
    return Message(
        id=MessageId(new_id()),
        conversation_id=conversation_id,
        seq=seq,
        sender=sender.address,
        sender_device=device.id,
        recipient=recipient,
        body=body,
        sent_at=now(),
        status=DeliveryStatus.ACCEPTED,
    )


async def send(
    tx: Transaction,
    conversation_id: ConversationId,
    sender: Account,
    device: Device,
    recipient: Address,
    body: str = "hello",
    client_txn_id: str | None = None,
) -> Message:
    """What the messaging service does: allocate a seq, store the message."""
    seq = await tx.messages.next_seq(conversation_id)
    message = message_for(conversation_id, seq, sender, device, recipient, body)
    assert await tx.messages.add(message, client_txn_id)
    return message


def pass_code(owner: Account, *, bound_to: Address | None = None, ttl: int = 3600) -> PassCode:
    created = now()
    return PassCode(
        id=PassCodeId(new_id()),
        owner_account_id=owner.id,
        code_hmac=new_hmac(),
        bound_to=bound_to,
        state=CodeState.LIVE,
        created_at=created,
        expires_at=created + timedelta(seconds=ttl),
        used_by=None,
        used_at=None,
    )


class World:
    """Two accounts, a device each, and a conversation between them (committed)."""

    alice: Account
    bob: Account
    alice_device: Device
    bob_device: Device
    conversation_id: ConversationId


async def make_world(uow: UnitOfWork) -> World:
    world = World()
    async with uow() as tx:
        world.alice = await make_account(tx)
        world.bob = await make_account(tx)
        world.alice_device = await make_device(tx, world.alice.id)
        world.bob_device = await make_device(tx, world.bob.id)
        world.conversation_id = await make_conversation(tx)
        await tx.commit()
    return world


@pytest.fixture
def uow(engine: AsyncEngine) -> UnitOfWork:
    return SqlUnitOfWork(engine)


# --- accounts ----------------------------------------------------------------------


async def test_account_is_created_and_read_back_by_id_and_address(uow: UnitOfWork) -> None:
    created_at = now()
    account_id = AccountId(new_id())
    address = new_address()
    async with uow() as tx:
        account = await tx.accounts.create(
            account_id=account_id, address=address, kind=AccountKind.REGISTERED, now=created_at
        )
        assert account == Account(account_id, address, AccountKind.REGISTERED, None, created_at)
        await tx.commit()

    async with uow() as tx:
        by_id = await tx.accounts.get(account_id)
        by_address = await tx.accounts.by_address(address)
        assert by_id == by_address == account
        assert by_id is not None
        assert by_id.kind is AccountKind.REGISTERED
        assert_utc(by_id.created_at, created_at)
        assert await tx.accounts.get(AccountId(new_id())) is None
        assert await tx.accounts.by_address(new_address()) is None


async def test_taken_address_returns_none_and_the_transaction_goes_on(uow: UnitOfWork) -> None:
    address = new_address()
    async with uow() as tx:
        first = await make_account(tx, address)
        duplicate = await tx.accounts.create(
            account_id=AccountId(new_id()), address=address, kind=AccountKind.MANAGED, now=now()
        )
        assert duplicate is None
        # The caller draws another address in the same transaction.
        second = await make_account(tx)
        await tx.commit()

    async with uow() as tx:
        assert await tx.accounts.by_address(address) == first
        assert await tx.accounts.get(second.id) == second


async def test_display_name_is_set_and_replaced(uow: UnitOfWork) -> None:
    async with uow() as tx:
        account = await make_account(tx)
        await tx.accounts.set_display_name(account.id, "Alice")
        await tx.commit()
    async with uow() as tx:
        stored = await tx.accounts.get(account.id)
        assert stored is not None and stored.display_name == "Alice"
        await tx.accounts.set_display_name(account.id, "Zoë Ærø " + "x" * 32)
        await tx.commit()
    async with uow() as tx:
        stored = await tx.accounts.get(account.id)
        assert stored is not None and stored.display_name == "Zoë Ærø " + "x" * 32


async def test_timestamps_in_another_zone_come_back_as_the_same_instant_in_utc(
    uow: UnitOfWork,
) -> None:
    plus_five_thirty = timezone(timedelta(hours=5, minutes=30))
    created_at = datetime(2026, 3, 1, 23, 45, 12, 345678, tzinfo=plus_five_thirty)
    account_id = AccountId(new_id())
    async with uow() as tx:
        await tx.accounts.create(
            account_id=account_id,
            address=new_address(),
            kind=AccountKind.ANONYMOUS,
            now=created_at,
        )
        await tx.commit()
    async with uow() as tx:
        stored = await tx.accounts.get(account_id)
    assert stored is not None
    assert_utc(stored.created_at, created_at)
    assert stored.created_at.astimezone(UTC) == datetime(2026, 3, 1, 18, 15, 12, 345678, UTC)


# --- devices -----------------------------------------------------------------------


async def test_device_is_found_by_key_and_by_token(uow: UnitOfWork) -> None:
    async with uow() as tx:
        account = await make_account(tx)
        device = await make_device(tx, account.id)
        token = new_hmac()
        await tx.devices.add_token(device.id, token, now())
        await tx.commit()

    async with uow() as tx:
        found = await tx.devices.by_ed25519_key(device.ed25519_key)
        assert found == device
        assert found is not None
        assert_utc(found.created_at, device.created_at)
        assert await tx.devices.by_token(token) == device
        assert await tx.devices.by_token(new_hmac()) is None
        assert await tx.devices.by_ed25519_key(new_ed25519_key()) is None


async def test_a_device_may_hold_several_tokens(uow: UnitOfWork) -> None:
    async with uow() as tx:
        account = await make_account(tx)
        device = await make_device(tx, account.id)
        tokens = [new_hmac() for _ in range(3)]
        for token in tokens:
            await tx.devices.add_token(device.id, token, now())
        await tx.commit()
    async with uow() as tx:
        for token in tokens:
            assert await tx.devices.by_token(token) == device


async def test_ids_of_account_lists_exactly_that_accounts_devices(uow: UnitOfWork) -> None:
    async with uow() as tx:
        alice = await make_account(tx)
        bob = await make_account(tx)
        alice_devices = [await make_device(tx, alice.id) for _ in range(3)]
        bob_device = await make_device(tx, bob.id)
        lonely = await make_account(tx)
        await tx.commit()
    async with uow() as tx:
        assert await tx.devices.ids_of_account(alice.id) == sorted(d.id for d in alice_devices)
        assert await tx.devices.ids_of_account(bob.id) == [bob_device.id]
        assert await tx.devices.ids_of_account(lonely.id) == []


# --- challenges --------------------------------------------------------------------


async def test_challenge_is_consumed_once_only(uow: UnitOfWork) -> None:
    challenge = new_hmac()
    issued = now()
    async with uow() as tx:
        await tx.challenges.add(challenge, issued + timedelta(minutes=5))
        await tx.commit()
    async with uow() as tx:
        assert await tx.challenges.consume(challenge, issued + timedelta(minutes=4))
        await tx.commit()
    async with uow() as tx:
        assert not await tx.challenges.consume(challenge, issued + timedelta(minutes=4))
        assert not await tx.challenges.consume(new_hmac(), issued)


async def test_challenge_is_not_accepted_once_expired(uow: UnitOfWork) -> None:
    expires = now() + timedelta(seconds=60)
    later = expires + timedelta(hours=2)
    at_expiry, after_expiry, long_lived = new_hmac(), new_hmac(), new_hmac()
    async with uow() as tx:
        await tx.challenges.add(at_expiry, expires)
        await tx.challenges.add(after_expiry, expires)
        await tx.challenges.add(long_lived, later)
        await tx.commit()
    async with uow() as tx:
        assert not await tx.challenges.consume(at_expiry, expires)
        assert not await tx.challenges.consume(after_expiry, expires + timedelta(hours=1))
        await tx.commit()
    async with uow() as tx:
        # Sweeping the expired ones kept a challenge that had not expired yet.
        assert await tx.challenges.consume(long_lived, later - timedelta(microseconds=1))


async def test_consumed_challenge_comes_back_if_the_transaction_rolls_back(
    uow: UnitOfWork,
) -> None:
    challenge = new_hmac()
    expires = now() + timedelta(minutes=5)
    async with uow() as tx:
        await tx.challenges.add(challenge, expires)
        await tx.commit()
    async with uow() as tx:
        assert await tx.challenges.consume(challenge, now())
        # no commit: the login failed later on
    async with uow() as tx:
        assert await tx.challenges.consume(challenge, now())


# --- pass codes --------------------------------------------------------------------


async def test_pass_codes_are_stored_and_listed_newest_first(uow: UnitOfWork) -> None:
    async with uow() as tx:
        owner = await make_account(tx)
        other = await make_account(tx)
        older = pass_code(owner)
        older = replace(older, created_at=older.created_at - timedelta(minutes=1))
        newer = pass_code(owner, bound_to=new_address("beta.test"))
        for code in (older, newer, pass_code(other)):
            await tx.codes.add(code)
        await tx.commit()
    async with uow() as tx:
        listed = await tx.codes.list_for(owner.id)
    assert listed == [newer, older]
    for stored, original in zip(listed, [newer, older], strict=True):
        assert_utc(stored.created_at, original.created_at)
        assert_utc(stored.expires_at, original.expires_at)
        assert stored.used_at is None


async def test_live_excludes_expired_used_and_withdrawn_codes(uow: UnitOfWork) -> None:
    async with uow() as tx:
        owner = await make_account(tx)
        live = pass_code(owner)
        short = pass_code(owner, ttl=60)
        used = pass_code(owner)
        withdrawn_a, withdrawn_b = pass_code(owner), pass_code(owner)
        for code in (live, short, used, withdrawn_a, withdrawn_b):
            await tx.codes.add(code)
        initiator = new_address("beta.test")
        used_at = now()
        await tx.codes.set_state([used.id], CodeState.USED, used_by=initiator, at=used_at)
        await tx.codes.set_state([withdrawn_a.id, withdrawn_b.id], CodeState.WITHDRAWN)
        await tx.codes.set_state([], CodeState.WITHDRAWN)  # nothing to do, no error
        await tx.commit()

    async with uow() as tx:
        assert {c.id for c in await tx.codes.live(owner.id, now())} == {live.id, short.id}
        assert {c.id for c in await tx.codes.live(owner.id, short.expires_at)} == {live.id}
        states = {c.id: c for c in await tx.codes.list_for(owner.id)}
    assert states[used.id].state is CodeState.USED
    assert states[used.id].used_by == initiator
    assert_utc(states[used.id].used_at, used_at)
    assert states[withdrawn_a.id].state is CodeState.WITHDRAWN
    assert states[withdrawn_b.id].state is CodeState.WITHDRAWN
    assert states[withdrawn_a.id].used_by is None
    assert states[live.id].state is CodeState.LIVE
    # An expired code is still stored as live; its effective state says expired.
    assert states[short.id].effective_state(short.expires_at) is CodeState.EXPIRED


async def test_budget_rows_per_owner_and_pool(uow: UnitOfWork) -> None:
    async with uow() as tx:
        owner = await make_account(tx)
        other_owner = await make_account(tx)
        bound = str(new_address("beta.test"))
        assert await tx.codes.budget_spent(owner.id, OPEN_POOL) == 0
        await tx.codes.set_budget_spent(owner.id, OPEN_POOL, 3)
        await tx.codes.set_budget_spent(owner.id, bound, 1)
        await tx.commit()
    async with uow() as tx:
        assert await tx.codes.budget_spent(owner.id, OPEN_POOL) == 3
        assert await tx.codes.budget_spent(owner.id, bound) == 1
        assert await tx.codes.budget_spent(other_owner.id, OPEN_POOL) == 0
        await tx.codes.set_budget_spent(owner.id, OPEN_POOL, 7)  # an existing row changes
        await tx.commit()
    async with uow() as tx:
        assert await tx.codes.budget_spent(owner.id, OPEN_POOL) == 7
        await tx.codes.set_budget_spent(owner.id, OPEN_POOL, 0)  # a new period
        assert await tx.codes.budget_spent(owner.id, OPEN_POOL) == 0
        await tx.codes.set_budget_spent(owner.id, OPEN_POOL, 4)
        await tx.commit()
    async with uow() as tx:
        assert await tx.codes.budget_spent(owner.id, OPEN_POOL) == 4
        assert await tx.codes.budget_spent(owner.id, bound) == 1


async def test_lock_owner_serialises_concurrent_budget_updates(uow: UnitOfWork) -> None:
    """Redemptions read, then write, the spent budget; under lock_owner no
    concurrent failure is lost (a lost one would give an attacker free guesses)."""
    async with uow() as tx:
        owner = await make_account(tx)
        await tx.commit()

    async def one_failed_redemption() -> None:
        async with uow() as tx:
            await tx.codes.lock_owner(owner.id)
            spent = await tx.codes.budget_spent(owner.id, OPEN_POOL)
            await tx.codes.set_budget_spent(owner.id, OPEN_POOL, spent + 1)
            await tx.commit()

    await asyncio.gather(*(one_failed_redemption() for _ in range(CONCURRENT_WRITERS)))
    async with uow() as tx:
        assert await tx.codes.budget_spent(owner.id, OPEN_POOL) == CONCURRENT_WRITERS


# --- connections and conversations ------------------------------------------------


async def test_connection_is_stored_once_and_found_every_way(uow: UnitOfWork) -> None:
    remote = new_address("beta.test")
    connected_at = now()
    async with uow() as tx:
        owner = await make_account(tx)
        conversation_id = await make_conversation(tx)
        contact = Contact(owner.id, remote, "Remote Bob", conversation_id, connected_at)
        assert await tx.connections.add(contact)
        again = Contact(owner.id, remote, "Someone Else", await make_conversation(tx), now())
        assert not await tx.connections.add(again)
        # Still usable after the refused insert.
        other_conversation = await make_conversation(tx)
        other = Contact(owner.id, new_address("gamma.test"), None, other_conversation, now())
        assert await tx.connections.add(other)
        await tx.commit()

    async with uow() as tx:
        stored = await tx.connections.get(owner.id, remote)
        assert stored == contact  # a remote peer keeps the name its node told us
        assert stored is not None
        assert_utc(stored.connected_at, connected_at)
        assert await tx.connections.get(owner.id, new_address("beta.test")) is None
        assert await tx.connections.by_conversation(owner.id, conversation_id) == contact
        assert await tx.connections.by_conversation(owner.id, other_conversation) == other
        assert await tx.connections.by_conversation(owner.id, ConversationId(new_id())) is None
        assert await tx.connections.list_for(owner.id) == [contact, other]


async def test_connections_are_per_owner(uow: UnitOfWork) -> None:
    world = await make_world(uow)
    async with uow() as tx:
        mine = Contact(world.alice.id, world.bob.address, None, world.conversation_id, now())
        theirs = Contact(world.bob.id, world.alice.address, None, world.conversation_id, now())
        assert await tx.connections.add(mine)
        assert await tx.connections.add(theirs)
        await tx.commit()
    async with uow() as tx:
        assert await tx.connections.list_for(world.alice.id) == [mine]
        assert await tx.connections.list_for(world.bob.id) == [theirs]
        assert await tx.connections.by_conversation(world.bob.id, world.conversation_id) == theirs
        assert await tx.connections.get(world.alice.id, world.alice.address) is None


async def test_local_contact_shows_the_peers_current_display_name(uow: UnitOfWork) -> None:
    world = await make_world(uow)
    async with uow() as tx:
        await tx.accounts.set_display_name(world.bob.id, "Bob")
        contact = Contact(world.alice.id, world.bob.address, "Bob", world.conversation_id, now())
        assert await tx.connections.add(contact)
        await tx.commit()
    async with uow() as tx:
        await tx.accounts.set_display_name(world.bob.id, "Robert")
        await tx.commit()
    async with uow() as tx:
        stored = await tx.connections.get(world.alice.id, world.bob.address)
        assert stored is not None and stored.display_name == "Robert"
        assert [c.display_name for c in await tx.connections.list_for(world.alice.id)] == ["Robert"]


async def test_contacts_are_listed_in_the_order_they_were_connected(uow: UnitOfWork) -> None:
    base = now()
    async with uow() as tx:
        owner = await make_account(tx)
        conversation_id = await make_conversation(tx)
        peers = [new_address("beta.test") for _ in range(4)]
        contacts = [
            Contact(owner.id, peer, None, conversation_id, base + timedelta(seconds=i))
            for i, peer in enumerate(peers)
        ]
        for contact in reversed(contacts):
            assert await tx.connections.add(contact)
        await tx.commit()
    async with uow() as tx:
        assert await tx.connections.list_for(owner.id) == contacts


# --- messages ----------------------------------------------------------------------


async def test_seq_is_allocated_1_2_3_per_conversation(uow: UnitOfWork) -> None:
    async with uow() as tx:
        first = await make_conversation(tx)
        second = await make_conversation(tx)
        assert [await tx.messages.next_seq(first) for _ in range(3)] == [1, 2, 3]
        assert await tx.messages.next_seq(second) == 1
        await tx.commit()
    async with uow() as tx:
        assert await tx.messages.next_seq(first) == 4
        # leaves without commit
    async with uow() as tx:
        # A rolled-back allocation leaves no gap in the conversation's order.
        assert await tx.messages.next_seq(first) == 4
        assert await tx.messages.next_seq(second) == 2


async def test_message_is_stored_and_read_back_unchanged(uow: UnitOfWork) -> None:
    world = await make_world(uow)
    body = "ciphertext or plain: " + "é" * 1000 + " 😀 \n\t" + "x" * 60_000
    async with uow() as tx:
        message = await send(
            tx, world.conversation_id, world.alice, world.alice_device, world.bob.address, body
        )
        await tx.commit()
    async with uow() as tx:
        stored = await tx.messages.get(message.id)
        assert stored == message
        assert stored is not None
        assert_utc(stored.sent_at, message.sent_at)
        assert stored.status is DeliveryStatus.ACCEPTED
        assert await tx.messages.get(MessageId(new_id())) is None


async def test_client_txn_id_makes_a_retried_send_idempotent(uow: UnitOfWork) -> None:
    world = await make_world(uow)
    async with uow() as tx:
        original = await send(
            tx,
            world.conversation_id,
            world.alice,
            world.alice_device,
            world.bob.address,
            "once",
            "txn-1",
        )
        await tx.commit()

    async with uow() as tx:
        assert await tx.messages.by_txn(world.alice_device.id, "txn-1") == original
        retry = message_for(
            world.conversation_id,
            await tx.messages.next_seq(world.conversation_id),
            world.alice,
            world.alice_device,
            world.bob.address,
            "once",
        )
        assert not await tx.messages.add(retry, "txn-1")
        # The transaction is still usable: another send goes through.
        other = message_for(
            world.conversation_id,
            retry.seq + 1,
            world.alice,
            world.alice_device,
            world.bob.address,
            "twice",
        )
        assert await tx.messages.add(other, "txn-2")
        await tx.commit()

    async with uow() as tx:
        assert await tx.messages.get(retry.id) is None
        assert await tx.messages.by_txn(world.alice_device.id, "txn-1") == original
        assert await tx.messages.by_txn(world.alice_device.id, "txn-2") == other
        assert await tx.messages.by_txn(world.bob_device.id, "txn-1") is None
        history = await tx.messages.history(world.conversation_id, 0, 10)
        assert [m.body for m in history] == ["once", "twice"]


async def test_txn_ids_are_per_device_and_absent_ones_never_clash(uow: UnitOfWork) -> None:
    world = await make_world(uow)
    async with uow() as tx:
        from_alice = await send(
            tx,
            world.conversation_id,
            world.alice,
            world.alice_device,
            world.bob.address,
            client_txn_id="same",
        )
        from_bob = await send(
            tx,
            world.conversation_id,
            world.bob,
            world.bob_device,
            world.alice.address,
            client_txn_id="same",
        )
        # Without a client_txn_id, any number of messages from one device are kept.
        plain = [
            await send(
                tx,
                world.conversation_id,
                world.alice,
                world.alice_device,
                world.bob.address,
                f"plain {i}",
            )
            for i in range(3)
        ]
        await tx.commit()
    async with uow() as tx:
        assert await tx.messages.by_txn(world.alice_device.id, "same") == from_alice
        assert await tx.messages.by_txn(world.bob_device.id, "same") == from_bob
        for message in plain:
            assert await tx.messages.get(message.id) == message


async def test_history_pages_in_seq_order(uow: UnitOfWork) -> None:
    world = await make_world(uow)
    async with uow() as tx:
        other_conversation = await make_conversation(tx)
        sent = []
        for i in range(7):
            sender, device, to = (
                (world.alice, world.alice_device, world.bob.address)
                if i % 2 == 0
                else (world.bob, world.bob_device, world.alice.address)
            )
            sent.append(await send(tx, world.conversation_id, sender, device, to, f"m{i}"))
        await send(tx, other_conversation, world.alice, world.alice_device, world.bob.address)
        await tx.commit()

    pages: list[list[Message]] = []
    after = 0
    async with uow() as tx:
        while page := await tx.messages.history(world.conversation_id, after, 3):
            pages.append(page)
            after = page[-1].seq
    assert [[m.seq for m in page] for page in pages] == [[1, 2, 3], [4, 5, 6], [7]]
    assert [m for page in pages for m in page] == sent


async def test_fan_out_assigns_strictly_increasing_positions_per_device(
    uow: UnitOfWork,
) -> None:
    world = await make_world(uow)
    async with uow() as tx:
        alice_second = await make_device(tx, world.alice.id)
        await tx.commit()
    everyone = [world.bob_device.id, world.alice_device.id, alice_second.id]

    async with uow() as tx:
        first = await send(
            tx, world.conversation_id, world.alice, world.alice_device, world.bob.address
        )
        events = await tx.messages.fan_out(first, everyone)
        await tx.commit()
    assert {e.device_id: e.position for e in events} == {d: 1 for d in everyone}
    assert all(e.message == first for e in events)

    async with uow() as tx:
        second = await send(
            tx, world.conversation_id, world.alice, world.alice_device, world.bob.address
        )
        # Only Bob's device receives this one; the others' positions do not move.
        assert await tx.messages.fan_out(second, [world.bob_device.id]) == [
            StreamEvent(world.bob_device.id, 2, second)
        ]
        third = await send(
            tx, world.conversation_id, world.bob, world.bob_device, world.alice.address
        )
        events = await tx.messages.fan_out(third, everyone)
        await tx.commit()
    assert {e.device_id: e.position for e in events} == {
        world.bob_device.id: 3,
        world.alice_device.id: 2,
        alice_second.id: 2,
    }
    async with uow() as tx:
        assert await tx.messages.fan_out(first, []) == []


async def test_stream_pages_from_since_in_position_order(uow: UnitOfWork) -> None:
    world = await make_world(uow)
    async with uow() as tx:
        sent = []
        for i in range(5):
            message = await send(
                tx,
                world.conversation_id,
                world.alice,
                world.alice_device,
                world.bob.address,
                f"m{i}",
            )
            await tx.messages.fan_out(message, [world.bob_device.id, world.alice_device.id])
            sent.append(message)
        await tx.commit()

    async with uow() as tx:
        pages = []
        since = 0
        while page := await tx.messages.stream(world.bob_device.id, since, 2):
            pages.append(page)
            since = page[-1].position
        assert await tx.messages.stream(world.bob_device.id, 5, 2) == []
        assert await tx.messages.stream(world.bob_device.id, 99, 2) == []
        resumed = await tx.messages.stream(world.bob_device.id, 3, 100)
        stranger = await make_device(tx, world.bob.id)
        assert await tx.messages.stream(stranger.id, 0, 100) == []

    assert [[e.position for e in page] for page in pages] == [[1, 2], [3, 4], [5]]
    flat = [e for page in pages for e in page]
    assert [e.message for e in flat] == sent
    assert all(e.device_id == world.bob_device.id for e in flat)
    assert [e.position for e in resumed] == [4, 5]
    for event, message in zip(flat, sent, strict=True):
        assert_utc(event.message.sent_at, message.sent_at)


# --- transactions ------------------------------------------------------------------


async def test_leaving_without_commit_persists_nothing(uow: UnitOfWork) -> None:
    world = await make_world(uow)
    async with uow() as tx:
        ghost = await make_account(tx)
        ghost_device = await make_device(tx, ghost.id)
        token = new_hmac()
        await tx.devices.add_token(ghost_device.id, token, now())
        await tx.accounts.set_display_name(world.alice.id, "Never")
        code = pass_code(world.alice)
        await tx.codes.add(code)
        await tx.codes.set_budget_spent(world.alice.id, OPEN_POOL, 5)
        conversation_id = await make_conversation(tx)
        contact = Contact(world.alice.id, ghost.address, None, conversation_id, now())
        assert await tx.connections.add(contact)
        message = await send(
            tx,
            world.conversation_id,
            world.alice,
            world.alice_device,
            world.bob.address,
            client_txn_id="ghost",
        )
        await tx.messages.fan_out(message, [world.bob_device.id])
        # leaves without commit

    async with uow() as tx:
        assert await tx.accounts.get(ghost.id) is None
        assert await tx.accounts.by_address(ghost.address) is None
        assert await tx.devices.by_ed25519_key(ghost_device.ed25519_key) is None
        assert await tx.devices.by_token(token) is None
        alice = await tx.accounts.get(world.alice.id)
        assert alice is not None and alice.display_name is None
        assert await tx.codes.list_for(world.alice.id) == []
        assert await tx.codes.budget_spent(world.alice.id, OPEN_POOL) == 0
        assert await tx.connections.list_for(world.alice.id) == []
        assert await tx.messages.get(message.id) is None
        assert await tx.messages.by_txn(world.alice_device.id, "ghost") is None
        assert await tx.messages.stream(world.bob_device.id, 0, 10) == []
        # Neither the seq nor the stream position was used up.
        retried = await send(
            tx,
            world.conversation_id,
            world.alice,
            world.alice_device,
            world.bob.address,
            client_txn_id="ghost",
        )
        assert retried.seq == 1
        events = await tx.messages.fan_out(retried, [world.bob_device.id])
        assert [e.position for e in events] == [1]


async def test_an_error_inside_the_transaction_rolls_it_back(uow: UnitOfWork) -> None:
    address = new_address()
    with pytest.raises(RuntimeError, match="boom"):
        async with uow() as tx:
            await make_account(tx, address)
            raise RuntimeError("boom")
    async with uow() as tx:
        assert await tx.accounts.by_address(address) is None
        # The address is free to take.
        await make_account(tx, address)
        await tx.commit()
    async with uow() as tx:
        assert await tx.accounts.by_address(address) is not None


async def test_uncommitted_writes_are_invisible_to_other_transactions(
    uow: UnitOfWork, backend: str
) -> None:
    if backend == "sqlite":
        pytest.skip("SQLite runs one transaction at a time (one pooled connection)")
    async with uow() as writer:
        account = await make_account(writer)
        async with uow() as reader:
            assert await reader.accounts.get(account.id) is None
        await writer.commit()
    async with uow() as reader:
        assert await reader.accounts.get(account.id) == account


# --- concurrency -------------------------------------------------------------------


async def _stored_messages(uow: UnitOfWork, world: World, count: int) -> list[Message]:
    async with uow() as tx:
        sent = [
            await send(
                tx,
                world.conversation_id,
                world.alice,
                world.alice_device,
                world.bob.address,
                f"m{i}",
            )
            for i in range(count)
        ]
        await tx.commit()
    return sent


async def _fan_out_alone(
    uow: UnitOfWork, message: Message, devices: Sequence[DeviceId]
) -> list[StreamEvent]:
    async with uow() as tx:
        events = await tx.messages.fan_out(message, devices)
        await tx.commit()
    return events


async def test_concurrent_fan_outs_to_one_device_get_positions_1_to_n(uow: UnitOfWork) -> None:
    world = await make_world(uow)
    sent = await _stored_messages(uow, world, CONCURRENT_WRITERS)
    results = await asyncio.gather(*(_fan_out_alone(uow, m, [world.bob_device.id]) for m in sent))
    positions = sorted(e.position for events in results for e in events)
    assert positions == list(range(1, CONCURRENT_WRITERS + 1))

    async with uow() as tx:
        stream = await tx.messages.stream(world.bob_device.id, 0, 100)
    assert [e.position for e in stream] == list(range(1, CONCURRENT_WRITERS + 1))
    assert sorted(e.message.id for e in stream) == sorted(m.id for m in sent)
    returned = {e.message.id: e.position for events in results for e in events}
    assert {e.message.id: e.position for e in stream} == returned


async def test_concurrent_fan_outs_in_opposite_device_order_do_not_deadlock(
    uow: UnitOfWork,
) -> None:
    world = await make_world(uow)
    sent = await _stored_messages(uow, world, CONCURRENT_WRITERS)
    forward = [world.alice_device.id, world.bob_device.id]
    results = await asyncio.gather(
        *(
            _fan_out_alone(uow, m, forward if i % 2 == 0 else forward[::-1])
            for i, m in enumerate(sent)
        )
    )
    for device_id in forward:
        positions = sorted(e.position for ev in results for e in ev if e.device_id == device_id)
        assert positions == list(range(1, CONCURRENT_WRITERS + 1))


async def test_concurrent_senders_never_fork_the_conversation_order(uow: UnitOfWork) -> None:
    world = await make_world(uow)

    async def send_one(i: int) -> tuple[Message, list[StreamEvent]]:
        sender, device, to = (
            (world.alice, world.alice_device, world.bob.address)
            if i % 2 == 0
            else (world.bob, world.bob_device, world.alice.address)
        )
        async with uow() as tx:
            message = await send(
                tx, world.conversation_id, sender, device, to, f"m{i}", client_txn_id=f"t{i}"
            )
            events = await tx.messages.fan_out(
                message, [world.alice_device.id, world.bob_device.id]
            )
            await tx.commit()
        return message, events

    results = await asyncio.gather(*(send_one(i) for i in range(CONCURRENT_WRITERS)))
    expected = list(range(1, CONCURRENT_WRITERS + 1))
    assert sorted(message.seq for message, _ in results) == expected
    async with uow() as tx:
        history = await tx.messages.history(world.conversation_id, 0, 100)
        alice_stream = await tx.messages.stream(world.alice_device.id, 0, 100)
        bob_stream = await tx.messages.stream(world.bob_device.id, 0, 100)
    assert [m.seq for m in history] == expected
    # Both devices see the one conversation order.
    for stream in (alice_stream, bob_stream):
        assert [e.position for e in stream] == expected
        assert [e.message.seq for e in stream] == expected
