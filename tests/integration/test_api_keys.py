"""End-to-end keys over the real HTTP API, on SQLite and PostgreSQL: publishing and
claiming keys, the signed device list, revocation and to-device messages, and the
attacks each must withstand."""

from __future__ import annotations

import httpx
import vodozemac

from openmessenger.crypto.keys import verify_ed25519
from openmessenger.protocol.e2e import one_time_key_signed_bytes
from tests.support.api import Dump, register, rows_mentioning
from tests.support.keys import (
    AccountKey,
    keyed_pair,
    link_device,
    log_in,
    put_device_list,
    register_keyed,
)

# --- publishing keys ---------------------------------------------------------------


async def test_a_device_publishes_signed_keys_and_reads_its_counts(http: httpx.AsyncClient) -> None:
    alice = await register_keyed(http)
    answer = await alice.upload(
        one_time_keys=alice.one_time_keys(5),
        fallback_key=alice.fallback_key(),
        **alice.sealing_key(),
    )
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"one_time_keys": 5, "fallback_key": True}
    counts = await alice.api.get("/v1/keys")
    assert counts.json() == {"one_time_keys": 5, "fallback_key": True}
    # An empty upload changes nothing and answers the counts.
    assert (await alice.upload()).json() == {"one_time_keys": 5, "fallback_key": True}


async def test_a_forged_signature_is_refused_and_nothing_is_stored(
    http: httpx.AsyncClient, dump: Dump
) -> None:
    alice = await register_keyed(http)
    keys = alice.one_time_keys(5)
    impostor = vodozemac.Account()
    key = keys[3]
    keys[3] = {
        **key,
        "signature": impostor.sign(
            one_time_key_signed_bytes(alice.device_id, key["key_id"], key["key"])
        ).to_base64(),
    }
    forged = await alice.upload(one_time_keys=keys, fallback_key=alice.fallback_key())
    assert forged.status_code == 422
    assert (forged.json()["code"], forged.json()["field"]) == (
        "invalid_input",
        "one_time_keys[3].signature",
    )
    # Signed by the device, but for another device id: not for this one.
    elsewhere = alice.one_time_keys(1, device_id="someone-else")
    refused = await alice.upload(one_time_keys=elsewhere)
    assert refused.json()["field"] == "one_time_keys[0].signature"

    sealing = alice.sealing_key()
    forged_sealing = {**sealing, "sealing_key": vodozemac.PkDecryption().public_key.to_base64()}
    refused = await alice.upload(one_time_keys=alice.one_time_keys(2), **forged_sealing)
    assert (refused.status_code, refused.json()["field"]) == (422, "sealing_key_signature")
    alone = await alice.upload(sealing_key=sealing["sealing_key"])
    assert (alone.status_code, alone.json()["field"]) == (422, "sealing_key_signature")

    assert (await alice.api.get("/v1/keys")).json() == {"one_time_keys": 0, "fallback_key": False}
    stored = await dump()
    assert stored["one_time_keys"] == []
    assert rows_mentioning(stored, forged_sealing["sealing_key"]) == []
    assert [d["sealing_key"] for d in stored["devices"]] == [None]


async def test_key_ids_are_kept_and_at_most_100_keys_are_held(http: httpx.AsyncClient) -> None:
    alice = await register_keyed(http)
    keys = alice.one_time_keys(60)
    assert (await alice.upload(one_time_keys=keys)).json()["one_time_keys"] == 60
    # A retried upload is harmless; the same id with another key is not.
    assert (await alice.upload(one_time_keys=keys[:10])).json()["one_time_keys"] == 60
    other = alice.signed_key(keys[0]["key_id"], alice.one_time_keys(1)[0]["key"])
    clash = await alice.upload(one_time_keys=[other])
    assert (clash.status_code, clash.json()["code"]) == (409, "key_id_in_use")
    too_many = await alice.upload(one_time_keys=alice.one_time_keys(41))
    assert (too_many.status_code, too_many.json()["field"]) == (422, "one_time_keys")
    assert (await alice.upload(one_time_keys=alice.one_time_keys(40))).json()[
        "one_time_keys"
    ] == 100
    over_the_wire_limit = await alice.upload(one_time_keys=keys * 2)
    assert over_the_wire_limit.status_code == 422  # 120 in one request
    assert (await alice.api.get("/v1/keys")).json()["one_time_keys"] == 100


