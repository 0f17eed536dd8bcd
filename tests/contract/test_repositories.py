"""The storage port contract (``services/ports.py``), run against every backend:
a SQLite file and a real PostgreSQL, through ``Database.uow``."""

from __future__ import annotations

import asyncio
import base64
import os
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from uuid import uuid4

import pytest
from sqlalchemy import text

from openmessenger.core.envelope import (
    AppendResult,
    DeliveryStatus,
    Encryption,
    Message,
    SendRequest,
    StreamEvent,
)
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
from openmessenger.core.revisions import EDIT_MEDIA_TYPE, RevisionAppend
from openmessenger.services.ports import Transaction, UnitOfWork
from openmessenger.storage.database import Database

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


async def connect(tx: Transaction, a: Account, b: Account) -> ConversationId:
    """A direct conversation between two local accounts, with a connection each way."""
    conversation_id = await make_conversation(tx)
    for owner, peer in ((a, b), (b, a)):
        contact = Contact(owner.id, peer.address, None, conversation_id, now())
        assert await tx.connections.add(contact)
    return conversation_id


def send_request(
    sender: Account,
    device: Device,
    recipient: Address,
    body: str = "hello",
    client_txn_id: str | None = None,
    *,
    sent_at: datetime | None = None,
) -> SendRequest:
    return SendRequest(
        message_id=MessageId(new_id()),
        sender_account=sender.id,
        sender=sender.address,
        sender_device=device.id,
        recipient=recipient,
        body=body,
        client_txn_id=client_txn_id,
        sent_at=sent_at or now(),
    )


def accepted(result: AppendResult) -> Message:
    """The message a result stored (failing if it stored none)."""
    assert result.created, result
    assert result.message is not None
    return result.message


async def send(
    tx: Transaction,
    sender: Account,
    device: Device,
    recipient: Address,
    body: str = "hello",
    client_txn_id: str | None = None,
) -> Message:
    """A lone send, as the message log writes one when nothing else is waiting."""
    request = send_request(sender, device, recipient, body, client_txn_id)
    (result,) = await tx.messages.append_batch([request])
    return accepted(result)


def positions(events: Iterable[StreamEvent]) -> dict[DeviceId, int]:
    return {e.device_id: e.position for e in events}


def events_by_device(results: Iterable[AppendResult]) -> dict[DeviceId, list[StreamEvent]]:
    """Every event the results hand back, per device, in position order."""
    found: dict[DeviceId, list[StreamEvent]] = {}
    for result in results:
        for event in result.events:
            assert event.message == result.message
            found.setdefault(event.device_id, []).append(event)
    return {d: sorted(events, key=lambda e: e.position) for d, events in found.items()}


async def read_streams(
    tx: Transaction, device_ids: Iterable[DeviceId], since: int = 0
) -> dict[DeviceId, list[StreamEvent]]:
    return {d: await tx.messages.stream(d, since, 1000) for d in device_ids}


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
    """Two accounts, a device each, and a conversation between them (committed);
    unless told otherwise, each holds a connection to the other."""

    alice: Account
    bob: Account
    alice_device: Device
    bob_device: Device
    conversation_id: ConversationId


async def make_world(uow: UnitOfWork, *, connected: bool = True) -> World:
    world = World()
    async with uow() as tx:
        world.alice = await make_account(tx)
        world.bob = await make_account(tx)
        world.alice_device = await make_device(tx, world.alice.id)
        world.bob_device = await make_device(tx, world.bob.id)
        if connected:
            world.conversation_id = await connect(tx, world.alice, world.bob)
        else:
            world.conversation_id = await make_conversation(tx)
        await tx.commit()
    return world


async def add_device(uow: UnitOfWork, account: Account) -> Device:
    async with uow() as tx:
        device = await make_device(tx, account.id)
        await tx.commit()
    return device


async def add_peer(uow: UnitOfWork, of: Account) -> tuple[Account, Device, ConversationId]:
    """Another local account with one device, connected both ways to ``of``."""
    async with uow() as tx:
        peer = await make_account(tx)
        device = await make_device(tx, peer.id)
        conversation_id = await connect(tx, of, peer)
        await tx.commit()
    return peer, device, conversation_id


