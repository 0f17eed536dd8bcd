"""New devices joining an existing account, without passwords.

Linking: the new device proves it holds its key and gets a 10-digit code (kept
by the node only as an HMAC, for 10 minutes, once). A device of the account
looks the code up, sees the new device's keys, and approves it with the
account's new signed device list and an Olm message of secrets for it; the new
device then logs in as any device does (``POST /v1/auth/token``).

Recovery: a user who lost every device proves, with a key derived from the
recovery key, that the account is theirs; a new device joins the account.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from openmessenger.core.errors import Conflict, InvalidInput, NotFound, Unauthenticated
from openmessenger.core.ids import DeviceId, Domain, parse_address
from openmessenger.core.records import AuthenticatedDevice, Device, LinkRequest, SignedOneTimeKey
from openmessenger.crypto.keys import decode_base64_key, verify_ed25519
from openmessenger.protocol.client_api import signed_challenge_bytes
from openmessenger.protocol.e2e import (
    OlmCiphertext,
    SignedDeviceList,
    link_signed_bytes,
    one_time_key_signed_bytes,
    recovery_signed_bytes,
)
from openmessenger.services.devices import DeviceService, DeviceSession
from openmessenger.services.keys import OwnDevices, check_device_list, store_device_list
from openmessenger.services.ports import Clock, Secrets, UnitOfWork

LINK_CODE_DIGITS = 10
LINK_TTL = timedelta(minutes=10)
LINK_DEVICE_ID = ""
"""The device id a link request's one-time key is signed with: the new device
does not know its id until it is approved."""
_LINK_PURPOSE = "link-request"
_CODE_RE = re.compile(rf"[0-9]{{{LINK_CODE_DIGITS}}}")
_MAX_DRAWS = 8


@dataclass(frozen=True, slots=True)
class IssuedLinkCode:
    """The only moment the code exists outside the new device: the node keeps an HMAC."""

    code: str
    expires_at: datetime


def _no_request() -> NotFound:
    # Unknown, expired and used codes look the same.
    return NotFound("No pending link request with that code.")


class LinkingService:
    def __init__(
        self,
        uow: UnitOfWork,
        clock: Clock,
        secrets: Secrets,
        domain: Domain,
        devices: DeviceService,
    ) -> None:
        self._uow = uow
        self._clock = clock
        self._secrets = secrets
        self._domain = domain
        self._devices = devices

    def _code_hmac(self, code: str) -> str | None:
        if not _CODE_RE.fullmatch(code):
            return None
        return self._secrets.hmac(_LINK_PURPOSE, code)

    async def request(
        self,
        *,
        ed25519_key: str,
        curve25519_key: str,
        one_time_key: SignedOneTimeKey,
        challenge: str,
        signature: str,
    ) -> IssuedLinkCode:
        """A new device asks to join an account. It signs
        ``link_signed_bytes(domain, challenge, ed25519_key)`` over a challenge from
        ``POST /v1/auth/challenge`` (spent by this call, whatever the outcome), and
        signs its one-time key with device id ``""`` (:data:`LINK_DEVICE_ID`): it
        learns its real id only once approved. An existing device approves the
        request with the returned code."""
        if decode_base64_key(curve25519_key, 32) is None:
            raise InvalidInput("curve25519_key", "must be a 32-byte key in base64")
        signed_key = one_time_key_signed_bytes(
            LINK_DEVICE_ID, one_time_key.key_id, one_time_key.key
        )
        if not verify_ed25519(ed25519_key, signed_key, one_time_key.signature):
            raise InvalidInput("one_time_key.signature", "does not verify with ed25519_key")
        now = self._clock.now()
        fresh = await self._devices.consume_challenge(challenge, now)
        proof = link_signed_bytes(self._domain, challenge, ed25519_key)
        if not fresh or not verify_ed25519(ed25519_key, proof, signature):
            raise Unauthenticated("The challenge signature is not valid, or the challenge expired.")
        expires_at = now + LINK_TTL
        async with self._uow() as tx:
            asking = await tx.link_requests.by_ed25519_key(ed25519_key)
            if await tx.keys.key_taken(ed25519_key) or (asking and asking.expires_at > now):
                raise Conflict("This key is already registered or asking.", code="device_exists")
            for _ in range(_MAX_DRAWS):
                code = self._secrets.digits(LINK_CODE_DIGITS)
                code_hmac = self._code_hmac(code)
                assert code_hmac is not None
                request = LinkRequest(
                    code_hmac=code_hmac,
                    device_id=DeviceId(self._secrets.identifier()),
                    ed25519_key=ed25519_key,
                    curve25519_key=curve25519_key,
                    one_time_key=one_time_key,
                    expires_at=expires_at,
                    approved_at=None,
                )
                if await tx.link_requests.add(request, now):
                    break
                if await tx.link_requests.by_ed25519_key(ed25519_key) is not None:
                    # The same key, asking at the same moment from elsewhere.
                    raise Conflict("This key is already asking.", code="device_exists")
            else:  # pragma: no cover - ten digits drawn eight times, all live
                raise Conflict("Try again.", code="try_again")
            await tx.commit()
        return IssuedLinkCode(code, expires_at)

    async def pending(self, caller: AuthenticatedDevice, code: str) -> LinkRequest:
        """The request a code names, for a device of the account to approve; any
        authenticated device may look, and a bad, expired or used code is NotFound."""
        code_hmac = self._code_hmac(code)
        if code_hmac is None:
            raise _no_request()
        async with self._uow() as tx:
            request = await tx.link_requests.by_code_hmac(code_hmac)
        if request is None or request.approved_at is not None:
            raise _no_request()
        if request.expires_at <= self._clock.now():
            raise _no_request()
        return request

    async def approve(
        self,
        caller: AuthenticatedDevice,
        code: str,
        signed: SignedDeviceList,
        secrets: OlmCiphertext,
    ) -> OwnDevices:
        """Add the requesting device to the caller's account, in one transaction:
        the device, the account's new signed list (which must name it, with the
        same checks as any new list), ``secrets`` as a to-device message from the
        caller to it, and the request marked used."""
        code_hmac = self._code_hmac(code)
        if code_hmac is None:
            raise _no_request()
        account = caller.account
        now = self._clock.now()
        async with self._uow() as tx:
            request = await tx.link_requests.by_code_hmac(code_hmac)
            # Marked used first: of two approvals racing, one gets here.
            if request is None or not await tx.link_requests.approve(code_hmac, now):
                raise _no_request()
            if await tx.keys.key_taken(request.ed25519_key):
                raise Conflict("This key is already registered.", code="device_exists")
            new_device = Device(
                id=request.device_id,
                account_id=account.id,
                ed25519_key=request.ed25519_key,
                curve25519_key=request.curve25519_key,
                created_at=now,
            )
            stored = await tx.keys.account_keys(account.id, for_update=True)
            devices = [*await tx.keys.devices(account.id), new_device]
            check_device_list(
                signed,
                address=account.address,
                stored=stored,
                devices=devices,
                must_list=(caller.device.id, new_device.id),
            )
            await tx.devices.create(new_device)
            text = await store_device_list(tx, account.id, signed, stored)
            await tx.to_device.add(
                caller.device.id,
                caller.device.curve25519_key.rstrip("="),
                [(new_device.id, secrets.model_dump_json())],
                now,
            )
            await tx.commit()
        return OwnDevices(devices, text, caller.device.id)

    async def recover(
        self,
        *,
        address: str,
        ed25519_key: str,
        curve25519_key: str,
        challenge: str,
        signature: str,
        recovery_signature: str,
    ) -> DeviceSession:
        """A new device joins the account at ``address`` with the recovery key's
        proof: ``recovery_signature`` over ``recovery_signed_bytes(domain, address,
        challenge, ed25519_key)`` by the account's recovery auth key, besides the
        device's own signature over the challenge, as at registration. An unknown
        address, an account without a backup and a wrong signature all get the
        same ``Unauthenticated``."""
        if decode_base64_key(curve25519_key, 32) is None:
            raise InvalidInput("curve25519_key", "must be a 32-byte key in base64")
        target = parse_address(address).address
        now = self._clock.now()
        refused = Unauthenticated("The recovery proof is not valid, or the challenge expired.")
        fresh = await self._devices.consume_challenge(challenge, now)
        proof = signed_challenge_bytes(challenge, self._domain)
        if not fresh or not verify_ed25519(ed25519_key, proof, signature):
            raise refused
        async with self._uow() as tx:
            account = await tx.accounts.by_address(target)
            keys = await tx.keys.account_keys(account.id) if account else None
            auth_key = keys.recovery_auth_key if keys else None
            signed = recovery_signed_bytes(self._domain, target, challenge, ed25519_key)
            if (
                account is None
                or auth_key is None
                or not verify_ed25519(auth_key, signed, recovery_signature)
            ):
                raise refused
            session = await self._devices.enroll(tx, account, ed25519_key, curve25519_key, now)
            await tx.commit()
        return session
