"""End-to-end helpers for API tests: devices that publish real vodozemac keys,
account signing keys that sign device lists, Olm messages between devices.

Everything is made with vodozemac and PyNaCl directly, over raw HTTP, so the
tests check the node against the wire formats in ``protocol/e2e.py``."""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
import vodozemac
from nacl.signing import SigningKey

from openmessenger.crypto.device_identity import DeviceIdentity
from openmessenger.crypto.sealing import SealingKeyPair
from openmessenger.protocol.e2e import (
    DeviceList,
    ListedDevice,
    SignedDeviceList,
    link_signed_bytes,
    one_time_key_signed_bytes,
    recovery_signed_bytes,
    sealing_key_signed_bytes,
)
from tests.support.api import ApiDevice, register, signed_challenge


def b64(raw: bytes) -> str:
    """Unpadded standard base64, as vodozemac writes keys and signatures."""
    return base64.b64encode(raw).decode().rstrip("=")


@dataclass
class KeyedDevice:
    """A registered device and the vodozemac account behind its identity."""

    api: ApiDevice
    account: vodozemac.Account

    @property
    def device_id(self) -> str:
        return self.api.device_id

    @property
    def address(self) -> str:
        return self.api.address

    @property
    def curve25519_key(self) -> str:
        return str(self.account.curve25519_key.to_base64())

    def listed(self) -> dict[str, str]:
        """This device as a device list names it."""
        return {
            "device_id": self.device_id,
            "ed25519_key": self.account.ed25519_key.to_base64(),
            "curve25519_key": self.curve25519_key,
        }

    def one_time_keys(self, count: int, *, device_id: str | None = None) -> list[dict[str, str]]:
        """``count`` new one-time keys, each signed as the node expects."""
        return new_one_time_keys(
            self.account, count, self.device_id if device_id is None else device_id
        )

    def fallback_key(self) -> dict[str, str]:
        self.account.generate_fallback_key()
        ((key_id, key),) = self.account.fallback_key.items()
        self.account.mark_keys_as_published()
        return self.signed_key(key_id, key.to_base64())

    def signed_key(self, key_id: str, key: str) -> dict[str, str]:
        signature = self.account.sign(one_time_key_signed_bytes(self.device_id, key_id, key))
        return {"key_id": key_id, "key": key, "signature": signature.to_base64()}

    def sealing_key(self) -> dict[str, str]:
        key = vodozemac.PkDecryption().public_key.to_base64()
        signature = self.account.sign(sealing_key_signed_bytes(self.device_id, key))
        return {"sealing_key": key, "sealing_key_signature": signature.to_base64()}

    async def upload(self, **body: Any) -> httpx.Response:
        return await self.api.http.put("/v1/keys", json=body, headers=self.api.auth)

    async def sync(self, to_device_since: int = 0) -> dict[str, Any]:
        response = await self.api.get(
            "/v1/sync", params={"since": 0, "to_device_since": to_device_since}
        )
        assert response.status_code == 200, response.text
        data: dict[str, Any] = response.json()
        return data

    def olm_to(self, other_curve25519_key: str, one_time_key: str, text: bytes) -> dict[str, Any]:
        """A pre-key Olm message to another device, from one of its one-time keys."""
        session = self.account.create_outbound_session(
            vodozemac.Curve25519PublicKey.from_base64(other_curve25519_key),
            vodozemac.Curve25519PublicKey.from_base64(one_time_key),
        )
        message_type, body = session.encrypt(text).to_parts()
        return {"type": message_type, "body": b64(body)}

    def olm_from(self, sender_key: str, olm: dict[str, Any]) -> bytes:
        """Open a pre-key Olm message sent to this device."""
        assert olm["type"] == 0
        message = vodozemac.PreKeyMessage.from_base64(olm["body"])
        _, plaintext = self.account.create_inbound_session(
            vodozemac.Curve25519PublicKey.from_base64(sender_key), message
        )
        return bytes(plaintext)


def new_one_time_keys(
    account: vodozemac.Account, count: int, device_id: str
) -> list[dict[str, str]]:
    account.generate_one_time_keys(count)
    keys = []
    for key_id, key in sorted(account.one_time_keys.items()):
        text = key.to_base64()
        signature = account.sign(one_time_key_signed_bytes(device_id, key_id, text))
        keys.append({"key_id": key_id, "key": text, "signature": signature.to_base64()})
    account.mark_keys_as_published()
    return keys


async def register_keyed(http: httpx.AsyncClient, name: str | None = None) -> KeyedDevice:
    """Register a device over raw HTTP, keeping its vodozemac account."""
    account = vodozemac.Account()
    # Keys are the tests' business here: no sealing key is published for them.
    api = await register(http, name, identity=DeviceIdentity(account), publish_sealing=False)
    return KeyedDevice(api, account)


