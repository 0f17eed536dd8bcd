"""End-to-end repositories: device keys and revocation, one-time keys, the account's
signed device list, the key backup, link requests and to-device messages.

SQL only; the rules (signatures, limits, who may ask) live in the services. The
node stores public keys and ciphertexts here, never a private key.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import delete, false, func, insert, select, true, update

from openmessenger.core.ids import AccountId, DeviceId
from openmessenger.core.records import (
    AccountKeys,
    ClaimedOneTimeKey,
    Device,
    DevicePublicKeys,
    KeyCounts,
    LinkRequest,
    SignedOneTimeKey,
    ToDeviceEvent,
)
from openmessenger.storage._base import Repository
from openmessenger.storage.tables import (
    account_keys,
    device_tokens,
    devices,
    key_backup,
    link_requests,
    one_time_keys,
    to_device,
)

_LIVE = devices.c.revoked_at.is_(None)
"""Devices that are not revoked: the only ones anything is encrypted to."""

DEVICE_COLUMNS = (
    devices.c.id,
    devices.c.account_id,
    devices.c.ed25519_key,
    devices.c.curve25519_key,
    devices.c.created_at,
    devices.c.app_id,
    devices.c.node_held,
)


def device_from_row(row: Any) -> Device:
    """A :class:`Device` from a row of :data:`DEVICE_COLUMNS` (shared with repositories.py)."""
    return Device(
        id=DeviceId(row.id),
        account_id=AccountId(row.account_id),
        ed25519_key=row.ed25519_key,
        curve25519_key=row.curve25519_key,
        created_at=row.created_at,
        app_id=row.app_id,
        node_held=bool(row.node_held),
    )


def _account_keys(row: Any) -> AccountKeys:
    return AccountKeys(
        account_id=AccountId(row.account_id),
        signing_key=row.signing_key,
        device_list=row.device_list,
        device_list_version=int(row.device_list_version),
        recovery_auth_key=row.recovery_auth_key,
    )


class SqlKeys(Repository):
    """Devices' public keys, one-time keys, revocation and the account keys."""

    # -- devices ---------------------------------------------------------------

    async def device(self, device_id: DeviceId) -> Device | None:
        """A device that is not revoked."""
        query = select(*DEVICE_COLUMNS).where(devices.c.id == device_id, _LIVE)
        row = (await self._conn.execute(query)).first()
        return device_from_row(row) if row else None

    async def devices(self, account_id: AccountId) -> list[Device]:
        """The account's devices that are not revoked, oldest first."""
        query = (
            select(*DEVICE_COLUMNS)
            .where(devices.c.account_id == account_id, _LIVE)
            .order_by(devices.c.created_at, devices.c.id)
        )
        return [device_from_row(r) for r in await self._conn.execute(query)]

    async def public_keys(self, account_id: AccountId) -> list[DevicePublicKeys]:
        query = (
            select(*DEVICE_COLUMNS, devices.c.sealing_key, devices.c.sealing_key_signature)
            .where(devices.c.account_id == account_id, _LIVE)
            .order_by(devices.c.created_at, devices.c.id)
        )
        return [
            DevicePublicKeys(
                device_id=DeviceId(r.id),
                ed25519_key=r.ed25519_key,
                curve25519_key=r.curve25519_key,
                sealing_key=r.sealing_key,
                sealing_key_signature=r.sealing_key_signature,
            )
            for r in await self._conn.execute(query)
        ]

    async def key_taken(self, ed25519_key: str) -> bool:
        """Whether any device, revoked ones included, has this key."""
        query = select(devices.c.id).where(devices.c.ed25519_key == ed25519_key)
        return (await self._conn.execute(query)).first() is not None

    async def lock_device(self, device_id: DeviceId) -> bool:
        """Lock the device's row until the transaction ends (serialises uploads of
        one device); False if there is no such device or it is revoked."""
        query = (
            select(devices.c.id)
            .where(devices.c.id == device_id, _LIVE)
            .with_for_update(key_share=True)
        )
        return (await self._conn.execute(query)).first() is not None

    async def revoke(self, device_id: DeviceId, now: datetime) -> bool:
        """Mark the device revoked and delete its tokens, its one-time keys and the
        to-device messages waiting for it; False if it was revoked already."""
        result = await self._conn.execute(
            update(devices).where(devices.c.id == device_id, _LIVE).values(revoked_at=now)
        )
        if result.rowcount != 1:
            return False
        for table in (device_tokens, one_time_keys, to_device):
            await self._conn.execute(delete(table).where(table.c.device_id == device_id))
        return True

    async def set_sealing_key(self, device_id: DeviceId, key: str, signature: str) -> None:
        await self._conn.execute(
            update(devices)
            .where(devices.c.id == device_id)
            .values(sealing_key=key, sealing_key_signature=signature)
        )

    async def sealing_keys(
        self, account_ids: Sequence[AccountId]
    ) -> dict[AccountId, dict[DeviceId, str]]:
        """The sealing key of every device of these accounts that is not revoked
        and has one: account -> device -> key."""
        found: dict[AccountId, dict[DeviceId, str]] = {}
        if not account_ids:
            return found
        query = (
            select(devices.c.id, devices.c.account_id, devices.c.sealing_key)
            .where(
                devices.c.account_id.in_(sorted(set(account_ids))),
                _LIVE,
                devices.c.sealing_key.is_not(None),
            )
            .order_by(devices.c.account_id, devices.c.id)
        )
        for row in await self._conn.execute(query):
            found.setdefault(AccountId(row.account_id), {})[DeviceId(row.id)] = row.sealing_key
        return found

    # -- one-time and fallback keys --------------------------------------------

    async def one_time_keys(self, device_id: DeviceId, key_ids: Sequence[str]) -> dict[str, str]:
        """Of these key ids, those the device holds as one-time keys: key id -> key."""
        if not key_ids:
            return {}
        query = select(one_time_keys.c.key_id, one_time_keys.c.key).where(
            one_time_keys.c.device_id == device_id,
            one_time_keys.c.fallback == false(),
            one_time_keys.c.key_id.in_(sorted(set(key_ids))),
        )
        return {r.key_id: r.key for r in await self._conn.execute(query)}

    async def add_one_time_keys(
        self, device_id: DeviceId, keys: Sequence[SignedOneTimeKey]
    ) -> None:
        if keys:
            await self._conn.execute(
                insert(one_time_keys),
                [
                    {
                        "device_id": device_id,
                        "fallback": False,
                        "key_id": k.key_id,
                        "key": k.key,
                        "signature": k.signature,
                    }
                    for k in keys
                ],
            )

    async def set_fallback_key(self, device_id: DeviceId, key: SignedOneTimeKey) -> None:
        """The device's fallback key, replacing the one before."""
        await self._conn.execute(
            delete(one_time_keys).where(
                one_time_keys.c.device_id == device_id, one_time_keys.c.fallback == true()
            )
        )
        await self._conn.execute(
            insert(one_time_keys).values(
                device_id=device_id,
                fallback=True,
                key_id=key.key_id,
                key=key.key,
                signature=key.signature,
            )
        )

    async def counts(self, device_id: DeviceId) -> KeyCounts:
        query = (
            select(one_time_keys.c.fallback, func.count().label("n"))
            .where(one_time_keys.c.device_id == device_id)
            .group_by(one_time_keys.c.fallback)
        )
        by_kind = {bool(r.fallback): int(r.n) for r in await self._conn.execute(query)}
        return KeyCounts(one_time_keys=by_kind.get(False, 0), fallback_key=True in by_kind)

    async def claim(self, device_id: DeviceId) -> ClaimedOneTimeKey | None:
        """Take one of the device's one-time keys (deleted in the same statement,
        so two concurrent claims never get the same key: on PostgreSQL each skips
        the rows the other has locked), or else its fallback key, which stays."""
        pick = (
            select(one_time_keys.c.key_id)
            .where(one_time_keys.c.device_id == device_id, one_time_keys.c.fallback == false())
            .order_by(one_time_keys.c.key_id)
            .limit(1)
            .with_for_update(skip_locked=True)
            .scalar_subquery()
        )
        taken = await self._conn.execute(
            delete(one_time_keys)
            .where(
                one_time_keys.c.device_id == device_id,
                one_time_keys.c.fallback == false(),
                one_time_keys.c.key_id == pick,
            )
            .returning(one_time_keys.c.key_id, one_time_keys.c.key, one_time_keys.c.signature)
        )
        row = taken.first()
        if row is not None:
            return ClaimedOneTimeKey(row.key_id, row.key, row.signature, fallback=False)
        query = select(
            one_time_keys.c.key_id, one_time_keys.c.key, one_time_keys.c.signature
        ).where(one_time_keys.c.device_id == device_id, one_time_keys.c.fallback == true())
        row = (await self._conn.execute(query)).first()
        return ClaimedOneTimeKey(row.key_id, row.key, row.signature, fallback=True) if row else None

    # -- the account signing key and device list --------------------------------

    async def account_keys(
        self, account_id: AccountId, *, for_update: bool = False
    ) -> AccountKeys | None:
        """The account's keys; ``for_update`` locks the row until the transaction ends."""
        query = select(account_keys).where(account_keys.c.account_id == account_id)
        if for_update:
            query = query.with_for_update(key_share=True)
        row = (await self._conn.execute(query)).first()
        return _account_keys(row) if row else None

    async def put_device_list(
        self,
        account_id: AccountId,
        *,
        signing_key: str,
        device_list: str,
        version: int,
        expected_version: int | None,
    ) -> bool:
        """Compare and set: store the list only if the stored version is still
        ``expected_version`` (None: the account has no list yet). The signing key is
        written by the first list only."""
        if expected_version is None:
            return await self._insert_unique(
                insert(account_keys).values(
                    account_id=account_id,
                    signing_key=signing_key,
                    device_list=device_list,
                    device_list_version=version,
                )
            )
        result = await self._conn.execute(
            update(account_keys)
            .where(
                account_keys.c.account_id == account_id,
                account_keys.c.device_list_version == expected_version,
            )
            .values(device_list=device_list, device_list_version=version)
        )
        return result.rowcount == 1

    async def set_recovery_auth_key(self, account_id: AccountId, key: str) -> bool:
        """False if the account has no keys yet (no device list)."""
        result = await self._conn.execute(
            update(account_keys)
            .where(account_keys.c.account_id == account_id)
            .values(recovery_auth_key=key)
        )
        return result.rowcount == 1