@pytest.fixture
def uow(database: Database) -> UnitOfWork:
    return database.uow


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
    world = await make_world(uow, connected=False)
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
    world = await make_world(uow, connected=False)
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
    world = await make_world(uow)
    carol, _, with_carol = await add_peer(uow, world.alice)
    alice, bob = world.alice, world.bob
    async with uow() as tx:
        results = await tx.messages.append_batch(
            [
                send_request(alice, world.alice_device, bob.address, "b1"),
                send_request(alice, world.alice_device, carol.address, "c1"),
                send_request(bob, world.bob_device, alice.address, "b2"),
                send_request(alice, world.alice_device, bob.address, "b3"),
            ]
        )
        assert [(accepted(r).conversation_id, accepted(r).seq) for r in results] == [
            (world.conversation_id, 1),
            (with_carol, 1),
            (world.conversation_id, 2),
            (world.conversation_id, 3),
        ]
        await tx.commit()
    async with uow() as tx:
        assert (await send(tx, alice, world.alice_device, bob.address)).seq == 4
        # leaves without commit
    async with uow() as tx:
        # A rolled-back allocation leaves no gap in the conversation's order.
        assert (await send(tx, alice, world.alice_device, bob.address, "b4")).seq == 4
        assert (await send(tx, alice, world.alice_device, carol.address, "c2")).seq == 2
        await tx.commit()
    async with uow() as tx:
        bob_history = await tx.messages.history(world.conversation_id, 0, 100)
        carol_history = await tx.messages.history(with_carol, 0, 100)
    assert [(m.seq, m.body) for m in bob_history] == [(1, "b1"), (2, "b2"), (3, "b3"), (4, "b4")]
    assert [(m.seq, m.body) for m in carol_history] == [(1, "c1"), (2, "c2")]


async def test_message_is_stored_and_read_back_unchanged(uow: UnitOfWork) -> None:
    world = await make_world(uow)
    body = "ciphertext or plain: " + "é" * 1000 + " 😀 \n\t" + "x" * 60_000
    sent_at = datetime(2026, 3, 1, 23, 45, 12, 345678, tzinfo=timezone(timedelta(hours=5)))
    request = send_request(
        world.alice, world.alice_device, world.bob.address, body, "txn", sent_at=sent_at
    )
    async with uow() as tx:
        (result,) = await tx.messages.append_batch([request])
        await tx.commit()
    message = accepted(result)
    assert message == Message(
        id=request.message_id,
        conversation_id=world.conversation_id,
        seq=1,
        sender=world.alice.address,
        sender_device=world.alice_device.id,
        recipient=world.bob.address,
        body=body,
        sent_at=sent_at,
        status=DeliveryStatus.DELIVERED,
    )
    async with uow() as tx:
        stored = await tx.messages.get(message.id)
        assert stored == message
        assert stored is not None
        assert_utc(stored.sent_at, sent_at)
        assert stored.status is DeliveryStatus.DELIVERED
        assert await tx.messages.get(MessageId(new_id())) is None


async def test_an_empty_batch_appends_nothing(uow: UnitOfWork) -> None:
    world = await make_world(uow)
    async with uow() as tx:
        assert await tx.messages.append_batch([]) == []
        await tx.commit()
    async with uow() as tx:
        assert await tx.messages.history(world.conversation_id, 0, 10) == []
        assert (await send(tx, world.alice, world.alice_device, world.bob.address)).seq == 1


async def test_client_txn_id_makes_a_retried_send_idempotent(uow: UnitOfWork) -> None:
    world = await make_world(uow)
    alice, device, bob = world.alice, world.alice_device, world.bob.address
    async with uow() as tx:
        original = await send(tx, alice, device, bob, "once", "txn-1")
        await tx.commit()

    # The retry carries a fresh message id and, here, even another body.
    retry = send_request(alice, device, bob, "once, edited", "txn-1")
    async with uow() as tx:
        retried, other = await tx.messages.append_batch(
            [retry, send_request(alice, device, bob, "twice", "txn-2")]
        )
        assert retried == AppendResult(original, created=False)
        assert retried.events == ()
        assert accepted(other).seq == 2
        await tx.commit()

    async with uow() as tx:
        assert await tx.messages.get(retry.message_id) is None
        history = await tx.messages.history(world.conversation_id, 0, 10)
        assert [m.body for m in history] == ["once", "twice"]
        # The retry joined no stream.
        bob_stream = await tx.messages.stream(world.bob_device.id, 0, 10)
        assert [(e.position, e.message) for e in bob_stream] == [(1, original), (2, history[1])]
        # Retried again later, on its own, it is still the first message.
        assert await tx.messages.append_batch([retry]) == [AppendResult(original, created=False)]


