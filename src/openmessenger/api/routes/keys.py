"""End-to-end keys: publishing and claiming keys, the signed device list, the
account's devices and their revocation, to-device messages (docs/encryption.md)."""

from __future__ import annotations

from fastapi import APIRouter, Response, status

from openmessenger.api import render_keys
from openmessenger.api.deps import CurrentDevice, PersonDevice, Services
from openmessenger.core.records import SignedOneTimeKey
from openmessenger.protocol.client_api import (
    API_PREFIX,
    AddressKeysOut,
    ClaimIn,
    ClaimOut,
    DeviceListIn,
    KeyCountsOut,
    KeysUploadIn,
    OwnDeviceList,
    RevokeDeviceIn,
    ToDeviceIn,
)
from openmessenger.protocol.e2e import SignedKey

router = APIRouter(prefix=API_PREFIX, tags=["end-to-end keys"])


def _key(key: SignedKey) -> SignedOneTimeKey:
    return SignedOneTimeKey(key.key_id, key.key, key.signature)


@router.put("/keys", response_model=KeyCountsOut)
async def upload_keys(
    body: KeysUploadIn, caller: CurrentDevice, services: Services
) -> KeyCountsOut:
    """Publish this device's one-time keys, fallback key and sealing key.

    Each key is signed by the device's Ed25519 key: one-time and fallback keys over
    ``one_time_key_signed_bytes(device_id, key_id, key)``, the sealing key over
    ``sealing_key_signed_bytes(device_id, key)``. One bad signature refuses the whole
    upload (the field is named). The node holds at most 100 unclaimed one-time keys
    per device; a new fallback key replaces the old one. Answers the counts held now.
    """
    counts = await services.keys.upload(
        caller,
        one_time_keys=[_key(k) for k in body.one_time_keys],
        fallback_key=_key(body.fallback_key) if body.fallback_key else None,
        sealing_key=body.sealing_key,
        sealing_key_signature=body.sealing_key_signature,
    )
    return render_keys.key_counts(counts)


@router.get("/keys", response_model=KeyCountsOut)
async def key_counts(caller: CurrentDevice, services: Services) -> KeyCountsOut:
    """How many unclaimed one-time keys the node holds for this device, and
    whether it has a fallback key: upload more when they run low."""
    return render_keys.key_counts(await services.keys.counts(caller))


@router.get("/keys/{address}", response_model=AddressKeysOut)
async def address_keys(address: str, caller: CurrentDevice, services: Services) -> AddressKeysOut:
    """The devices of your own address or of a contact, with their keys, and the
    device list the account signed. Encrypt only to devices that list names with
    the same keys. Any other address, known or not, is 404."""
    return render_keys.address_keys(await services.keys.address_keys(caller, address))


@router.post("/keys/claim", response_model=ClaimOut)
async def claim_keys(body: ClaimIn, caller: CurrentDevice, services: Services) -> ClaimOut:
    """Take one key per named device of an address (your own or a contact's) to
    start an Olm session: a one-time key, or the fallback key once they ran out.
    Devices the address does not have are left out."""
    claimed = await services.keys.claim(caller, body.address, body.devices)
    return ClaimOut(one_time_keys={d: render_keys.claimed_key(k) for d, k in claimed.items()})


@router.put("/account/device-list", response_model=OwnDeviceList)
async def put_device_list(
    body: DeviceListIn, caller: CurrentDevice, services: Services
) -> OwnDeviceList:
    """Publish the account's new signed device list.

    The signature must verify with ``list.signing_key``, which must be the
    account's signing key (the first list sets it; else 409 ``signing_key_mismatch``);
    ``version`` must be above the stored one (409 ``stale_device_list``); every
    listed device must be a device of the account with exactly those keys, and
    this device must be listed.
    """
    own = await services.keys.put_device_list(caller, body.device_list)
    return render_keys.own_devices(own)


@router.get("/devices", response_model=OwnDeviceList)
async def own_devices(caller: CurrentDevice, services: Services) -> OwnDeviceList:
    """The devices of your account (revoked ones are gone), and its signed list."""
    return render_keys.own_devices(await services.keys.own_devices(caller))


@router.post("/devices/{device_id}/revoke", response_model=OwnDeviceList)
async def revoke_device(
    device_id: str, body: RevokeDeviceIn, caller: PersonDevice, services: Services
) -> OwnDeviceList:
    """Revoke a device of your account (this one too), with the account's new
    signed device list that leaves it out. Its tokens stop working at once, its
    keys and waiting to-device messages are deleted, and it receives nothing new."""
    own = await services.keys.revoke(caller, device_id, body.device_list)
    return render_keys.own_devices(own)


@router.post("/to-device", status_code=status.HTTP_202_ACCEPTED, response_class=Response)
async def send_to_device(body: ToDeviceIn, caller: CurrentDevice, services: Services) -> Response:
    """Queue Olm messages for other devices of your own account; each reads them
    in ``GET /v1/sync`` (``to_device``). A device that is not one of your account's
    refuses the whole request (404) and nothing is queued."""
    await services.keys.send_to_device(caller, [(m.device_id, m.olm) for m in body.messages])
    return Response(status_code=status.HTTP_202_ACCEPTED)
