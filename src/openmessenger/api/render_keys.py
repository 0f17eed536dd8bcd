"""End-to-end records -> client API models. Wire objects the node stores as
JSON text (device lists, Olm messages, backup entries) are parsed back here."""

from __future__ import annotations

from openmessenger.core.records import (
    AddressKeys,
    ClaimedOneTimeKey,
    DevicePublicKeys,
    KeyCounts,
    LinkRequest,
    ToDeviceEvent,
)
from openmessenger.protocol.client_api import (
    AddressKeysOut,
    ClaimedKey,
    DeviceKeysOut,
    DeviceSessionOut,
    KeyCountsOut,
    LinkRequestInfo,
    OwnDeviceList,
    OwnDeviceOut,
    ToDeviceOut,
)
from openmessenger.protocol.e2e import OlmCiphertext, SignedDeviceList, SignedKey
from openmessenger.services.devices import DeviceSession
from openmessenger.services.keys import OwnDevices


def _device_list(text: str | None) -> SignedDeviceList | None:
    return SignedDeviceList.model_validate_json(text) if text is not None else None


def key_counts(counts: KeyCounts) -> KeyCountsOut:
    return KeyCountsOut(one_time_keys=counts.one_time_keys, fallback_key=counts.fallback_key)


def device_keys(d: DevicePublicKeys) -> DeviceKeysOut:
    return DeviceKeysOut(
        device_id=d.device_id,
        ed25519_key=d.ed25519_key,
        curve25519_key=d.curve25519_key,
        sealing_key=d.sealing_key,
        sealing_key_signature=d.sealing_key_signature,
    )


def address_keys(keys: AddressKeys) -> AddressKeysOut:
    return AddressKeysOut(
        address=keys.address,
        device_list=_device_list(keys.device_list),
        devices=[device_keys(d) for d in keys.devices],
        encryption=keys.encryption.value,
    )


def claimed_key(key: ClaimedOneTimeKey) -> ClaimedKey:
    return ClaimedKey(
        key_id=key.key_id, key=key.key, signature=key.signature, fallback=key.fallback
    )


def own_devices(own: OwnDevices) -> OwnDeviceList:
    return OwnDeviceList(
        devices=[
            OwnDeviceOut(
                device_id=d.id,
                ed25519_key=d.ed25519_key,
                curve25519_key=d.curve25519_key,
                created_at=d.created_at,
                current=d.id == own.current,
            )
            for d in own.devices
        ],
        device_list=_device_list(own.device_list),
    )


def to_device(event: ToDeviceEvent) -> ToDeviceOut:
    return ToDeviceOut(
        id=event.id,
        sender_device=event.sender_device,
        sender_key=event.sender_key,
        olm=OlmCiphertext.model_validate_json(event.olm),
    )


def link_request(request: LinkRequest) -> LinkRequestInfo:
    key = request.one_time_key
    return LinkRequestInfo(
        device_id=request.device_id,
        ed25519_key=request.ed25519_key,
        curve25519_key=request.curve25519_key,
        one_time_key=SignedKey(key_id=key.key_id, key=key.key, signature=key.signature),
        expires_at=request.expires_at,
    )


def session(s: DeviceSession) -> DeviceSessionOut:
    return DeviceSessionOut(
        device_id=s.device.id,
        address=s.account.address,
        display_name=s.account.display_name,
        access_token=s.access_token,
    )