async def log_in(http: httpx.AsyncClient, account: vodozemac.Account) -> httpx.Response:
    return await http.post(
        "/v1/auth/token", json=await signed_challenge(http, DeviceIdentity(account))
    )


@dataclass
class AccountKey:
    """An account signing key (Ed25519), signing the account's device lists."""

    key: SigningKey = field(default_factory=SigningKey.generate)

    @property
    def public_key(self) -> str:
        return b64(bytes(self.key.verify_key))

    def sign(self, data: bytes) -> str:
        return b64(self.key.sign(data).signature)

    def device_list(
        self,
        address: str,
        version: int,
        devices: list[dict[str, str]],
        *,
        signing_key: str | None = None,
        backup_key: str | None = None,
    ) -> dict[str, Any]:
        """A SignedDeviceList as JSON, signed by this key (``signing_key`` names
        another public key in the list, for forgeries)."""
        listed = DeviceList(
            address=address,
            signing_key=signing_key or self.public_key,
            version=version,
            backup_key=backup_key,
            devices=[ListedDevice(**d) for d in devices],
        )
        signed = SignedDeviceList(list=listed, signature=self.sign(listed.signed_bytes()))
        return signed.model_dump(mode="json")


async def put_device_list(device: KeyedDevice, signed: dict[str, Any]) -> httpx.Response:
    return await device.api.http.put(
        "/v1/account/device-list", json={"device_list": signed}, headers=device.api.auth
    )


async def link_request(
    http: httpx.AsyncClient, account: vodozemac.Account
) -> tuple[httpx.Response, dict[str, str]]:
    """A new device (``account``) asks to be linked; answers the response and the
    one-time key it offered (signed with device id "", as the node expects)."""
    challenge = (await http.post("/v1/auth/challenge")).json()
    ed25519_key = account.ed25519_key.to_base64()
    (one_time_key,) = new_one_time_keys(account, 1, "")
    signature = account.sign(
        link_signed_bytes(challenge["domain"], challenge["challenge"], ed25519_key)
    )
    body = {
        "ed25519_key": ed25519_key,
        "curve25519_key": account.curve25519_key.to_base64(),
        "one_time_key": one_time_key,
        "challenge": challenge["challenge"],
        "signature": signature.to_base64(),
    }
    return await http.post("/v1/link-requests", json=body), one_time_key


async def recovery_body(
    http: httpx.AsyncClient,
    account: vodozemac.Account,
    address: str,
    recovery_key: AccountKey,
) -> dict[str, str]:
    """What a new device sends to ``POST /v1/recovery``, proven with ``recovery_key``."""
    body = await signed_challenge(http, DeviceIdentity(account))
    domain = address.split("*", 1)[1]
    proof = recovery_signed_bytes(domain, address, body["challenge"], body["ed25519_key"])
    return {
        **body,
        "address": address,
        "curve25519_key": account.curve25519_key.to_base64(),
        "recovery_signature": recovery_key.sign(proof),
    }


async def keyed_pair(http: httpx.AsyncClient) -> tuple[KeyedDevice, KeyedDevice]:
    """Alice and Bob, connected with a pass code Alice issued."""
    alice = await register_keyed(http, "Alice")
    bob = await register_keyed(http, "Bob")
    code = await alice.api.issue_code()
    response = await bob.api.connect(alice.address, code)
    assert response.status_code == 201, response.text
    return alice, bob


async def link_device(
    http: httpx.AsyncClient,
    approver: KeyedDevice,
    account_key: AccountKey,
    version: int,
    others: Sequence[KeyedDevice] = (),
    secrets: bytes = b"account secrets",
) -> KeyedDevice:
    """A new device joins ``approver``'s account: it asks, ``approver`` approves
    with list ``version`` (naming the approver, ``others`` and the new device) and
    an Olm message of ``secrets``, and the new device logs in."""
    account = vodozemac.Account()
    asked, _ = await link_request(http, account)
    assert asked.status_code == 201, asked.text
    code = asked.json()["code"]
    info = (await approver.api.get(f"/v1/link-requests/{code}")).json()
    listed = {
        "device_id": info["device_id"],
        "ed25519_key": info["ed25519_key"],
        "curve25519_key": info["curve25519_key"],
    }
    devices = [approver.listed(), *(d.listed() for d in others), listed]
    body = {
        "device_list": account_key.device_list(approver.address, version, devices),
        "secrets": approver.olm_to(info["curve25519_key"], info["one_time_key"]["key"], secrets),
    }
    approved = await approver.api.post(f"/v1/link-requests/{code}/approve", body)
    assert approved.status_code == 200, approved.text
    session = await log_in(http, account)
    assert session.status_code == 200, session.text
    data = session.json()
    api = ApiDevice(
        http,
        DeviceIdentity(account),
        data["device_id"],
        data["address"],
        data["access_token"],
        SealingKeyPair.generate(),
    )
    return KeyedDevice(api, account)
