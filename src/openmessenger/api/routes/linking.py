"""New devices without passwords: link requests approved by a device of the
account, the key backup, and recovery with the recovery key."""

from __future__ import annotations

from fastapi import APIRouter, Response, status

from openmessenger.api import render_keys
from openmessenger.api.deps import CurrentDevice, Services
from openmessenger.core.records import SignedOneTimeKey
from openmessenger.protocol.client_api import (
    API_PREFIX,
    BackupEntriesIn,
    BackupOut,
    BackupSetupIn,
    DeviceSessionOut,
    LinkApproveIn,
    LinkRequestIn,
    LinkRequestInfo,
    LinkRequestOut,
    OwnDeviceList,
    RecoveryIn,
)
from openmessenger.protocol.e2e import SignedBackupEntry

router = APIRouter(prefix=API_PREFIX, tags=["linking and recovery"])


@router.post("/link-requests", status_code=status.HTTP_201_CREATED, response_model=LinkRequestOut)
async def request_link(body: LinkRequestIn, services: Services) -> LinkRequestOut:
    """A new device asks to join an existing account (no token needed).

    Sign ``link_signed_bytes(domain, challenge, ed25519_key)`` over a challenge from
    ``POST /v1/auth/challenge``, and the one-time key over
    ``one_time_key_signed_bytes("", key_id, key)`` (the device id is empty: the
    device learns it once approved). Show the returned 10-digit code to a device of
    the account; it is valid for 10 minutes. Then log in with ``POST /v1/auth/token``
    (401 until approved).
    """
    key = body.one_time_key
    issued = await services.linking.request(
        ed25519_key=body.ed25519_key,
        curve25519_key=body.curve25519_key,
        one_time_key=SignedOneTimeKey(key.key_id, key.key, key.signature),
        challenge=body.challenge,
        signature=body.signature,
    )
    return LinkRequestOut(code=issued.code, expires_at=issued.expires_at)


@router.get("/link-requests/{code}", response_model=LinkRequestInfo)
async def link_request(code: str, caller: CurrentDevice, services: Services) -> LinkRequestInfo:
    """The device a link code belongs to: its keys (compare them with the new
    device's screen), the id it will get, and a one-time key to open an Olm session
    to it. Unknown, expired and used codes are 404."""
    return render_keys.link_request(await services.linking.pending(caller, code))


@router.post("/link-requests/{code}/approve", response_model=OwnDeviceList)
async def approve_link(
    code: str, body: LinkApproveIn, caller: CurrentDevice, services: Services
) -> OwnDeviceList:
    """Add the requesting device to your account: with the account's new signed
    device list, which names it, and ``secrets``, an Olm message for it (the
    account signing key, room keys) that it reads from its sync. A code works once."""
    own = await services.linking.approve(caller, code, body.device_list, body.secrets)
    return render_keys.own_devices(own)


@router.put("/backup", status_code=status.HTTP_204_NO_CONTENT, response_class=Response)
async def set_up_backup(body: BackupSetupIn, caller: CurrentDevice, services: Services) -> Response:
    """Set up (or replace) the account's key backup: the public key that proves a
    recovery. Entries stored before are deleted (they were for the old recovery
    key). Needs the account's signed device list first (409 ``no_device_list``)."""
    await services.backup.set_up(caller, body.recovery_auth_key, body.signature)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.put("/backup/entries", status_code=status.HTTP_204_NO_CONTENT, response_class=Response)
async def put_backup_entries(
    body: BackupEntriesIn, caller: CurrentDevice, services: Services
) -> Response:
    """Store or replace backup entries (ciphertexts to the device list's
    ``backup_key``), by id. 409 ``no_backup`` before ``PUT /v1/backup``."""
    await services.backup.put_entries(caller, body.entries)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/backup", response_model=BackupOut)
async def backup(caller: CurrentDevice, services: Services) -> BackupOut:
    """Every backup entry of your account (404 ``no_backup`` if none is set up)."""
    entries = await services.backup.entries(caller)
    return BackupOut(
        entries={k: SignedBackupEntry.model_validate_json(v) for k, v in entries.items()}
    )


@router.post("/recovery", status_code=status.HTTP_201_CREATED, response_model=DeviceSessionOut)
async def recover(body: RecoveryIn, services: Services) -> DeviceSessionOut:
    """A new device joins an account whose devices were all lost (no token needed).

    Sign the challenge as at registration, and have the key derived from the
    recovery key sign ``recovery_signed_bytes(domain, address, challenge,
    ed25519_key)``. Any failure is the same 401. Answers the new device's session.
    """
    session = await services.linking.recover(
        address=body.address,
        ed25519_key=body.ed25519_key,
        curve25519_key=body.curve25519_key,
        challenge=body.challenge,
        signature=body.signature,
        recovery_signature=body.recovery_signature,
    )
    return render_keys.session(session)