async def test_txn_ids_are_per_device_and_absent_ones_never_clash(uow: UnitOfWork) -> None:
    world = await make_world(uow)
    alice, bob = world.alice, world.bob
    from_alice = send_request(alice, world.alice_device, bob.address, "a", "same")
    from_bob = send_request(bob, world.bob_device, alice.address, "b", "same")
    # Without a client_txn_id, any number of messages from one device are kept.
    plain = [send_request(alice, world.alice_device, bob.address, f"plain {i}") for i in range(3)]
    async with uow() as tx:
        results = await tx.messages.append_batch([from_alice, from_bob, *plain])
        await tx.commit()
    sent = [accepted(r) for r in results]
    assert [m.id for m in sent] == [r.message_id for r in [from_alice, from_bob, *plain]]
    assert [m.seq for m in sent] == [1, 2, 3, 4, 5]

    async with uow() as tx:
        retries = await tx.messages.append_batch(
            [
                send_request(bob, world.bob_device, alice.address, "b?", "same"),
                send_request(alice, world.alice_device, bob.address, "a?", "same"),
            ]
        )
        assert retries == [
            AppendResult(sent[1], created=False),
            AppendResult(sent[0], created=False),
        ]
        for message in sent:
            assert await tx.messages.get(message.id) == message


async def test_history_pages_in_seq_order(uow: UnitOfWork) -> None:
    world = await make_world(uow)
    carol, _, with_carol = await add_peer(uow, world.alice)
    requests = []
    for i in range(7):
        sender, device, to = (
            (world.alice, world.alice_device, world.bob.address)
            if i % 2 == 0
            else (world.bob, world.bob_device, world.alice.address)
        )
        requests.append(send_request(sender, device, to, f"m{i}"))
    elsewhere = send_request(world.alice, world.alice_device, carol.address, "elsewhere")
    async with uow() as tx:
        first = await tx.messages.append_batch(requests[:3])
        await tx.commit()
    async with uow() as tx:
        rest = await tx.messages.append_batch([requests[3], elsewhere, *requests[4:]])
        await tx.commit()
    sent = [accepted(r) for r in first + rest if accepted(r).conversation_id != with_carol]

    pages: list[list[Message]] = []
    after = 0
    async with uow() as tx:
        while page := await tx.messages.history(world.conversation_id, after, 3):
            pages.append(page)
            after = page[-1].seq
        assert [m.body for m in await tx.messages.history(with_carol, 0, 3)] == ["elsewhere"]
        assert await tx.messages.history(world.conversation_id, 7, 3) == []
    assert [[m.seq for m in page] for page in pages] == [[1, 2, 3], [4, 5, 6], [7]]
    assert [m for page in pages for m in page] == sent
    assert [m.body for m in sent] == [f"m{i}" for i in range(7)]


async def test_positions_are_strictly_increasing_per_device(uow: UnitOfWork) -> None:
    """A message joins the streams of every device of the recipient's account and
    of the sender's other devices, each at that device's next position."""
    world = await make_world(uow)
    alice_second = await add_device(uow, world.alice)
    alice, bob = world.alice, world.bob
    a1, a2, b1 = world.alice_device.id, alice_second.id, world.bob_device.id

    async with uow() as tx:
        (first,) = await tx.messages.append_batch(
            [send_request(alice, world.alice_device, bob.address, "first")]
        )
        await tx.commit()
    # Not the sending device: it holds the message already.
    assert positions(first.events) == {b1: 1, a2: 1}
    assert all(e.message == accepted(first) for e in first.events)

    async with uow() as tx:
        from_bob, from_second = await tx.messages.append_batch(
            [
                send_request(bob, world.bob_device, alice.address, "from bob"),
                send_request(alice, alice_second, bob.address, "from alice's second"),
            ]
        )
        await tx.commit()
    assert positions(from_bob.events) == {a1: 1, a2: 2}
    assert positions(from_second.events) == {b1: 2, a1: 2}

    # A device added later starts at 1; the others' positions go on.
    bob_second = await add_device(uow, bob)
    async with uow() as tx:
        (last,) = await tx.messages.append_batch(
            [send_request(alice, world.alice_device, bob.address, "last")]
        )
        await tx.commit()
    assert positions(last.events) == {b1: 3, bob_second.id: 1, a2: 3}

    async with uow() as tx:
        streams = await read_streams(tx, [a1, a2, b1, bob_second.id])
    assert {d: [e.message.body for e in s] for d, s in streams.items()} == {
        a1: ["from bob", "from alice's second"],
        a2: ["first", "from bob", "last"],
        b1: ["first", "from alice's second", "last"],
        bob_second.id: ["last"],
    }
    assert streams == events_by_device([first, from_bob, from_second, last])