# --- other addresses' keys ---------------------------------------------------------


async def test_keys_are_shown_to_the_address_itself_and_its_contacts_only(
    http: httpx.AsyncClient,
) -> None:
    alice, bob = await keyed_pair(http)
    sealing = alice.sealing_key()
    await alice.upload(one_time_keys=alice.one_time_keys(2), **sealing)
    stranger = await register(http)

    seen = await bob.api.get(f"/v1/keys/{alice.address}")
    assert seen.status_code == 200, seen.text
    assert seen.json() == {
        "address": alice.address,
        "device_list": None,
        "devices": [
            {
                **alice.listed(),
                "sealing_key": sealing["sealing_key"],
                "sealing_key_signature": sealing["sealing_key_signature"],
            }
        ],
        "encryption": "end-to-end",
    }
    own = await alice.api.get(f"/v1/keys/{alice.address}")
    assert own.json() == seen.json()

    hidden = await stranger.get(f"/v1/keys/{alice.address}")
    unknown = await stranger.get("/v1/keys/1234567890*localhost")
    remote = await bob.api.get("/v1/keys/1234567890*elsewhere.example")
    assert hidden.status_code == unknown.status_code == remote.status_code == 404
    assert hidden.json() == unknown.json() == remote.json()
    assert alice.curve25519_key not in hidden.text
    bad = await bob.api.get("/v1/keys/not-an-address")
    assert (bad.status_code, bad.json()["field"]) == (422, "address")


async def test_only_contacts_can_claim_and_exhaust_a_devices_keys(
    http: httpx.AsyncClient,
) -> None:
    alice, bob = await keyed_pair(http)
    fallback = alice.fallback_key()
    await alice.upload(one_time_keys=alice.one_time_keys(2), fallback_key=fallback)
    stranger = await register(http)
    ask = {"address": alice.address, "devices": [alice.device_id]}

    for _ in range(5):
        refused = await stranger.post("/v1/keys/claim", ask)
        unknown = await stranger.post(
            "/v1/keys/claim", {"address": "1234567890*localhost", "devices": [alice.device_id]}
        )
        assert refused.status_code == unknown.status_code == 404
        assert refused.json() == unknown.json()
    assert (await alice.api.get("/v1/keys")).json() == {"one_time_keys": 2, "fallback_key": True}

    claims = []
    for _ in range(3):
        claimed = await bob.api.post(
            "/v1/keys/claim", {**ask, "devices": [alice.device_id, "no-such-device"]}
        )
        assert claimed.status_code == 200, claimed.text
        (key,) = claimed.json()["one_time_keys"].values()
        assert list(claimed.json()["one_time_keys"]) == [alice.device_id]
        claims.append(key)
    assert [c["fallback"] for c in claims] == [False, False, True]
    assert len({c["key_id"] for c in claims[:2]}) == 2
    assert claims[2]["key"] == fallback["key"]
    for claim in claims:  # what a client checks before using a key
        signed = one_time_key_signed_bytes(alice.device_id, claim["key_id"], claim["key"])
        assert verify_ed25519(alice.listed()["ed25519_key"], signed, claim["signature"])
    assert (await alice.api.get("/v1/keys")).json() == {"one_time_keys": 0, "fallback_key": True}


# --- the signed device list ------------------------------------------------------------


