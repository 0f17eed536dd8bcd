"""The app gateway: apps and their keys (for their owner), and what an app does
with its API key (its users' accounts, media types, deleting its data)."""

from __future__ import annotations

from datetime import timedelta

from fastapi import APIRouter, Response, status

from openmessenger.api import render_apps
from openmessenger.api.deps import CurrentApp, CurrentDevice, PersonDevice, Services
from openmessenger.core.apps import parse_scopes
from openmessenger.protocol.apps_api import (
    ApiKeyIn,
    ApiKeyList,
    AppCreatedOut,
    AppCreateIn,
    AppDeletedOut,
    AppList,
    DataDeletedOut,
    IssuedKeyOut,
    ManagedAccountIn,
    ManagedAccountOut,
    MediaTypeIn,
    MediaTypeList,
    MediaTypeOut,
    ProofConfirmedOut,
    ProofConfirmIn,
    ProofStartedOut,
    ProofStartIn,
    RotateIn,
)
from openmessenger.protocol.client_api import API_PREFIX
from openmessenger.services.managed_accounts import DeviceProof

router = APIRouter(prefix=API_PREFIX, tags=["apps"])


# --- for the app's owner (a registered account's device) -----------------------------


@router.post("/apps", status_code=status.HTTP_201_CREATED, response_model=AppCreatedOut)
async def create_app(body: AppCreateIn, caller: PersonDevice, services: Services) -> AppCreatedOut:
    """A new app of the calling (registered) account, with its first API key. An
    anonymous account gets 403 ``registration_required``."""
    created = await services.apps.create_app(
        caller, app_id=body.id, name=body.name, signing_key=body.signing_key
    )
    return render_apps.created(created)


@router.get("/apps", response_model=AppList)
async def my_apps(caller: CurrentDevice, services: Services) -> AppList:
    return AppList(apps=[render_apps.app(a) for a in await services.apps.apps_of(caller)])


@router.delete("/apps/{app}", response_model=AppDeletedOut)
async def delete_app(app: str, caller: CurrentDevice, services: Services) -> AppDeletedOut:
    """Delete the app and, for every account it holds, everything it holds (as
    ``DELETE /v1/apps/{app}/accounts/{id}/data``); its keys stop at once."""
    held = await services.account_data.delete_app(caller, app)
    return AppDeletedOut(accounts=held)


@router.get("/apps/{app}/keys", response_model=ApiKeyList)
async def keys(app: str, caller: CurrentDevice, services: Services) -> ApiKeyList:
    """The app's API keys (never the keys themselves: the node keeps only HMACs)."""
    owned = await services.apps.owned_app(caller, app)
    found = await services.apps.keys(owned.id)
    return ApiKeyList(keys=[render_apps.api_key(k) for k in found])


@router.post("/apps/{app}/keys", status_code=status.HTTP_201_CREATED, response_model=IssuedKeyOut)
async def issue_key(
    app: str, body: ApiKeyIn, caller: CurrentDevice, services: Services
) -> IssuedKeyOut:
    owned = await services.apps.owned_app(caller, app)
    scopes = parse_scopes(body.scopes)
    return render_apps.issued(await services.apps.issue_key(owned.id, scopes, body.label))


@router.post(
    "/apps/{app}/keys/{key_id}/rotate",
    status_code=status.HTTP_201_CREATED,
    response_model=IssuedKeyOut,
)
async def rotate_key(
    app: str, key_id: str, body: RotateIn, caller: CurrentDevice, services: Services
) -> IssuedKeyOut:
    """A new key with the same scopes; the old one stops working after ``grace_seconds``."""
    owned = await services.apps.owned_app(caller, app)
    grace = timedelta(seconds=body.grace_seconds)
    return render_apps.issued(await services.apps.rotate_key(owned.id, key_id, grace))


@router.delete("/apps/{app}/keys/{key_id}", status_code=status.HTTP_204_NO_CONTENT)
async def revoke_key(app: str, key_id: str, caller: CurrentDevice, services: Services) -> Response:
    """The key stops working at once."""
    owned = await services.apps.owned_app(caller, app)
    await services.apps.revoke_key(owned.id, key_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# --- for the app itself (its API key) ---------------------------------------------------


@router.post(
    "/apps/{app}/accounts", status_code=status.HTTP_201_CREATED, response_model=ManagedAccountOut
)
async def create_account(
    app: str, body: ManagedAccountIn, caller: CurrentApp, services: Services
) -> ManagedAccountOut:
    """An account for one of the app's users, with the app as its device. Then act
    for it on every ``/v1/`` endpoint with the API key and the header
    ``Openmessenger-Account: <account_id>``."""
    proof = DeviceProof(**body.device.model_dump()) if body.device is not None else None
    created = await services.managed.create(caller, display_name=body.display_name, device=proof)
    return render_apps.managed(created)


@router.get("/apps/{app}/accounts/{account_id}", response_model=ManagedAccountOut)
async def account(
    app: str, account_id: str, caller: CurrentApp, services: Services
) -> ManagedAccountOut:
    return render_apps.managed(await services.managed.get(caller, account_id))


@router.delete("/apps/{app}/accounts/{account_id}/data", response_model=DataDeletedOut)
async def delete_data(
    app: str, account_id: str, caller: CurrentApp, services: Services
) -> DataDeletedOut:
    """Everything the app holds for the account: messages sent through it, their
    metadata, its device in the account and its link to it. Its grant key is
    destroyed, so backups cannot open them either. An account nothing holds any
    more is deleted with it."""
    deleted = await services.account_data.delete_app_data(caller, account_id)
    return DataDeletedOut(account_deleted=deleted)


@router.post(
    "/apps/{app}/media-types", status_code=status.HTTP_201_CREATED, response_model=MediaTypeOut
)
async def register_media_type(
    app: str, body: MediaTypeIn, caller: CurrentApp, services: Services
) -> MediaTypeOut:
    """A custom media type ``app.<app>.<name>`` whose metadata must match ``schema``."""
    return render_apps.media_type(
        await services.apps.register_media_type(caller, body.name, body.json_schema)
    )


@router.get("/apps/{app}/media-types", response_model=MediaTypeList)
async def media_types(app: str, caller: CurrentApp, services: Services) -> MediaTypeList:
    found = await services.apps.media_types(caller.app.id)
    return MediaTypeList(media_types=[render_apps.media_type(m) for m in found])


@router.post(
    "/apps/{app}/accounts/{account_id}/verifications",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=ProofStartedOut,
)
async def start_proof(
    app: str, account_id: str, body: ProofStartIn, caller: CurrentApp, services: Services
) -> ProofStartedOut:
    """Send the user a code at their e-mail address or phone number. Proving one that
    another account proved before makes the two one address (see confirm)."""
    pending = await services.managed.start_proof(caller, account_id, body.channel, body.to)
    return ProofStartedOut(
        verification_id=pending.id, channel=pending.channel.value, expires_at=pending.expires_at
    )


@router.post(
    "/apps/{app}/accounts/{account_id}/verifications/{verification_id}/confirm",
    response_model=ProofConfirmedOut,
)
async def confirm_proof(
    app: str,
    account_id: str,
    verification_id: str,
    body: ProofConfirmIn,
    caller: CurrentApp,
    services: Services,
) -> ProofConfirmedOut:
    """The code the user received. When the identity belongs to another account, this
    account joins it (``merged``: use the returned ``account_id`` from now on)."""
    account, merged = await services.managed.confirm_proof(
        caller, account_id, verification_id, body.code
    )
    return ProofConfirmedOut(account_id=account.id, address=account.address, merged=merged)
