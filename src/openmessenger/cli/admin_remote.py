"""``openmessenger admin ... --url``: the operator's verbs through a node's operator
API (``/v1/admin/``), answered in the same shapes as the local commands.

The operator token travels only in the ``Authorization`` header; no message
here ever contains it.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel, ValidationError

from openmessenger import __version__
from openmessenger.protocol.admin_api import (
    ADMIN_PREFIX,
    AdminAppList,
    DomainBlockOut,
    DomainList,
    MaintenanceOut,
)
from openmessenger.protocol.apps_api import (
    ApiKeyList,
    AppCreatedOut,
    IssuedKeyOut,
    MediaTypeList,
    MediaTypeOut,
)
from openmessenger.protocol.client_api import API_PREFIX
from openmessenger.protocol.policies_api import AdminAccountOut

M = TypeVar("M", bound=BaseModel)
TIMEOUT_SECONDS = 30


class OperatorRefused(Exception):
    """The node answered, and not with what was asked: its problem ``code`` and reason."""

    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.status = status
        self.code = code
        self.detail = detail


class NodeUnreachable(Exception):
    """No answer: the node is down, the name or the TLS certificate is wrong, ..."""


class RemoteSetupError(Exception):
    """The command cannot even try (e.g. an unusable --ca-file)."""


class RemoteOperator:
    """:class:`~openmessenger.cli.admin.OperatorBackend` over the operator API."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self._client = client

    @classmethod
    @asynccontextmanager
    async def connect(
        cls, url: str, token: str, *, ca_file: Path | None = None
    ) -> AsyncIterator[RemoteOperator]:
        from openmessenger.federation.client import build_ssl_context

        try:
            context = build_ssl_context(ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise RemoteSetupError(f"cannot use the CA file {ca_file}: {exc}") from None
        async with httpx.AsyncClient(
            base_url=f"{url.rstrip('/')}{API_PREFIX}{ADMIN_PREFIX}",
            headers={
                "Authorization": f"Bearer {token}",
                "User-Agent": f"openmessenger-admin/{__version__}",
            },
            verify=context,
            timeout=TIMEOUT_SECONDS,
        ) as client:
            yield cls(client)

    # --- node switches ----------------------------------------------------------------

    async def maintenance(self, on: bool | None) -> MaintenanceOut:
        if on is None:
            return _as(MaintenanceOut, await self._call("GET", "/maintenance"))
        return _as(MaintenanceOut, await self._call("PUT", "/maintenance", {"on": on}))

    async def blocked(self) -> DomainList:
        return _as(DomainList, await self._call("GET", "/domains"))

    async def block(self, domain: str) -> DomainBlockOut:
        return _as(DomainBlockOut, await self._call("PUT", f"/domains/{_segment(domain)}"))

    async def unblock(self, domain: str) -> DomainBlockOut:
        return _as(DomainBlockOut, await self._call("DELETE", f"/domains/{_segment(domain)}"))

    # --- apps -------------------------------------------------------------------------

    async def create_app(
        self, owner: str, app_id: str, name: str, signing_key: str | None
    ) -> AppCreatedOut:
        body: dict[str, Any] = {"owner": owner, "id": app_id, "name": name}
        if signing_key is not None:
            body["signing_key"] = signing_key
        return _as(AppCreatedOut, await self._call("POST", "/apps", body))

    async def apps(self, owner: str | None) -> AdminAppList:
        params = {"owner": owner} if owner is not None else None
        return _as(AdminAppList, await self._call("GET", "/apps", params=params))

    async def keys(self, app: str) -> ApiKeyList:
        return _as(ApiKeyList, await self._call("GET", f"/apps/{_segment(app)}/keys"))

    async def issue_key(
        self, app: str, scopes: list[str] | None, label: str | None
    ) -> IssuedKeyOut:
        body = {"scopes": scopes, "label": label}
        return _as(IssuedKeyOut, await self._call("POST", f"/apps/{_segment(app)}/keys", body))

    async def revoke_key(self, app: str, key_id: str) -> None:
        await self._call("DELETE", f"/apps/{_segment(app)}/keys/{_segment(key_id)}")

    async def rotate_key(self, app: str, key_id: str, grace_seconds: int) -> IssuedKeyOut:
        path = f"/apps/{_segment(app)}/keys/{_segment(key_id)}/rotate"
        return _as(IssuedKeyOut, await self._call("POST", path, {"grace_seconds": grace_seconds}))

    async def register_media_type(self, app: str, name: str, schema: object) -> MediaTypeOut:
        path = f"/apps/{_segment(app)}/media-types"
        return _as(MediaTypeOut, await self._call("POST", path, {"name": name, "schema": schema}))

    async def media_types(self, app: str) -> MediaTypeList:
        path = f"/apps/{_segment(app)}/media-types"
        return _as(MediaTypeList, await self._call("GET", path))

    # --- accounts -----------------------------------------------------------------------

    async def account(self, address: str) -> AdminAccountOut:
        return _as(AdminAccountOut, await self._call("GET", f"/accounts/{_segment(address)}"))

    async def set_plan(self, address: str, plan: str) -> AdminAccountOut:
        path = f"/accounts/{_segment(address)}/plan"
        return _as(AdminAccountOut, await self._call("PUT", path, {"plan": plan}))

    # --- the wire ---------------------------------------------------------------------

    async def _call(
        self,
        method: str,
        path: str,
        body: object = None,
        *,
        params: dict[str, str] | None = None,
    ) -> Any:
        try:
            response = await self._client.request(
                method, path.lstrip("/"), json=body, params=params
            )
        except httpx.TransportError as exc:
            reason = str(exc) or type(exc).__name__
            raise NodeUnreachable(f"could not reach {self._client.base_url}: {reason}") from None
        if response.is_success:
            return response.json() if response.content else None
        raise _refusal(response)


def _segment(value: str) -> str:
    """One path segment; '.' and '..' escaped so that no client folds them away."""
    return "%2E" * len(value) if value and set(value) == {"."} else quote(value, safe="")


def _refusal(response: httpx.Response) -> OperatorRefused:
    """The node's problem details; or, when the answer is no problem+json (a proxy,
    not an Open Messenger node), what HTTP said."""
    try:
        problem = response.json()
    except ValueError:
        problem = None
    if isinstance(problem, dict) and isinstance(problem.get("code"), str):
        detail = str(problem.get("detail") or problem.get("title") or "")
        field = problem.get("field")
        if problem["code"] == "invalid_input" and field and not detail.startswith(f"{field}:"):
            detail = f"{field}: {detail}"
        return OperatorRefused(response.status_code, problem["code"], detail)
    detail = f"the node answered HTTP {response.status_code}"
    if response.is_redirect and "location" in response.headers:
        detail += f" (redirected to {response.headers['location']}: use that URL)"
    elif response.status_code == 404:
        detail += " (is --url the node's own address?)"
    return OperatorRefused(response.status_code, "http_error", detail)


def _as(model: type[M], data: Any) -> M:
    try:
        return model.model_validate(data)
    except ValidationError:
        raise OperatorRefused(
            200, "unexpected_answer", f"the node's answer is not a {model.__name__}"
        ) from None