async def test_a_device_list_must_be_signed_newer_and_name_only_real_devices(
    http: httpx.AsyncClient,
) -> None:
    alice, bob = await keyed_pair(http)
    key = AccountKey()
    first = key.device_list(alice.address, 1, [alice.listed()])
    accepted = await put_device_list(alice, first)
    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["device_list"] == first
    assert [d["current"] for d in accepted.json()["devices"]] == [True]

    def refused(response: httpx.Response) -> tuple[int, str, str | None]:
        data = response.json()
        return response.status_code, data["code"], data.get("field")

    other_key = AccountKey()
    by_another_key = other_key.device_list(alice.address, 2, [alice.listed()])
    assert refused(await put_device_list(alice, by_another_key)) == (
        409,
        "signing_key_mismatch",
        None,
    )
    forged = other_key.device_list(alice.address, 2, [alice.listed()], signing_key=key.public_key)
    assert refused(await put_device_list(alice, forged)) == (
        422,
        "invalid_input",
        "device_list.signature",
    )
    stale = key.device_list(alice.address, 1, [alice.listed()])
    assert refused(await put_device_list(alice, stale)) == (409, "stale_device_list", None)

    ghost_keys = vodozemac.Account()
    ghost = {
        **alice.listed(),
        "curve25519_key": ghost_keys.curve25519_key.to_base64(),
    }
    lists = {
        "ghost": key.device_list(alice.address, 2, [ghost]),
        "bob's device": key.device_list(alice.address, 2, [alice.listed(), bob.listed()]),
        "twice": key.device_list(alice.address, 2, [alice.listed(), alice.listed()]),
        "without the caller": key.device_list(alice.address, 2, []),
    }
    for name, signed in lists.items():
        assert refused(await put_device_list(alice, signed)) == (
            422,
            "invalid_input",
            "device_list.list.devices",
        ), name
    huge = key.device_list(alice.address, 2**63, [alice.listed()])
    assert refused(await put_device_list(alice, huge))[2] == "device_list.list.version"
    bobs_address = key.device_list(bob.address, 2, [alice.listed()])
    assert refused(await put_device_list(alice, bobs_address))[2] == "device_list.list.address"

    # Nothing refused was stored; contacts see the accepted list.
    assert (await alice.api.get("/v1/devices")).json()["device_list"] == first
    assert (await bob.api.get(f"/v1/keys/{alice.address}")).json()["device_list"] == first
    newer = key.device_list(alice.address, 7, [alice.listed()])
    assert (await put_device_list(alice, newer)).status_code == 200
    assert (await bob.api.get(f"/v1/keys/{alice.address}")).json()["device_list"] == newer


# --- revocation -------------------------------------------------------------------------


async def test_a_revoked_device_is_locked_out_at_once_and_receives_nothing_new(
    http: httpx.AsyncClient, dump: Dump
) -> None:
    alice, bob = await keyed_pair(http)
    key = AccountKey()
    assert (
        await put_device_list(alice, key.device_list(alice.address, 1, [alice.listed()]))
    ).status_code == 200
    laptop = await link_device(http, alice, key, 2)
    await laptop.upload(one_time_keys=laptop.one_time_keys(3))
    before = await bob.api.send(alice.address, "before")
    assert before.status_code == 201, before.text
    # The laptop receives it (and its token is now in the node's token cache).
    assert [e["message"]["id"] for e in await laptop.api.sync()] == [before.json()["id"]]

    stranger = await register_keyed(http)
    not_yours = await stranger.api.post(
        f"/v1/devices/{laptop.device_id}/revoke",
        {"device_list": key.device_list(stranger.address, 1, [stranger.listed()])},
    )
    assert not_yours.status_code == 404
    still_listed = key.device_list(alice.address, 3, [alice.listed(), laptop.listed()])
    refused = await alice.api.post(
        f"/v1/devices/{laptop.device_id}/revoke", {"device_list": still_listed}
    )
    assert (refused.status_code, refused.json()["field"]) == (422, "device_list.list.devices")
    assert (await laptop.api.get("/v1/me")).status_code == 200

    revoked = await alice.api.post(
        f"/v1/devices/{laptop.device_id}/revoke",
        {"device_list": key.device_list(alice.address, 3, [alice.listed()])},
    )
    assert revoked.status_code == 200, revoked.text
    assert [d["device_id"] for d in revoked.json()["devices"]] == [alice.device_id]

    # Refused on the very next request, well within the token cache's minute.
    locked_out = await laptop.api.get("/v1/me")
    assert (locked_out.status_code, locked_out.json()["code"]) == (401, "unauthenticated")
    assert (await laptop.api.get("/v1/sync")).status_code == 401
    assert (await log_in(http, laptop.account)).status_code == 401

    after = await bob.api.send(alice.address, "after")
    assert after.status_code == 201, after.text
    assert [e["message"]["id"] for e in await alice.api.sync()] == [
        before.json()["id"],
        after.json()["id"],
    ]
    stored = await dump()
    laptop_entries = [r for r in stored["device_streams"] if r["device_id"] == laptop.device_id]
    assert len(laptop_entries) == 1  # "before" only
    assert [r for r in stored["one_time_keys"] if r["device_id"] == laptop.device_id] == []
    assert [r for r in stored["device_tokens"] if r["device_id"] == laptop.device_id] == []
    keys = (await bob.api.get(f"/v1/keys/{alice.address}")).json()
    assert [d["device_id"] for d in keys["devices"]] == [alice.device_id]
    claim = await bob.api.post(
        "/v1/keys/claim", {"address": alice.address, "devices": [laptop.device_id]}
    )
    assert claim.json() == {"one_time_keys": {}}


