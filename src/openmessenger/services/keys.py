"""End-to-end keys as the node keeps them: public keys and ciphertexts only.

Devices publish one-time, fallback and sealing keys, each signed by the device's
Ed25519 key; the node checks every signature before storing anything. The keys
of an address are shown only to its own devices and to accounts connected with
it: anyone else, and an unknown address, get the same ``NotFound``, so the keys
say nothing to strangers and strangers cannot use up a device's one-time keys.

The account's signed device list is checked here too (its signature, its version,
and that it names only real devices of the account with their real keys), though
clients trust only what the account signing key signed: a node that slipped in a
ghost device would still be caught by them. Revoking a device removes its tokens
and keys at once. To-device messages carry Olm ciphertexts between the devices of
one account until the receiver acknowledges them.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Protocol

from pydantic import ValidationError

from openmessenger.core.envelope import Encryption
from openmessenger.core.errors import (
    Conflict,
    InvalidInput,
    NotFound,
    PeerUnavailable,
    Unauthenticated,
)
from openmessenger.core.ids import (
    AccountId,
    Address,
    DeviceId,
    Domain,
    address_domain,
    parse_address,
)
from openmessenger.core.records import (
    AccountKeys,
    AddressKeys,
    AuthenticatedDevice,
    ClaimedOneTimeKey,
    Device,
    KeyCounts,
    SignedOneTimeKey,
    ToDeviceEvent,
)
from openmessenger.crypto.keys import verify_ed25519
from openmessenger.protocol.e2e import (
    OlmCiphertext,
    SignedDeviceList,
    one_time_key_signed_bytes,
    sealing_key_signed_bytes,
)
from openmessenger.services.ports import Clock, RemoteKeyDirectory, Transaction, UnitOfWork

MAX_ONE_TIME_KEYS = 100
"""Unclaimed one-time keys the node holds per device."""
TO_DEVICE_PAGE = 100
"""To-device messages handed out per sync."""
DEVICES_FIELD = "device_list.list.devices"
MAX_COUNTER = 2**63 - 1
"""Versions and ids are 64-bit integers in the store."""


class RevokedDevices(Protocol):
    """Told when a device is revoked (the token cache of ``DeviceService``)."""

    def forget_device(self, device_id: DeviceId) -> None: ...


@dataclass(frozen=True, slots=True)
class OwnDevices:
    """The caller's account's devices (not revoked) and its signed device list."""

    devices: list[Device]
    device_list: str | None
    """JSON of the account's ``SignedDeviceList``; None before it published one."""
    current: DeviceId
    """The calling device."""


def _unpadded(key: str) -> str:
    # Registration takes keys with or without base64 padding; the e2e wire
    # formats never pad.
    return key.rstrip("=")


def check_device_list(
    signed: SignedDeviceList,
    *,
    address: Address,
    stored: AccountKeys | None,
    devices: Sequence[Device],
    must_list: Collection[DeviceId] = (),
    must_not_list: Collection[DeviceId] = (),
) -> None:
    """Refuse a new device list unless it is signed, newer than the stored one,
    by the account's signing key (the first list sets it), and names only
    ``devices`` (the account's, not revoked) with exactly their keys."""
    listed = signed.list
    if listed.version > MAX_COUNTER:
        raise InvalidInput("device_list.list.version", f"must be at most {MAX_COUNTER}")
    if listed.address != address:
        raise InvalidInput("device_list.list.address", "must be your own address")
    if not verify_ed25519(listed.signing_key, listed.signed_bytes(), signed.signature):
        raise InvalidInput("device_list.signature", "does not verify with list.signing_key")
    if stored is not None and listed.signing_key != stored.signing_key:
        raise Conflict(
            "The list is signed by another key than the account's signing key.",
            code="signing_key_mismatch",
        )
    if stored is not None and listed.version <= stored.device_list_version:
        raise Conflict(
            f"The account's device list is at version {stored.device_list_version}; "
            "a new list needs a higher version.",
            code="stale_device_list",
        )
    known = {d.id: d for d in devices}
    named: set[str] = set()
    for entry in listed.devices:
        if entry.device_id in named:
            raise InvalidInput(DEVICES_FIELD, f"names device {entry.device_id} twice")
        named.add(entry.device_id)
        device = known.get(DeviceId(entry.device_id))
        if (
            device is None
            or _unpadded(device.ed25519_key) != entry.ed25519_key
            or _unpadded(device.curve25519_key) != entry.curve25519_key
        ):
            raise InvalidInput(
                DEVICES_FIELD, f"{entry.device_id} is not a device of this account with these keys"
            )
    for device_id in must_list:
        if device_id not in named:
            raise InvalidInput(DEVICES_FIELD, f"must list device {device_id}")
    for device_id in must_not_list:
        if device_id in named:
            raise InvalidInput(DEVICES_FIELD, f"must not list device {device_id}")


