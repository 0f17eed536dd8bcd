"""Deleting for real, and taking one's data away.

An app deletes what it holds for one of its users; an account nothing holds
any more (no app grant, no device) is deleted with it. A user deletes the
whole account, after exporting it as JSON if they like. Rows are deleted in
one transaction; the grants' keys are destroyed once it has committed, so
copies of the database made before (backups, replicas) cannot open what those
keys protected.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from openmessenger.core.apps import AppCaller, Scope
from openmessenger.core.errors import Conflict, NotFound
from openmessenger.core.ids import AccountId, DeviceId
from openmessenger.core.records import AuthenticatedDevice
from openmessenger.services.apps import AppService, require_scope
from openmessenger.services.devices import DeviceService
from openmessenger.services.ports import Clock, GrantKeyStore, Transaction, UnitOfWork

EXPORT_FORMAT = "openmessenger-account-export/1"


class GroupDeparture(Protocol):
    """services/groups.py: an account about to be deleted leaves its groups."""

    async def leave_every_group(self, caller: AuthenticatedDevice) -> None: ...


class AccountData:
    def __init__(
        self,
        uow: UnitOfWork,
        clock: Clock,
        grant_keys: GrantKeyStore,
        devices: DeviceService,
        apps: AppService,
        groups: GroupDeparture,
    ) -> None:
        self._uow = uow
        self._groups = groups
        self._clock = clock
        self._grant_keys = grant_keys
        self._devices = devices
        self._apps = apps

    async def delete_app_data(self, caller: AppCaller, account_id: str) -> bool:
        """Everything the app holds for the account; True when the account was
        deleted too (nothing held it any more)."""
        require_scope(caller, Scope.DATA)
        account = AccountId(account_id)
        async with self._uow() as tx:
            if await tx.apps.grant(account, caller.app.id) is None:
                raise NotFound("No such account.", code="account_not_found")
            erased = _Erased()
            abandoned = await erased.app_from(tx, account, caller.app.id)
            await tx.commit()
        self._after_delete(erased.devices, erased.key_ids)
        return abandoned

    async def delete_app(self, caller: AuthenticatedDevice, app_id: str) -> int:
        """The caller's app and everything it holds for every account (accounts
        nothing else holds go with it). Returns how many accounts it held."""
        async with self._uow() as tx:
            app = await tx.apps.get(app_id)
            if app is None or app.owner_account_id != caller.account.id:
                raise NotFound("No such app.", code="app_not_found")
            held = await tx.erasure.accounts_of_app(app.id)
            erased = _Erased()
            for account in held:
                await erased.app_from(tx, account, app.id)
            await tx.erasure.delete_app(app.id)
            await tx.commit()
        self._apps.forget_app(app.id)
        self._after_delete(erased.devices, erased.key_ids)
        return len(held)

    async def delete_account(self, caller: AuthenticatedDevice) -> None:
        account = caller.account.id
        async with self._uow() as tx:
            await _refuse_if_it_owns_apps(tx, account)
        # Through the group service, so members see the account go (and a host on
        # another node hears it); storage hands over whatever is left meanwhile.
        await self._groups.leave_every_group(caller)
        async with self._uow() as tx:
            await _refuse_if_it_owns_apps(tx, account)
            gone = await tx.devices.ids_of_account(account)
            key_ids = await tx.erasure.delete_account(account)
            await tx.commit()
        self._after_delete([*gone, caller.device.id], key_ids)

    async def export(self, caller: AuthenticatedDevice) -> dict[str, Any]:
        """The account's data as JSON-ready values: message bodies as stored
        (end-to-end ciphertext, or bodies sealed to the account's devices)."""
        async with self._uow() as tx:
            rows = await tx.export.account_rows(caller.account.id)
        return {
            "format": EXPORT_FORMAT,
            "exported_at": _json_value(self._clock.now()),
            **{name: [_json_row(r) for r in found] for name, found in rows.items()},
        }

    def _after_delete(self, devices: list[DeviceId], key_ids: list[str]) -> None:
        for device_id in devices:
            self._devices.forget_device(device_id)
        for key_id in key_ids:
            self._grant_keys.destroy(key_id)


async def _refuse_if_it_owns_apps(tx: Transaction, account: AccountId) -> None:
    if await tx.erasure.owns_apps(account):
        raise Conflict(
            "This account owns apps; delete them first (DELETE /v1/apps/{app}).",
            code="account_owns_apps",
        )


@dataclass
class _Erased:
    """What a deletion took, to let go of once it has committed: the devices
    (their cached tokens) and the grant keys (destroyed)."""

    devices: list[DeviceId] = field(default_factory=list)
    key_ids: list[str] = field(default_factory=list)

    async def app_from(self, tx: Transaction, account: AccountId, app_id: str) -> bool:
        """Everything ``app_id`` holds for ``account``, and the account too if
        nothing holds it any more (then True)."""
        self.devices += [d.id for d in await tx.apps.app_devices(account, app_id)]
        self.key_ids += await tx.erasure.delete_app_data(account, app_id)
        if not await tx.erasure.is_abandoned(account):
            return False
        self.key_ids += await tx.erasure.delete_account(account)
        return True


def _json_row(row: dict[str, Any]) -> dict[str, Any]:
    out = {k: _json_value(v) for k, v in row.items()}
    # Stored JSON columns are shown as JSON, not as strings holding JSON.
    for column in ("device_list", "entry", "apps", "media_metadata", "provenance"):
        stored = out.get(column)
        if isinstance(stored, str):
            with contextlib.suppress(ValueError):
                out[column] = json.loads(stored)
    return out


def _json_value(value: object) -> object:
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    return value
