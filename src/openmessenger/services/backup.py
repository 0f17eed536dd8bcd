"""The key backup: secrets (the account signing key, Megolm sessions) encrypted
on a device to the recovery key, which only the user holds. The node stores the
ciphertexts and the public key that proves a recovery, nothing that opens them.
Only the account's own devices read or write its backup."""

from __future__ import annotations

from collections.abc import Mapping

from openmessenger.core.errors import Conflict, InvalidInput, NotFound
from openmessenger.core.records import AuthenticatedDevice
from openmessenger.crypto.keys import verify_ed25519
from openmessenger.protocol.e2e import (
    SignedBackupEntry,
    backup_entry_signed_bytes,
    recovery_auth_signed_bytes,
)
from openmessenger.services.ports import UnitOfWork


class BackupService:
    def __init__(self, uow: UnitOfWork) -> None:
        self._uow = uow

    async def set_up(
        self, caller: AuthenticatedDevice, recovery_auth_key: str, signature: str
    ) -> None:
        """Set (or replace) the key that proves a recovery. Entries backed up
        before are deleted: they were encrypted to the old recovery key. The
        account needs a signed device list first (its ``backup_key`` is where
        devices encrypt entries to)."""
        account_id = caller.account.id
        async with self._uow() as tx:
            keys = await tx.keys.account_keys(account_id, for_update=True)
            if keys is None:
                raise Conflict(
                    "Publish a signed device list before setting up a backup.",
                    code="no_device_list",
                )
            # A device's token alone must not be enough to choose who can recover
            # the account: the account signing key, held by its devices, signs it.
            signed = recovery_auth_signed_bytes(caller.account.address, recovery_auth_key)
            if not verify_ed25519(keys.signing_key, signed, signature):
                raise InvalidInput("signature", "not the account signing key's signature")
            await tx.keys.set_recovery_auth_key(account_id, recovery_auth_key)
            await tx.backups.delete_all(account_id)
            await tx.commit()

    async def put_entries(
        self, caller: AuthenticatedDevice, entries: Mapping[str, SignedBackupEntry]
    ) -> None:
        """Insert or replace entries (by id)."""
        account_id = caller.account.id
        async with self._uow() as tx:
            keys = await tx.keys.account_keys(account_id, for_update=True)
            if keys is None or keys.recovery_auth_key is None:
                raise Conflict("Set up a backup first (PUT /v1/backup).", code="no_backup")
            address = caller.account.address
            for entry_id, entry in entries.items():
                signed = backup_entry_signed_bytes(address, entry_id, entry)
                if not verify_ed25519(keys.signing_key, signed, entry.signature):
                    raise InvalidInput(
                        f"entries.{entry_id}.signature", "not the account signing key's signature"
                    )
            await tx.backups.put_entries(
                account_id, {entry_id: e.model_dump_json() for entry_id, e in entries.items()}
            )
            await tx.commit()

    async def entries(self, caller: AuthenticatedDevice) -> dict[str, str]:
        """Every entry of the caller's account: entry id -> JSON of a ``SignedBackupEntry``."""
        account_id = caller.account.id
        async with self._uow() as tx:
            keys = await tx.keys.account_keys(account_id)
            if keys is None or keys.recovery_auth_key is None:
                raise NotFound("This account has no key backup.", code="no_backup")
            return await tx.backups.entries(account_id)
