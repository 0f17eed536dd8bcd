"""Accounts an app makes for its users, and the app acting as their device.

The app's backend is the managed account's device. An SDK app brings its own
device keys (and so is a full end-to-end device); a plain-HTTP app lets the
node hold its device keys, derived from the grant's key: the node then seals
and opens on its behalf and everything is ``transport-encrypted``.

Every call names the account by id and is checked against the app's grants:
an app never learns anything of an account it does not hold. Acting for an
account goes through the same endpoints and checks as any device, pass codes
included.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from openmessenger.core.apps import AppCaller, AppGrant, Scope
from openmessenger.core.errors import Conflict, InvalidInput, NotFound
from openmessenger.core.ids import AccountId, DeviceId, validate_display_name
from openmessenger.core.records import Account, AccountKind, AuthenticatedDevice, Device
from openmessenger.crypto.app_keys import node_held_device
from openmessenger.crypto.keys import decode_base64_key
from openmessenger.services.apps import require_scope
from openmessenger.services.devices import DeviceService
from openmessenger.services.ports import (
    Clock,
    GrantKeyStore,
    Secrets,
    Transaction,
    UnitOfWork,
    VerificationPurpose,
)
from openmessenger.services.registration import PendingVerification, RegistrationService


@dataclass(frozen=True, slots=True)
class DeviceProof:
    """An SDK app's own device keys, with a signed challenge proving it holds them."""

    ed25519_key: str
    curve25519_key: str
    challenge: str
    signature: str


@dataclass(frozen=True, slots=True)
class ManagedAccount:
    account: Account
    device: Device
    grant: AppGrant