async def test_stream_pages_from_since_in_position_order(uow: UnitOfWork) -> None:
    world = await make_world(uow)
    requests = [
        send_request(world.alice, world.alice_device, world.bob.address, f"m{i}") for i in range(5)
    ]
    async with uow() as tx:
        sent = [accepted(r) for r in await tx.messages.append_batch(requests[:2])]
        await tx.commit()
    async with uow() as tx:
        sent += [accepted(r) for r in await tx.messages.append_batch(requests[2:])]
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
        # The sender's only device holds no copy of its own messages.
        assert await tx.messages.stream(world.alice_device.id, 0, 100) == []
        stranger = await make_device(tx, world.bob.id)
        assert await tx.messages.stream(stranger.id, 0, 100) == []

    assert [[e.position for e in page] for page in pages] == [[1, 2], [3, 4], [5]]
    flat = [e for page in pages for e in page]
    assert [e.message for e in flat] == sent
    assert all(e.device_id == world.bob_device.id for e in flat)
    assert [e.position for e in resumed] == [4, 5]
    for event, request in zip(flat, requests, strict=True):
        assert_utc(event.message.sent_at, request.sent_at)


async def test_a_send_without_a_connection_is_refused_and_writes_nothing(
    uow: UnitOfWork,
) -> None:
    world = await make_world(uow)
    alice, a1 = world.alice, world.alice_device
    remote = new_address("beta.test")
    async with uow() as tx:
        stranger = await make_account(tx)
        stranger_device = await make_device(tx, stranger.id)
        # Alice holds a connection to Carol; Carol holds none to Alice.
        carol = await make_account(tx)
        carol_device = await make_device(tx, carol.id)
        one_way = await make_conversation(tx)
        assert await tx.connections.add(Contact(alice.id, carol.address, None, one_way, now()))
        # A remote peer: a connection row, but no local account to deliver to.
        to_remote = await make_conversation(tx)
        assert await tx.connections.add(Contact(alice.id, remote, "R", to_remote, now()))
        await tx.commit()

    refused = [
        send_request(alice, a1, stranger.address, "to a stranger", "t1"),
        send_request(carol, carol_device, alice.address, "back along one way", "t2"),
        send_request(alice, a1, remote, "to a remote peer", "t3"),
        send_request(alice, a1, new_address(), "to nobody", "t4"),
        send_request(stranger, stranger_device, world.bob.address, "no client_txn_id"),
    ]
    async with uow() as tx:
        results = await tx.messages.append_batch(refused)
        await tx.commit()
    assert results == [AppendResult(None, created=False)] * len(refused)

    every_device = [a1.id, world.bob_device.id, stranger_device.id, carol_device.id]
    async with uow() as tx:
        for request in refused:
            assert await tx.messages.get(request.message_id) is None
        for conversation_id in (world.conversation_id, one_way, to_remote):
            assert await tx.messages.history(conversation_id, 0, 10) == []
        assert await read_streams(tx, every_device) == {d: [] for d in every_device}
        # Nothing was used up: no seq, no stream position, no client_txn_id.
        to_bob, to_carol = await tx.messages.append_batch(
            [
                send_request(alice, a1, world.bob.address, "to bob", "t1"),
                send_request(alice, a1, carol.address, "along one way", "t4"),
            ]
        )
        await tx.commit()
    assert (accepted(to_bob).conversation_id, accepted(to_bob).seq) == (world.conversation_id, 1)
    assert positions(to_bob.events) == {world.bob_device.id: 1}
    assert (accepted(to_carol).conversation_id, accepted(to_carol).seq) == (one_way, 1)
    assert positions(to_carol.events) == {carol_device.id: 1}


