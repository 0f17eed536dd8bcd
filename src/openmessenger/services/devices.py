"""Onboarding: a device registers itself with its own keys, no sign-up.

Possession of the Ed25519 key is proven by signing a one-time challenge; the
node creates an anonymous account with a random address for a new key, and
hands out bearer tokens that it stores only as HMACs.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timedelta

from openmessenger.core.errors import Conflict, InvalidInput, Unauthenticated
from openmessenger.core.ids import AccountId, Address, DeviceId, Domain, validate_display_name
from openmessenger.core.records import Account, AccountKind, AuthenticatedDevice, Device
from openmessenger.crypto.keys import decode_base64_key, verify_ed25519
from openmessenger.protocol.client_api import signed_challenge_bytes
from openmessenger.services.ports import (
    AccountRepository,
    Clock,
    DeviceRepository,
    Secrets,
    UnitOfWork,
)

CHALLENGE_TTL = timedelta(minutes=5)
ADDRESS_DIGITS = 10
TOKEN_BYTES = 32
TOKEN_CACHE_TTL = timedelta(seconds=60)
TOKEN_CACHE_SIZE = 100_000
_TOKEN_PURPOSE = "device-token"  # noqa: S105 - an HMAC domain label
_CHALLENGE_PURPOSE = "auth-challenge"


@dataclass(frozen=True, slots=True)
class Challenge:
    value: str
    domain: Domain
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class DeviceSession:
    device: Device
    account: Account
    access_token: str


class DeviceService:
    def __init__(self, uow: UnitOfWork, clock: Clock, secrets: Secrets, domain: Domain) -> None:
        self._uow = uow
        self._clock = clock
        self._secrets = secrets
        self._domain = domain
        self._recent_tokens: OrderedDict[str, tuple[AuthenticatedDevice, datetime]] = OrderedDict()

    async def issue_challenge(self) -> Challenge:
        value = self._secrets.token(32)
        expires_at = self._clock.now() + CHALLENGE_TTL
        async with self._uow() as tx:
            await tx.challenges.add(self._secrets.hmac(_CHALLENGE_PURPOSE, value), expires_at)
            await tx.commit()
        return Challenge(value, self._domain, expires_at)

    async def register(
        self,
        *,
        ed25519_key: str,
        curve25519_key: str,
        challenge: str,
        signature: str,
        display_name: str | None,
    ) -> DeviceSession:
        if decode_base64_key(curve25519_key, 32) is None:
            raise InvalidInput("curve25519_key", "must be a 32-byte key in base64")
        name = validate_display_name(display_name) if display_name is not None else None
        now = self._clock.now()
        await self._prove_possession(ed25519_key, challenge, signature, now)
        async with self._uow() as tx:
            if await tx.devices.by_ed25519_key(ed25519_key) is not None:
                raise Conflict("This key is already registered.", code="device_exists")
            account = await self._create_account(tx.accounts, now)
            if name is not None:
                await tx.accounts.set_display_name(account.id, name)
                account = Account(account.id, account.address, account.kind, name, now)
            device = Device(
                id=DeviceId(self._secrets.identifier()),
                account_id=account.id,
                ed25519_key=ed25519_key,
                curve25519_key=curve25519_key,
                created_at=now,
            )
            await tx.devices.create(device)
            token = await self._new_token(tx.devices, device.id, now)
            await tx.commit()
        return DeviceSession(device, account, token)

    async def login(self, *, ed25519_key: str, challenge: str, signature: str) -> DeviceSession:
        now = self._clock.now()
        await self._prove_possession(ed25519_key, challenge, signature, now)
        async with self._uow() as tx:
            device = await tx.devices.by_ed25519_key(ed25519_key)
            account = await tx.accounts.get(device.account_id) if device else None
            if device is None or account is None:
                raise Unauthenticated("Unknown device key.")
            token = await self._new_token(tx.devices, device.id, now)
            await tx.commit()
        return DeviceSession(device, account, token)

    async def authenticate(self, access_token: str) -> AuthenticatedDevice:
        if not access_token:
            raise Unauthenticated("An access token is required.")
        token_hmac = self._secrets.hmac(_TOKEN_PURPOSE, access_token)
        now = self._clock.now()
        cached = self._recent_tokens.get(token_hmac)
        if cached is not None and cached[1] > now:
            return cached[0]
        async with self._uow() as tx:
            device = await tx.devices.by_token(token_hmac)
            account = await tx.accounts.get(device.account_id) if device else None
        if device is None or account is None:
            raise Unauthenticated("The access token is not valid.")
        caller = AuthenticatedDevice(device, account)
        # Every request authenticates: remembering a valid token for a short
        # while saves a database round trip on each. Unknown tokens are never
        # remembered, so a guesser gains nothing from it.
        self._recent_tokens[token_hmac] = (caller, now + TOKEN_CACHE_TTL)
        self._recent_tokens.move_to_end(token_hmac)
        while len(self._recent_tokens) > TOKEN_CACHE_SIZE:
            self._recent_tokens.popitem(last=False)
        return caller

    async def _prove_possession(
        self, ed25519_key: str, challenge: str, signature: str, now: datetime
    ) -> None:
        # The challenge is spent in its own transaction, whatever follows: a
        # signed request works once, so replaying a captured one gets nothing.
        async with self._uow() as tx:
            fresh = await tx.challenges.consume(
                self._secrets.hmac(_CHALLENGE_PURPOSE, challenge), now
            )
            await tx.commit()
        signed = signed_challenge_bytes(challenge, self._domain)
        if not fresh or not verify_ed25519(ed25519_key, signed, signature):
            raise Unauthenticated("The challenge signature is not valid, or the challenge expired.")

    async def _create_account(self, accounts: AccountRepository, now: datetime) -> Account:
        # Random numbers, never sequential; a collision just draws again.
        while True:
            address = Address(f"{self._secrets.digits(ADDRESS_DIGITS)}*{self._domain}")
            account = await accounts.create(
                account_id=AccountId(self._secrets.identifier()),
                address=address,
                kind=AccountKind.ANONYMOUS,
                now=now,
            )
            if account is not None:
                return account

    async def _new_token(
        self, devices: DeviceRepository, device_id: DeviceId, now: datetime
    ) -> str:
        token = self._secrets.token(TOKEN_BYTES)
        await devices.add_token(device_id, self._secrets.hmac(_TOKEN_PURPOSE, token), now)
        return token