class ManagedAccounts:
    def __init__(
        self,
        uow: UnitOfWork,
        clock: Clock,
        secrets: Secrets,
        devices: DeviceService,
        grant_keys: GrantKeyStore,
        registration: RegistrationService,
    ) -> None:
        self._uow = uow
        self._clock = clock
        self._secrets = secrets
        self._devices = devices
        self._grant_keys = grant_keys
        self._registration = registration

    async def create(
        self,
        caller: AppCaller,
        *,
        display_name: str | None = None,
        device: DeviceProof | None = None,
    ) -> ManagedAccount:
        """A new managed account with the app's device in it, and the app's grant."""
        require_scope(caller, Scope.ACCOUNTS)
        name = validate_display_name(display_name) if display_name is not None else None
        now = self._clock.now()
        if device is not None:
            if decode_base64_key(device.curve25519_key, 32) is None:
                raise InvalidInput("device.curve25519_key", "must be a 32-byte key in base64")
            await self._devices.prove_possession(
                device.ed25519_key, device.challenge, device.signature, now
            )
        key_id = self._grant_keys.create()
        try:
            async with self._uow() as tx:
                account = await self._devices.create_account(tx.accounts, now, AccountKind.MANAGED)
                if name is not None:
                    await tx.accounts.set_display_name(account.id, name)
                    account = Account(account.id, account.address, account.kind, name, now)
                grant = AppGrant(account.id, caller.app.id, key_id, now)
                await tx.apps.add_grant(grant)
                created = await self._add_device(tx, account, caller, key_id, device, now)
                await tx.commit()
        except BaseException:
            self._grant_keys.destroy(key_id)
            raise
        return ManagedAccount(account, created, grant)

    async def _add_device(
        self,
        tx: Transaction,
        account: Account,
        caller: AppCaller,
        key_id: str,
        proof: DeviceProof | None,
        now: datetime,
    ) -> Device:
        device_id = DeviceId(self._secrets.identifier())
        if proof is not None:
            if await tx.keys.key_taken(proof.ed25519_key):
                raise Conflict("This key is already registered.", code="device_exists")
            device = Device(
                device_id,
                account.id,
                proof.ed25519_key,
                proof.curve25519_key,
                now,
                app_id=caller.app.id,
            )
            await tx.devices.create(device)
            return device
        grant_key = self._grant_keys.key(key_id)
        assert grant_key is not None, "the grant key was made just now"
        held = node_held_device(grant_key)
        device = Device(
            device_id,
            account.id,
            held.ed25519_key,
            held.curve25519_key,
            now,
            app_id=caller.app.id,
            node_held=True,
        )
        await tx.devices.create(device)
        await tx.keys.set_sealing_key(
            device_id, held.sealing.public_key, held.sealing_key_signature(device_id, grant_key)
        )
        return device

    async def acting_device(self, caller: AppCaller, account_id: str) -> AuthenticatedDevice:
        """The app's device in an account it holds: whom an API key acts as."""
        require_scope(caller, Scope.MESSAGES)
        async with self._uow() as tx:
            found = await self._held(tx, caller, account_id)
            app_devices = await tx.apps.app_devices(found.id, caller.app.id)
        if not app_devices:
            raise NotFound("The app has no device in this account.", code="account_not_found")
        return AuthenticatedDevice(app_devices[0], found, api_key_id=caller.key.id)

    async def get(self, caller: AppCaller, account_id: str) -> ManagedAccount:
        async with self._uow() as tx:
            found = await self._held(tx, caller, account_id)
            grant = await tx.apps.grant(found.id, caller.app.id)
            app_devices = await tx.apps.app_devices(found.id, caller.app.id)
        if grant is None or not app_devices:
            raise NotFound("No such account.", code="account_not_found")
        return ManagedAccount(found, app_devices[0], grant)

    async def _held(self, tx: Transaction, caller: AppCaller, account_id: str) -> Account:
        """The account, if the app holds a grant for it; the same NotFound otherwise."""
        grant = await tx.apps.grant(AccountId(account_id), caller.app.id)
        found = await tx.accounts.get(AccountId(account_id)) if grant is not None else None
        if found is None:
            raise NotFound("No such account.", code="account_not_found")
        return found

    # --- one person, one address: proving an identity ----------------------------------

    async def start_proof(
        self, caller: AppCaller, account_id: str, channel: str, to: str
    ) -> PendingVerification:
        """Send the app's user a code at their e-mail address or phone number."""
        require_scope(caller, Scope.ACCOUNTS)
        async with self._uow() as tx:
            account = await self._held(tx, caller, account_id)
        return await self._registration.start(
            account.id, channel, to, purpose=VerificationPurpose.LINK, app_id=caller.app.id
        )

    async def confirm_proof(
        self, caller: AppCaller, account_id: str, verification_id: str, code: str
    ) -> tuple[Account, bool]:
        """The user proved the identity. If another account proved it before, this
        one joins it: the app's device and grant move there and this account goes
        (the person's consent is the proof). Returns the account and whether it merged."""
        require_scope(caller, Scope.ACCOUNTS)
        async with self._uow() as tx:
            account = await self._held(tx, caller, account_id)
        proven = await self._registration.confirm(
            account.id, verification_id, code, purpose=VerificationPurpose.LINK
        )
        now = self._clock.now()
        async with self._uow() as tx:
            owner_id = await tx.identities.owner(proven.kind, proven.value_hmac)
            if owner_id is None or owner_id == account.id:
                if owner_id is None:
                    await tx.identities.bind(account.id, proven.kind, proven.value_hmac, now)
                await tx.commit()
                return account, False
            target = await tx.accounts.get(owner_id)
            assert target is not None
            if await tx.connections.list_for(account.id):
                raise Conflict(
                    "This account has contacts already, so it is not merged into the "
                    "account that proved the identity first; prove it before connecting.",
                    code="account_has_connections",
                )
            destroyed = await self._merge(tx, account.id, target.id)
            await tx.commit()
        for key_id in destroyed:
            self._grant_keys.destroy(key_id)
        return target, True

    async def _merge(self, tx: Transaction, source: AccountId, target: AccountId) -> list[str]:
        destroyed: list[str] = []
        for grant in await tx.apps.grants_of(source):
            if await tx.apps.grant(target, grant.app_id) is not None:
                # The app has a device in the target already; the duplicate goes.
                for device in await tx.apps.app_devices(source, grant.app_id):
                    self._devices.forget_device(device.id)
                destroyed += await tx.erasure.delete_app_data(source, grant.app_id)
        for device_id in await tx.devices.ids_of_account(source):
            self._devices.forget_device(device_id)
        await tx.erasure.move_devices(source, target)
        await tx.apps.move_grants(source, target)
        await tx.identities.move(source, target)
        destroyed += await tx.erasure.delete_account(source)
        return destroyed
