"""Registered accounts' repositories: verified identities (as HMACs), pending
verification codes (as HMACs), and sealed TOTP secrets.

SQL only; the rules (attempt limits, send limits, time steps) live in
``services/registration.py``. No plaintext address, number, code or secret
ever reaches these tables.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, insert, literal, select, update

from openmessenger.core.ids import AccountId
from openmessenger.services.ports import (
    Channel,
    Identity,
    IdentityKind,
    TotpSecret,
    Verification,
    VerificationPurpose,
)
from openmessenger.storage._base import Repository
from openmessenger.storage.tables import account_identities, accounts, totp_secrets, verifications

_RETIRED_CODE = ""
"""What a retired verification keeps instead of its code HMAC: nothing equals it."""


def _identity(row: Any) -> Identity:
    return Identity(
        kind=IdentityKind(row.kind),
        value_hmac=row.value_hmac,
        account_id=AccountId(row.account_id),
        verified_at=row.verified_at,
    )


class SqlIdentities(Repository):
    async def owner(self, kind: IdentityKind, value_hmac: str) -> AccountId | None:
        query = select(account_identities.c.account_id).where(
            account_identities.c.kind == kind.value,
            account_identities.c.value_hmac == value_hmac,
        )
        found = (await self._conn.execute(query)).scalar_one_or_none()
        return AccountId(found) if found is not None else None

    async def bind(
        self, account_id: AccountId, kind: IdentityKind, value_hmac: str, now: datetime
    ) -> bool:
        """Insert; False if the identity is held already (the primary key is the
        identity, so one account at most holds it, even under a race)."""
        return await self._insert_unique(
            insert(account_identities).values(
                kind=kind.value, value_hmac=value_hmac, account_id=account_id, verified_at=now
            )
        )

    async def list_for(self, account_id: AccountId) -> list[Identity]:
        query = (
            select(account_identities)
            .where(account_identities.c.account_id == account_id)
            .order_by(account_identities.c.verified_at, account_identities.c.kind)
        )
        return [_identity(row) for row in await self._conn.execute(query)]

    async def move(self, from_account: AccountId, to_account: AccountId) -> int:
        result = await self._conn.execute(
            update(account_identities)
            .where(account_identities.c.account_id == from_account)
            .values(account_id=to_account)
        )
        return int(result.rowcount)


def _verification(row: Any) -> Verification:
    return Verification(
        id=row.id,
        account_id=AccountId(row.account_id),
        channel=Channel(row.channel),
        target_hmac=row.target_hmac,
        code_hmac=row.code_hmac,
        attempts=int(row.attempts),
        expires_at=row.expires_at,
        purpose=VerificationPurpose(row.purpose),
        app_id=row.app_id,
    )


class SqlVerifications(Repository):
    async def lock_account(self, account_id: AccountId) -> bool:
        # A no-op UPDATE takes the row lock on PostgreSQL (SQLite has one writer),
        # so two starts of one account count each other's sends.
        result = await self._conn.execute(
            update(accounts).where(accounts.c.id == account_id).values(kind=accounts.c.kind)
        )
        return result.rowcount == 1

    async def sweep(self, expired_before: datetime) -> None:
        await self._conn.execute(
            delete(verifications).where(verifications.c.expires_at < expired_before)
        )

    async def expiries_for_account(
        self, account_id: AccountId, expiring_after: datetime
    ) -> list[datetime]:
        return await self._expiries(verifications.c.account_id == account_id, expiring_after)

    async def expiries_for_target(
        self, target_hmac: str, expiring_after: datetime
    ) -> list[datetime]:
        return await self._expiries(verifications.c.target_hmac == target_hmac, expiring_after)

    async def _expiries(self, which: Any, expiring_after: datetime) -> list[datetime]:
        query = (
            select(verifications.c.expires_at)
            .where(which, verifications.c.expires_at > expiring_after)
            .order_by(verifications.c.expires_at)
        )
        return list((await self._conn.execute(query)).scalars())

    async def add(self, verification: Verification) -> None:
        v = verification
        await self._conn.execute(
            insert(verifications).values(
                id=v.id,
                account_id=v.account_id,
                channel=v.channel.value,
                target_hmac=v.target_hmac,
                code_hmac=v.code_hmac,
                attempts=v.attempts,
                expires_at=v.expires_at,
                purpose=v.purpose.value,
                app_id=v.app_id,
            )
        )

    async def get(self, verification_id: str, *, for_update: bool = False) -> Verification | None:
        query = select(verifications).where(verifications.c.id == verification_id)
        if for_update:
            query = query.with_for_update()
        row = (await self._conn.execute(query)).first()
        return _verification(row) if row else None

    async def record_failure(self, verification_id: str) -> int:
        attempts = (
            await self._conn.execute(
                update(verifications)
                .where(verifications.c.id == verification_id)
                .values(attempts=verifications.c.attempts + 1)
                .returning(verifications.c.attempts)
            )
        ).scalar_one_or_none()
        return int(attempts) if attempts is not None else 0

    async def retire(self, verification_id: str) -> None:
        await self._conn.execute(
            update(verifications)
            .where(verifications.c.id == verification_id)
            .values(code_hmac=_RETIRED_CODE)
        )

    async def delete(self, verification_id: str) -> None:
        await self._conn.execute(delete(verifications).where(verifications.c.id == verification_id))


def _totp(row: Any) -> TotpSecret:
    return TotpSecret(
        account_id=AccountId(row.account_id),
        sealed_secret=row.sealed_secret,
        confirmed_at=row.confirmed_at,
        last_step=int(row.last_step),
        failures=int(row.failures),
    )


class SqlTotp(Repository):
    async def get(self, account_id: AccountId, *, for_update: bool = False) -> TotpSecret | None:
        query = select(totp_secrets).where(totp_secrets.c.account_id == account_id)
        if for_update:
            query = query.with_for_update()
        row = (await self._conn.execute(query)).first()
        return _totp(row) if row else None

    async def put(self, account_id: AccountId, sealed_secret: str) -> bool:
        """Insert, or replace an unconfirmed secret; False if a confirmed one is there."""
        inserted = await self._insert_unique(
            insert(totp_secrets).values(
                account_id=account_id,
                sealed_secret=sealed_secret,
                confirmed_at=None,
                last_step=0,
                failures=0,
            )
        )
        if inserted:
            return True
        result = await self._conn.execute(
            update(totp_secrets)
            .where(totp_secrets.c.account_id == account_id, totp_secrets.c.confirmed_at.is_(None))
            .values(sealed_secret=sealed_secret, last_step=0, failures=0)
        )
        return result.rowcount == 1

    async def set_state(self, account_id: AccountId, *, last_step: int, failures: int) -> None:
        await self._conn.execute(
            update(totp_secrets)
            .where(totp_secrets.c.account_id == account_id)
            .values(last_step=last_step, failures=failures)
        )

    async def confirm(self, account_id: AccountId, step: int, now: datetime) -> None:
        await self._conn.execute(
            update(totp_secrets)
            .where(totp_secrets.c.account_id == account_id)
            .values(
                confirmed_at=func.coalesce(
                    totp_secrets.c.confirmed_at, literal(now, totp_secrets.c.confirmed_at.type)
                ),
                last_step=step,
                failures=0,
            )
        )
