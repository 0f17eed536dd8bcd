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
    Transaction,
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
        # Devices revoked by this process lately: refused even if a token check
        # that read the store before the revocation remembers them afterwards.
        self._revoked: dict[DeviceId, datetime] = {}

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
        await self.prove_possession(ed25519_key, challenge, signature, now)
        async with self._uow() as tx:
            if await tx.keys.key_taken(ed25519_key):  # before an account is made for it
                raise Conflict("This key is already registered.", code="device_exists")
            account = await self.create_account(tx.accounts, now)
            if name is not None:
                await tx.accounts.set_display_name(account.id, name)
                account = Account(account.id, account.address, account.kind, name, now)
            session = await self.enroll(tx, account, ed25519_key, curve25519_key, now)
            await tx.commit()
        return session

    async def enroll(
        self,
        tx: Transaction,
        account: Account,
        ed25519_key: str,
        curve25519_key: str,
        now: datetime,
    ) -> DeviceSession:
        """A new device of ``account`` with its first token, in the caller's
        transaction (registration and recovery). A key ever registered, revoked
        devices' too, is refused."""
        if await tx.keys.key_taken(ed25519_key):
            raise Conflict("This key is already registered.", code="device_exists")
        device = Device(
            id=DeviceId(self._secrets.identifier()),
            account_id=account.id,
            ed25519_key=ed25519_key,
            curve25519_key=curve25519_key,
            created_at=now,
        )
        await tx.devices.create(device)
        token = await self.new_token(tx.devices, device.id, now)
        return DeviceSession(device, account, token)

    async def login(self, *, ed25519_key: str, challenge: str, signature: str) -> DeviceSession:
        now = self._clock.now()
        await self.prove_possession(ed25519_key, challenge, signature, now)
        async with self._uow() as tx:
            device = await tx.devices.by_ed25519_key(ed25519_key)
            account = await tx.accounts.get(device.account_id) if device else None
            if device is None or account is None:
                raise Unauthenticated("Unknown device key.")
            token = await self.new_token(tx.devices, device.id, now)
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
        if device is None or account is None or self._recently_revoked(device.id, now):
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

    def forget_device(self, device_id: DeviceId) -> None:
        """The device was revoked: its tokens stop working at once in this process
        (another process of the node stops taking them within ``TOKEN_CACHE_TTL``)."""
        now = self._clock.now()
        for token_hmac, (caller, _) in list(self._recent_tokens.items()):
            if caller.device.id == device_id:
                del self._recent_tokens[token_hmac]
        self._revoked = {d: t for d, t in self._revoked.items() if t > now}
        self._revoked[device_id] = now + TOKEN_CACHE_TTL

    def _recently_revoked(self, device_id: DeviceId, now: datetime) -> bool:
        until = self._revoked.get(device_id) if self._revoked else None
        return until is not None and until > now

    async def consume_challenge(self, challenge: str, now: datetime) -> bool:
        """Spend a challenge from :meth:`issue_challenge`; True only the first time,
        and only before it expires. Spent in its own transaction, whatever follows:
        a signed request works once, so replaying a captured one gets nothing."""
        async with self._uow() as tx:
            fresh = await tx.challenges.consume(
                self._secrets.hmac(_CHALLENGE_PURPOSE, challenge), now
            )
            await tx.commit()
        return fresh

    async def prove_possession(
        self, ed25519_key: str, challenge: str, signature: str, now: datetime
    ) -> None:
        fresh = await self.consume_challenge(challenge, now)
        signed = signed_challenge_bytes(challenge, self._domain)
        if not fresh or not verify_ed25519(ed25519_key, signed, signature):
            raise Unauthenticated("The challenge signature is not valid, or the challenge expired.")

    async def create_account(
        self,
        accounts: AccountRepository,
        now: datetime,
        kind: AccountKind = AccountKind.ANONYMOUS,
    ) -> Account:
        """A new account at a random address, in the caller's transaction."""
        # Random numbers, never sequential; a collision just draws again.
        while True:
            address = Address(f"{self._secrets.digits(ADDRESS_DIGITS)}*{self._domain}")
            account = await accounts.create(
                account_id=AccountId(self._secrets.identifier()),
                address=address,
                kind=kind,
                now=now,
            )
            if account is not None:
                return account

    async def new_token(self, devices: DeviceRepository, device_id: DeviceId, now: datetime) -> str:
        """A fresh bearer token for the device, stored (as an HMAC) in the caller's
        transaction."""
        token = self._secrets.token(TOKEN_BYTES)
        await devices.add_token(device_id, self._secrets.hmac(_TOKEN_PURPOSE, token), now)
        return token