class SqlBackups(Repository):
    """Backed-up secrets, each a ciphertext only the recovery key opens (JSON text)."""

    async def put_entries(self, account_id: AccountId, entries: Mapping[str, str]) -> None:
        """Insert or replace. Callers lock the account's keys row first
        (``account_keys(for_update=True)``), so concurrent puts do not collide."""
        if not entries:
            return
        await self._conn.execute(
            delete(key_backup).where(
                key_backup.c.account_id == account_id,
                key_backup.c.entry_id.in_(sorted(entries)),
            )
        )
        await self._conn.execute(
            insert(key_backup),
            [
                {"account_id": account_id, "entry_id": entry_id, "entry": entry}
                for entry_id, entry in sorted(entries.items())
            ],
        )

    async def entries(self, account_id: AccountId) -> dict[str, str]:
        query = (
            select(key_backup.c.entry_id, key_backup.c.entry)
            .where(key_backup.c.account_id == account_id)
            .order_by(key_backup.c.entry_id)
        )
        return {r.entry_id: r.entry for r in await self._conn.execute(query)}

    async def delete_all(self, account_id: AccountId) -> None:
        await self._conn.execute(delete(key_backup).where(key_backup.c.account_id == account_id))


def _link_request(row: Any) -> LinkRequest:
    key = json.loads(row.one_time_key)
    return LinkRequest(
        code_hmac=row.code_hmac,
        device_id=DeviceId(row.device_id),
        ed25519_key=row.ed25519_key,
        curve25519_key=row.curve25519_key,
        one_time_key=SignedOneTimeKey(key["key_id"], key["key"], key["signature"]),
        expires_at=row.expires_at,
        approved_at=row.approved_at,
    )


