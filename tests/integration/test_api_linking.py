"""New devices without passwords, over the real HTTP API: linking by approval from
a device of the account, the key backup, and recovery with the recovery key."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import httpx
import vodozemac

from openmessenger.protocol.client_api import signed_challenge_bytes
from openmessenger.protocol.e2e import (
    BackupEntry,
    backup_entry_signed_bytes,
    link_signed_bytes,
    recovery_auth_signed_bytes,
)
from tests.support.api import Dump, register
from tests.support.keys import (
    AccountKey,
    KeyedDevice,
    link_request,
    log_in,
    new_one_time_keys,
    put_device_list,
    recovery_body,
    register_keyed,
)
from tests.support.node import SettableClock


async def with_device_list(http: httpx.AsyncClient) -> tuple[KeyedDevice, AccountKey]:
    alice = await register_keyed(http, "Alice")
    key = AccountKey()
    accepted = await put_device_list(alice, key.device_list(alice.address, 1, [alice.listed()]))
    assert accepted.status_code == 200, accepted.text
    return alice, key


def approval(
    approver: KeyedDevice, key: AccountKey, info: dict[str, Any], version: int, secret: bytes
) -> dict[str, Any]:
    new = {k: info[k] for k in ("device_id", "ed25519_key", "curve25519_key")}
    return {
        "device_list": key.device_list(approver.address, version, [approver.listed(), new]),
        "secrets": approver.olm_to(info["curve25519_key"], info["one_time_key"]["key"], secret),
    }


# --- linking -------------------------------------------------------------------------


async def test_a_new_device_is_linked_by_approval_and_receives_the_secrets(
    http: httpx.AsyncClient,
) -> None:
    alice, key = await with_device_list(http)
    new = vodozemac.Account()
    asked, offered_key = await link_request(http, new)
    assert asked.status_code == 201, asked.text
    code = asked.json()["code"]
    assert re.fullmatch(r"[0-9]{10}", code)
    assert "access_token" not in asked.json()
    assert (await log_in(http, new)).status_code == 401  # not before approval

    info = (await alice.api.get(f"/v1/link-requests/{code}")).json()
    assert info["ed25519_key"] == new.ed25519_key.to_base64()
    assert info["curve25519_key"] == new.curve25519_key.to_base64()
    assert info["one_time_key"] == offered_key

    approved = await alice.api.post(
        f"/v1/link-requests/{code}/approve", approval(alice, key, info, 2, b"signing key seed")
    )
    assert approved.status_code == 200, approved.text
    assert {d["device_id"]: d["current"] for d in approved.json()["devices"]} == {
        alice.device_id: True,
        info["device_id"]: False,
    }
    assert approved.json()["device_list"]["list"]["version"] == 2

    session = await log_in(http, new)
    assert session.status_code == 200, session.text
    assert (session.json()["address"], session.json()["device_id"]) == (
        alice.address,
        info["device_id"],
    )
    token = {"Authorization": f"Bearer {session.json()['access_token']}"}
    synced = (await http.get("/v1/sync", headers=token)).json()
    (secrets,) = synced["to_device"]
    assert (secrets["sender_device"], secrets["sender_key"]) == (
        alice.device_id,
        alice.curve25519_key,
    )
    message = vodozemac.PreKeyMessage.from_base64(secrets["olm"]["body"])
    _, plaintext = new.create_inbound_session(
        vodozemac.Curve25519PublicKey.from_base64(secrets["sender_key"]), message
    )
    assert bytes(plaintext) == b"signing key seed"

    # A code works once.
    twice = await alice.api.post(
        f"/v1/link-requests/{code}/approve", approval(alice, key, info, 3, b"again")
    )
    assert twice.status_code == 404
    assert (await alice.api.get(f"/v1/link-requests/{code}")).status_code == 404
    assert len((await alice.api.get("/v1/devices")).json()["devices"]) == 2


async def test_unknown_and_malformed_codes_are_not_found(http: httpx.AsyncClient) -> None:
    alice, key = await with_device_list(http)
    body = {
        "device_list": key.device_list(alice.address, 2, [alice.listed()]),
        "secrets": {"type": 0, "body": "AAAA"},
    }
    answers = [
        await alice.api.get("/v1/link-requests/0123456789"),
        await alice.api.get("/v1/link-requests/12345"),
        await alice.api.post("/v1/link-requests/0123456789/approve", body),
        await alice.api.post("/v1/link-requests/not-a-code/approve", body),
    ]
    assert [a.status_code for a in answers] == [404] * 4
    assert len({a.text for a in answers}) == 1
    anonymous = await http.get("/v1/link-requests/0123456789")
    assert anonymous.status_code == 401


async def test_a_link_request_proves_its_key_once_and_cannot_take_a_known_one(
    http: httpx.AsyncClient, dump: Dump
) -> None:
    alice = await register_keyed(http)
    new = vodozemac.Account()
    ed25519_key = new.ed25519_key.to_base64()
    challenge = (await http.post("/v1/auth/challenge")).json()
    (one_time_key,) = new_one_time_keys(new, 1, "")
    body = {
        "ed25519_key": ed25519_key,
        "curve25519_key": new.curve25519_key.to_base64(),
        "one_time_key": one_time_key,
        "challenge": challenge["challenge"],
        # A registration signature is not a link signature.
        "signature": new.sign(
            signed_challenge_bytes(challenge["challenge"], challenge["domain"])
        ).to_base64(),
    }
    assert (await http.post("/v1/link-requests", json=body)).status_code == 401
    # The challenge was spent by the failed attempt.
    honest = new.sign(link_signed_bytes(challenge["domain"], challenge["challenge"], ed25519_key))
    replay = await http.post("/v1/link-requests", json={**body, "signature": honest.to_base64()})
    assert replay.status_code == 401

    (signed_for_an_id,) = new_one_time_keys(new, 1, "some-device-id")
    fresh = (await http.post("/v1/auth/challenge")).json()
    wrong_key = await http.post(
        "/v1/link-requests",
        json={
            **body,
            "one_time_key": signed_for_an_id,
            "challenge": fresh["challenge"],
            "signature": new.sign(
                link_signed_bytes(fresh["domain"], fresh["challenge"], ed25519_key)
            ).to_base64(),
        },
    )
    assert (wrong_key.status_code, wrong_key.json()["field"]) == (
        422,
        "one_time_key.signature",
    )
    assert (await dump())["link_requests"] == []

    # A registered key, or one already asking, cannot ask.
    registered, _ = await link_request(http, alice.account)
    assert (registered.status_code, registered.json()["code"]) == (409, "device_exists")
    first, _ = await link_request(http, new)
    again, _ = await link_request(http, new)
    assert first.status_code == 201
    assert (again.status_code, again.json()["code"]) == (409, "device_exists")
    (stored,) = (await dump())["link_requests"]
    assert first.json()["code"] not in str(stored)  # the code is kept as an HMAC only


async def test_a_refused_approval_changes_nothing(http: httpx.AsyncClient, dump: Dump) -> None:
    alice, key = await with_device_list(http)
    new = vodozemac.Account()
    asked, _ = await link_request(http, new)
    code = asked.json()["code"]
    info = (await alice.api.get(f"/v1/link-requests/{code}")).json()
    without_it = {
        "device_list": key.device_list(alice.address, 2, [alice.listed()]),
        "secrets": {"type": 0, "body": "AAAA"},
    }
    refused = await alice.api.post(f"/v1/link-requests/{code}/approve", without_it)
    assert (refused.status_code, refused.json()["field"]) == (422, "device_list.list.devices")
    stale = approval(alice, key, info, 1, b"x")
    refused = await alice.api.post(f"/v1/link-requests/{code}/approve", stale)
    assert (refused.status_code, refused.json()["code"]) == (409, "stale_device_list")
    stored = await dump()
    assert len(stored["devices"]) == 1
    assert stored["to_device"] == []
    assert [r["approved_at"] for r in stored["link_requests"]] == [None]
    assert (await log_in(http, new)).status_code == 401

    # The code still works for a good approval.
    good = await alice.api.post(
        f"/v1/link-requests/{code}/approve", approval(alice, key, info, 2, b"x")
    )
    assert good.status_code == 200, good.text
    assert (await log_in(http, new)).status_code == 200


async def test_a_link_code_expires_after_ten_minutes(
    http: httpx.AsyncClient, clock: SettableClock
) -> None:
    alice, key = await with_device_list(http)
    new = vodozemac.Account()
    asked, _ = await link_request(http, new)
    code = asked.json()["code"]
    info = (await alice.api.get(f"/v1/link-requests/{code}")).json()
    clock.advance(timedelta(minutes=10, seconds=1))
    assert (await alice.api.get(f"/v1/link-requests/{code}")).status_code == 404
    late = await alice.api.post(
        f"/v1/link-requests/{code}/approve", approval(alice, key, info, 2, b"x")
    )
    assert late.status_code == 404
    assert (await log_in(http, new)).status_code == 401
    # Its key may ask again.
    again, _ = await link_request(http, new)
    assert again.status_code == 201, again.text


# --- backup ----------------------------------------------------------------------------


def entry(key: AccountKey, address: str, entry_id: str, n: int) -> dict[str, str]:
    """A backup entry as a device writes it: encrypted (here: made up) and signed."""
    blob = vodozemac.PkDecryption().public_key.to_base64()
    sealed = BackupEntry(ciphertext=f"c{n}" + blob, mac="bWFj", ephemeral_key=blob)
    signature = key.sign(backup_entry_signed_bytes(address, entry_id, sealed))
    return {**sealed.model_dump(), "signature": signature}


def backup_setup(key: AccountKey, address: str, recovery: AccountKey) -> dict[str, str]:
    signed = recovery_auth_signed_bytes(address, recovery.public_key)
    return {"recovery_auth_key": recovery.public_key, "signature": key.sign(signed)}


async def test_backup_entries_belong_to_the_accounts_own_devices(
    http: httpx.AsyncClient,
) -> None:
    alice, key = await with_device_list(http)
    recovery = AccountKey()
    early = await register_keyed(http)
    no_list = await early.api.http.put(
        "/v1/backup", json=backup_setup(key, early.address, recovery), headers=early.api.auth
    )
    assert (no_list.status_code, no_list.json()["code"]) == (409, "no_device_list")
    one = {"session:1": entry(key, alice.address, "session:1", 1)}
    not_yet = await alice.api.http.put(
        "/v1/backup/entries", json={"entries": one}, headers=alice.api.auth
    )
    assert (not_yet.status_code, not_yet.json()["code"]) == (409, "no_backup")
    missing = await alice.api.get("/v1/backup")
    assert (missing.status_code, missing.json()["code"]) == (404, "no_backup")

    put = alice.api.http.put
    set_up = await put(
        "/v1/backup", json=backup_setup(key, alice.address, recovery), headers=alice.api.auth
    )
    assert set_up.status_code == 204, set_up.text
    entries = {
        "session:1": entry(key, alice.address, "session:1", 1),
        "account-signing-key": entry(key, alice.address, "account-signing-key", 2),
    }
    stored = await put("/v1/backup/entries", json={"entries": entries}, headers=alice.api.auth)
    assert stored.status_code == 204, stored.text
    replaced = {"session:1": entry(key, alice.address, "session:1", 3)}
    await put("/v1/backup/entries", json={"entries": replaced}, headers=alice.api.auth)
    assert (await alice.api.get("/v1/backup")).json() == {"entries": {**entries, **replaced}}

    # Bob sees his own (none), never Alice's.
    bob = await register(http)
    assert (await bob.get("/v1/backup")).json()["code"] == "no_backup"
    assert (await http.get("/v1/backup")).status_code == 401

    # A new recovery key makes the old entries useless: they go.
    await put(
        "/v1/backup",
        json=backup_setup(key, alice.address, AccountKey()),
        headers=alice.api.auth,
    )
    assert (await alice.api.get("/v1/backup")).json() == {"entries": {}}


async def test_a_token_alone_cannot_set_up_a_backup_or_write_entries(
    http: httpx.AsyncClient,
) -> None:
    alice, key = await with_device_list(http)
    thief = AccountKey()  # holds alice's token, not her account signing key
    put = alice.api.http.put
    forged_setup = await put(
        "/v1/backup", json=backup_setup(thief, alice.address, thief), headers=alice.api.auth
    )
    assert (forged_setup.status_code, forged_setup.json()["field"]) == (422, "signature")
    await put(
        "/v1/backup", json=backup_setup(key, alice.address, AccountKey()), headers=alice.api.auth
    )
    planted = {"session:x": entry(thief, alice.address, "session:x", 9)}
    refused = await put("/v1/backup/entries", json={"entries": planted}, headers=alice.api.auth)
    assert (refused.status_code, refused.json()["field"]) == (422, "entries.session:x.signature")
    moved = {"session:y": entry(key, alice.address, "session:x", 9)}  # signed for another id
    assert (
        await put("/v1/backup/entries", json={"entries": moved}, headers=alice.api.auth)
    ).status_code == 422
    assert (await alice.api.get("/v1/backup")).json() == {"entries": {}}


# --- recovery ---------------------------------------------------------------------------


async def test_recovery_needs_the_recovery_key_and_adds_a_device_to_the_account(
    http: httpx.AsyncClient, dump: Dump
) -> None:
    alice, key = await with_device_list(http)
    recovery = AccountKey()
    await alice.api.http.put(
        "/v1/backup", json=backup_setup(key, alice.address, recovery), headers=alice.api.auth
    )
    bob = await register_keyed(http)  # no backup set up
    new = vodozemac.Account()

    wrong = await recovery_body(http, new, alice.address, AccountKey())
    unknown = await recovery_body(http, new, "1234567890*localhost", recovery)
    no_backup = await recovery_body(http, new, bob.address, recovery)
    answers = [await http.post("/v1/recovery", json=b) for b in (wrong, unknown, no_backup)]
    assert [a.status_code for a in answers] == [401] * 3
    assert len({a.json()["detail"] for a in answers}) == 1
    assert len((await dump())["devices"]) == 2  # Alice's and Bob's: nothing created

    right = await recovery_body(http, new, alice.address, recovery)
    recovered = await http.post("/v1/recovery", json=right)
    assert recovered.status_code == 201, recovered.text
    assert recovered.json()["address"] == alice.address
    assert recovered.json()["device_id"] != alice.device_id
    token = {"Authorization": f"Bearer {recovered.json()['access_token']}"}
    me = (await http.get("/v1/me", headers=token)).json()
    assert (me["address"], me["display_name"]) == (alice.address, "Alice")
    devices = (await alice.api.get("/v1/devices")).json()["devices"]
    assert {d["device_id"] for d in devices} == {alice.device_id, recovered.json()["device_id"]}
    # The recovered device reads the account's backup.
    assert (await http.get("/v1/backup", headers=token)).json() == {"entries": {}}
    # The signed request works once.
    assert (await http.post("/v1/recovery", json=right)).status_code == 401
