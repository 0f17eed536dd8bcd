"""The node's operator: the token that opens the operator API (``/v1/admin/``), and
what an operator does with apps on any account's behalf (``openmessenger admin apps``).

Maintenance mode and blocked domains are :class:`~.federation_gate.NodeAdmin`'s.
The same :class:`Operator` serves the API and the local commands (run on the
node's host against its database), so both refuse the same mistakes.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta

from openmessenger.core.apps import ApiKey, App, AppId, parse_scopes
from openmessenger.core.errors import Forbidden, InvalidInput, NotFound, Unauthenticated
from openmessenger.core.ids import AccountId, Address, parse_address
from openmessenger.core.records import Account, AccountKind
from openmessenger.services.apps import (
    MAX_ROTATION_GRACE,
    AppService,
    CreatedApp,
    IssuedKey,
    MediaTypeInfo,
)
from openmessenger.services.ports import Transaction, UnitOfWork

MAX_KEY_LABEL_LENGTH = 64


class OperatorTokenInvalid(Unauthenticated):
    """No operator token, or not this node's (the token itself is never logged)."""

    code = "operator_token_invalid"


class OperatorAuth:
    """Checks the operator token in constant time. Without a configured token the
    operator API does not exist: every request is NotFound ``operator_api_disabled``."""

    def __init__(self, token: str | None) -> None:
        # Digests compared, so neither content nor length leaks through timing.
        self._digest = _digest(token) if token is not None else None

    @property
    def enabled(self) -> bool:
        return self._digest is not None

    def check(self, presented: str | None) -> None:
        if self._digest is None:
            raise NotFound(
                "This node has no operator API (no operator token is configured); run "
                "`openmessenger admin` on the node's host instead.",
                code="operator_api_disabled",
            )
        if presented is None:
            raise OperatorTokenInvalid(
                "An operator token is required: 'Authorization: Bearer <operator token>'."
            )
        if not hmac.compare_digest(_digest(presented), self._digest):
            raise OperatorTokenInvalid("The operator token is not valid.")


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


@dataclass(frozen=True, slots=True)
class OwnedApp:
    app: App
    owner: Address
    """The owning account's address."""


class Operator:
    """Apps, their API keys and media types, for any app on this node."""

    def __init__(self, uow: UnitOfWork, apps: AppService, auth: OperatorAuth) -> None:
        self._uow = uow
        self._apps = apps
        self.auth = auth

    async def create_app(
        self, owner: str, *, app_id: str, name: str, signing_key: str | None = None
    ) -> CreatedApp:
        """An app of ``owner`` (the address of a registered account of this node)."""
        async with self._uow() as tx:
            account = await _account(tx, owner)
        if account.kind is not AccountKind.REGISTERED:
            raise Forbidden(
                f"{account.address} is not a registered account ({account.kind.value}); "
                "only registered accounts own apps.",
                code="registration_required",
            )
        return await self._apps.create_app_for(
            account.id, app_id=app_id, name=name, signing_key=signing_key
        )

    async def apps(self, owner: str | None = None) -> list[OwnedApp]:
        """Every app of the node, or ``owner``'s, by id."""
        async with self._uow() as tx:
            if owner is not None:
                account = await _account(tx, owner)
                return [OwnedApp(a, account.address) for a in await tx.apps.owned_by(account.id)]
            found = await tx.apps.all()
            owners: dict[AccountId, Account | None] = {}
            for account_id in {a.owner_account_id for a in found}:
                owners[account_id] = await tx.accounts.get(account_id)
        # Every app has its owner (a foreign key); the filter only narrows the type.
        return [OwnedApp(a, who.address) for a in found if (who := owners[a.owner_account_id])]

    async def keys(self, app_id: AppId) -> list[ApiKey]:
        await self._apps.app(app_id)
        return await self._apps.keys(app_id)

    async def issue_key(
        self, app_id: AppId, scopes: Iterable[str] | None, label: str | None
    ) -> IssuedKey:
        checked = parse_scopes(scopes)
        if label is not None and not (len(label) <= MAX_KEY_LABEL_LENGTH and label.isprintable()):
            raise InvalidInput(
                "label", f"must be at most {MAX_KEY_LABEL_LENGTH} printable characters"
            )
        await self._apps.app(app_id)
        return await self._apps.issue_key(app_id, checked, label)

    async def revoke_key(self, app_id: AppId, key_id: str) -> None:
        await self._apps.app(app_id)
        await self._apps.revoke_key(app_id, key_id)

    async def rotate_key(self, app_id: AppId, key_id: str, grace_seconds: int) -> IssuedKey:
        if not 0 <= grace_seconds <= MAX_ROTATION_GRACE.total_seconds():
            limit = int(MAX_ROTATION_GRACE.total_seconds())
            raise InvalidInput("grace_seconds", f"must be from 0 to {limit}")
        await self._apps.app(app_id)
        return await self._apps.rotate_key(app_id, key_id, timedelta(seconds=grace_seconds))

    async def register_media_type(self, app_id: AppId, name: str, schema: object) -> MediaTypeInfo:
        await self._apps.app(app_id)
        return await self._apps.register_media_type_for(app_id, name, schema)

    async def media_types(self, app_id: AppId) -> list[MediaTypeInfo]:
        await self._apps.app(app_id)
        return await self._apps.media_types(app_id)


async def _account(tx: Transaction, address: str) -> Account:
    parsed = parse_address(address, field="owner")
    account = await tx.accounts.by_address(parsed.address)
    if account is None:
        raise NotFound(f"No account {parsed.address} on this node.", code="account_not_found")
    return account