async def test_a_mixed_batch_answers_each_request_in_order(uow: UnitOfWork) -> None:
    world = await make_world(uow)
    alice, a1, bob = world.alice, world.alice_device, world.bob.address
    async with uow() as tx:
        stranger = await make_account(tx)
        stranger_device = await make_device(tx, stranger.id)
        stored = await send(tx, alice, a1, bob, "stored", "old")
        await tx.commit()

    requests = [
        send_request(alice, a1, bob, "first", "new"),  # accepted
        send_request(alice, a1, stranger.address, "refused", "nope"),  # no connection
        send_request(alice, a1, bob, "stored, again", "old"),  # retry of a stored one
        send_request(alice, a1, bob, "first, again", "new"),  # retry within the batch
        send_request(world.bob, world.bob_device, alice.address, "reply"),  # accepted
        send_request(alice, a1, bob, "stored, once more", "old"),  # retry of a stored one
        send_request(alice, a1, bob, "second"),  # accepted
    ]
    async with uow() as tx:
        results = await tx.messages.append_batch(requests)
        await tx.commit()

    assert len(results) == len(requests)
    assert [r.created for r in results] == [True, False, False, False, True, False, True]
    first, reply, second = (accepted(results[i]) for i in (0, 4, 6))
    assert [first.id, reply.id, second.id] == [requests[i].message_id for i in (0, 4, 6)]
    assert [(m.seq, m.body) for m in (first, reply, second)] == [
        (2, "first"),
        (3, "reply"),
        (4, "second"),
    ]
    assert results[1] == AppendResult(None, created=False)
    assert results[2] == results[5] == AppendResult(stored, created=False)
    assert results[3] == AppendResult(first, created=False)
    assert positions(results[0].events) == {world.bob_device.id: 2}
    assert positions(results[4].events) == {a1.id: 1}
    assert positions(results[6].events) == {world.bob_device.id: 3}

    async with uow() as tx:
        for i in (1, 2, 3, 5):
            assert await tx.messages.get(requests[i].message_id) is None
        assert await tx.messages.history(world.conversation_id, 0, 10) == [
            stored,
            first,
            reply,
            second,
        ]
        streams = await read_streams(tx, [a1.id, world.bob_device.id, stranger_device.id])
    assert {d: [e.message for e in s] for d, s in streams.items()} == {
        a1.id: [reply],
        world.bob_device.id: [stored, first, second],
        stranger_device.id: [],
    }


async def test_one_batch_across_conversations_and_devices_numbers_each_in_order(
    uow: UnitOfWork,
) -> None:
    world = await make_world(uow)
    alice, bob = world.alice, world.bob
    carol, carol_device, ac = await add_peer(uow, alice)
    alice_second = await add_device(uow, alice)
    bob_second = await add_device(uow, bob)
    ab = world.conversation_id
    a1, a2, b1, b2, c1 = (
        world.alice_device.id,
        alice_second.id,
        world.bob_device.id,
        bob_second.id,
        carol_device.id,
    )
    async with uow() as tx:
        earlier = await send(tx, alice, world.alice_device, bob.address, "earlier")
        await tx.commit()

    async with uow() as tx:
        results = await tx.messages.append_batch(
            [
                send_request(alice, world.alice_device, bob.address, "0"),
                send_request(alice, alice_second, carol.address, "1"),
                send_request(bob, world.bob_device, alice.address, "2"),
                send_request(carol, carol_device, alice.address, "3"),
                send_request(alice, world.alice_device, carol.address, "4"),
                send_request(bob, bob_second, alice.address, "5"),
            ]
        )
        await tx.commit()
    # "earlier" took b1, b2 and a2 to position 1.
    assert [
        (accepted(r).body, accepted(r).conversation_id, accepted(r).seq, positions(r.events))
        for r in results
    ] == [
        ("0", ab, 2, {b1: 2, b2: 2, a2: 2}),
        ("1", ac, 1, {c1: 1, a1: 1}),
        ("2", ab, 3, {a1: 2, a2: 3, b2: 3}),
        ("3", ac, 2, {a1: 3, a2: 4}),
        ("4", ac, 3, {c1: 2, a2: 5}),
        ("5", ab, 4, {a1: 4, a2: 6, b1: 3}),
    ]

    async with uow() as tx:
        streams = await read_streams(tx, [a1, a2, b1, b2, c1])
        with_bob = await tx.messages.history(ab, 0, 100)
        with_carol = await tx.messages.history(ac, 0, 100)
    # The events handed back are exactly what the streams hold after the commit.
    after_earlier = {d: [e for e in s if e.message != earlier] for d, s in streams.items()}
    assert after_earlier == events_by_device(results)
    for stream in streams.values():
        assert [e.position for e in stream] == list(range(1, len(stream) + 1))
    assert with_bob == [earlier, *(accepted(results[i]) for i in (0, 2, 5))]
    assert with_carol == [accepted(results[i]) for i in (1, 3, 4)]


