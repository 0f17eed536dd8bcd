"""Registered accounts: an anonymous (or managed) account becomes registered,
owned by a person or an organisation, once it proves an e-mail address or a
phone number (a one-time code sent there) or sets up TOTP.

The node never keeps an address or a number: verifications and verified
identities hold their HMAC under the node secret (a plain hash of a phone
number is reversed in milliseconds). The plaintext is used to send the code and
is neither stored nor logged. Codes are kept as HMACs bound to their
verification, TOTP secrets sealed under the node secret.

The apps feature reuses the verification: ``start(account_id, channel, to,
purpose="link", app_id=...)``, then ``confirm(...)`` gives a
:class:`ProvenIdentity` for it to merge with (``tx.identities.owner`` / ``move``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import math
import re
from dataclasses import dataclass
from datetime import datetime, timedelta

import pyotp

from openmessenger.core.errors import (
    Conflict,
    InvalidInput,
    NotFound,
    RateLimited,
    Unavailable,
)
from openmessenger.core.ids import AccountId, Domain, validate_display_name
from openmessenger.core.records import Account, AccountKind, AuthenticatedDevice, OwnerKind
from openmessenger.services.ports import (
    Channel,
    Clock,
    DeliveryFailed,
    EmailSender,
    Identity,
    IdentityKind,
    Secrets,
    SmsSender,
    Transaction,
    UnitOfWork,
    Verification,
    VerificationPurpose,
)

log = logging.getLogger(__name__)

CODE_DIGITS = 6
CODE_TTL = timedelta(minutes=10)
MAX_ATTEMPTS = 5
"""Wrong codes a verification takes; then it is dead."""
SEND_WINDOW = timedelta(hours=1)
MAX_SENDS_PER_ACCOUNT = 5
"""Codes one account may have sent in :data:`SEND_WINDOW`."""
MAX_SENDS_PER_TARGET = 5
"""Codes one address or number may receive in :data:`SEND_WINDOW`, from all
accounts together: anonymous accounts cost nothing, so a per-account limit alone
would not stop the node from being used to flood someone's inbox."""

TOTP_STEP_SECONDS = 30
TOTP_MAX_FAILURES = 5
"""Wrong TOTP codes in a row before a lockout (see :meth:`RegistrationService.totp_confirm`)."""
TOTP_MAX_LOCK_STEPS = 1024
"""The longest lockout: about eight and a half hours."""

MAX_EMAIL_LENGTH = 254
MAX_EMAIL_LOCAL_LENGTH = 64
_EMAIL_FORBIDDEN = set('<>()[]\\,;:"')
_PHONE_RE = re.compile(r"\+[1-9][0-9]{7,14}")
_PHONE_SEPARATORS = str.maketrans("", "", " -.()")
_CODE_RE = re.compile(rf"[0-9]{{{CODE_DIGITS}}}")
_ID_RE = re.compile(r"[0-9a-f]{32}")

_IDENTITY_OF = {Channel.EMAIL: IdentityKind.EMAIL, Channel.SMS: IdentityKind.PHONE}
_CODE_PURPOSE = "verification-code"
_TOTP_PURPOSE = "totp-secret"


# --- pure rules ----------------------------------------------------------------------


def normalise_email(value: str, *, field: str = "to") -> str:
    """Trimmed and lower-cased, one ``@``, a dotted domain, at most 254 characters,
    nothing that could break a mail header. Lower-casing the local part is
    stricter than RFC 5321, but no provider in use tells case apart, and one
    address must give one HMAC."""
    email = value.strip().lower()
    if len(email) > MAX_EMAIL_LENGTH:
        raise InvalidInput(field, f"must be at most {MAX_EMAIL_LENGTH} characters")
    local, at, domain = email.partition("@")
    if not at or "@" in domain or not local or len(local) > MAX_EMAIL_LOCAL_LENGTH:
        raise InvalidInput(field, "is not an e-mail address")
    if any(ch.isspace() or not ch.isprintable() or ch in _EMAIL_FORBIDDEN for ch in email):
        raise InvalidInput(field, "is not an e-mail address")
    if local.startswith(".") or local.endswith(".") or ".." in local:
        raise InvalidInput(field, "is not an e-mail address")
    labels = domain.split(".")
    if len(labels) < 2 or any(
        not label or len(label) > 63 or label[0] == "-" or label[-1] == "-" for label in labels
    ):
        raise InvalidInput(field, "needs a domain such as example.org after the '@'")
    return email


