"""Apps: registered accounts make them; apps authenticate with API keys.

An API key is shown once and kept as an HMAC under the node secret. Keys are
scoped, rotate with a grace period (the old key keeps working for a while, so
a deployment can switch without downtime) and are revoked at once. An app
never sees an account it has no grant for.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from openmessenger.core.apps import (
    API_KEY_PREFIX,
    ApiKey,
    App,
    AppCaller,
    AppId,
    Scope,
    parse_app_id,
    parse_app_name,
)
from openmessenger.core.errors import Conflict, Forbidden, InvalidInput, NotFound, Unauthenticated
from openmessenger.core.ids import AccountId, Address, parse_address
from openmessenger.core.records import AccountKind, AuthenticatedDevice
from openmessenger.crypto.app_keys import AppKeyPair
from openmessenger.crypto.keys import decode_base64_key
from openmessenger.protocol.e2e import canonical_json
from openmessenger.protocol.media_types import (
    parse_media_type,
    validate_custom_schema,
)
from openmessenger.services.ports import Clock, Secrets, Transaction, UnitOfWork

_KEY_PURPOSE = "api-key"
KEY_SECRET_BYTES = 32
MAX_ROTATION_GRACE = timedelta(days=7)
MAX_ALLOWLIST = 100
KEY_CACHE_TTL = timedelta(seconds=10)
KEY_CACHE_SIZE = 10_000


@dataclass(frozen=True, slots=True)
class IssuedKey:
    key: ApiKey
    secret: str
    """The whole API key, shown this once."""


@dataclass(frozen=True, slots=True)
class CreatedApp:
    app: App
    api_key: IssuedKey
    signing_seed: str | None
    """The app key's private seed when the node made the key pair (shown once)."""


@dataclass(frozen=True, slots=True)
class MediaTypeInfo:
    name: str
    schema: dict[str, Any]
    created_at: datetime


def registration_required() -> Forbidden:
    return Forbidden(
        "Only a registered account can use the app API; register this account first "
        "(POST /v1/account/verifications or /v1/account/totp).",
        code="registration_required",
    )


