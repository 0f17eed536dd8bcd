"""The key backup: secrets (the account signing key, Megolm sessions) encrypted
on a device to the recovery key, which only the user holds. The node stores the
ciphertexts and the public key that proves a recovery, nothing that opens them.
Only the account's own devices read or write its backup."""

from __future__ import annotations

from collections.abc import Mapping

from openmessenger.core.errors import Conflict, NotFound
from openmessenger.core.records import AuthenticatedDevice
from openmessenger.protocol.e2e import BackupEntry
from openmessenger.services.ports import UnitOfWork


class BackupService:
    def __init__(self, uow: UnitOfWork) -> None:
        self._uow = uow

    async def set_up(self, caller: AuthenticatedDevice, recovery_auth_key: str) -> None:
        """Set (or replace) the key that proves a recovery. Entries backed up
        before are deleted: they were encrypted to the old recovery key. The
        account needs a signed device list first (its ``backup_key`` is where
        devices encrypt entries to)."""
        account_id = caller.account.id
        async with self._uow() as tx:
            if await tx.keys.account_keys(account_id, for_update=True) is None:
                raise Conflict(
                    "Publish a signed device list before setting up a backup.",
                    code="no_device_list",
                )
            await tx.keys.set_recovery_auth_key(account_id, recovery_auth_key)
            await tx.backups.delete_all(account_id)
            await tx.commit()

    async def put_entries(
        self, caller: AuthenticatedDevice, entries: Mapping[str, BackupEntry]
    ) -> None:
        """Insert or replace entries (by id)."""
        account_id = caller.account.id
        async with self._uow() as tx:
            keys = await tx.keys.account_keys(account_id, for_update=True)
            if keys is None or keys.recovery_auth_key is None:
                raise Conflict("Set up a backup first (PUT /v1/backup).", code="no_backup")
            await tx.backups.put_entries(
                account_id, {entry_id: e.model_dump_json() for entry_id, e in entries.items()}
            )
            await tx.commit()

    async def entries(self, caller: AuthenticatedDevice) -> dict[str, str]:
        """Every entry of the caller's account: entry id -> JSON of a ``BackupEntry``."""
        account_id = caller.account.id
        async with self._uow() as tx:
            keys = await tx.keys.account_keys(account_id)
            if keys is None or keys.recovery_auth_key is None:
                raise NotFound("This account has no key backup.", code="no_backup")
            return await tx.backups.entries(account_id)