def normalise_phone(value: str, *, field: str = "to") -> str:
    """E.164: ``+``, a country code, 8 to 15 digits in all; spaces, dashes, dots
    and parentheses are dropped."""
    number = value.strip().translate(_PHONE_SEPARATORS)
    if not _PHONE_RE.fullmatch(number):
        raise InvalidInput(field, "must be a phone number in E.164 form, e.g. +447700900123")
    return number


def normalise(channel: Channel, value: str, *, field: str = "to") -> str:
    if channel is Channel.EMAIL:
        return normalise_email(value, field=field)
    return normalise_phone(value, field=field)


def totp_step(now: datetime) -> int:
    """The RFC 6238 time step of ``now`` (what pyotp's ``timecode`` gives)."""
    return int(now.timestamp()) // TOTP_STEP_SECONDS


def totp_lock_steps(failures: int) -> int:
    """Steps after the current one that TOTP stays locked once ``failures`` wrong
    codes in a row were given: none until :data:`TOTP_MAX_FAILURES`, then one
    step, doubling with every further five, up to :data:`TOTP_MAX_LOCK_STEPS`."""
    if failures < TOTP_MAX_FAILURES or failures % TOTP_MAX_FAILURES:
        return 0
    return int(min(2 ** (failures // TOTP_MAX_FAILURES - 1), TOTP_MAX_LOCK_STEPS))


def _wrong_code() -> InvalidInput:
    # Wrong, expired, used, dead, unknown and someone else's look the same.
    return InvalidInput("code", "is wrong or expired")


def _seconds_until(moment: datetime, now: datetime) -> int:
    return max(1, math.ceil((moment - now).total_seconds()))


# --- results -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PendingVerification:
    """A code is on its way; confirm it with ``id`` before ``expires_at``."""

    id: str
    channel: Channel
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class ProvenIdentity:
    """The caller showed it receives mail or texts at the identity behind
    ``value_hmac`` (the plaintext is gone)."""

    kind: IdentityKind
    value_hmac: str
    purpose: VerificationPurpose
    app_id: str | None


@dataclass(frozen=True, slots=True)
class TotpEnrolment:
    """Shown once: the node keeps the secret only sealed."""

    secret: str
    """Base32, for typing into an authenticator app."""
    uri: str
    """``otpauth://`` URI, for a QR code."""


# --- the service ---------------------------------------------------------------------


class RegistrationService:
    def __init__(
        self,
        uow: UnitOfWork,
        clock: Clock,
        secrets: Secrets,
        domain: Domain,
        *,
        email: EmailSender | None,
        sms: SmsSender | None,
    ) -> None:
        """``email``/``sms``: None when the operator configured no such channel."""
        self._uow = uow
        self._clock = clock
        self._secrets = secrets
        self._domain = domain
        self._email = email
        self._sms = sms

    def identity_hmac(self, kind: IdentityKind, value: str) -> str:
        """The HMAC an identity is stored under (``value`` is normalised first);
        raises InvalidInput("to") if it is not an e-mail address / phone number."""
        if kind is IdentityKind.EMAIL:
            return self._secrets.hmac("identity-email", normalise_email(value))
        return self._secrets.hmac("identity-phone", normalise_phone(value))

    def _code_hmac(self, verification_id: str, code: str) -> str:
        # Bound to its verification: one code's HMAC says nothing about another's.
        return self._secrets.hmac(_CODE_PURPOSE, f"{verification_id}:{code}")

    # --- codes by e-mail or SMS ----------------------------------------------------

    async def start(
        self,
        account_id: AccountId,
        channel: Channel | str,
        to: str,
        *,
        purpose: VerificationPurpose | str = VerificationPurpose.REGISTER,
        app_id: str | None = None,
    ) -> PendingVerification:
        """Send a fresh 6-digit code to ``to`` (valid 10 minutes, 5 attempts).
        At most 5 sends per account and 5 per recipient in any hour
        (``RateLimited``); ``Unavailable`` when the channel is not configured or
        the server refused the message."""
        channel, purpose = Channel(channel), VerificationPurpose(purpose)
        if channel is Channel.EMAIL and self._email is None:
            raise Unavailable("This node sends no codes by e-mail.", code="channel_not_configured")
        if channel is Channel.SMS and self._sms is None:
            raise Unavailable("This node sends no codes by SMS.", code="channel_not_configured")
        target = normalise(channel, to)
        target_hmac = self.identity_hmac(_IDENTITY_OF[channel], target)
        now = self._clock.now()
        verification_id = self._secrets.identifier()
        code = self._secrets.digits(CODE_DIGITS)
        verification = Verification(
            id=verification_id,
            account_id=account_id,
            channel=channel,
            target_hmac=target_hmac,
            code_hmac=self._code_hmac(verification_id, code),
            attempts=0,
            expires_at=now + CODE_TTL,
            purpose=purpose,
            app_id=app_id,
        )
        # A row expiring after this was sent within the window (its expiry is its
        # send time plus CODE_TTL); older rows are swept: the limits need no more.
        horizon = now - SEND_WINDOW + CODE_TTL
        async with self._uow() as tx:
            if not await tx.verifications.lock_account(account_id):
                raise NotFound("No such account.")
            await tx.verifications.sweep(horizon)
            sent = await tx.verifications.expiries_for_account(account_id, horizon)
            _check_limit(sent, MAX_SENDS_PER_ACCOUNT, "account", now)
            sent = await tx.verifications.expiries_for_target(target_hmac, horizon)
            _check_limit(sent, MAX_SENDS_PER_TARGET, "recipient", now)
            await tx.verifications.add(verification)
            await tx.commit()
        # Sent after the commit: no transaction waits on a mail server.
        try:
            await self._send(channel, target, code)
        except DeliveryFailed as exc:
            async with self._uow() as tx:
                await tx.verifications.delete(verification_id)
                await tx.commit()
            log.warning("a verification code by %s was not delivered: %s", channel.value, exc)
            raise Unavailable(
                "The code could not be sent; try again later.", code="delivery_failed"
            ) from None
        return PendingVerification(verification_id, channel, verification.expires_at)

    async def _send(self, channel: Channel, to: str, code: str) -> None:
        if channel is Channel.EMAIL:
            assert self._email is not None
            await self._email.send(
                to,
                f"Your {self._domain} verification code: {code}",
                f"Your verification code for {self._domain} is {code}.\n\n"
                f"It expires in {CODE_TTL.seconds // 60} minutes. If you did not ask "
                "for it, ignore this message: nothing happens without the code.\n",
            )
        else:
            assert self._sms is not None
            await self._sms.send(to, f"{code} is your {self._domain} verification code.")

    async def confirm(
        self,
        account_id: AccountId,
        verification_id: str,
        code: str,
        *,
        purpose: VerificationPurpose | str | None = None,
    ) -> ProvenIdentity:
        """Spend a verification of ``account_id`` (of ``purpose``, when given) with
        its code. A wrong, expired, used, unknown or foreign one gets the same
        ``InvalidInput("code")``; the fifth wrong code kills it."""
        wanted = VerificationPurpose(purpose) if purpose is not None else None
        async with self._uow() as tx:
            verification = await self._spend(tx, account_id, verification_id, code, wanted)
            await tx.commit()
        return _proven(verification)

    async def _spend(
        self,
        tx: Transaction,
        account_id: AccountId,
        verification_id: str,
        code: str,
        purpose: VerificationPurpose | None,
    ) -> Verification:
        """Delete the verification if ``code`` is its code. Must be the first write
        of ``tx``: a wrong code is counted (committed) before the refusal."""
        if not _ID_RE.fullmatch(verification_id) or not _CODE_RE.fullmatch(code):
            raise _wrong_code()
        found = await tx.verifications.get(verification_id, for_update=True)
        if (
            found is None
            or found.account_id != account_id
            or (purpose is not None and found.purpose is not purpose)
            or found.attempts >= MAX_ATTEMPTS
            or found.expires_at <= self._clock.now()
        ):
            raise _wrong_code()
        if not hmac.compare_digest(found.code_hmac, self._code_hmac(found.id, code)):
            if await tx.verifications.record_failure(found.id) >= MAX_ATTEMPTS:
                # Dead; kept without its code only as a record of the send.
                await tx.verifications.retire(found.id)
            await tx.commit()
            raise _wrong_code()
        await tx.verifications.delete(found.id)
        return found

    # --- registering the calling account -------------------------------------------

    async def register_start(
        self, caller: AuthenticatedDevice, channel: Channel | str, to: str
    ) -> PendingVerification:
        return await self.start(caller.account.id, channel, to)

    async def register_confirm(
        self,
        caller: AuthenticatedDevice,
        verification_id: str,
        code: str,
        owner_kind: OwnerKind | None,
        display_name: str | None = None,
    ) -> Account:
        """Bind the proven identity to the caller's account and register it.
        ``owner_kind`` is needed unless the account is registered already (then
        it changes the owner kind). An identity another account holds is
        ``Conflict("identity_in_use")``, and nothing changes."""
        name = validate_display_name(display_name) if display_name is not None else None
        now = self._clock.now()
        async with self._uow() as tx:
            account = await self._account(tx, caller, owner_kind)
            spent = await self._spend(
                tx, account.id, verification_id, code, VerificationPurpose.REGISTER
            )
            await _bind(tx, account.id, _IDENTITY_OF[spent.channel], spent.target_hmac, now)
            updated = await _register(tx, account, owner_kind, name, now)
            await tx.commit()
        return updated

    async def _account(
        self, tx: Transaction, caller: AuthenticatedDevice, owner_kind: OwnerKind | None
    ) -> Account:
        # Read afresh: the authenticated copy may be a minute old.
        account = await tx.accounts.get(caller.account.id)
        if account is None:
            raise NotFound("No such account.")
        if owner_kind is None and account.kind is not AccountKind.REGISTERED:
            raise InvalidInput("owner_kind", "is needed to register: person or organisation")
        return account

    async def identities(self, caller: AuthenticatedDevice) -> list[Identity]:
        """The account's verified e-mail addresses and phone numbers: their kind
        and when, since their values exist only as HMACs."""
        async with self._uow() as tx:
            return await tx.identities.list_for(caller.account.id)

    # --- TOTP ----------------------------------------------------------------------

    async def totp_setup(self, caller: AuthenticatedDevice) -> TotpEnrolment:
        """A new TOTP secret (160 bits, SHA-1, 6 digits, 30 s: what authenticator
        apps expect), replacing one not yet confirmed. Once confirmed it stays:
        ``Conflict("totp_already_set")``."""
        # Hashed so the secret does not depend on the token's text form.
        raw = hashlib.sha256(self._secrets.token(32).encode()).digest()[:20]
        secret = base64.b32encode(raw).decode()
        sealed = self._secrets.seal(_TOTP_PURPOSE, secret)
        async with self._uow() as tx:
            if not await tx.totp.put(caller.account.id, sealed):
                raise Conflict("TOTP is set up already for this account.", code="totp_already_set")
            await tx.commit()
        uri = pyotp.TOTP(secret).provisioning_uri(
            name=caller.account.address, issuer_name=self._domain
        )
        return TotpEnrolment(secret, uri)

    async def totp_confirm(
        self, caller: AuthenticatedDevice, code: str, owner_kind: OwnerKind | None
    ) -> Account:
        """Check a TOTP code (the current step, one before or one after) and
        register the account, as :meth:`register_confirm` does; the first right
        code confirms the secret.

        A code of a step already used (or older) is refused: no replay. Wrong
        codes are counted: the fifth in a row locks TOTP until the end of the
        next 30 s step (``RateLimited`` with the seconds left), every further
        fifth doubles the lock (at most :data:`TOTP_MAX_LOCK_STEPS` steps); a
        right code clears the count. Refusals during a lock are not counted."""
        now = self._clock.now()
        step = totp_step(now)
        async with self._uow() as tx:
            account = await self._account(tx, caller, owner_kind)
            stored = await tx.totp.get(account.id, for_update=True)
            if stored is None:
                raise NotFound("Set up TOTP first.", code="totp_not_set_up")
            if stored.failures >= TOTP_MAX_FAILURES and step <= stored.last_step:
                unlock = (stored.last_step + 1) * TOTP_STEP_SECONDS
                retry_after = max(1, math.ceil(unlock - now.timestamp()))
                raise RateLimited("TOTP secret", retry_after)
            secret = self._secrets.unseal(_TOTP_PURPOSE, stored.sealed_secret)
            matched = _matching_step(secret, code, step, stored.last_step)
            if matched is None:
                failures = stored.failures + 1
                lock = totp_lock_steps(failures)
                last_step = max(stored.last_step, step + lock) if lock else stored.last_step
                await tx.totp.set_state(account.id, last_step=last_step, failures=failures)
                await tx.commit()
                raise _wrong_code()
            await tx.totp.confirm(account.id, matched, now)
            updated = await _register(tx, account, owner_kind, None, now)
            await tx.commit()
        return updated


def _check_limit(sent: list[datetime], limit: int, what: str, now: datetime) -> None:
    """``sent``: the expiries of the sends in the window, oldest first."""
    if len(sent) < limit:
        return
    frees_at = sent[len(sent) - limit] - CODE_TTL + SEND_WINDOW
    raise RateLimited(what, _seconds_until(frees_at, now))


def _proven(verification: Verification) -> ProvenIdentity:
    return ProvenIdentity(
        kind=_IDENTITY_OF[verification.channel],
        value_hmac=verification.target_hmac,
        purpose=verification.purpose,
        app_id=verification.app_id,
    )


def _matching_step(secret: str, code: str, step: int, last_step: int) -> int | None:
    """The step (current +-1, newer than ``last_step``) whose code ``code`` is."""
    if not _CODE_RE.fullmatch(code):
        return None
    totp = pyotp.TOTP(secret)
    for candidate in (step - 1, step, step + 1):
        if candidate > last_step and hmac.compare_digest(totp.generate_otp(candidate), code):
            return candidate
    return None


async def _bind(
    tx: Transaction, account_id: AccountId, kind: IdentityKind, value_hmac: str, now: datetime
) -> None:
    holder = await tx.identities.owner(kind, value_hmac)
    if holder is None and not await tx.identities.bind(account_id, kind, value_hmac, now):
        holder = await tx.identities.owner(kind, value_hmac)  # bound concurrently
    if holder is not None and holder != account_id:
        raise Conflict(
            "This e-mail address or phone number belongs to another account.",
            code="identity_in_use",
        )


async def _register(
    tx: Transaction,
    account: Account,
    owner_kind: OwnerKind | None,
    display_name: str | None,
    now: datetime,
) -> Account:
    """Registered from now (an anonymous or managed account); a registered one
    keeps its registration time and changes owner kind only when given one."""
    if account.kind is not AccountKind.REGISTERED:
        assert owner_kind is not None
        await tx.accounts.register(account.id, owner_kind, now)
    elif owner_kind is not None and owner_kind is not account.owner_kind:
        await tx.accounts.register(account.id, owner_kind, account.registered_at or now)
    if display_name is not None:
        await tx.accounts.set_display_name(account.id, display_name)
    updated = await tx.accounts.get(account.id)
    assert updated is not None
    return updated