class SqlLinkRequests(Repository):
    async def add(self, request: LinkRequest, now: datetime) -> bool:
        """Insert (expired requests are swept first, freeing their keys); False if
        the code, the device id or the key is taken by a live request."""
        await self._conn.execute(delete(link_requests).where(link_requests.c.expires_at <= now))
        key = request.one_time_key
        return await self._insert_unique(
            insert(link_requests).values(
                code_hmac=request.code_hmac,
                device_id=request.device_id,
                ed25519_key=request.ed25519_key,
                curve25519_key=request.curve25519_key,
                one_time_key=json.dumps(
                    {"key_id": key.key_id, "key": key.key, "signature": key.signature}
                ),
                expires_at=request.expires_at,
                approved_at=request.approved_at,
            )
        )

    async def by_code_hmac(self, code_hmac: str) -> LinkRequest | None:
        query = select(link_requests).where(link_requests.c.code_hmac == code_hmac)
        row = (await self._conn.execute(query)).first()
        return _link_request(row) if row else None

    async def by_ed25519_key(self, ed25519_key: str) -> LinkRequest | None:
        query = select(link_requests).where(link_requests.c.ed25519_key == ed25519_key)
        row = (await self._conn.execute(query)).first()
        return _link_request(row) if row else None

    async def approve(self, code_hmac: str, now: datetime) -> bool:
        """Mark the request used; False unless it was live (not expired, not used):
        of two concurrent approvals one wins."""
        result = await self._conn.execute(
            update(link_requests)
            .where(
                link_requests.c.code_hmac == code_hmac,
                link_requests.c.approved_at.is_(None),
                link_requests.c.expires_at > now,
            )
            .values(approved_at=now)
        )
        return result.rowcount == 1


