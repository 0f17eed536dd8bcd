"""Raw HTTP helpers for the app gateway: a registered owner, an app, its users."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx
import pyotp

from openmessenger.protocol.apps_api import ACCOUNT_HEADER
from openmessenger.services.ports import Clock
from tests.support.api import ApiDevice, register


async def registered(http: httpx.AsyncClient, clock: Clock, name: str = "Owner") -> ApiDevice:
    """A device whose account is registered (by TOTP, with codes for the node's clock)."""
    owner = await register(http, name)
    setup = await owner.post("/v1/account/totp")
    assert setup.status_code == 201, setup.text
    code = pyotp.TOTP(setup.json()["secret"]).at(clock.now())
    confirmed = await owner.post(
        "/v1/account/totp/confirm", {"code": code, "owner_kind": "organisation"}
    )
    assert confirmed.status_code == 200, confirmed.text
    assert confirmed.json()["kind"] == "registered"
    return owner


@dataclass
class ApiApp:
    http: httpx.AsyncClient
    id: str
    key: str
    signing_seed: str | None

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}

    def acting(self, account_id: str) -> dict[str, str]:
        """Headers to act as the app's device in ``account_id``."""
        return {**self.auth, ACCOUNT_HEADER: account_id}

    async def post(self, path: str, json: Any = None, **kw: Any) -> httpx.Response:
        return await self.http.post(path, json=json, headers={**self.auth, **kw.pop("headers", {})})

    async def create_account(self, name: str | None = None, **body: Any) -> dict[str, Any]:
        response = await self.post(f"/v1/apps/{self.id}/accounts", {"display_name": name, **body})
        assert response.status_code == 201, response.text
        created: dict[str, Any] = response.json()
        return created

    async def act(
        self, account_id: str, method: str, path: str, json: Any = None, **kw: Any
    ) -> httpx.Response:
        return await self.http.request(
            method, path, json=json, headers=self.acting(account_id), **kw
        )


async def create_app(owner: ApiDevice, app_id: str, name: str = "Shop") -> ApiApp:
    response = await owner.post("/v1/apps", {"id": app_id, "name": name})
    assert response.status_code == 201, response.text
    data = response.json()
    return ApiApp(owner.http, app_id, data["api_key"]["key"], data["signing_seed"])


async def connect_to(app: ApiApp, account_id: str, person: ApiDevice) -> None:
    """The person issues a pass code; the app's user connects with it."""
    code = await person.issue_code()
    response = await app.act(
        account_id, "POST", "/v1/connections", {"address": person.address, "pass_code": code}
    )
    assert response.status_code == 201, response.text
