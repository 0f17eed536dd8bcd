"""JSON shapes of the app gateway (``/v1/apps``, ``/v1/account/apps``, data export).

Public contract like client_api.py (docs/apps.md): add fields, never rename.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import Field

from openmessenger.protocol.client_api import Base64Key, Request, Response

ACCOUNT_HEADER = "Openmessenger-Account"
"""With an API key: the managed account the app acts for (its id)."""

AppIdStr = Field(min_length=3, max_length=32, pattern=r"^[a-z][a-z0-9-]{2,31}$")
ScopeName = Literal["accounts", "messages", "media-types", "webhooks", "data"]


class AppCreateIn(Request):
    id: str = AppIdStr
    name: str = Field(min_length=1, max_length=64)
    signing_key: Base64Key | None = Field(
        default=None,
        description="The app key's Ed25519 public key; leave out to let the node make a pair "
        "(the seed is then shown once)",
    )


class AppOut(Response):
    id: str
    name: str
    signing_key: str
    created_at: datetime


class ApiKeyOut(Response):
    id: str
    scopes: list[ScopeName]
    label: str | None
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None


class IssuedKeyOut(ApiKeyOut):
    key: str = Field(description="The API key itself: shown this once, kept by the node as an HMAC")


class AppCreatedOut(Response):
    app: AppOut
    api_key: IssuedKeyOut
    signing_seed: str | None = Field(
        default=None, description="The app key's private seed, when the node made it: shown once"
    )


class AppDeletedOut(Response):
    accounts: int = Field(description="how many accounts the app held (its data there is gone)")


class AppList(Response):
    apps: list[AppOut]


class ApiKeyIn(Request):
    scopes: list[ScopeName] | None = Field(default=None, description="default: every scope")
    label: str | None = Field(default=None, max_length=64)


class ApiKeyList(Response):
    keys: list[ApiKeyOut]


class RotateIn(Request):
    grace_seconds: int = Field(
        default=3600, ge=0, le=7 * 86_400, description="how long the old key keeps working"
    )


class DeviceProofIn(Request):
    """An SDK app's own device keys and a signed challenge (as ``POST /v1/devices``)."""

    ed25519_key: Base64Key
    curve25519_key: Base64Key
    challenge: str = Field(min_length=1, max_length=200)
    signature: str = Field(min_length=1, max_length=200)


class ManagedAccountIn(Request):
    display_name: str | None = Field(default=None, max_length=200)
    device: DeviceProofIn | None = Field(
        default=None,
        description="The app's own device keys (SDK apps: end to end). Leave out to let the "
        "node hold the device's keys (plain HTTP: transport-encrypted)",
    )


class ManagedAccountOut(Response):
    account_id: str
    address: str
    display_name: str | None
    device_id: str
    encryption: Literal["end-to-end", "transport-encrypted"]
    created_at: datetime


class MediaTypeIn(Request):
    name: str = Field(min_length=1, max_length=64, description="the <name> of app.<app-id>.<name>")
    json_schema: dict[str, Any] = Field(alias="schema", description="JSON Schema 2020-12")


class MediaTypeOut(Response):
    name: str
    json_schema: dict[str, Any] = Field(alias="schema")
    created_at: datetime


class MediaTypeList(Response):
    media_types: list[MediaTypeOut]


class AllowlistIn(Request):
    apps: list[str] | None = Field(
        description="the app ids accepted; null: any app", max_length=100
    )


class AllowlistOut(Response):
    apps: list[str] | None = Field(description="null: any app")
    account_apps: list[str] | None = Field(
        default=None, description="for a contact: the account-wide list it overrides"
    )


class DataDeletedOut(Response):
    account_deleted: bool = Field(
        description="true when nothing held the account any more, so it was deleted too"
    )


class ProofStartIn(Request):
    channel: Literal["email", "sms"]
    to: str = Field(min_length=3, max_length=254)


class ProofStartedOut(Response):
    verification_id: str
    channel: str
    expires_at: datetime


class ProofConfirmIn(Request):
    code: str = Field(pattern=r"^[0-9]{6}$")


class ProofConfirmedOut(Response):
    account_id: str
    address: str
    merged: bool = Field(
        description="true when the identity belonged to another account, which this one "
        "joined: use account_id from now on"
    )