async def test_returned_events_are_exactly_what_the_streams_hold(uow: UnitOfWork) -> None:
    world = await make_world(uow)
    alice_second = await add_device(uow, world.alice)
    carol, carol_device, _ = await add_peer(uow, world.bob)
    alice, bob = world.alice, world.bob
    devices = [world.alice_device.id, alice_second.id, world.bob_device.id, carol_device.id]

    def batch(i: int) -> list[SendRequest]:
        return [
            send_request(alice, world.alice_device, bob.address, f"{i}a", f"a{i}"),
            send_request(bob, world.bob_device, alice.address, f"{i}b"),
            send_request(carol, carol_device, bob.address, f"{i}c"),
            send_request(alice, alice_second, carol.address, f"{i}x"),  # refused
            # A retry of the previous batch's first send: answered from the store,
            # except after batch 2, which was rolled back and is stored anew.
            send_request(alice, world.alice_device, bob.address, f"{i}a", f"a{i - 1}"),
        ]

    kept: list[AppendResult] = []
    for i in range(4):
        async with uow() as tx:
            results = await tx.messages.append_batch(batch(i))
            if i == 2:
                continue  # rolled back: its events never happened
            await tx.commit()
        kept += results

    async with uow() as tx:
        streams = await read_streams(tx, devices)
    assert streams == events_by_device(kept) | {carol_device.id: []}
    for stream in streams.values():
        assert [e.position for e in stream] == list(range(1, len(stream) + 1))
    assert [len(streams[d]) for d in devices] == [3, 8, 8, 0]


# --- transactions ------------------------------------------------------------------


async def test_leaving_without_commit_persists_nothing(uow: UnitOfWork) -> None:
    world = await make_world(uow)
    ghost_send = send_request(
        world.alice, world.alice_device, world.bob.address, "ghost", client_txn_id="ghost"
    )
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
        (result,) = await tx.messages.append_batch([ghost_send])
        message = accepted(result)
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
        contacts = await tx.connections.list_for(world.alice.id)
        assert [c.address for c in contacts] == [world.bob.address]
        assert await tx.messages.get(message.id) is None
        assert await tx.messages.history(world.conversation_id, 0, 10) == []
        assert await tx.messages.stream(world.bob_device.id, 0, 10) == []
        # Neither the seq, the stream position nor the client_txn_id was used up.
        (retried,) = await tx.messages.append_batch([ghost_send])
        assert accepted(retried).seq == 1
        assert positions(retried.events) == {world.bob_device.id: 1}


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
        pytest.skip("SQLite runs one transaction at a time")
    world = await make_world(uow)
    async with uow() as writer:
        account = await make_account(writer)
        message = await send(writer, world.alice, world.alice_device, world.bob.address)
        async with uow() as reader:
            assert await reader.accounts.get(account.id) is None
            assert await reader.messages.get(message.id) is None
            assert await reader.messages.history(world.conversation_id, 0, 10) == []
            assert await reader.messages.stream(world.bob_device.id, 0, 10) == []
        await writer.commit()
    async with uow() as reader:
        assert await reader.accounts.get(account.id) == account
        assert await reader.messages.get(message.id) == message
        assert [e.message for e in await reader.messages.stream(world.bob_device.id, 0, 10)] == [
            message
        ]


async def test_concurrent_retries_of_one_edit_store_it_once(
    uow: UnitOfWork, backend: str
) -> None:
    if backend == "sqlite":
        pytest.skip("SQLite runs one transaction at a time")
    world = await make_world(uow)
    async with uow() as tx:
        original = await send(tx, world.alice, world.alice_device, world.bob.address)
        await tx.commit()

    async def edit_once() -> AppendResult:
        async with uow() as tx:
            result = await tx.revisions.append(
                RevisionAppend(
                    message_id=MessageId(uuid4().hex),
                    conversation_id=world.conversation_id,
                    sender=world.alice.address,
                    sender_device=world.alice_device.id,
                    recipient=world.bob.address,
                    body="edited",
                    encryption=Encryption.END_TO_END,
                    media_type=EDIT_MEDIA_TYPE,
                    metadata={"replaces": original.id},
                    replaces=original.id,
                    client_txn_id="edit-retried",
                    sent_at=datetime.now(UTC),
                    receivers=(world.bob.id,),
                )
            )
            await tx.commit()
        return result

    results = await asyncio.gather(*(edit_once() for _ in range(CONCURRENT_WRITERS)))
    assert len({r.message.id for r in results if r.message}) == 1
    assert [r.created for r in results].count(True) == 1
    async with uow() as tx:
        stored = await tx.messages.history(world.conversation_id, 0, 100)
    assert [m.seq for m in stored] == [1, 2]


