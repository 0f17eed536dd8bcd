"""The registration storage ports (``tx.identities``, ``tx.verifications``,
``tx.totp``) on every backend: a SQLite file and a real PostgreSQL."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from openmessenger.core.ids import AccountId
from openmessenger.services.ports import (
    Channel,
    Identity,
    IdentityKind,
    UnitOfWork,
    Verification,
    VerificationPurpose,
)
from openmessenger.storage.database import Database
from tests.contract.test_repositories import make_account, new_hmac, new_id, now


@pytest.fixture
def uow(database: Database) -> UnitOfWork:
    return database.uow


async def accounts(uow: UnitOfWork, count: int) -> list[AccountId]:
    async with uow() as tx:
        made = [(await make_account(tx)).id for _ in range(count)]
        await tx.commit()
    return made


def verification(
    account_id: AccountId,
    *,
    target_hmac: str | None = None,
    expires_in: timedelta = timedelta(minutes=10),
    purpose: VerificationPurpose = VerificationPurpose.REGISTER,
    app_id: str | None = None,
) -> Verification:
    return Verification(
        id=new_id(),
        account_id=account_id,
        channel=Channel.SMS,
        target_hmac=target_hmac or new_hmac(),
        code_hmac=new_hmac(),
        attempts=0,
        expires_at=now() + expires_in,
        purpose=purpose,
        app_id=app_id,
    )


# --- identities ------------------------------------------------------------------------


async def test_an_identity_belongs_to_one_account_at_most(uow: UnitOfWork) -> None:
    alice, bob = await accounts(uow, 2)
    email, phone = new_hmac(), new_hmac()
    at = now()
    async with uow() as tx:
        assert await tx.identities.owner(IdentityKind.EMAIL, email) is None
        assert await tx.identities.bind(alice, IdentityKind.EMAIL, email, at)
        assert not await tx.identities.bind(bob, IdentityKind.EMAIL, email, at)
        # The same HMAC as another kind is another identity.
        assert await tx.identities.bind(bob, IdentityKind.PHONE, email, at)
        assert await tx.identities.bind(alice, IdentityKind.PHONE, phone, at + timedelta(1))
        await tx.commit()
    async with uow() as tx:
        assert await tx.identities.owner(IdentityKind.EMAIL, email) == alice
        assert await tx.identities.owner(IdentityKind.PHONE, email) == bob
        assert await tx.identities.list_for(alice) == [
            Identity(IdentityKind.EMAIL, email, alice, at),
            Identity(IdentityKind.PHONE, phone, alice, at + timedelta(1)),
        ]


async def test_binding_one_identity_concurrently_gives_it_to_one_account(
    uow: UnitOfWork,
) -> None:
    contenders = await accounts(uow, 6)
    value = new_hmac()

    async def bind(account_id: AccountId) -> bool:
        async with uow() as tx:
            bound = await tx.identities.bind(account_id, IdentityKind.EMAIL, value, now())
            await tx.commit()
        return bound

    results = await asyncio.gather(*(bind(a) for a in contenders))
    assert results.count(True) == 1
    async with uow() as tx:
        winner = contenders[results.index(True)]
        assert await tx.identities.owner(IdentityKind.EMAIL, value) == winner


async def test_moving_identities_merges_them_into_another_account(uow: UnitOfWork) -> None:
    managed, registered, other = await accounts(uow, 3)
    async with uow() as tx:
        await tx.identities.bind(managed, IdentityKind.EMAIL, new_hmac(), now())
        await tx.identities.bind(managed, IdentityKind.PHONE, new_hmac(), now())
        await tx.identities.bind(registered, IdentityKind.EMAIL, new_hmac(), now())
        kept = new_hmac()
        await tx.identities.bind(other, IdentityKind.EMAIL, kept, now())
        assert await tx.identities.move(managed, registered) == 2
        await tx.commit()
    async with uow() as tx:
        assert await tx.identities.list_for(managed) == []
        assert len(await tx.identities.list_for(registered)) == 3
        assert await tx.identities.owner(IdentityKind.EMAIL, kept) == other
        assert await tx.identities.move(managed, registered) == 0


# --- verifications ---------------------------------------------------------------------


async def test_a_verification_is_stored_counted_retired_and_deleted(uow: UnitOfWork) -> None:
    (alice,) = await accounts(uow, 1)
    pending = verification(alice, purpose=VerificationPurpose.LINK, app_id=new_id())
    async with uow() as tx:
        assert await tx.verifications.lock_account(alice)
        assert not await tx.verifications.lock_account(AccountId(new_id()))
        await tx.verifications.add(pending)
        await tx.commit()
    async with uow() as tx:
        assert await tx.verifications.get(pending.id, for_update=True) == pending
        assert await tx.verifications.record_failure(pending.id) == 1
        assert await tx.verifications.record_failure(pending.id) == 2
        await tx.commit()
    async with uow() as tx:
        await tx.verifications.retire(pending.id)
        await tx.commit()
    async with uow() as tx:
        retired = await tx.verifications.get(pending.id)
        assert retired is not None
        assert (retired.attempts, retired.target_hmac) == (2, pending.target_hmac)
        assert retired.code_hmac != pending.code_hmac  # its code is gone
        await tx.verifications.delete(pending.id)
        await tx.commit()
    async with uow() as tx:
        assert await tx.verifications.get(pending.id) is None
        assert await tx.verifications.record_failure(pending.id) == 0


async def test_sends_are_counted_per_account_and_per_target_and_swept(uow: UnitOfWork) -> None:
    alice, bob = await accounts(uow, 2)
    target = new_hmac()
    old = verification(alice, target_hmac=target, expires_in=-timedelta(hours=1))
    recent = verification(alice, target_hmac=target, expires_in=timedelta(minutes=5))
    newest = verification(alice, expires_in=timedelta(minutes=9))
    bobs = verification(bob, target_hmac=target, expires_in=timedelta(minutes=7))
    async with uow() as tx:
        for v in (newest, old, bobs, recent):
            await tx.verifications.add(v)
        await tx.commit()
    horizon = now() - timedelta(minutes=30)
    async with uow() as tx:
        assert await tx.verifications.expiries_for_account(alice, horizon) == [
            recent.expires_at,
            newest.expires_at,
        ]
        assert await tx.verifications.expiries_for_target(target, horizon) == [
            recent.expires_at,
            bobs.expires_at,
        ]
        await tx.verifications.sweep(horizon)
        await tx.commit()
    async with uow() as tx:
        assert await tx.verifications.get(old.id) is None
        assert await tx.verifications.get(recent.id) == recent
        assert (
            len(await tx.verifications.expiries_for_target(target, now() - timedelta(days=1))) == 2
        )


async def test_concurrent_failures_are_all_counted(uow: UnitOfWork) -> None:
    (alice,) = await accounts(uow, 1)
    pending = verification(alice)
    async with uow() as tx:
        await tx.verifications.add(pending)
        await tx.commit()

    async def fail() -> int:
        async with uow() as tx:
            attempts = await tx.verifications.record_failure(pending.id)
            await tx.commit()
        return attempts

    counts = await asyncio.gather(*(fail() for _ in range(8)))
    assert sorted(counts) == list(range(1, 9))


# --- TOTP --------------------------------------------------------------------------------


async def test_an_unconfirmed_totp_secret_is_replaced_and_a_confirmed_one_kept(
    uow: UnitOfWork,
) -> None:
    (alice,) = await accounts(uow, 1)
    async with uow() as tx:
        assert await tx.totp.get(alice) is None
        assert await tx.totp.put(alice, "sealed-1")
        await tx.totp.set_state(alice, last_step=7, failures=3)
        await tx.commit()
    async with uow() as tx:
        stored = await tx.totp.get(alice, for_update=True)
        assert stored is not None
        assert (stored.sealed_secret, stored.last_step, stored.failures) == ("sealed-1", 7, 3)
        assert stored.confirmed_at is None
        assert await tx.totp.put(alice, "sealed-2")  # replaces, counters reset
        await tx.commit()
    async with uow() as tx:
        stored = await tx.totp.get(alice)
        assert stored is not None
        assert (stored.sealed_secret, stored.last_step, stored.failures) == ("sealed-2", 0, 0)
        first = now()
        await tx.totp.set_state(alice, last_step=0, failures=4)
        await tx.totp.confirm(alice, 55_000_000, first)
        await tx.commit()
    async with uow() as tx:
        await tx.totp.confirm(alice, 55_000_002, first + timedelta(minutes=1))
        assert not await tx.totp.put(alice, "sealed-3")
        await tx.commit()
    async with uow() as tx:
        stored = await tx.totp.get(alice)
        assert stored is not None
        # Confirmed once, at the first time; the newest step used; no failures.
        assert stored.confirmed_at == first
        assert (stored.sealed_secret, stored.last_step, stored.failures) == (
            "sealed-2",
            55_000_002,
            0,
        )
