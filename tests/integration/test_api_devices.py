"""Devices register themselves by proving possession of their own key."""

from __future__ import annotations

import httpx

from openmessenger.core.ids import parse_address
from openmessenger.crypto.device_identity import DeviceIdentity
from tests.support.api import Dump, register, rows_mentioning, signed_challenge


async def test_a_new_key_gets_an_anonymous_account_with_a_random_address(
    http: httpx.AsyncClient,
) -> None:
    alice, bob = await register(http, "Alice"), await register(http)
    assert parse_address(alice.address).domain == "localhost"
    assert alice.address != bob.address
    me = (await alice.get("/v1/me")).json()
    assert me == {
        "address": alice.address,
        "display_name": "Alice",
        "device_id": alice.device_id,
        "kind": "anonymous",
        "owner_kind": None,
    }
    renamed = await alice.http.patch(
        "/v1/me", json={"display_name": "Alice Liddell"}, headers=alice.auth
    )
    assert renamed.json()["display_name"] == "Alice Liddell"
    assert (await alice.get("/v1/me")).json()["display_name"] == "Alice Liddell"


async def test_registration_needs_a_valid_fresh_signature(http: httpx.AsyncClient) -> None:
    identity = DeviceIdentity.create()
    other = DeviceIdentity.create()
    body = await signed_challenge(http, identity)
    forged = {
        **body,
        "signature": other.sign(b"something else"),
        "curve25519_key": identity.curve25519_key,
    }
    assert (await http.post("/v1/devices", json=forged)).status_code == 401
    # The challenge was spent by the failed attempt: it cannot be used again.
    honest = {**body, "curve25519_key": identity.curve25519_key}
    assert (await http.post("/v1/devices", json=honest)).status_code == 401


async def test_a_captured_registration_cannot_be_replayed(http: httpx.AsyncClient) -> None:
    identity = DeviceIdentity.create()
    body = {**await signed_challenge(http, identity), "curve25519_key": identity.curve25519_key}
    first = await http.post("/v1/devices", json=body)
    replay = await http.post("/v1/devices", json=body)
    assert first.status_code == 201
    assert replay.status_code == 401 and "access_token" not in replay.json()


async def test_a_registered_device_gets_new_tokens_with_its_key(http: httpx.AsyncClient) -> None:
    alice = await register(http)
    again = await http.post("/v1/auth/token", json=await signed_challenge(http, alice.identity))
    assert again.status_code == 200
    token = again.json()["access_token"]
    assert token != alice.token
    me = await http.get("/v1/me", headers={"Authorization": f"Bearer {token}"})
    assert me.json()["address"] == alice.address
    duplicate = {
        **await signed_challenge(http, alice.identity),
        "curve25519_key": alice.identity.curve25519_key,
    }
    conflict = await http.post("/v1/devices", json=duplicate)
    assert conflict.status_code == 409 and conflict.json()["code"] == "device_exists"
    stranger = DeviceIdentity.create()
    unknown = await http.post("/v1/auth/token", json=await signed_challenge(http, stranger))
    assert unknown.status_code == 401


async def test_the_node_never_holds_a_private_key(http: httpx.AsyncClient, dump: Dump) -> None:
    identity = DeviceIdentity.create()
    body = {**await signed_challenge(http, identity), "curve25519_key": identity.curve25519_key}
    assert (await http.post("/v1/devices", json=body)).status_code == 201
    stored = await dump()
    pickle = identity.to_pickle(b"k" * 32)
    assert rows_mentioning(stored, pickle) == []
    assert [d["ed25519_key"] for d in stored["devices"]] == [identity.ed25519_key]
    assert set(stored["devices"][0]) == {
        "id",
        "account_id",
        "ed25519_key",
        "curve25519_key",
        "created_at",
        "stream_head",
        "sealing_key",
        "sealing_key_signature",
        "revoked_at",
        "app_id",
        "node_held",
    }
