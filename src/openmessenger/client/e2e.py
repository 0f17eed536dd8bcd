"""End-to-end encryption in the SDK: what a device does so its node sees only ciphertext.

- Content: one outbound Megolm session per conversation this device sends to,
  rotated after a number of messages, after a time, and whenever a device that
  held it is no longer trusted (revoked, or gone from a signed list).
- Keys travel in Olm: each message carries, for each trusted device that does
  not hold its Megolm session yet, the session key in an Olm message to it
  (``key_shares``); devices of the same account exchange account secrets and
  history over to-device Olm messages.
- Trust: a device is encrypted to only if the address's device list, signed by
  its account signing key, names it with the same keys (no ghost devices). The
  signing key of every address seen is pinned; a change raises a warning.

docs/encryption.md describes the scheme and the wire formats (protocol/e2e.py).
"""

from __future__ import annotations

import contextlib
import time
import warnings
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
from pydantic import ValidationError

from openmessenger.client.crypto_store import CryptoStore, InboundRecord, OutboundRecord, Pin
from openmessenger.client.errors import ApiError, ProtocolError, StateError
from openmessenger.core.ids import Address, DeviceId
from openmessenger.core.revisions import accepted_replaces
from openmessenger.crypto.account_keys import (
    AccountSigningKey,
    sign_device_list,
    verify_device_list,
)
from openmessenger.crypto.device_identity import DeviceIdentity
from openmessenger.crypto.keys import verify_ed25519
from openmessenger.crypto.megolm import InboundGroupSession, MegolmError, OutboundGroupSession
from openmessenger.crypto.olm import OlmError, OlmSession
from openmessenger.crypto.recovery import BackupDecryptionError, RecoveryKey, encrypt_for_backup
from openmessenger.crypto.sealing import SealingError, SealingKeyPair
from openmessenger.protocol import client_api as wire
from openmessenger.protocol import e2e

ONE_TIME_KEY_TARGET = 50
"""One-time keys this device keeps published; topped up at each sync."""
ROTATE_AFTER_MESSAGES = 100
ROTATE_AFTER_SECONDS = 7 * 24 * 3600
KEY_CACHE_SECONDS = 30.0
"""How long a fetched device list is used before it is asked for again."""
BACKUP_BATCH = 500

SIGNING_KEY_SECRET = "account_signing_key"  # noqa: S105 - a row name, not a secret
SEALING_KEY_SECRET = "sealing_key"  # noqa: S105 - a row name, not a secret
TO_DEVICE_CURSOR = "to_device_since"
ROTATION_MESSAGES_SETTING = "rotate_after_messages"
ROTATION_SECONDS_SETTING = "rotate_after_seconds"

Call = Callable[..., Awaitable[httpx.Response]]
PEER_UNAVAILABLE = "peer_unavailable"


class KeysChangedWarning(UserWarning):
    """A contact's account signing key changed: compare safety numbers again."""


class DeviceListChangedWarning(UserWarning):
    """A contact's signed device list changed (a device was added or removed)."""


class DecryptionError(Exception):
    """A message body could not be opened; the message is shown with the reason."""


class UntrustedDeviceListError(ProtocolError):
    """The node served a device list that does not verify or went backwards."""


@dataclass(frozen=True, slots=True)
class Opened:
    text: str
    encryption: e2e.Encryption


@dataclass(frozen=True, slots=True)
class AddressDevices:
    """The devices of one address this device trusts, from its signed list."""

    address: Address
    encryption: e2e.Encryption
    signed: e2e.SignedDeviceList | None
    trusted: tuple[e2e.ListedDevice, ...]

    @property
    def signing_key(self) -> str | None:
        return self.signed.list.signing_key if self.signed else None


