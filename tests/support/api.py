"""Raw HTTP helpers for API tests: real devices (vodozemac identities) over real HTTP."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx

from openmessenger.crypto.device_identity import DeviceIdentity
from openmessenger.crypto.sealing import SealingKeyPair
from openmessenger.protocol.client_api import signed_challenge_bytes
from openmessenger.protocol.e2e import SealedBody, sealing_key_signed_bytes

Dump = Callable[[], Awaitable[dict[str, list[dict[str, object]]]]]


def rows_mentioning(dump: dict[str, list[dict[str, object]]], needle: str) -> list[str]:
    """``table.column`` of every stored value that contains ``needle``."""
    return [
        f"{table}.{column}"
        for table, rows in dump.items()
        for row in rows
        for column, value in row.items()
        if needle in str(value)
    ]


@dataclass
class ApiDevice:
    http: httpx.AsyncClient
    identity: DeviceIdentity
    device_id: str
    address: str
    token: str
    sealing: SealingKeyPair
    """Opens what the node sealed to this device (plain-text sends are stored so)."""

    def text(self, message: dict[str, Any]) -> str:
        """The text of a message as the API returned it, opened with this device's key."""
        assert message["encryption"] == "transport-encrypted", message
        return self.sealing.open(SealedBody.model_validate_json(message["body"]), self.device_id)

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    async def get(self, path: str, **kw: Any) -> httpx.Response:
        return await self.http.get(path, headers=self.auth, **kw)

    async def post(self, path: str, json: Any = None, **kw: Any) -> httpx.Response:
        return await self.http.post(
            path, json=json, headers={**self.auth, **kw.pop("headers", {})}, **kw
        )

    async def issue_code(self, for_address: str | None = None) -> str:
        response = await self.post("/v1/codes", {"for": for_address})
        assert response.status_code == 201, response.text
        return str(response.json()["pass_code"])

    async def connect(self, address: str, code: str) -> httpx.Response:
        return await self.post("/v1/connections", {"address": address, "pass_code": code})

    async def send(self, to: str, body: str, txn: str | None = None) -> httpx.Response:
        return await self.post("/v1/messages", {"to": to, "body": body, "client_txn_id": txn})

    async def sync(self, since: int = 0) -> list[dict[str, Any]]:
        response = await self.get("/v1/sync", params={"since": since, "limit": 500})
        assert response.status_code == 200, response.text
        events: list[dict[str, Any]] = response.json()["events"]
        return events

    async def texts(self, since: int = 0) -> list[str]:
        """The texts of this device's stream after ``since``, opened."""
        return [self.text(event["message"]) for event in await self.sync(since)]


async def signed_challenge(http: httpx.AsyncClient, identity: DeviceIdentity) -> dict[str, str]:
    answer = (await http.post("/v1/auth/challenge")).json()
    signature = identity.sign(signed_challenge_bytes(answer["challenge"], answer["domain"]))
    return {
        "ed25519_key": identity.ed25519_key,
        "challenge": answer["challenge"],
        "signature": signature,
    }


async def register(
    http: httpx.AsyncClient,
    name: str | None = None,
    *,
    identity: DeviceIdentity | None = None,
    publish_sealing: bool = True,
) -> ApiDevice:
    """Register a new device over raw HTTP (``identity``: with these keys), and
    publish its sealing key unless told not to."""
    identity = identity or DeviceIdentity.create()
    body = await signed_challenge(http, identity)
    body.update(curve25519_key=identity.curve25519_key)
    if name:
        body["display_name"] = name
    response = await http.post("/v1/devices", json=body)
    assert response.status_code == 201, response.text
    data = response.json()
    device = ApiDevice(
        http,
        identity,
        data["device_id"],
        data["address"],
        data["access_token"],
        SealingKeyPair.generate(),
    )
    if publish_sealing:
        await publish_sealing_key(device)
    return device


async def publish_sealing_key(device: ApiDevice) -> None:
    key = device.sealing.public_key
    signature = device.identity.sign(sealing_key_signed_bytes(device.device_id, key))
    response = await device.http.put(
        "/v1/keys",
        json={"sealing_key": key, "sealing_key_signature": signature},
        headers=device.auth,
    )
    assert response.status_code == 200, response.text


async def connected_pair(http: httpx.AsyncClient) -> tuple[ApiDevice, ApiDevice]:
    alice = await register(http, "Alice")
    bob = await register(http, "Bob")
    code = await alice.issue_code()
    response = await bob.connect(alice.address, code)
    assert response.status_code == 201, response.text
    return alice, bob
