"""What an account decides and owns: which apps it takes messages from, its
data as JSON, and deleting it."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response, status

from openmessenger.api.deps import CurrentDevice, PersonDevice, Services
from openmessenger.protocol.apps_api import AllowlistIn, AllowlistOut
from openmessenger.protocol.client_api import API_PREFIX

router = APIRouter(prefix=API_PREFIX, tags=["account"])


@router.get("/account/apps", response_model=AllowlistOut)
async def account_apps(caller: CurrentDevice, services: Services) -> AllowlistOut:
    """The apps this account takes messages from (``null``: any app)."""
    account_level, _ = await services.apps.allowlist(caller, None)
    return AllowlistOut(apps=account_level)


@router.put("/account/apps", response_model=AllowlistOut)
async def set_account_apps(
    body: AllowlistIn, caller: PersonDevice, services: Services
) -> AllowlistOut:
    """Take messages sent through these apps only (``null``: any app). Messages from
    native devices are not sent through an app and always arrive."""
    return AllowlistOut(apps=await services.apps.set_allowlist(caller, None, body.apps))


@router.get("/contacts/{address}/apps", response_model=AllowlistOut)
async def contact_apps(address: str, caller: CurrentDevice, services: Services) -> AllowlistOut:
    account_level, contact_level = await services.apps.allowlist(caller, address)
    return AllowlistOut(apps=contact_level, account_apps=account_level)


@router.put("/contacts/{address}/apps", response_model=AllowlistOut)
async def set_contact_apps(
    address: str, body: AllowlistIn, caller: PersonDevice, services: Services
) -> AllowlistOut:
    """For this contact only; it wins over the account's list (``null``: the account's
    list applies again)."""
    allowed = await services.apps.set_allowlist(caller, address, body.apps)
    account_level, _ = await services.apps.allowlist(caller, None)
    return AllowlistOut(apps=allowed, account_apps=account_level)


@router.get("/account/export")
async def export(caller: PersonDevice, services: Services) -> dict[str, Any]:
    """All of this account's data as JSON: profile, devices and their public keys,
    verified identities (kind and date only: the node keeps them as HMACs),
    contacts, pass codes, key backup, linked apps, allowlists and every message
    sent or received, bodies as stored (ciphertext)."""
    return await services.account_data.export(caller)


@router.delete("/account", status_code=status.HTTP_204_NO_CONTENT)
async def delete_account(caller: PersonDevice, services: Services) -> Response:
    """Delete this account and everything of it, now. Export first if you want a copy."""
    await services.account_data.delete_account(caller)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