async def store_device_list(
    tx: Transaction, account_id: AccountId, signed: SignedDeviceList, stored: AccountKeys | None
) -> str:
    """Store a checked list, unless another one was stored since it was read
    (``stale_device_list``). Returns the stored JSON."""
    text = signed.model_dump_json()
    stored_ok = await tx.keys.put_device_list(
        account_id,
        signing_key=signed.list.signing_key,
        device_list=text,
        version=signed.list.version,
        expected_version=stored.device_list_version if stored else None,
    )
    if not stored_ok:
        raise Conflict(
            "Another device list was accepted meanwhile; fetch it and sign a newer one.",
            code="stale_device_list",
        )
    return text


def _no_keys() -> NotFound:
    # One answer for an unknown address and for one the caller may not see.
    return NotFound("No keys for that address.")


class KeyService:
    def __init__(
        self,
        uow: UnitOfWork,
        clock: Clock,
        domain: Domain,
        revoked: RevokedDevices,
        remote: RemoteKeyDirectory | None = None,
    ) -> None:
        self._uow = uow
        self._clock = clock
        self._domain = domain
        self._revoked = revoked
        self.remote = remote

    # -- the caller's own keys ---------------------------------------------------

    async def upload(
        self,
        caller: AuthenticatedDevice,
        *,
        one_time_keys: Sequence[SignedOneTimeKey] = (),
        fallback_key: SignedOneTimeKey | None = None,
        sealing_key: str | None = None,
        sealing_key_signature: str | None = None,
    ) -> KeyCounts:
        """Publish keys signed by the calling device. Every signature is checked
        before anything is stored; a refused upload stores nothing."""
        device = caller.device
        fresh: dict[str, SignedOneTimeKey] = {}
        for index, key in enumerate(one_time_keys):
            signed = one_time_key_signed_bytes(device.id, key.key_id, key.key)
            if not verify_ed25519(device.ed25519_key, signed, key.signature):
                raise InvalidInput(
                    f"one_time_keys[{index}].signature", "does not verify with this device's key"
                )
            if fresh.setdefault(key.key_id, key).key != key.key:
                raise InvalidInput(
                    f"one_time_keys[{index}].key_id", "is given twice with different keys"
                )
        if fallback_key is not None:
            signed = one_time_key_signed_bytes(device.id, fallback_key.key_id, fallback_key.key)
            if not verify_ed25519(device.ed25519_key, signed, fallback_key.signature):
                raise InvalidInput(
                    "fallback_key.signature", "does not verify with this device's key"
                )
        if (sealing_key is None) != (sealing_key_signature is None):
            missing = "sealing_key" if sealing_key is None else "sealing_key_signature"
            raise InvalidInput(missing, "sealing_key and sealing_key_signature come together")
        if sealing_key is not None and sealing_key_signature is not None:
            signed = sealing_key_signed_bytes(device.id, sealing_key)
            if not verify_ed25519(device.ed25519_key, signed, sealing_key_signature):
                raise InvalidInput(
                    "sealing_key_signature", "does not verify with this device's key"
                )

        async with self._uow() as tx:
            if not await tx.keys.lock_device(device.id):
                raise Unauthenticated("This device was revoked.")
            held = await tx.keys.one_time_keys(device.id, list(fresh))
            for key_id, key in fresh.items():
                if key_id in held and held[key_id] != key.key:
                    raise Conflict(
                        f"One-time key {key_id} is already published with another key.",
                        code="key_id_in_use",
                    )
            new = [key for key_id, key in fresh.items() if key_id not in held]
            before = await tx.keys.counts(device.id)
            if before.one_time_keys + len(new) > MAX_ONE_TIME_KEYS:
                raise InvalidInput(
                    "one_time_keys",
                    f"the node holds at most {MAX_ONE_TIME_KEYS} unclaimed one-time keys per "
                    f"device; it holds {before.one_time_keys} of this device's",
                )
            await tx.keys.add_one_time_keys(device.id, new)
            if fallback_key is not None:
                await tx.keys.set_fallback_key(device.id, fallback_key)
            if sealing_key is not None and sealing_key_signature is not None:
                await tx.keys.set_sealing_key(device.id, sealing_key, sealing_key_signature)
            counts = await tx.keys.counts(device.id)
            await tx.commit()
        return counts

    async def counts(self, caller: AuthenticatedDevice) -> KeyCounts:
        async with self._uow() as tx:
            return await tx.keys.counts(caller.device.id)

    # -- other addresses' keys -----------------------------------------------------

    async def address_keys(self, caller: AuthenticatedDevice, address: str) -> AddressKeys:
        """The devices and signed device list of the caller's own address or of a
        contact; ``NotFound`` for any other address, known or not."""
        target = parse_address(address).address
        async with self._uow() as tx:
            await self._check_access(tx, caller, target)
            if self._is_local(target):
                found = await self._local_keys(tx, target)
                if found is None:
                    raise _no_keys()
                return found
        keys = await self.remote.query(caller.account.address, target) if self.remote else None
        if keys is None:
            raise _no_keys()
        if keys.device_list is not None and not _parses(keys.device_list):
            keys = replace(keys, device_list=None)  # another node's garbage is not passed on
        return keys

    async def claim(
        self, caller: AuthenticatedDevice, address: str, device_ids: Sequence[str]
    ) -> dict[DeviceId, ClaimedOneTimeKey]:
        """One key for each named device of the address (a one-time key, or the
        fallback key once those ran out); devices it does not have are left out.
        The same access rule as :meth:`address_keys`."""
        target = parse_address(address).address
        wanted = list(dict.fromkeys(DeviceId(d) for d in device_ids))
        async with self._uow() as tx:
            await self._check_access(tx, caller, target)
            if self._is_local(target):
                claimed = await self._local_claim(tx, target, wanted)
                if claimed is None:
                    raise _no_keys()
                await tx.commit()
                return claimed
        if self.remote is None:
            raise _no_keys()
        return await self.remote.claim(caller.account.address, target, wanted)

    async def encryption_of(self, addresses: Iterable[Address]) -> dict[Address, Encryption]:
        """How messages to each address are protected, as far as this node can tell
        (an unreachable node's addresses show as transport-encrypted until it answers)."""
        found: dict[Address, Encryption] = {}
        addresses = list(addresses)  # read twice below
        local = [a for a in addresses if self._is_local(a)]
        if local:
            async with self._uow() as tx:
                for address in local:
                    account = await tx.accounts.by_address(address)
                    plain = account is not None and await _has_node_held_device(tx, account.id)
                    found[address] = Encryption.TRANSPORT if plain else Encryption.END_TO_END
        for address in addresses:
            if self._is_local(address):
                continue
            try:
                end_to_end = self.remote is not None and await self.remote.end_to_end(
                    address_domain(address)
                )
            except PeerUnavailable:
                end_to_end = False
            found[address] = Encryption.END_TO_END if end_to_end else Encryption.TRANSPORT
        return found

    # -- asked by another of our nodes for one of its accounts (signed request) ------

    async def keys_for_peer(self, requester: Address, address: Address) -> AddressKeys | None:
        """The keys of a local ``address`` for ``requester`` on another node, or None
        unless that address is connected with it (one answer for both)."""
        if not self._is_local(address):
            return None
        async with self._uow() as tx:
            if not await self._peer_connected(tx, requester, address):
                return None
            return await self._local_keys(tx, address)

    async def claim_for_peer(
        self, requester: Address, address: Address, device_ids: Sequence[str]
    ) -> dict[DeviceId, ClaimedOneTimeKey] | None:
        if not self._is_local(address):
            return None
        wanted = list(dict.fromkeys(DeviceId(d) for d in device_ids))
        async with self._uow() as tx:
            if not await self._peer_connected(tx, requester, address):
                return None
            claimed = await self._local_claim(tx, address, wanted)
            await tx.commit()
            return claimed

    async def _peer_connected(self, tx: Transaction, requester: Address, address: Address) -> bool:
        account = await tx.accounts.by_address(address)
        return account is not None and (
            await tx.connections.get(account.id, requester) is not None
            # Members of one group on our nodes encrypt to each other (group_federation.py).
            or await tx.groups.share_group(account.id, requester)
        )

    async def _local_keys(self, tx: Transaction, target: Address) -> AddressKeys | None:
        account = await tx.accounts.by_address(target)
        if account is None:
            return None
        devices = await tx.keys.public_keys(account.id)
        stored = await tx.keys.account_keys(account.id)
        plain = await _has_node_held_device(tx, account.id)
        return AddressKeys(
            address=target,
            devices=tuple(devices),
            device_list=stored.device_list if stored else None,
            encryption=Encryption.TRANSPORT if plain else Encryption.END_TO_END,
        )

    async def _local_claim(
        self, tx: Transaction, target: Address, wanted: Sequence[DeviceId]
    ) -> dict[DeviceId, ClaimedOneTimeKey] | None:
        account = await tx.accounts.by_address(target)
        if account is None:
            return None
        live = {d.id for d in await tx.keys.devices(account.id)}
        claimed: dict[DeviceId, ClaimedOneTimeKey] = {}
        for device_id in wanted:
            if device_id in live:
                key = await tx.keys.claim(device_id)
                if key is not None:
                    claimed[device_id] = key
        return claimed

    async def _check_access(
        self, tx: Transaction, caller: AuthenticatedDevice, target: Address
    ) -> None:
        if target == caller.account.address:
            return
        if await tx.connections.get(caller.account.id, target) is None and (
            # Members of one group encrypt to each other (services/groups.py).
            not await tx.groups.share_group(caller.account.id, target)
        ):
            raise _no_keys()

    def _is_local(self, address: Address) -> bool:
        return parse_address(address).domain == self._domain

    # -- the account's devices ------------------------------------------------------

    async def own_devices(self, caller: AuthenticatedDevice) -> OwnDevices:
        async with self._uow() as tx:
            devices = await tx.keys.devices(caller.account.id)
            stored = await tx.keys.account_keys(caller.account.id)
        return OwnDevices(devices, stored.device_list if stored else None, caller.device.id)

    async def put_device_list(
        self, caller: AuthenticatedDevice, signed: SignedDeviceList
    ) -> OwnDevices:
        """Accept a newer signed device list of the caller's account (it must list
        the caller). The first accepted list sets the account signing key."""
        account = caller.account
        async with self._uow() as tx:
            stored = await tx.keys.account_keys(account.id, for_update=True)
            devices = await tx.keys.devices(account.id)
            check_device_list(
                signed,
                address=account.address,
                stored=stored,
                devices=devices,
                must_list=(caller.device.id,),
            )
            text = await store_device_list(tx, account.id, signed, stored)
            await tx.commit()
        return OwnDevices(devices, text, caller.device.id)

    async def revoke(
        self, caller: AuthenticatedDevice, device_id: str, signed: SignedDeviceList
    ) -> OwnDevices:
        """Revoke a device of the caller's account, with the account's new signed
        list that leaves it out. Its tokens stop working at once; its one-time keys
        and waiting to-device messages are deleted; it gets no new messages."""
        account = caller.account
        target = DeviceId(device_id)
        now = self._clock.now()
        async with self._uow() as tx:
            device = await tx.keys.device(target)
            if device is None or device.account_id != account.id:
                raise NotFound("No such device.")
            stored = await tx.keys.account_keys(account.id, for_update=True)
            devices = await tx.keys.devices(account.id)
            check_device_list(
                signed,
                address=account.address,
                stored=stored,
                devices=devices,
                # A device revoking itself need not be listed.
                must_list=() if target == caller.device.id else (caller.device.id,),
                must_not_list=(target,),
            )
            text = await store_device_list(tx, account.id, signed, stored)
            await tx.keys.revoke(target, now)
            await tx.commit()
        self._revoked.forget_device(target)
        remaining = [d for d in devices if d.id != target]
        return OwnDevices(remaining, text, caller.device.id)

    # -- to-device messages ------------------------------------------------------------

    async def send_to_device(
        self, caller: AuthenticatedDevice, messages: Sequence[tuple[str, OlmCiphertext]]
    ) -> None:
        """Queue Olm messages for other devices of the caller's own account; a
        device that is not one of them (or is revoked) refuses the whole batch."""
        now = self._clock.now()
        async with self._uow() as tx:
            own = {d.id for d in await tx.keys.devices(caller.account.id)}
            if any(DeviceId(device_id) not in own for device_id, _ in messages):
                raise NotFound("No such device.")
            await tx.to_device.add(
                caller.device.id,
                _unpadded(caller.device.curve25519_key),
                [(DeviceId(device_id), olm.model_dump_json()) for device_id, olm in messages],
                now,
            )
            await tx.commit()

    async def to_device_inbox(self, caller: AuthenticatedDevice, since: int) -> list[ToDeviceEvent]:
        """The calling device's to-device messages after id ``since``, oldest first
        (at most ``TO_DEVICE_PAGE``); those up to ``since`` are acknowledged: deleted."""
        if not 0 <= since <= MAX_COUNTER:
            raise InvalidInput("to_device_since", f"must be from 0 to {MAX_COUNTER}")
        async with self._uow() as tx:
            if since:
                await tx.to_device.delete_up_to(caller.device.id, since)
            events = await tx.to_device.after(caller.device.id, since, TO_DEVICE_PAGE)
            await tx.commit()
        return events


def _parses(device_list: str) -> bool:
    try:
        SignedDeviceList.model_validate_json(device_list)
    except ValidationError:
        return False
    return True


async def _has_node_held_device(tx: Transaction, account_id: AccountId) -> bool:
    """A plain-HTTP app the account linked reads with keys the node holds: it
    cannot open end-to-end messages, so the account is written to
    transport-encrypted (docs/apps.md), as it would be over an Openmsg v1 link."""
    return any(d.node_held for d in await tx.keys.devices(account_id))