async def test_a_device_can_revoke_itself(http: httpx.AsyncClient) -> None:
    alice = await register_keyed(http)
    key = AccountKey()
    await put_device_list(alice, key.device_list(alice.address, 1, [alice.listed()]))
    laptop = await link_device(http, alice, key, 2)
    gone = await laptop.api.post(
        f"/v1/devices/{laptop.device_id}/revoke",
        {"device_list": key.device_list(alice.address, 3, [alice.listed()])},
    )
    assert gone.status_code == 200, gone.text
    assert (await laptop.api.get("/v1/me")).status_code == 401
    own = (await alice.api.get("/v1/devices")).json()
    assert [d["device_id"] for d in own["devices"]] == [alice.device_id]
    assert own["device_list"]["list"]["version"] == 3


# --- to-device --------------------------------------------------------------------------


async def test_to_device_messages_reach_the_accounts_own_devices_once(
    http: httpx.AsyncClient, dump: Dump
) -> None:
    alice = await register_keyed(http)
    key = AccountKey()
    await put_device_list(alice, key.device_list(alice.address, 1, [alice.listed()]))
    laptop = await link_device(http, alice, key, 2)
    first = await laptop.sync()
    assert [m["sender_device"] for m in first["to_device"]] == [alice.device_id]  # the secrets
    acknowledged = await laptop.sync(to_device_since=first["to_device"][-1]["id"])
    assert acknowledged["to_device"] == []

    await laptop.upload(one_time_keys=laptop.one_time_keys(1))
    claimed = await alice.api.post(
        "/v1/keys/claim", {"address": alice.address, "devices": [laptop.device_id]}
    )
    (one_time_key,) = claimed.json()["one_time_keys"].values()
    olm = alice.olm_to(laptop.curve25519_key, one_time_key["key"], b"room keys")
    sent = await alice.api.post(
        "/v1/to-device", {"messages": [{"device_id": laptop.device_id, "olm": olm}]}
    )
    assert sent.status_code == 202, sent.text

    since = first["to_device"][-1]["id"]
    inbox = (await laptop.sync(to_device_since=since))["to_device"]
    again = (await laptop.sync(to_device_since=since))["to_device"]
    assert inbox == again  # not acknowledged yet
    (message,) = inbox
    assert (message["sender_device"], message["sender_key"]) == (
        alice.device_id,
        alice.curve25519_key,
    )
    assert laptop.olm_from(message["sender_key"], message["olm"]) == b"room keys"
    assert (await laptop.sync(to_device_since=message["id"]))["to_device"] == []
    too_far = await laptop.api.get("/v1/sync", params={"to_device_since": 2**64})
    assert (too_far.status_code, too_far.json()["field"]) == (422, "to_device_since")
    assert (await dump())["to_device"] == []


async def test_to_device_to_another_accounts_device_is_refused_and_stores_nothing(
    http: httpx.AsyncClient, dump: Dump
) -> None:
    alice, bob = await keyed_pair(http)
    key = AccountKey()
    await put_device_list(alice, key.device_list(alice.address, 1, [alice.listed()]))
    laptop = await link_device(http, alice, key, 2)
    await laptop.sync(to_device_since=10**9)  # acknowledge the link secrets
    olm = {"type": 0, "body": "AAAA"}
    for targets in ([bob.device_id], [laptop.device_id, bob.device_id], ["no-such-device"]):
        refused = await alice.api.post(
            "/v1/to-device",
            {"messages": [{"device_id": target, "olm": olm} for target in targets]},
        )
        assert refused.status_code == 404, targets
    malformed = await alice.api.post(
        "/v1/to-device", {"messages": [{"device_id": laptop.device_id, "olm": {"type": 7}}]}
    )
    assert malformed.status_code == 422
    assert (await dump())["to_device"] == []
    assert (await laptop.sync())["to_device"] == []
    assert (await bob.api.get("/v1/sync")).json()["to_device"] == []
