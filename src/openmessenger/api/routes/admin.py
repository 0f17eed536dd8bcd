"""The operator API (``/v1/admin/``): what ``openmessenger admin`` does on the
node's host, for an operator elsewhere (``openmessenger admin ... --url``).

Every request carries ``Authorization: Bearer <operator token>``, checked before
anything else reads the request. A node without an operator token has no
operator API: every request here is 404 ``operator_api_disabled``.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, Response, status
from fastapi.routing import APIRoute

from openmessenger.api import render_apps, render_policies
from openmessenger.api.deps import Services, bearer_token, services_of
from openmessenger.core.ids import parse_domain
from openmessenger.protocol.admin_api import (
    ADMIN_PREFIX,
    AdminAppCreateIn,
    AdminAppList,
    AdminAppOut,
    DomainBlockOut,
    DomainList,
    MaintenanceIn,
    MaintenanceOut,
)
from openmessenger.protocol.apps_api import (
    ApiKeyIn,
    ApiKeyList,
    AppCreatedOut,
    IssuedKeyOut,
    MediaTypeIn,
    MediaTypeList,
    MediaTypeOut,
    RotateIn,
)
from openmessenger.protocol.client_api import API_PREFIX, AddressStr
from openmessenger.protocol.policies_api import AdminAccountOut, AdminPlanIn


class _OperatorRoute(APIRoute):
    """Checks the operator token first: before the body is read or validated, so
    nothing about these endpoints shows without the token."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def checked(request: Request) -> Response:
            services_of(request).operator.auth.check(bearer_token(request.scope))
            return await handler(request)

        return checked


router = APIRouter(prefix=f"{API_PREFIX}{ADMIN_PREFIX}", tags=["admin"], route_class=_OperatorRoute)

AppPath = Annotated[str, Path(max_length=64)]
KeyIdPath = Annotated[str, Path(max_length=128)]
DomainPath = Annotated[str, Path(max_length=300)]


# --- node switches --------------------------------------------------------------------


@router.get("/maintenance", response_model=MaintenanceOut)
async def maintenance(services: Services) -> MaintenanceOut:
    return MaintenanceOut(on=await services.admin.maintenance())


@router.put("/maintenance", response_model=MaintenanceOut)
async def set_maintenance(body: MaintenanceIn, services: Services) -> MaintenanceOut:
    """While on, other nodes' messages and handshakes are refused for now (SM_E008)."""
    await services.admin.set_maintenance(body.on)
    return MaintenanceOut(on=await services.admin.maintenance())


@router.get("/domains", response_model=DomainList)
async def blocked_domains(services: Services) -> DomainList:
    return DomainList(domains=list(await services.admin.blocked()))


@router.put("/domains/{domain}", response_model=DomainBlockOut)
async def block_domain(domain: DomainPath, services: Services) -> DomainBlockOut:
    """Refuse everything from the domain (SM_E009), and send nothing to it."""
    name = parse_domain(domain, field="domain")
    added = await services.admin.block(name)
    return DomainBlockOut(domain=name, blocked=True, changed=added)


@router.delete("/domains/{domain}", response_model=DomainBlockOut)
async def unblock_domain(domain: DomainPath, services: Services) -> DomainBlockOut:
    name = parse_domain(domain, field="domain")
    removed = await services.admin.unblock(name)
    return DomainBlockOut(domain=name, blocked=False, changed=removed)


# --- apps, for any account ----------------------------------------------------------


@router.post("/apps", status_code=status.HTTP_201_CREATED, response_model=AppCreatedOut)
async def create_app(body: AdminAppCreateIn, services: Services) -> AppCreatedOut:
    """An app of ``owner`` (a registered account of this node), with its first API
    key: the same answer as ``POST /v1/apps``."""
    created = await services.operator.create_app(
        body.owner, app_id=body.id, name=body.name, signing_key=body.signing_key
    )
    return render_apps.created(created)


@router.get("/apps", response_model=AdminAppList)
async def apps(
    services: Services, owner: Annotated[AddressStr | None, Query()] = None
) -> AdminAppList:
    found = await services.operator.apps(owner)
    return AdminAppList(
        apps=[
            AdminAppOut.model_validate({**render_apps.app(o.app).model_dump(), "owner": o.owner})
            for o in found
        ]
    )


@router.get("/apps/{app}/keys", response_model=ApiKeyList)
async def keys(app: AppPath, services: Services) -> ApiKeyList:
    found = await services.operator.keys(app)
    return ApiKeyList(keys=[render_apps.api_key(k) for k in found])


@router.post("/apps/{app}/keys", status_code=status.HTTP_201_CREATED, response_model=IssuedKeyOut)
async def issue_key(app: AppPath, body: ApiKeyIn, services: Services) -> IssuedKeyOut:
    return render_apps.issued(await services.operator.issue_key(app, body.scopes, body.label))


@router.post(
    "/apps/{app}/keys/{key_id}/rotate",
    status_code=status.HTTP_201_CREATED,
    response_model=IssuedKeyOut,
)
async def rotate_key(
    app: AppPath, key_id: KeyIdPath, body: RotateIn, services: Services
) -> IssuedKeyOut:
    """A new key with the same scopes; the old one stops working after ``grace_seconds``."""
    return render_apps.issued(await services.operator.rotate_key(app, key_id, body.grace_seconds))


@router.delete("/apps/{app}/keys/{key_id}", status_code=status.HTTP_204_NO_CONTENT)
async def revoke_key(app: AppPath, key_id: KeyIdPath, services: Services) -> Response:
    """The key stops working at once."""
    await services.operator.revoke_key(app, key_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/apps/{app}/media-types", status_code=status.HTTP_201_CREATED, response_model=MediaTypeOut
)
async def register_media_type(app: AppPath, body: MediaTypeIn, services: Services) -> MediaTypeOut:
    """A custom media type ``app.<app>.<name>`` whose metadata must match ``schema``."""
    return render_apps.media_type(
        await services.operator.register_media_type(app, body.name, body.json_schema)
    )


@router.get("/apps/{app}/media-types", response_model=MediaTypeList)
async def media_types(app: AppPath, services: Services) -> MediaTypeList:
    found = await services.operator.media_types(app)
    return MediaTypeList(media_types=[render_apps.media_type(m) for m in found])


# --- accounts: plans (services/policies.py) ----------------------------------------

AddressPath = Annotated[str, Path(max_length=300)]


@router.get("/accounts/{address}", response_model=AdminAccountOut)
async def account(address: AddressPath, services: Services) -> AdminAccountOut:
    """An account of this node: its kind, plan and the limits the plan gives."""
    return render_policies.admin_account(await services.policies.account(address))


@router.put("/accounts/{address}/plan", response_model=AdminAccountOut)
async def set_plan(address: AddressPath, body: AdminPlanIn, services: Services) -> AdminAccountOut:
    """Put the account on a plan (free, subscription, usage); it applies at once."""
    return render_policies.admin_account(await services.policies.set_plan(address, body.plan))