class EndToEnd:
    """One device's end-to-end engine. One instance per Client: it holds the
    device's only live Olm account object."""

    def __init__(
        self,
        *,
        store: CryptoStore,
        identity: DeviceIdentity,
        save_identity: Callable[[], None],
        call: Call,
        address: Address,
        device_id: DeviceId,
        key_cache_seconds: float = KEY_CACHE_SECONDS,
    ) -> None:
        self._store = store
        self._identity = identity
        self._save_identity = save_identity
        self._call = call
        self.address = address
        self.device_id = device_id
        self._key_cache_seconds = key_cache_seconds
        self._directory: dict[Address, tuple[float, AddressDevices]] = {}
        self.warnings: list[UserWarning] = []
        """Every key-change warning raised so far, for callers that do not use ``warnings``."""

    @property
    def curve25519_key(self) -> str:
        return self._identity.curve25519_key

    @property
    def fingerprint_key(self) -> str:
        return self._identity.ed25519_key

    # -- this device's published keys ---------------------------------------------

    async def publish_keys(self) -> None:
        """Publish the sealing key, one-time keys and a fallback key as needed."""
        counts = wire.KeyCountsOut.model_validate_json((await self._call("GET", "/keys")).content)
        upload: dict[str, Any] = {}
        with self._store.transaction():
            if self._store.secret(SEALING_KEY_SECRET) is None:
                pair = SealingKeyPair.generate()
                self._store.set_secret(SEALING_KEY_SECRET, pair.secret)
                upload["sealing_key"] = pair.public_key
                upload["sealing_key_signature"] = self._identity.sign(
                    e2e.sealing_key_signed_bytes(self.device_id, pair.public_key)
                )
            if counts.one_time_keys < ONE_TIME_KEY_TARGET:
                self._identity.generate_one_time_keys(ONE_TIME_KEY_TARGET - counts.one_time_keys)
            upload["one_time_keys"] = [
                self._signed_key(key_id, key)
                for key_id, key in self._identity.unpublished_one_time_keys().items()
            ]
            if not counts.fallback_key:
                self._identity.generate_fallback_key()
            fallback = self._identity.unpublished_fallback_key()
            if fallback is not None:
                upload["fallback_key"] = self._signed_key(*fallback)
            self._save_identity()
        if not any(upload.values()):
            return
        body = wire.KeysUploadIn.model_validate(upload)
        await self._call("PUT", "/keys", body=body)
        self._identity.mark_keys_as_published()
        self._save_identity()

    def _signed_key(self, key_id: str, key: str, device_id: str | None = None) -> e2e.SignedKey:
        signed = e2e.one_time_key_signed_bytes(
            self.device_id if device_id is None else device_id, key_id, key
        )
        return e2e.SignedKey(key_id=key_id, key=key, signature=self._identity.sign(signed))

    # -- the account signing key and device list ------------------------------------

    def signing_key(self) -> AccountSigningKey | None:
        seed = self._store.secret(SIGNING_KEY_SECRET)
        return None if seed is None else AccountSigningKey.from_seed(seed)

    def adopt_signing_key(self, seed: str) -> None:
        with self._store.transaction():
            self._store.set_secret(SIGNING_KEY_SECRET, seed)

    async def ensure_account_keys(self) -> None:
        """The first device of an account makes its signing key and signs itself in."""
        own = await self.devices_of(self.address, fresh=True)
        if own.signed is not None:
            return
        key = AccountSigningKey.generate()
        self.adopt_signing_key(key.seed)
        await self.publish_device_list(self.next_device_list(own, add=[self.listed_self()]))

    def listed_self(self) -> e2e.ListedDevice:
        return e2e.ListedDevice(
            device_id=self.device_id,
            ed25519_key=self._identity.ed25519_key,
            curve25519_key=self._identity.curve25519_key,
        )

    def next_device_list(
        self,
        current: AddressDevices,
        *,
        add: Iterable[e2e.ListedDevice] = (),
        remove: Iterable[str] = (),
        backup_key: str | None = None,
        rotation: e2e.Rotation | None = None,
    ) -> e2e.SignedDeviceList:
        key = self.signing_key()
        if key is None:
            raise StateError("this device does not hold the account signing key")
        removed = set(remove)
        devices = {d.device_id: d for d in (current.signed.list.devices if current.signed else [])}
        for device in add:
            devices[device.device_id] = device
        listed = [devices[i] for i in sorted(devices) if i not in removed]
        previous = current.signed.list if current.signed else None
        document = e2e.DeviceList(
            address=self.address,
            signing_key=key.public_key,
            version=(previous.version + 1) if previous else 1,
            backup_key=backup_key or (previous.backup_key if previous else None),
            rotation=rotation or (previous.rotation if previous else None),
            devices=listed,
        )
        return sign_device_list(key, document)

    async def publish_device_list(self, signed: e2e.SignedDeviceList) -> None:
        await self._call("PUT", "/account/device-list", body=wire.DeviceListIn(device_list=signed))
        self.forget_devices(self.address)

    def forget_devices(self, address: Address) -> None:
        self._directory.pop(address, None)

    async def devices_of(self, address: Address, *, fresh: bool = False) -> AddressDevices:
        """The devices of ``address`` this device may encrypt to (cached briefly)."""
        cached = self._directory.get(address)
        now = time.monotonic()
        if cached is not None and not fresh and now - cached[0] < self._key_cache_seconds:
            return cached[1]
        try:
            response = await self._call("GET", f"/keys/{quote(address, safe='')}")
            keys = wire.AddressKeysOut.model_validate_json(response.content)
        except ApiError as exc:
            # The contact's node is unreachable: its last signed list, still
            # checked like a fresh one, lets messages wait in the outbox meanwhile.
            with self._store.transaction():
                saved = self._store.last_keys(address)
            if exc.code != PEER_UNAVAILABLE or saved is None:
                raise
            keys = wire.AddressKeysOut.model_validate_json(saved)
        found = self._trust(address, keys)
        self._directory[address] = (now, found)
        return found

    def _trust(self, address: Address, keys: wire.AddressKeysOut) -> AddressDevices:
        signed = keys.device_list
        if signed is None:
            return AddressDevices(address, keys.encryption, None, ())
        document = signed.list
        if document.address != address or not verify_device_list(signed):
            raise UntrustedDeviceListError(f"the device list of {address} does not verify")
        own_key = self.signing_key() if address == self.address else None
        if own_key is not None and own_key.public_key != document.signing_key:
            raise UntrustedDeviceListError("the node serves another signing key for this account")
        listed_ids = frozenset(d.device_id for d in document.devices)
        with self._store.transaction():
            pin = self._store.pin(address)
            if pin is not None and pin.signing_key == document.signing_key:
                if document.version < pin.version:
                    raise UntrustedDeviceListError(f"the device list of {address} went back")
                if listed_ids != pin.devices and address != self.address:
                    self._warn(
                        DeviceListChangedWarning(
                            f"the devices of {address} changed: "
                            f"{len(listed_ids)} now, {len(pin.devices)} before"
                        )
                    )
            elif pin is not None:
                self._warn(
                    KeysChangedWarning(
                        f"the account signing key of {address} changed; "
                        f"compare safety numbers again (openmessenger verify {address})"
                    )
                )
            self._store.save_pin(
                address,
                Pin(document.signing_key, document.version, listed_ids),
                keys.model_dump_json(),
            )
        published = {d.device_id: d for d in keys.devices}
        trusted = tuple(
            d
            for d in document.devices
            if (node := published.get(d.device_id)) is not None
            and node.ed25519_key == d.ed25519_key
            and node.curve25519_key == d.curve25519_key
        )
        return AddressDevices(address, keys.encryption, signed, trusted)

    def was_end_to_end(self, address: Address) -> bool:
        """This device saw a signed device list of ``address`` before."""
        with self._store.transaction():
            return self._store.pin(address) is not None

    def _warn(self, warning: UserWarning) -> None:
        self.warnings.append(warning)
        warnings.warn(warning, stacklevel=4)

    # -- sending ----------------------------------------------------------------------

    def rotation(self, account: e2e.Rotation | None = None) -> tuple[int, float]:
        """(messages, seconds) after which an outbound session is replaced: the
        stricter of this device's setting and the account's (from its signed list),
        else the defaults."""
        messages = self._store.setting(ROTATION_MESSAGES_SETTING)
        seconds = self._store.setting(ROTATION_SECONDS_SETTING)
        limits_messages = [int(messages)] if messages else []
        limits_seconds = [float(seconds)] if seconds else []
        if account is not None:
            limits_messages.append(account.messages)
            limits_seconds.append(float(account.seconds))
        return (
            min(limits_messages, default=ROTATE_AFTER_MESSAGES),
            min(limits_seconds, default=ROTATE_AFTER_SECONDS),
        )

    def set_rotation(self, *, messages: int | None = None, seconds: float | None = None) -> None:
        # The same bounds as the account's setting (protocol.e2e.Rotation).
        e2e.Rotation(messages=messages or 1, seconds=int(seconds or 60))
        with self._store.transaction():
            if messages is not None:
                self._store.set_setting(ROTATION_MESSAGES_SETTING, str(messages))
            if seconds is not None:
                self._store.set_setting(ROTATION_SECONDS_SETTING, str(seconds))

    async def encrypt(self, recipient: Address, text: str, *, replaces: str | None = None) -> str:
        """An ``om.megolm.v1`` body for ``text`` to ``recipient``, readable by the
        recipient's and this account's trusted devices. ``replaces``: an edit of
        that message, bound into the plaintext (client/revisions.py)."""
        return await self._encrypt(recipient, [recipient], text, replaces=replaces)

    async def encrypt_for_group(
        self,
        group_id: str,
        members: Iterable[Address],
        text: str,
        *,
        replaces: str | None = None,
    ) -> str:
        """An ``om.megolm.v1`` body for ``text`` to a group, readable by the trusted
        devices of ``members`` (its joined participants) and of this account. The
        plaintext and key shares name the group id as ``to``; the group's outbound
        session rotates as soon as a device that holds it is no longer a target
        (a participant left or was removed), so it cannot read what follows."""
        return await self._encrypt(group_id, list(dict.fromkeys(members)), text, replaces=replaces)

    async def _encrypt(
        self, to: str, addresses: list[Address], text: str, *, replaces: str | None = None
    ) -> str:
        """``to`` binds the ciphertext (an address, or a group id) and names the
        outbound session; ``addresses``' trusted devices and this account's are the targets."""
        directories = [await self.devices_of(a) for a in addresses if a != self.address]
        own = await self.devices_of(self.address)
        targets = {
            d.curve25519_key: (found.address, d)
            for found in (*directories, own)
            for d in found.trusted
            if d.device_id != self.device_id
        }
        account_rotation = own.signed.list.rotation if own.signed else None
        recipient = to
        with self._store.transaction():
            record = self._usable_outbound(recipient, targets.keys(), account_rotation)
            holders = record.shared_with if record else frozenset()
            need_olm = [
                key for key in targets if key not in holders and not self._store.olm_sessions(key)
            ]
        claimed = await self._claim({key: targets[key] for key in need_olm})
        plaintext = e2e.GroupPlaintext(
            text=text, sender=self.address, recipient=recipient, replaces=replaces
        )
        with self._store.transaction():
            record = self._usable_outbound(
                recipient, targets.keys(), account_rotation
            ) or self._new_outbound(recipient)
            shares = []
            shared = set(record.shared_with)
            session_key = record.session.session_key
            for key, (_, device) in targets.items():
                if key in shared:
                    continue
                olm = self._olm_to(key, claimed.get(key))
                if olm is None:
                    continue  # no key to reach it; it gets the session with a later message
                room_key = e2e.RoomKey(
                    sender=self.address,
                    recipient=recipient,
                    session_id=record.session.session_id,
                    session_key=session_key,
                )
                wrapped = olm.encrypt(room_key.model_dump_json(by_alias=True).encode())
                self._store.save_olm_session(key, olm, time.time_ns())
                shares.append(e2e.KeyShare(device_id=device.device_id, olm=wrapped))
                shared.add(key)
            ciphertext = record.session.encrypt(
                # exclude_none: a message that replaces nothing has no "replaces" key
                plaintext.model_dump_json(by_alias=True, exclude_none=True).encode()
            )
            self._store.save_outbound(
                recipient,
                OutboundRecord(
                    record.session, record.created_at, record.messages + 1, frozenset(shared)
                ),
            )
            body = e2e.EncryptedBody(
                sender_key=self.curve25519_key,
                session_id=record.session.session_id,
                ciphertext=ciphertext,
                key_shares=shares,
            )
        return body.model_dump_json()

    def _usable_outbound(
        self, conversation: str, targets: Iterable[str], account: e2e.Rotation | None
    ) -> OutboundRecord | None:
        record = self._store.outbound(conversation)
        if record is None:
            return None
        messages, seconds = self.rotation(account)
        if record.messages >= messages or time.time() - record.created_at >= seconds:
            return None
        if not record.shared_with <= set(targets):
            return None  # a device that holds the key is gone: it must not read on
        return record

    def _new_outbound(self, recipient: str) -> OutboundRecord:
        session = OutboundGroupSession.create()
        # This device reads its own messages back (history, other conversations'
        # views) through the same session, like any receiver.
        self._store.save_inbound(
            InboundRecord(
                self.curve25519_key,
                InboundGroupSession.from_session_key(session.session_key),
                self.address,
                recipient,
            )
        )
        return OutboundRecord(session, time.time(), 0, frozenset())

    async def _claim(
        self, wanted: Mapping[str, tuple[Address, e2e.ListedDevice]]
    ) -> dict[str, e2e.SignedKey]:
        by_address: dict[Address, list[e2e.ListedDevice]] = {}
        for address, device in wanted.values():
            by_address.setdefault(address, []).append(device)
        claimed: dict[str, e2e.SignedKey] = {}
        for address, devices in by_address.items():
            body = wire.ClaimIn(address=address, devices=[d.device_id for d in devices])
            answer = wire.ClaimOut.model_validate_json(
                (await self._call("POST", "/keys/claim", body=body)).content
            )
            for device in devices:
                key = answer.one_time_keys.get(device.device_id)
                # A key the device did not sign (the node's own, say) is never used.
                if key is not None and verify_ed25519(
                    device.ed25519_key,
                    e2e.one_time_key_signed_bytes(device.device_id, key.key_id, key.key),
                    key.signature,
                ):
                    claimed[device.curve25519_key] = e2e.SignedKey(
                        key_id=key.key_id, key=key.key, signature=key.signature
                    )
        return claimed

    def _olm_to(self, peer_key: str, claimed: e2e.SignedKey | None) -> OlmSession | None:
        sessions = self._store.olm_sessions(peer_key)
        if sessions:
            return sessions[0]
        if claimed is None:
            return None
        return self._identity.create_outbound_session(peer_key, claimed.key)

    # -- receiving ----------------------------------------------------------------------

    async def open(self, message: wire.MessageOut) -> Opened:
        """The text of a stored message; DecryptionError says why it cannot be read."""
        if message.deleted_at is not None:
            self._keep_tombstone_shares(message)
            raise DecryptionError("deleted for everyone")
        if message.encryption == e2e.TRANSPORT_ENCRYPTED:
            return Opened(self._open_sealed(message.body), e2e.TRANSPORT_ENCRYPTED)
        try:
            body = e2e.EncryptedBody.model_validate_json(message.body)
        except ValidationError as exc:
            raise DecryptionError("the body is not an end-to-end message") from exc
        sender = Address(message.sender)
        if body.sender_key != self.curve25519_key:
            sender_devices = await self.devices_of(sender)
            # The envelope names the sending device when its node is the sender's
            # (a message from another node arrives without one): they must agree.
            if not any(
                d.curve25519_key == body.sender_key
                and (not message.sender_device or d.device_id == message.sender_device)
                for d in sender_devices.trusted
            ):
                raise DecryptionError("sent from a device its account has not signed")
        with self._store.transaction():
            record = self._store.inbound(body.sender_key, body.session_id)
            if record is None:
                record = self._accept_share(message, body)
            try:
                plaintext, index = record.session.decrypt(body.ciphertext)
            except MegolmError as exc:
                raise DecryptionError("the ciphertext does not open") from exc
            self._store.update_inbound(record)
            if not self._store.record_index(body.session_id, index, message.id):
                raise DecryptionError("a replayed message (its Megolm index was used before)")
        try:
            content = e2e.GroupPlaintext.model_validate_json(plaintext)
        except ValidationError as exc:
            raise DecryptionError("the plaintext is not a message") from exc
        if content.sender != message.sender or content.recipient != message.recipient:
            raise DecryptionError("the ciphertext belongs to another conversation")
        if content.replaces not in accepted_replaces(
            message.media_type,
            message.replaces,
            message.metadata,
            sender=message.sender,
            reader=self.address,
        ):
            # An edit names the message it replaces inside the ciphertext: a node
            # cannot re-target it, nor pass an edit off as a new message (revisions).
            raise DecryptionError("the ciphertext belongs to another message")
        return Opened(content.text, e2e.END_TO_END)

    def _open_sealed(self, body: str) -> str:
        try:
            sealed = e2e.SealedBody.model_validate_json(body)
        except ValidationError:
            # Stored before nodes sealed plain text. Taking it as it is gives the
            # node nothing new: it could read transport-encrypted text anyway.
            return body
        secret = self._store.secret(SEALING_KEY_SECRET)
        if secret is None:
            raise DecryptionError("this device has no sealing key")
        try:
            return SealingKeyPair.from_secret(secret).open(sealed, self.device_id)
        except SealingError as exc:
            raise DecryptionError("the sealed body does not open for this device") from exc

    def _keep_tombstone_shares(self, message: wire.MessageOut) -> None:
        """A message deleted for everyone keeps only its key shares: take this
        device's, if it has none of that session yet (the session's other
        messages need it). Nothing else of the message is left to read."""
        try:
            shares = e2e.KeySharesOnly.model_validate_json(message.body)
        except ValidationError:
            return
        with self._store.transaction():
            if self._store.inbound(shares.sender_key, shares.session_id) is None:
                with contextlib.suppress(DecryptionError):
                    self._accept_share(message, shares)

    def _accept_share(
        self, message: wire.MessageOut, body: e2e.EncryptedBody | e2e.KeySharesOnly
    ) -> InboundRecord:
        share = next((s for s in body.key_shares if s.device_id == self.device_id), None)
        if share is None:
            raise DecryptionError("this device was not given the key to this message")
        try:
            room_key = e2e.RoomKey.model_validate_json(
                self._olm_decrypt(body.sender_key, share.olm)
            )
        except ValidationError as exc:
            raise DecryptionError("the key share is not a room key") from exc
        if (
            room_key.session_id != body.session_id
            or room_key.sender != message.sender
            or room_key.recipient != message.recipient
        ):
            raise DecryptionError("the key share belongs to another conversation")
        try:
            session = InboundGroupSession.from_session_key(room_key.session_key)
        except MegolmError as exc:
            raise DecryptionError("the key share holds no valid session key") from exc
        if session.session_id != body.session_id:
            raise DecryptionError("the key share names another session")
        record = InboundRecord(body.sender_key, session, message.sender, message.recipient)
        self._store.save_inbound(record)
        return record

    def _olm_decrypt(self, sender_key: str, message: e2e.OlmCiphertext) -> bytes:
        for session in self._store.olm_sessions(sender_key):
            if message.type == 0 and not session.matches(message):
                continue
            try:
                plaintext = session.decrypt(message)
            except OlmError:
                continue
            self._store.save_olm_session(sender_key, session, time.time_ns())
            return plaintext
        if message.type != 0:
            raise DecryptionError("no Olm session with the sending device")
        try:
            session, plaintext = self._identity.create_inbound_session(sender_key, message)
        except OlmError as exc:
            raise DecryptionError("the Olm message does not open") from exc
        self._store.save_olm_session(sender_key, session, time.time_ns())
        self._save_identity()  # the one-time key it used is gone from the account
        return plaintext

    # -- device-to-device -----------------------------------------------------------------

    def to_device_cursor(self) -> int:
        value = self._store.setting(TO_DEVICE_CURSOR)
        return int(value) if value else 0

    async def receive_to_device(self, events: list[wire.ToDeviceOut]) -> None:
        """Apply Olm messages from the account's other devices, then acknowledge them.
        Only devices the account's signed list names are listened to: a device the
        node slipped in cannot hand over secrets or keys."""
        if not events:
            return
        own = await self.devices_of(self.address, fresh=True)
        signed_senders = {d.curve25519_key for d in own.trusted}
        for event in events:
            with self._store.transaction():
                try:
                    plaintext = self._olm_decrypt(event.sender_key, event.olm)
                    content = e2e.ToDevicePlaintext.model_validate_json(plaintext)
                except (DecryptionError, ValidationError):
                    content = None  # unreadable: dropped, like any forged to-device message
                if (
                    content is not None
                    and event.sender_key in signed_senders
                    and content.recipient_device == self.device_id
                    and content.sender_device == event.sender_device
                ):
                    self._apply(content.payload)
                self._store.set_setting(TO_DEVICE_CURSOR, str(event.id))

    def _apply(self, payload: e2e.AccountSecrets | e2e.RoomKeyBundle) -> None:
        if isinstance(payload, e2e.AccountSecrets):
            # Taken once, when this device joins; never replaced afterwards.
            if self._store.secret(SIGNING_KEY_SECRET) is None:
                self._store.set_secret(SIGNING_KEY_SECRET, payload.signing_key_seed)
            return
        for exported in payload.sessions:
            self.import_room_key(exported)

    def import_room_key(self, exported: e2e.ExportedRoomKey, *, backed_up: bool = False) -> None:
        try:
            session = InboundGroupSession.from_exported(exported.exported_key)
        except MegolmError:
            return
        if session.session_id != exported.session_id:
            return
        self._store.save_inbound(
            InboundRecord(exported.sender_key, session, exported.sender, exported.recipient),
            backed_up=backed_up,
        )

    def export_room_keys(self) -> list[e2e.ExportedRoomKey]:
        return [
            e2e.ExportedRoomKey(
                sender=r.sender,
                recipient=r.recipient,
                sender_key=r.sender_key,
                session_id=r.session.session_id,
                exported_key=r.session.export(),
            )
            for r in self._store.inbound_sessions()
        ]

    def olm_message_to(
        self, device: e2e.ListedDevice, one_time_key: str, payload: e2e.ToDevicePayload
    ) -> e2e.OlmCiphertext:
        """An Olm message to another device of this account."""
        content = e2e.ToDevicePlaintext(
            sender_device=self.device_id, recipient_device=device.device_id, payload=payload
        )
        with self._store.transaction():
            sessions = self._store.olm_sessions(device.curve25519_key)
            session = (
                sessions[0]
                if sessions
                else self._identity.create_outbound_session(device.curve25519_key, one_time_key)
            )
            ciphertext = session.encrypt(content.model_dump_json(by_alias=True).encode())
            self._store.save_olm_session(device.curve25519_key, session, time.time_ns())
        return ciphertext

    async def olm_encrypt_to(
        self, address: Address, device: e2e.ListedDevice, plaintext: bytes
    ) -> e2e.OlmCiphertext:
        """An Olm message to one device of ``address`` (the caller checked it is
        trusted), over this device's session with it; a session is opened with a
        one-time key claimed for it when there is none. Used by client/ephemeral.py."""
        with self._store.transaction():
            has_session = bool(self._store.olm_sessions(device.curve25519_key))
        claimed: dict[str, e2e.SignedKey] = {}
        if not has_session:
            claimed = await self._claim({device.curve25519_key: (address, device)})
        with self._store.transaction():
            session = self._olm_to(device.curve25519_key, claimed.get(device.curve25519_key))
            if session is None:
                raise StateError(f"device {device.device_id} of {address} has no key to reach it")
            ciphertext = session.encrypt(plaintext)
            self._store.save_olm_session(device.curve25519_key, session, time.time_ns())
        return ciphertext

    def olm_decrypt_from(self, sender_key: str, message: e2e.OlmCiphertext) -> bytes:
        """Open an Olm message from the device whose Curve25519 key is ``sender_key``
        (DecryptionError if it does not open, or was opened before)."""
        with self._store.transaction():
            return self._olm_decrypt(sender_key, message)

    def drop_outbound_sessions(self) -> None:
        with self._store.transaction():
            self._store.drop_outbound_sessions()

    # -- key backup -----------------------------------------------------------------------

    async def back_up(self, *, everything: bool = False) -> int:
        """Upload sessions not yet in the backup; the number uploaded."""
        own = await self.devices_of(self.address)
        backup_key = own.signed.list.backup_key if own.signed else None
        if backup_key is None:
            return 0
        with self._store.transaction():
            if everything:
                self._store.mark_all_not_backed_up()
            pending = self._store.inbound_sessions(only_not_backed_up=True)
        key = self.signing_key()
        if key is None:
            return 0  # only a device holding the account signing key can sign entries
        contents = {
            f"session:{r.session.session_id}": e2e.BackupPlaintext(
                room_key=e2e.ExportedRoomKey(
                    sender=r.sender,
                    recipient=r.recipient,
                    sender_key=r.sender_key,
                    session_id=r.session.session_id,
                    exported_key=r.session.export(),
                )
            )
            for r in pending
        }
        if everything:
            contents[e2e.SIGNING_KEY_ENTRY] = e2e.BackupPlaintext(signing_key_seed=key.seed)
        entries = {
            entry_id: self._signed_entry(
                key,
                entry_id,
                encrypt_for_backup(backup_key, content.model_dump_json(by_alias=True).encode()),
            )
            for entry_id, content in contents.items()
        }
        items = list(entries.items())
        for start in range(0, len(items), BACKUP_BATCH):
            body = wire.BackupEntriesIn(entries=dict(items[start : start + BACKUP_BATCH]))
            await self._call("PUT", "/backup/entries", body=body)
        with self._store.transaction():
            self._store.mark_backed_up(pending)
        return len(pending)

    def _signed_entry(
        self, key: AccountSigningKey, entry_id: str, entry: e2e.BackupEntry
    ) -> e2e.SignedBackupEntry:
        signed = e2e.backup_entry_signed_bytes(self.address, entry_id, entry)
        return e2e.SignedBackupEntry(**entry.model_dump(), signature=key.sign(signed))

    def restore_backup(self, recovery: RecoveryKey, backup: wire.BackupOut) -> int:
        """Adopt the signing key and import every session in ``backup`` that it
        signed; the number imported. Whoever knows the backup key can encrypt an
        entry to it, so an entry counts only with the account signing key's
        signature (and that key must be the one the account's list is signed
        with: the caller checks that next)."""
        opened: dict[str, e2e.BackupPlaintext] = {}
        for entry_id, entry in backup.entries.items():
            try:
                opened[entry_id] = e2e.BackupPlaintext.model_validate_json(
                    recovery.decrypt_backup(entry)
                )
            except (BackupDecryptionError, ValidationError) as exc:
                raise StateError(f"backup entry {entry_id} does not open with this key") from exc
        seed_entry = opened.get(e2e.SIGNING_KEY_ENTRY)
        if seed_entry is None or seed_entry.signing_key_seed is None:
            raise StateError("the backup holds no account signing key")
        key = AccountSigningKey.from_seed(seed_entry.signing_key_seed)
        imported = 0
        for entry_id, content in opened.items():
            entry = backup.entries[entry_id]
            signed = e2e.backup_entry_signed_bytes(self.address, entry_id, entry)
            if not verify_ed25519(key.public_key, signed, entry.signature):
                continue  # not written by a device of this account
            if content.signing_key_seed is not None:
                self.adopt_signing_key(content.signing_key_seed)
            if content.room_key is not None:
                with self._store.transaction():
                    self.import_room_key(content.room_key, backed_up=True)
                imported += 1
        return imported
