"""What a device does for its account, beyond messaging: its devices (link,
approve, revoke, replace), the key backup and recovery, safety numbers and
rotation settings. Mixed into :class:`openmessenger.client.Client`, whose
session and end-to-end engine these methods use."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Self
from urllib.parse import quote

import httpx

from openmessenger.client import transport
from openmessenger.client.errors import (
    ApiError,
    InvalidArgumentError,
    LinkCheckError,
    StateError,
)
from openmessenger.client.models import LinkRequest, Me, OwnDevice
from openmessenger.core.errors import InvalidInput
from openmessenger.core.ids import Address, DeviceId, parse_address
from openmessenger.crypto.account_keys import verify_device_list
from openmessenger.crypto.fingerprints import device_fingerprint, link_check, safety_number
from openmessenger.crypto.keys import verify_ed25519
from openmessenger.crypto.recovery import InvalidRecoveryKey, RecoveryKey
from openmessenger.protocol import client_api as wire
from openmessenger.protocol import e2e as e2e_wire

if TYPE_CHECKING:
    from openmessenger.client.e2e import EndToEnd
    from openmessenger.client.state import DeviceState, StateStore
    from openmessenger.crypto.device_identity import DeviceIdentity

LINK_WAIT_SECONDS = 600.0
"""How long a new device waits for its link request to be approved (it expires then)."""
ROOM_KEYS_PER_MESSAGE = 100
# How often wait_for_link asks: soon at first, then at most once a second.
LINK_FIRST_PAUSE_SECONDS = 0.02
LINK_MAX_PAUSE_SECONDS = 1.0


class AccountDevices:
    """The account and device methods of ``Client``."""

    if TYPE_CHECKING:  # provided by Client
        server_url: str
        _state: DeviceState | None
        _store: StateStore
        _http: transport.NodeHttp
        _timeout: float

        def __init__(
            self, server_url: str, state_dir: str | os.PathLike[str], *, timeout: float = ...
        ) -> None: ...
        @property
        def device_id(self) -> DeviceId | None: ...
        async def aclose(self) -> None: ...
        async def whoami(self) -> Me: ...
        async def end_to_end(self) -> EndToEnd: ...
        async def _engine_without_bootstrap(self) -> EndToEnd: ...
        async def _receive_to_device(self, engine: EndToEnd) -> None: ...
        async def _call(
            self,
            method: str,
            path: str,
            *,
            body: wire.Request | None = None,
            params: Mapping[str, str | int] | None = None,
        ) -> httpx.Response: ...
        async def _challenge(self) -> wire.ChallengeOut: ...
        async def _authenticate(self, identity: DeviceIdentity) -> DeviceState: ...
        def _save_session(self, session: wire.DeviceSessionOut) -> DeviceState: ...
        def _device_identity(self, state: DeviceState) -> DeviceIdentity: ...

    @property
    def fingerprint(self) -> str:
        """This device's fingerprint (its Ed25519 key in groups), for ``devices list``."""
        state = self._state or self._store.load_or_create(self.server_url)
        return device_fingerprint(state.ed25519_key)

    async def devices(self) -> list[OwnDevice]:
        """This account's devices; ``signed`` ones are named in its signed device list."""
        answer = transport.parse_response(wire.OwnDeviceList, await self._call("GET", "/devices"))
        signed = {
            d.device_id: d for d in (answer.device_list.list.devices if answer.device_list else [])
        }
        if answer.device_list is not None and not verify_device_list(answer.device_list):
            signed = {}
        return [
            OwnDevice(
                device_id=DeviceId(d.device_id),
                fingerprint=device_fingerprint(d.ed25519_key),
                created_at=d.created_at,
                current=d.current,
                signed=(listed := signed.get(d.device_id)) is not None
                and listed.ed25519_key == d.ed25519_key,
            )
            for d in answer.devices
        ]

    async def request_link(self) -> LinkRequest:
        """On a new device: ask to join an account. Show ``code`` to an existing device
        of that account, which approves it; then call :meth:`wait_for_link`."""
        if self._state is not None and self._state.is_registered:
            raise StateError("this profile already belongs to an account")
        state = self._store.load_or_create(self.server_url)
        identity = self._device_identity(state)
        identity.generate_one_time_keys(1)
        key_id, key = next(iter(identity.unpublished_one_time_keys().items()))
        identity.mark_keys_as_published()
        self._store.save_identity(identity)
        challenge = await self._challenge()
        body = wire.LinkRequestIn(
            ed25519_key=identity.ed25519_key,
            curve25519_key=identity.curve25519_key,
            one_time_key=e2e_wire.SignedKey(
                key_id=key_id,
                key=key,
                signature=identity.sign(e2e_wire.one_time_key_signed_bytes("", key_id, key)),
            ),
            challenge=challenge.challenge,
            signature=identity.sign(
                e2e_wire.link_signed_bytes(
                    challenge.domain, challenge.challenge, identity.ed25519_key
                )
            ),
        )
        response = await self._http.request("POST", f"{wire.API_PREFIX}/link-requests", body=body)
        if response.is_error:
            raise transport.error_from_response(response)
        answer = transport.parse_response(wire.LinkRequestOut, response)
        return LinkRequest(
            code=f"{answer.code}-{link_check(identity.ed25519_key)}",
            fingerprint=device_fingerprint(identity.ed25519_key),
            expires_at=answer.expires_at,
        )

    async def wait_for_link(self, wait_seconds: float = LINK_WAIT_SECONDS) -> Me:
        """Wait until an existing device approved :meth:`request_link`; then this
        device has the account's secrets and history keys."""
        state = self._store.load()
        if state is None:
            raise StateError("request a link first")
        identity = self._device_identity(state)
        deadline = asyncio.get_running_loop().time() + wait_seconds
        pause = LINK_FIRST_PAUSE_SECONDS
        while True:
            try:
                self._state = await self._authenticate(identity)
                break
            except ApiError as exc:
                if exc.status != 401 or asyncio.get_running_loop().time() > deadline:
                    raise
            await asyncio.sleep(pause)
            pause = min(pause * 2, LINK_MAX_PAUSE_SECONDS)
        await self.sync_keys()
        engine = await self.end_to_end()
        # The signing key handed over must be the one the account's list is signed
        # with, and that list must name this device (UntrustedDeviceListError if not).
        own = await engine.devices_of(engine.address, fresh=True)
        if engine.device_id not in {d.device_id for d in own.trusted}:
            raise StateError("the account's signed device list does not name this device")
        return await self.whoami()

    async def sync_keys(self) -> None:
        """Apply pending device-to-device messages (secrets, history keys)."""
        await self._receive_to_device(await self.end_to_end())

    async def approve_link(self, code: str) -> OwnDevice:
        """On an existing device: approve a new device's link request ``code``
        (as the new device shows it). The new device gets the account secrets and
        the keys to this account's history."""
        digits, _, check = code.strip().partition("-")
        if not digits.isdigit() or not check:
            raise InvalidArgumentError("code", "expected the code as the new device shows it")
        engine = await self.end_to_end()
        info = transport.parse_response(
            wire.LinkRequestInfo, await self._call("GET", f"/link-requests/{digits}")
        )
        if link_check(info.ed25519_key) != check.upper():
            # The node handed over another device than the one showing the code.
            raise LinkCheckError(code)
        otk = info.one_time_key
        if not verify_ed25519(
            info.ed25519_key,
            e2e_wire.one_time_key_signed_bytes("", otk.key_id, otk.key),
            otk.signature,
        ):
            raise LinkCheckError(code)
        new = e2e_wire.ListedDevice(
            device_id=info.device_id,
            ed25519_key=info.ed25519_key,
            curve25519_key=info.curve25519_key,
        )
        signing = engine.signing_key()
        if signing is None:
            raise StateError("this device does not hold the account signing key")
        own = await engine.devices_of(engine.address, fresh=True)
        secrets = engine.olm_message_to(
            new, otk.key, e2e_wire.AccountSecrets(signing_key_seed=signing.seed)
        )
        body = wire.LinkApproveIn(
            device_list=engine.next_device_list(own, add=[new]), secrets=secrets
        )
        approved = transport.parse_response(
            wire.OwnDeviceList,
            await self._call("POST", f"/link-requests/{digits}/approve", body=body),
        )
        engine.forget_devices(engine.address)
        keys = engine.export_room_keys()
        for start in range(0, len(keys), ROOM_KEYS_PER_MESSAGE):
            bundle = e2e_wire.RoomKeyBundle(sessions=keys[start : start + ROOM_KEYS_PER_MESSAGE])
            olm = engine.olm_message_to(new, otk.key, bundle)
            await self._call(
                "POST",
                "/to-device",
                body=wire.ToDeviceIn(
                    messages=[wire.ToDeviceMessage(device_id=new.device_id, olm=olm)]
                ),
            )
        added = next(d for d in approved.devices if d.device_id == info.device_id)
        return OwnDevice(
            device_id=DeviceId(info.device_id),
            fingerprint=device_fingerprint(info.ed25519_key),
            created_at=added.created_at,
            current=False,
            signed=True,
        )

    async def revoke_device(self, device_id: str) -> None:
        """Remove a device from the account: it receives nothing new, and sessions
        rotate so it cannot read what is sent after."""
        engine = await self.end_to_end()
        own = await engine.devices_of(engine.address, fresh=True)
        body = wire.RevokeDeviceIn(device_list=engine.next_device_list(own, remove=[device_id]))
        await self._call("POST", f"/devices/{quote(device_id, safe='')}/revoke", body=body)
        engine.forget_devices(engine.address)
        engine.drop_outbound_sessions()

    async def replace_device(self, new_state_dir: str | os.PathLike[str]) -> Self:
        """Rotate this device's identity: link a new device (in ``new_state_dir``),
        approve it from here, then revoke this one. Returns the new device's client."""
        new = type(self)(self.server_url, new_state_dir, timeout=self._timeout)
        try:
            request = await new.request_link()
            await self.approve_link(request.code)
            await new.wait_for_link()
            assert self.device_id is not None
            await self.revoke_device(self.device_id)
        except BaseException:
            await new.aclose()
            raise
        return new

    async def setup_backup(self) -> str:
        """Make a recovery key, back the account signing key and every session up
        under it, and return it. Only the user keeps it: the node never sees it."""
        engine = await self.end_to_end()
        signing = engine.signing_key()
        if signing is None:
            raise StateError("this device does not hold the account signing key")
        recovery = RecoveryKey.generate()
        auth_key = recovery.auth_key.public_key
        await self._call(
            "PUT",
            "/backup",
            body=wire.BackupSetupIn(
                recovery_auth_key=auth_key,
                signature=signing.sign(
                    e2e_wire.recovery_auth_signed_bytes(engine.address, auth_key)
                ),
            ),
        )
        own = await engine.devices_of(engine.address, fresh=True)
        await engine.publish_device_list(
            engine.next_device_list(own, backup_key=recovery.backup_public_key)
        )
        await engine.back_up(everything=True)
        return str(recovery)

    async def back_up(self) -> int:
        """Upload sessions not in the backup yet; the number uploaded."""
        return await (await self.end_to_end()).back_up()

    async def restore(self, address: str, recovery_key: str) -> Me:
        """On a new device, with every other device lost: join ``address``'s account
        with its recovery key, take back the signing key and history keys."""
        if self._state is not None and self._state.is_registered:
            raise StateError("this profile already belongs to an account")
        try:
            recovery = RecoveryKey.parse(recovery_key)
        except InvalidRecoveryKey as exc:
            raise InvalidArgumentError("recovery_key", str(exc)) from exc
        target = canonical_address(address)
        state = self._store.load_or_create(self.server_url)
        identity = self._device_identity(state)
        challenge = await self._challenge()
        body = wire.RecoveryIn(
            address=target,
            ed25519_key=identity.ed25519_key,
            curve25519_key=identity.curve25519_key,
            challenge=challenge.challenge,
            signature=identity.sign(
                wire.signed_challenge_bytes(challenge.challenge, challenge.domain)
            ),
            recovery_signature=recovery.auth_key.sign(
                e2e_wire.recovery_signed_bytes(
                    challenge.domain, target, challenge.challenge, identity.ed25519_key
                )
            ),
        )
        response = await self._http.request("POST", f"{wire.API_PREFIX}/recovery", body=body)
        if response.is_error:
            raise transport.error_from_response(response)
        self._state = self._save_session(transport.parse_response(wire.DeviceSessionOut, response))
        engine = await self._engine_without_bootstrap()
        backup = transport.parse_response(wire.BackupOut, await self._call("GET", "/backup"))
        engine.restore_backup(recovery, backup)
        own = await engine.devices_of(engine.address, fresh=True)
        await engine.publish_device_list(engine.next_device_list(own, add=[engine.listed_self()]))
        await self.end_to_end()  # publishes this device's keys
        return await self.whoami()

    async def safety_number(self, address: str) -> str:
        """The number both people compare (``openmessenger verify``): it changes when
        either account's signing key changes."""
        target = canonical_address(address)
        engine = await self.end_to_end()
        theirs = (await engine.devices_of(target, fresh=True)).signing_key
        mine = engine.signing_key()
        if theirs is None or mine is None:
            raise StateError(f"{target} has no signed device list: nothing to verify")
        return safety_number(engine.address, mine.public_key, target, theirs)

    async def set_rotation(
        self, *, messages: int | None = None, seconds: float | None = None
    ) -> None:
        """This device's Megolm rotation period: a new session after ``messages``
        messages or ``seconds`` seconds, whichever comes first (the stricter of this
        and the account's setting applies)."""
        (await self.end_to_end()).set_rotation(messages=messages, seconds=seconds)

    async def set_account_rotation(self, *, messages: int, seconds: int) -> None:
        """The account's rotation period, for all its devices: signed into its
        device list, so the node cannot lengthen it."""
        engine = await self.end_to_end()
        own = await engine.devices_of(engine.address, fresh=True)
        rotation = e2e_wire.Rotation(messages=messages, seconds=seconds)
        await engine.publish_device_list(engine.next_device_list(own, rotation=rotation))


def canonical_address(address: str) -> Address:
    """``address`` in its one spelling; InvalidArgumentError if it is not one."""
    try:
        return parse_address(address).address
    except InvalidInput as exc:
        raise InvalidArgumentError("address", exc.reason) from exc
