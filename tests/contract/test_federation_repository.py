"""The federation storage port (links, handshakes, outbox, received nonces,
blocks, flags), on every backend."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from openmessenger.core.envelope import DeliveryStatus, OutboundSeal, ReceivedMessage
from openmessenger.core.ids import Address, Domain, MessageId
from openmessenger.core.records import Account, Contact, Device, OutboxOutcome, OutboxVerdict
from openmessenger.services.ports import UnitOfWork
from openmessenger.storage.database import Database
from openmessenger.storage.tables import metadata
from tests.contract.test_repositories import (
    make_account,
    make_conversation,
    make_device,
    new_hmac,
    new_id,
    now,
    send_request,
)

REMOTE = Address("4821937*beta.test")


@pytest.fixture
def uow(database: Database) -> UnitOfWork:
    return database.uow


async def remote_contact(uow: UnitOfWork) -> tuple[Account, Device, Contact]:
    """A local account connected with REMOTE, with its Openmsg link."""
    async with uow() as tx:
        owner = await make_account(tx)
        device = await make_device(tx, owner.id)
        contact = Contact(owner.id, REMOTE, "Remote", await make_conversation(tx), now())
        assert await tx.connections.add(contact)
        await tx.federation.put_link(owner.id, REMOTE, "ident-1", "sealed-1", now())
        await tx.commit()
    return owner, device, contact


def seal(nonce: str = "n" * 32, *, give_up_in: timedelta = timedelta(days=1)) -> OutboundSeal:
    return OutboundSeal(
        nonce=nonce,
        salt="s" * 32,
        attempt_ts=int(now().timestamp()),
        give_up_at=now() + give_up_in,
        lease_until=now(),  # as if the sending process had stopped: anyone may claim it
    )


async def test_the_migrations_build_exactly_the_schema_the_code_queries(database: Database) -> None:
    async with database.connect() as conn:
        diff = await conn.run_sync(
            lambda sync: compare_metadata(MigrationContext.configure(sync), metadata)
        )
    assert diff == []


async def test_a_link_is_found_by_its_ident_and_a_new_handshake_replaces_it(
    uow: UnitOfWork,
) -> None:
    owner, _, contact = await remote_contact(uow)
    async with uow() as tx:
        link = await tx.federation.link_by_ident("ident-1")
        assert link is not None
        assert (link.owner_address, link.peer_address, link.sealed) == (
            owner.address,
            REMOTE,
            "sealed-1",
        )
        assert link.conversation_id == contact.conversation_id
        await tx.federation.put_link(owner.id, REMOTE, "ident-1", "sealed-2", now())
        await tx.commit()
    async with uow() as tx:
        renewed = await tx.federation.link(owner.id, REMOTE)
        assert renewed is not None and renewed.sealed == "sealed-2"
        assert await tx.federation.link_by_ident("ident-unknown") is None


async def test_a_handshake_is_pending_for_its_receiver_until_it_ends_or_expires(
    uow: UnitOfWork,
) -> None:
    proof = new_hmac()
    async with uow() as tx:
        await tx.federation.add_handshake(proof, REMOTE, now() + timedelta(seconds=60))
        await tx.commit()
    async with uow() as tx:
        assert await tx.federation.handshake_pending(proof, REMOTE, now())
        assert not await tx.federation.handshake_pending(proof, Address("1*other.test"), now())
        assert not await tx.federation.handshake_pending(
            proof, REMOTE, now() + timedelta(seconds=61)
        )
        await tx.federation.end_handshake(proof, now())
        await tx.commit()
    async with uow() as tx:
        assert not await tx.federation.handshake_pending(proof, REMOTE, now())


async def test_a_send_to_a_remote_contact_joins_the_outbox_and_settles_once(
    uow: UnitOfWork,
) -> None:
    owner, device, _ = await remote_contact(uow)
    request = send_request(owner, device, REMOTE, "over there")
    request = replace(request, outbound=seal())
    async with uow() as tx:
        (result,) = await tx.messages.append_batch([request])
        await tx.commit()
    assert result.message is not None and result.outbound
    assert result.message.status is DeliveryStatus.ACCEPTED
    async with uow() as tx:
        claimed = await tx.federation.claim_due(now(), now() + timedelta(minutes=2), 10)
        await tx.commit()
    assert [(c.message_id, c.body, c.sealed_link, c.attempts) for c in claimed] == [
        (request.message_id, "over there", "sealed-1", 2)
    ]
    async with uow() as tx:
        # Leased: nobody else takes it meanwhile.
        assert await tx.federation.claim_due(now(), now() + timedelta(minutes=2), 10) == []
        assert (await tx.federation.outbox_by_nonce("n" * 32)) is not None
        await tx.federation.settle([OutboxOutcome(request.message_id, OutboxVerdict.DELIVERED)])
        await tx.commit()
    async with uow() as tx:
        stored = await tx.messages.get(request.message_id)
        assert stored is not None and stored.status is DeliveryStatus.DELIVERED
        assert await tx.federation.outbox_by_nonce("n" * 32) is None
        # Nothing is left to send, however late it gets.
        far = now() + timedelta(days=30)
        assert await tx.federation.claim_due(far, far + timedelta(minutes=2), 10) == []


async def test_a_retry_waits_for_its_time_and_an_unsealed_send_to_a_remote_contact_is_refused(
    uow: UnitOfWork,
) -> None:
    owner, device, _ = await remote_contact(uow)
    request = send_request(owner, device, REMOTE, "later")
    request = replace(request, outbound=seal())
    unsealed = send_request(owner, device, REMOTE, "no seal")
    async with uow() as tx:
        sent, refused = await tx.messages.append_batch([request, unsealed])
        await tx.commit()
    assert sent.message is not None and refused.message is None
    later = now() + timedelta(seconds=30)
    async with uow() as tx:
        await tx.federation.claim_due(now(), now() + timedelta(minutes=2), 10)
        await tx.federation.settle([OutboxOutcome(request.message_id, OutboxVerdict.RETRY, later)])
        await tx.commit()
    async with uow() as tx:
        assert await tx.federation.claim_due(now(), now() + timedelta(minutes=2), 10) == []
        just_before = later - timedelta(microseconds=1)
        assert await tx.federation.claim_due(just_before, later, 10) == []
        (again,) = await tx.federation.claim_due(later, later + timedelta(minutes=2), 10)
        assert again.attempts == 3
        await tx.federation.settle([OutboxOutcome(request.message_id, OutboxVerdict.FAILED)])
        await tx.commit()
    async with uow() as tx:
        stored = await tx.messages.get(request.message_id)
        assert stored is not None and stored.status is DeliveryStatus.FAILED


async def test_a_received_nonce_is_taken_once_per_connection(uow: UnitOfWork) -> None:
    owner, device, contact = await remote_contact(uow)

    def arrival(body: str, nonce: str) -> ReceivedMessage:
        return ReceivedMessage(
            message_id=MessageId(new_id()),
            conversation_id=contact.conversation_id,
            recipient_account=owner.id,
            recipient=owner.address,
            sender=REMOTE,
            nonce=nonce,
            body=body,
            sent_at=now(),
        )

    async with uow() as tx:
        first, repeat_in_batch = await tx.messages.append_received(
            [arrival("one", "a" * 32), arrival("one again", "a" * 32)]
        )
        await tx.commit()
    assert first is not None and repeat_in_batch is None
    assert [e.device_id for e in first.events] == [device.id]
    async with uow() as tx:
        replay, fresh = await tx.messages.append_received(
            [arrival("replayed", "a" * 32), arrival("two", "b" * 32)]
        )
        await tx.commit()
    assert replay is None and fresh is not None and fresh.message is not None
    assert fresh.message.seq == 2
    async with uow() as tx:
        history = await tx.messages.history(contact.conversation_id, 0, 10)
    assert [m.body for m in history] == ["one", "two"]


async def test_blocks_and_flags(uow: UnitOfWork) -> None:
    async with uow() as tx:
        assert await tx.federation.block(Domain("spam.test"), now())
        assert not await tx.federation.block(Domain("spam.test"), now())
        await tx.federation.set_flag("maintenance", "on", now())
        await tx.federation.set_flag("maintenance", "off", now())
        await tx.commit()
    async with uow() as tx:
        assert await tx.federation.blocked_domains() == ["spam.test"]
        assert await tx.federation.flag("maintenance") == "off"
        assert await tx.federation.flag("unknown") is None
        assert await tx.federation.unblock(Domain("spam.test"))
        assert not await tx.federation.unblock(Domain("spam.test"))
        await tx.commit()