# --- concurrency -------------------------------------------------------------------


async def _append_alone(uow: UnitOfWork, requests: Sequence[SendRequest]) -> list[AppendResult]:
    """One batch in a transaction of its own, committed."""
    async with uow() as tx:
        results = await tx.messages.append_batch(requests)
        await tx.commit()
    return results


async def test_concurrent_sends_to_one_recipient_get_seq_and_positions_1_to_n(
    uow: UnitOfWork,
) -> None:
    world = await make_world(uow)
    requests = [
        send_request(world.alice, world.alice_device, world.bob.address, f"m{i}")
        for i in range(CONCURRENT_WRITERS)
    ]
    results = [
        result
        for batch in await asyncio.gather(*(_append_alone(uow, [r]) for r in requests))
        for result in batch
    ]
    expected = list(range(1, CONCURRENT_WRITERS + 1))
    assert sorted(accepted(r).seq for r in results) == expected
    assert sorted(e.position for r in results for e in r.events) == expected

    async with uow() as tx:
        stream = await tx.messages.stream(world.bob_device.id, 0, 100)
        history = await tx.messages.history(world.conversation_id, 0, 100)
    assert [e.position for e in stream] == expected
    assert [m.seq for m in history] == expected
    assert sorted(m.id for m in history) == sorted(r.message_id for r in requests)
    assert events_by_device(results) == {world.bob_device.id: stream}
    # The device holds the conversation in its order.
    assert [e.message.seq for e in stream] == expected


async def test_concurrent_batches_in_opposite_orders_do_not_deadlock(uow: UnitOfWork) -> None:
    world = await make_world(uow)
    alice_second = await add_device(uow, world.alice)
    carol, carol_device, with_carol = await add_peer(uow, world.alice)
    alice, bob = world.alice, world.bob

    def batch(i: int) -> list[SendRequest]:
        # Each touches both conversations and every device: b1, a2 / a1, a2 /
        # a1, a2 / c1, a1; every other batch in the opposite order.
        requests = [
            send_request(alice, world.alice_device, bob.address, f"{i} to bob"),
            send_request(bob, world.bob_device, alice.address, f"{i} from bob"),
            send_request(carol, carol_device, alice.address, f"{i} from carol"),
            send_request(alice, alice_second, carol.address, f"{i} to carol"),
        ]
        return requests if i % 2 == 0 else requests[::-1]

    batches = await asyncio.gather(
        *(_append_alone(uow, batch(i)) for i in range(CONCURRENT_WRITERS))
    )
    results = [r for batch_results in batches for r in batch_results]
    assert all(r.created for r in results)

    devices = {
        world.alice_device.id: 3,
        alice_second.id: 3,
        world.bob_device.id: 1,
        carol_device.id: 1,
    }
    async with uow() as tx:
        streams = await read_streams(tx, devices)
        with_bob = await tx.messages.history(world.conversation_id, 0, 1000)
        with_carol_history = await tx.messages.history(with_carol, 0, 1000)
    assert streams == events_by_device(results)
    for device_id, per_batch in devices.items():
        expected = list(range(1, per_batch * CONCURRENT_WRITERS + 1))
        assert [e.position for e in streams[device_id]] == expected
    for history in (with_bob, with_carol_history):
        assert [m.seq for m in history] == list(range(1, 2 * CONCURRENT_WRITERS + 1))


async def _until_blocked(database: Database, task: asyncio.Task[Any]) -> None:
    """Poll PostgreSQL until a session of this database waits for another's locks
    (or ``task`` is over, so that nothing can hang here)."""
    query = text(
        "SELECT count(*) FROM pg_stat_activity"
        " WHERE datname = current_database() AND cardinality(pg_blocking_pids(pid)) > 0"
    )
    async with database.connect() as conn:
        while not task.done() and not (await conn.execute(query)).scalar():
            await conn.rollback()  # the next read takes a fresh pg_stat_activity snapshot


async def test_a_retry_racing_its_original_answers_with_the_original(
    uow: UnitOfWork, database: Database, backend: str
) -> None:
    if backend == "sqlite":
        pytest.skip("SQLite runs one transaction at a time")
    world = await make_world(uow)
    original = send_request(world.alice, world.alice_device, world.bob.address, "once", "k")
    retry = replace(original, message_id=MessageId(new_id()))
    async with uow() as first:
        (stored,) = await first.messages.append_batch([original])
        racing = asyncio.create_task(_append_alone(uow, [retry]))
        # The retry has read the store and now waits on the original's locks.
        await _until_blocked(database, racing)
        await first.commit()
    assert await racing == [AppendResult(accepted(stored), created=False)]
    async with uow() as tx:
        assert await tx.messages.history(world.conversation_id, 0, 10) == [accepted(stored)]


