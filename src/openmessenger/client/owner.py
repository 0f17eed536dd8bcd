"""What a device does for its account as an owner: register it (e-mail, SMS or
TOTP), make apps, choose which apps may reach it, export and delete it. Mixed
into :class:`openmessenger.client.Client`, whose session these methods use."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import quote

import httpx

from openmessenger.client import transport
from openmessenger.protocol import apps_api, registration_api
from openmessenger.protocol import client_api as wire

OwnerKind = Literal["person", "organisation"]


@dataclass(frozen=True, slots=True)
class Registration:
    """What ``GET /v1/me`` says of the account's kind."""

    address: str
    kind: str
    owner_kind: str | None


@dataclass(frozen=True, slots=True)
class PendingCode:
    verification_id: str
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class TotpSecret:
    secret: str = field(repr=False)
    """Base32: type it into an authenticator app, or show ``uri`` as a QR code."""
    uri: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class CreatedApp:
    app_id: str
    name: str
    api_key: str = field(repr=False)
    """Shown this once: the node keeps only an HMAC."""
    signing_seed: str | None = field(repr=False)
    """The app key's private seed, when the node made it (shown once)."""


class AccountOwner:
    """The owner methods of ``Client``."""

    if TYPE_CHECKING:  # provided by Client

        async def _call(
            self,
            method: str,
            path: str,
            *,
            body: wire.Request | None = None,
            params: Mapping[str, str | int] | None = None,
        ) -> httpx.Response: ...

    async def start_verification(self, channel: Literal["email", "sms"], to: str) -> PendingCode:
        """Send a 6-digit code to an e-mail address or phone number (valid 10 minutes)."""
        body = transport.request_body(
            registration_api.VerificationIn, {"channel": channel, "to": to}
        )
        answer = transport.parse_response(
            registration_api.VerificationOut,
            await self._call("POST", "/account/verifications", body=body),
        )
        return PendingCode(answer.verification_id, answer.expires_at)

    async def confirm_verification(
        self, verification_id: str, code: str, owner_kind: OwnerKind = "person"
    ) -> Registration:
        """The code that arrived: the account is registered (owned by ``owner_kind``)."""
        body = transport.request_body(
            registration_api.VerificationConfirmIn, {"code": code, "owner_kind": owner_kind}
        )
        path = f"/account/verifications/{quote(verification_id)}/confirm"
        return _registration(await self._call("POST", path, body=body))

    async def setup_totp(self) -> TotpSecret:
        answer = transport.parse_response(
            registration_api.TotpSetupOut, await self._call("POST", "/account/totp")
        )
        return TotpSecret(answer.secret, answer.uri)

    async def confirm_totp(self, code: str, owner_kind: OwnerKind = "person") -> Registration:
        body = transport.request_body(
            registration_api.TotpConfirmIn, {"code": code, "owner_kind": owner_kind}
        )
        return _registration(await self._call("POST", "/account/totp/confirm", body=body))

    async def create_app(
        self, app_id: str, name: str, *, signing_key: str | None = None
    ) -> CreatedApp:
        """An app of this (registered) account, with its first API key."""
        body = transport.request_body(
            apps_api.AppCreateIn, {"id": app_id, "name": name, "signing_key": signing_key}
        )
        answer = transport.parse_response(
            apps_api.AppCreatedOut, await self._call("POST", "/apps", body=body)
        )
        return CreatedApp(answer.app.id, answer.app.name, answer.api_key.key, answer.signing_seed)

    async def delete_app(self, app_id: str) -> int:
        """Delete an app of this account with everything it holds for every account;
        returns how many accounts it held."""
        response = await self._call("DELETE", f"/apps/{quote(app_id)}")
        return transport.parse_response(apps_api.AppDeletedOut, response).accounts

    async def apps(self) -> list[str]:
        answer = transport.parse_response(apps_api.AppList, await self._call("GET", "/apps"))
        return [app.id for app in answer.apps]

    async def allow_apps(self, apps: list[str] | None, *, contact: str | None = None) -> None:
        """Take messages sent through these apps only (None: any app); for one
        ``contact``, which then wins over the account's list."""
        body = transport.request_body(apps_api.AllowlistIn, {"apps": apps})
        path = f"/contacts/{quote(contact)}/apps" if contact else "/account/apps"
        await self._call("PUT", path, body=body)

    async def export_account(self) -> dict[str, Any]:
        """All of this account's data, as the node keeps it."""
        exported: dict[str, Any] = (await self._call("GET", "/account/export")).json()
        return exported

    async def delete_account(self) -> None:
        """Delete the account and everything of it on the node, now."""
        await self._call("DELETE", "/account")


def _registration(response: httpx.Response) -> Registration:
    me = transport.parse_response(wire.MeOut, response)
    return Registration(me.address, me.kind, me.owner_kind)