def _to_device(row: Any) -> ToDeviceEvent:
    return ToDeviceEvent(
        id=int(row.id),
        device_id=DeviceId(row.device_id),
        sender_device=DeviceId(row.sender_device),
        sender_key=row.sender_key,
        olm=row.olm,
        created_at=row.created_at,
    )


class SqlToDevice(Repository):
    async def add(
        self,
        sender_device: DeviceId,
        sender_key: str,
        messages: Sequence[tuple[DeviceId, str]],
        now: datetime,
    ) -> None:
        """Queue ``(receiving device, olm JSON)`` messages.

        The receivers' rows are locked first: two transactions adding for one
        device then commit in the order of their ids, so a device that read up to
        id N never finds a smaller id committed later (and acknowledged unseen)."""
        if not messages:
            return
        receivers = sorted({device_id for device_id, _ in messages})
        await self._conn.execute(
            select(devices.c.id)
            .where(devices.c.id.in_(receivers))
            .order_by(devices.c.id)
            .with_for_update(key_share=True)
        )
        await self._conn.execute(
            insert(to_device),
            [
                {
                    "device_id": device_id,
                    "sender_device": sender_device,
                    "sender_key": sender_key,
                    "olm": olm,
                    "created_at": now,
                }
                for device_id, olm in messages
            ],
        )

    async def after(self, device_id: DeviceId, after_id: int, limit: int) -> list[ToDeviceEvent]:
        """The device's messages with an id above ``after_id``, oldest first."""
        query = (
            select(to_device)
            .where(to_device.c.device_id == device_id, to_device.c.id > after_id)
            .order_by(to_device.c.id)
            .limit(limit)
        )
        return [_to_device(r) for r in await self._conn.execute(query)]

    async def delete_up_to(self, device_id: DeviceId, up_to_id: int) -> None:
        """Acknowledge: forget the device's messages up to ``up_to_id``."""
        await self._conn.execute(
            delete(to_device).where(to_device.c.device_id == device_id, to_device.c.id <= up_to_id)
        )
