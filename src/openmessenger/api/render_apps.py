"""App gateway records -> API models (shared by the app and operator routes)."""

from __future__ import annotations

from openmessenger.core.apps import ApiKey, App
from openmessenger.core.envelope import Encryption
from openmessenger.protocol.apps_api import (
    ApiKeyOut,
    AppCreatedOut,
    AppOut,
    IssuedKeyOut,
    ManagedAccountOut,
    MediaTypeOut,
)
from openmessenger.services.apps import CreatedApp, IssuedKey, MediaTypeInfo
from openmessenger.services.managed_accounts import ManagedAccount


def app(found: App) -> AppOut:
    return AppOut(
        id=found.id, name=found.name, signing_key=found.signing_key, created_at=found.created_at
    )


def created(new: CreatedApp) -> AppCreatedOut:
    """A new app with its first key (and its app key's seed, when the node made it)."""
    return AppCreatedOut(
        app=app(new.app), api_key=issued(new.api_key), signing_seed=new.signing_seed
    )


def _key_fields(key: ApiKey) -> dict[str, object]:
    return {
        "id": key.id,
        "scopes": sorted(s.value for s in key.scopes),
        "label": key.label,
        "created_at": key.created_at,
        "expires_at": key.expires_at,
        "revoked_at": key.revoked_at,
    }


def api_key(key: ApiKey) -> ApiKeyOut:
    """A key as listed: never the key itself (the node keeps only its HMAC)."""
    return ApiKeyOut.model_validate(_key_fields(key))


def issued(new: IssuedKey) -> IssuedKeyOut:
    """A key just made: with the key, shown this once."""
    return IssuedKeyOut.model_validate({**_key_fields(new.key), "key": new.secret})


def managed(found: ManagedAccount) -> ManagedAccountOut:
    encryption = Encryption.TRANSPORT if found.device.node_held else Encryption.END_TO_END
    return ManagedAccountOut(
        account_id=found.account.id,
        address=found.account.address,
        display_name=found.account.display_name,
        device_id=found.device.id,
        encryption=encryption.value,
        created_at=found.account.created_at,
    )


def media_type(info: MediaTypeInfo) -> MediaTypeOut:
    return MediaTypeOut.model_validate(
        {"name": info.name, "schema": info.schema, "created_at": info.created_at}
    )