class AppService:
    def __init__(self, uow: UnitOfWork, clock: Clock, secrets: Secrets) -> None:
        self._uow = uow
        self._clock = clock
        self._secrets = secrets
        # Every app request authenticates; a valid key is remembered briefly
        # (revocation in this process forgets it at once).
        self._recent: OrderedDict[str, tuple[AppCaller, datetime]] = OrderedDict()

    # --- apps, for their owner ----------------------------------------------------

    async def create_app(
        self,
        caller: AuthenticatedDevice,
        *,
        app_id: str,
        name: str,
        signing_key: str | None = None,
    ) -> CreatedApp:
        return await self.create_app_for(
            caller.account.id, app_id=app_id, name=name, signing_key=signing_key
        )

    async def create_app_for(
        self,
        owner: AccountId,
        *,
        app_id: str,
        name: str,
        signing_key: str | None = None,
    ) -> CreatedApp:
        """An app of ``owner`` (a registered account) with its first API key (every scope).

        Give ``signing_key`` (the app key's Ed25519 public key) to keep the private
        half off the node entirely; otherwise the node makes a pair and returns
        the seed this once."""
        app_id = parse_app_id(app_id)
        name = parse_app_name(name)
        seed = None
        if signing_key is None:
            pair = AppKeyPair.generate()
            signing_key, seed = pair.public_key, pair.seed
        elif decode_base64_key(signing_key, 32) is None:
            raise InvalidInput("signing_key", "must be an Ed25519 public key in base64")
        now = self._clock.now()
        app = App(app_id, owner, name, signing_key, now)
        async with self._uow() as tx:
            account = await tx.accounts.get(owner)
            # Read now: the caller's authenticated copy may predate its registration.
            if account is None or account.kind is not AccountKind.REGISTERED:
                raise registration_required()
            if not await tx.apps.create(app):
                raise Conflict(f"The app id {app_id!r} is taken.", code="app_exists")
            issued = await self._issue(tx, app_id, frozenset(Scope), "first key", now)
            await tx.commit()
        return CreatedApp(app, issued, seed)

    async def apps_of(self, caller: AuthenticatedDevice) -> list[App]:
        async with self._uow() as tx:
            return await tx.apps.owned_by(caller.account.id)

    async def owned_app(self, caller: AuthenticatedDevice, app_id: str) -> App:
        """The caller's app; NotFound for an app of anyone else (its existence stays private)."""
        async with self._uow() as tx:
            app = await tx.apps.get(app_id)
        if app is None or app.owner_account_id != caller.account.id:
            raise NotFound("No such app.", code="app_not_found")
        return app

    async def app(self, app_id: str) -> App:
        async with self._uow() as tx:
            app = await tx.apps.get(app_id)
        if app is None:
            raise NotFound("No such app.", code="app_not_found")
        return app

    # --- API keys ---------------------------------------------------------------

    async def issue_key(
        self, app_id: AppId, scopes: frozenset[Scope], label: str | None
    ) -> IssuedKey:
        now = self._clock.now()
        async with self._uow() as tx:
            if await tx.apps.get(app_id) is None:
                raise NotFound("No such app.", code="app_not_found")
            issued = await self._issue(tx, app_id, scopes, label, now)
            await tx.commit()
        return issued

    async def keys(self, app_id: AppId) -> list[ApiKey]:
        async with self._uow() as tx:
            return await tx.apps.keys(app_id)

    async def revoke_key(self, app_id: AppId, key_id: str) -> None:
        async with self._uow() as tx:
            if not await tx.apps.revoke_key(app_id, key_id, self._clock.now()):
                raise NotFound("No such live API key.", code="api_key_not_found")
            await tx.commit()
        self._forget(key_id)

    async def rotate_key(self, app_id: AppId, key_id: str, grace: timedelta) -> IssuedKey:
        """A new key with the old one's scopes; the old one works ``grace`` longer."""
        if not timedelta(0) <= grace <= MAX_ROTATION_GRACE:
            raise InvalidInput(
                "grace_seconds", f"must be from 0 to {int(MAX_ROTATION_GRACE.total_seconds())}"
            )
        now = self._clock.now()
        async with self._uow() as tx:
            old = next((k for k in await tx.apps.keys(app_id) if k.id == key_id), None)
            if old is None or not old.usable(now):
                raise NotFound("No such live API key.", code="api_key_not_found")
            issued = await self._issue(tx, app_id, old.scopes, old.label, now)
            await tx.apps.expire_key(app_id, key_id, now + grace)
            await tx.commit()
        self._forget(key_id)
        return issued

    async def _issue(
        self,
        tx: Transaction,
        app_id: AppId,
        scopes: frozenset[Scope],
        label: str | None,
        now: datetime,
    ) -> IssuedKey:
        key = ApiKey(self._secrets.identifier(), app_id, scopes, label, now, None, None)
        secret = f"{API_KEY_PREFIX}{key.id}_{self._secrets.token(KEY_SECRET_BYTES)}"
        await tx.apps.add_key(key, self._secrets.hmac(_KEY_PURPOSE, secret))
        return IssuedKey(key, secret)

    async def authenticate_key(self, secret: str) -> AppCaller:
        """The app an API key belongs to; one refusal for unknown, revoked and expired keys."""
        key_hmac = self._secrets.hmac(_KEY_PURPOSE, secret)
        now = self._clock.now()
        cached = self._recent.get(key_hmac)
        if cached is not None and cached[1] > now and cached[0].key.usable(now):
            return cached[0]
        async with self._uow() as tx:
            key = await tx.apps.key_by_hmac(key_hmac)
            app = await tx.apps.get(key.app_id) if key is not None else None
        if key is None or app is None or not key.usable(now):
            raise Unauthenticated("The API key is not valid (unknown, revoked or expired).")
        caller = AppCaller(app, key)
        self._recent[key_hmac] = (caller, now + KEY_CACHE_TTL)
        self._recent.move_to_end(key_hmac)
        while len(self._recent) > KEY_CACHE_SIZE:
            self._recent.popitem(last=False)
        return caller

    def forget_app(self, app_id: AppId) -> None:
        """The app is gone: its keys stop working at once in this process."""
        for key_hmac, (caller, _) in list(self._recent.items()):
            if caller.app.id == app_id:
                del self._recent[key_hmac]

    def _forget(self, key_id: str) -> None:
        for key_hmac, (caller, _) in list(self._recent.items()):
            if caller.key.id == key_id:
                del self._recent[key_hmac]

    # --- custom media types -------------------------------------------------------

    async def register_media_type(
        self, caller: AppCaller, name: str, schema: object
    ) -> MediaTypeInfo:
        require_scope(caller, Scope.MEDIA_TYPES)
        return await self.register_media_type_for(caller.app.id, name, schema)

    async def register_media_type_for(
        self, app_id: AppId, name: str, schema: object
    ) -> MediaTypeInfo:
        """:meth:`register_media_type` for the operator (the app exists: checked by the caller)."""
        media_type = parse_media_type(f"app.{app_id}.{name}", field="name")
        checked = validate_custom_schema(schema)
        now = self._clock.now()
        stored = canonical_json(checked).decode()
        async with self._uow() as tx:
            if not await tx.apps.put_media_type(app_id, str(media_type.local_name), stored, now):
                raise Conflict(
                    f"{media_type.name} is registered already; a schema never changes under "
                    "messages sent with it, so register a new name.",
                    code="media_type_exists",
                )
            await tx.commit()
        return MediaTypeInfo(media_type.name, checked, now)

    async def media_types(self, app_id: AppId) -> list[MediaTypeInfo]:
        async with self._uow() as tx:
            found = await tx.apps.media_types(app_id)
        return [MediaTypeInfo(f"app.{app_id}.{n}", json.loads(s), at) for n, s, at in found]

    # --- which apps an account takes messages from ----------------------------------

    async def set_allowlist(
        self, caller: AuthenticatedDevice, peer: str | None, apps: list[str] | None
    ) -> list[AppId] | None:
        """``apps`` None: any app. ``peer``: for that contact only (it then wins over
        the account's list)."""
        address = parse_address(peer, field="peer").address if peer is not None else None
        allowed = None
        if apps is not None:
            if len(apps) > MAX_ALLOWLIST:
                raise InvalidInput("apps", f"must name at most {MAX_ALLOWLIST} apps")
            allowed = sorted({parse_app_id(a, field="apps") for a in apps})
        async with self._uow() as tx:
            if address is not None and await tx.connections.get(caller.account.id, address) is None:
                raise NotFound("No such contact.", code="contact_not_found")
            await tx.apps.set_allowlist(caller.account.id, address, allowed, self._clock.now())
            await tx.commit()
        return allowed

    async def allowlist(
        self, caller: AuthenticatedDevice, peer: str | None
    ) -> tuple[list[AppId] | None, list[AppId] | None]:
        """(account-wide list, the contact's list); None: not set."""
        address = parse_address(peer, field="peer").address if peer is not None else None
        async with self._uow() as tx:
            lists = await tx.apps.allowlists(caller.account.id, address)
        return lists.get(None), lists.get(address) if address else None


def require_scope(caller: AppCaller, scope: Scope) -> None:
    if not caller.allows(scope):
        raise Forbidden(f"This API key lacks the {scope.value!r} scope.", code="scope_missing")


async def accepts_app(tx: Transaction, account_id: AccountId, sender: Address, app: AppId) -> bool:
    """Whether the account takes a message from ``sender`` sent through ``app``: the
    contact's list if it has one, else the account's; no list means any app."""
    lists = await tx.apps.allowlists(account_id, sender)
    allowed = lists.get(sender, lists.get(None))
    return allowed is None or app in allowed
