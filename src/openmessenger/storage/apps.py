"""Apps, their API keys (HMACs only), their grants to accounts, custom media
types, and the accounts' app allowlists."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sqlalchemy import delete, insert, select, update

from openmessenger.core.apps import (
    ApiKey,
    App,
    AppGrant,
    AppId,
    format_scopes,
    read_scopes,
)
from openmessenger.core.ids import AccountId, Address
from openmessenger.core.records import Device
from openmessenger.storage._base import Repository
from openmessenger.storage.keys import DEVICE_COLUMNS, device_from_row
from openmessenger.storage.tables import (
    api_keys,
    app_allowlists,
    app_grants,
    app_media_types,
    apps,
    devices,
)

ACCOUNT_LEVEL = ""
"""``peer_address`` of an account-wide allowlist."""


def _app(row: Any) -> App:
    return App(
        id=row.id,
        owner_account_id=AccountId(row.owner_account_id),
        name=row.name,
        signing_key=row.signing_key,
        created_at=row.created_at,
    )


def _key(row: Any) -> ApiKey:
    return ApiKey(
        id=row.id,
        app_id=row.app_id,
        scopes=read_scopes(row.scopes),
        label=row.label,
        created_at=row.created_at,
        expires_at=row.expires_at,
        revoked_at=row.revoked_at,
    )


def _grant(row: Any) -> AppGrant:
    return AppGrant(
        account_id=AccountId(row.account_id),
        app_id=row.app_id,
        key_id=row.key_id,
        created_at=row.created_at,
    )


class SqlApps(Repository):
    # --- apps and keys ---------------------------------------------------------------

    async def create(self, app: App) -> bool:
        """False when the app id is taken."""
        return await self._insert_unique(
            insert(apps).values(
                id=app.id,
                owner_account_id=app.owner_account_id,
                name=app.name,
                signing_key=app.signing_key,
                created_at=app.created_at,
            )
        )

    async def get(self, app_id: AppId) -> App | None:
        row = (await self._conn.execute(select(apps).where(apps.c.id == app_id))).first()
        return _app(row) if row else None

    async def owned_by(self, account_id: AccountId) -> list[App]:
        query = select(apps).where(apps.c.owner_account_id == account_id).order_by(apps.c.id)
        return [_app(r) for r in await self._conn.execute(query)]

    async def all(self) -> list[App]:
        return [_app(r) for r in await self._conn.execute(select(apps).order_by(apps.c.id))]

    async def add_key(self, key: ApiKey, key_hmac: str) -> None:
        await self._conn.execute(
            insert(api_keys).values(
                id=key.id,
                app_id=key.app_id,
                key_hmac=key_hmac,
                scopes=format_scopes(key.scopes),
                label=key.label,
                created_at=key.created_at,
                expires_at=key.expires_at,
                revoked_at=key.revoked_at,
            )
        )

    async def key_by_hmac(self, key_hmac: str) -> ApiKey | None:
        query = select(api_keys).where(api_keys.c.key_hmac == key_hmac)
        row = (await self._conn.execute(query)).first()
        return _key(row) if row else None

    async def keys(self, app_id: AppId) -> list[ApiKey]:
        query = (
            select(api_keys)
            .where(api_keys.c.app_id == app_id)
            .order_by(api_keys.c.created_at, api_keys.c.id)
        )
        return [_key(r) for r in await self._conn.execute(query)]

    async def revoke_key(self, app_id: AppId, key_id: str, now: datetime) -> bool:
        """False when the app has no such live key."""
        result = await self._conn.execute(
            update(api_keys)
            .where(
                api_keys.c.app_id == app_id,
                api_keys.c.id == key_id,
                api_keys.c.revoked_at.is_(None),
            )
            .values(revoked_at=now)
        )
        return result.rowcount > 0

    async def expire_key(self, app_id: AppId, key_id: str, at: datetime) -> bool:
        """The key stops working at ``at`` (rotation's grace period)."""
        result = await self._conn.execute(
            update(api_keys)
            .where(
                api_keys.c.app_id == app_id,
                api_keys.c.id == key_id,
                api_keys.c.revoked_at.is_(None),
            )
            .values(expires_at=at)
        )
        return result.rowcount > 0

    # --- grants ----------------------------------------------------------------------

    async def add_grant(self, grant: AppGrant) -> bool:
        """False when the app is linked to the account already."""
        return await self._insert_unique(
            insert(app_grants).values(
                account_id=grant.account_id,
                app_id=grant.app_id,
                key_id=grant.key_id,
                created_at=grant.created_at,
            )
        )

    async def grant(self, account_id: AccountId, app_id: AppId) -> AppGrant | None:
        query = select(app_grants).where(
            app_grants.c.account_id == account_id, app_grants.c.app_id == app_id
        )
        row = (await self._conn.execute(query)).first()
        return _grant(row) if row else None

    async def grants_of(self, account_id: AccountId) -> list[AppGrant]:
        query = (
            select(app_grants)
            .where(app_grants.c.account_id == account_id)
            .order_by(app_grants.c.app_id)
        )
        return [_grant(r) for r in await self._conn.execute(query)]

    async def delete_grant(self, account_id: AccountId, app_id: AppId) -> None:
        await self._conn.execute(
            delete(app_grants).where(
                app_grants.c.account_id == account_id, app_grants.c.app_id == app_id
            )
        )

    async def move_grants(self, from_account: AccountId, to_account: AccountId) -> None:
        """Merging accounts: the grants of one become the other's."""
        await self._conn.execute(
            update(app_grants)
            .where(app_grants.c.account_id == from_account)
            .values(account_id=to_account)
        )

    async def app_devices(self, account_id: AccountId, app_id: AppId) -> list[Device]:
        """The app's live devices in the account (its backend)."""
        query = (
            select(*DEVICE_COLUMNS)
            .where(
                devices.c.account_id == account_id,
                devices.c.app_id == app_id,
                devices.c.revoked_at.is_(None),
            )
            .order_by(devices.c.created_at, devices.c.id)
        )
        return [device_from_row(r) for r in await self._conn.execute(query)]

    # --- custom media types ----------------------------------------------------------

    async def put_media_type(self, app_id: AppId, name: str, schema: str, now: datetime) -> bool:
        """False when the app registered that name already (a schema never changes
        under messages sent with it: register a new name instead)."""
        return await self._insert_unique(
            insert(app_media_types).values(app_id=app_id, name=name, schema=schema, created_at=now)
        )

    async def media_type_schema(self, app_id: AppId, name: str) -> str | None:
        query = select(app_media_types.c.schema).where(
            app_media_types.c.app_id == app_id, app_media_types.c.name == name
        )
        return (await self._conn.execute(query)).scalar()

    async def media_types(self, app_id: AppId) -> list[tuple[str, str, datetime]]:
        query = (
            select(app_media_types)
            .where(app_media_types.c.app_id == app_id)
            .order_by(app_media_types.c.name)
        )
        return [(r.name, r.schema, r.created_at) for r in await self._conn.execute(query)]

    # --- allowlists ------------------------------------------------------------------

    async def set_allowlist(
        self,
        account_id: AccountId,
        peer: Address | None,
        allowed: list[AppId] | None,
        now: datetime,
    ) -> None:
        """``allowed`` None: any app (the row goes)."""
        key = peer or ACCOUNT_LEVEL
        await self._conn.execute(
            delete(app_allowlists).where(
                app_allowlists.c.account_id == account_id, app_allowlists.c.peer_address == key
            )
        )
        if allowed is not None:
            await self._conn.execute(
                insert(app_allowlists).values(
                    account_id=account_id,
                    peer_address=key,
                    apps=json.dumps(sorted(set(allowed))),
                    updated_at=now,
                )
            )

    async def allowlists(
        self, account_id: AccountId, peer: Address | None
    ) -> dict[Address | None, list[AppId]]:
        """The account-wide list (key None) and the one for ``peer``, where set."""
        keys = [ACCOUNT_LEVEL] + ([peer] if peer else [])
        query = select(app_allowlists).where(
            app_allowlists.c.account_id == account_id, app_allowlists.c.peer_address.in_(keys)
        )
        return {
            (Address(r.peer_address) if r.peer_address else None): json.loads(r.apps)
            for r in await self._conn.execute(query)
        }