async def test_concurrent_senders_never_fork_the_conversation_order(uow: UnitOfWork) -> None:
    world = await make_world(uow)
    alice_second = await add_device(uow, world.alice)
    bob_second = await add_device(uow, world.bob)

    def request(i: int) -> SendRequest:
        sender, device, to = (
            (world.alice, world.alice_device, world.bob.address)
            if i % 2 == 0
            else (world.bob, world.bob_device, world.alice.address)
        )
        return send_request(sender, device, to, f"m{i}", client_txn_id=f"t{i}")

    batches = await asyncio.gather(
        *(_append_alone(uow, [request(i)]) for i in range(CONCURRENT_WRITERS))
    )
    results = [r for batch in batches for r in batch]
    expected = list(range(1, CONCURRENT_WRITERS + 1))
    assert sorted(accepted(r).seq for r in results) == expected
    async with uow() as tx:
        history = await tx.messages.history(world.conversation_id, 0, 100)
        streams = await read_streams(
            tx, [world.alice_device.id, world.bob_device.id, alice_second.id, bob_second.id]
        )
    assert [m.seq for m in history] == expected
    assert streams == events_by_device(results)
    # The second devices receive every message; each sees the one conversation order.
    for device_id in (alice_second.id, bob_second.id):
        assert [e.position for e in streams[device_id]] == expected
        assert [e.message.seq for e in streams[device_id]] == expected
    for device_id in (world.alice_device.id, world.bob_device.id):
        seqs = [e.message.seq for e in streams[device_id]]
        assert len(seqs) == CONCURRENT_WRITERS // 2
        assert seqs == sorted(seqs)


# --- the queue of revisions for other nodes ------------------------------------------


async def test_the_revision_queue_keeps_order_moves_waiting_items_back_and_leases(
    uow: UnitOfWork,
) -> None:
    world = await make_world(uow)
    start = now()
    give_up = start + timedelta(days=1)
    async with uow() as tx:
        message = await send(tx, world.alice, world.alice_device, world.bob.address)
        for name in ("first", "second", "third"):
            await tx.revisions.queue_out("beta.test", message.id, name, start, give_up)
        assert not await tx.revisions.queue_out("beta.test", message.id, "first", start, give_up)
        await tx.commit()

    async with uow() as tx:
        assert await tx.revisions.claim_out(start, start + timedelta(minutes=2), 10) == [
            ("beta.test", 0)
        ]
        # Leased: another claim at the same time takes nothing.
        assert await tx.revisions.claim_out(start, start + timedelta(minutes=2), 10) == []
        rows = await tx.revisions.out_rows("beta.test", 10)
        assert [r.item for r in rows] == ["first", "second", "third"]
        # Queued while the attempt is under way: due at once whatever it settles.
        await tx.revisions.queue_out("beta.test", message.id, "fourth", start, give_up)
        first, second, _ = rows
        await tx.revisions.settle_out(
            "beta.test",
            [second.id],
            now=start,
            retry_at=start + timedelta(seconds=30),
            attempts=1,
            requeue=[first.id],
        )
        await tx.commit()

    async with uow() as tx:
        # "first" went behind the others, "second" is done, and "fourth" is due now.
        assert [r.item for r in await tx.revisions.out_rows("beta.test", 10)] == [
            "third",
            "fourth",
            "first",
        ]
        assert await tx.revisions.claim_out(start, start + timedelta(minutes=2), 10) == [
            ("beta.test", 1)
        ]  # (not committed: the lease is forgotten)
    async with uow() as tx:
        # Without "fourth", the node would wait for the retry time.
        rows = await tx.revisions.out_rows("beta.test", 10)
        await tx.revisions.settle_out(
            "beta.test",
            [r.id for r in rows if r.item == "fourth"],
            now=start,
            retry_at=start + timedelta(seconds=30),
            attempts=1,
        )
        await tx.commit()
    async with uow() as tx:
        assert await tx.revisions.claim_out(start, start + timedelta(minutes=2), 10) == []
        later = start + timedelta(seconds=30)
        assert await tx.revisions.claim_out(later, later + timedelta(minutes=2), 10) == [
            ("beta.test", 1)
        ]
