"""The app gateway through the real HTTP API: apps, API keys, managed accounts,
acting for them, and the attacks (another app's users, revoked keys, scopes)."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

import httpx

from openmessenger.core.apps import Envelope, body_digest
from openmessenger.crypto.app_keys import AppKeyPair, sign_with_seed
from openmessenger.crypto.keys import verify_ed25519
from tests.support.api import Dump, register, rows_mentioning
from tests.support.apps import connect_to, create_app, registered
from tests.support.node import SettableClock


async def test_an_anonymous_account_cannot_make_apps(http: httpx.AsyncClient) -> None:
    anonymous = await register(http, "Anon")
    response = await anonymous.post("/v1/apps", {"id": "shop", "name": "Shop"})
    assert response.status_code == 403
    assert response.json()["code"] == "registration_required"
    assert (await anonymous.get("/v1/apps")).json()["apps"] == []


async def test_a_registered_account_makes_an_app_whose_key_is_shown_once(
    http: httpx.AsyncClient, clock: SettableClock, dump: Dump
) -> None:
    owner = await registered(http, clock)
    response = await owner.post("/v1/apps", {"id": "shop", "name": "Shop"})
    assert response.status_code == 201, response.text
    created = response.json()
    key = created["api_key"]["key"]
    assert key.startswith("omk_")
    assert sorted(created["api_key"]["scopes"]) == [
        "accounts",
        "data",
        "media-types",
        "messages",
        "webhooks",
    ]
    assert created["signing_seed"]
    # Listed without the key itself; stored only as an HMAC, the seed not at all.
    listed = (await owner.get("/v1/apps/shop/keys")).json()["keys"]
    assert [k["id"] for k in listed] == [created["api_key"]["id"]]
    assert "key" not in listed[0]
    stored = await dump()
    assert rows_mentioning(stored, key) == []
    assert rows_mentioning(stored, key.split("_", 2)[2]) == []
    assert rows_mentioning(stored, created["signing_seed"]) == []
    # The id is the owner's now.
    again = await (await registered(http, clock, "Other")).post(
        "/v1/apps", {"id": "shop", "name": "Shop 2"}
    )
    assert again.status_code == 409 and again.json()["code"] == "app_exists"


async def test_an_app_makes_accounts_and_acts_for_them_within_their_connections(
    http: httpx.AsyncClient, clock: SettableClock
) -> None:
    owner = await registered(http, clock)
    app = await create_app(owner, "shop")
    user = await app.create_account("Customer")
    assert user["encryption"] == "transport-encrypted"  # no device keys: the node holds them
    me = await app.act(user["account_id"], "GET", "/v1/me")
    assert me.status_code == 200, me.text
    assert me.json()["kind"] == "managed" and me.json()["address"] == user["address"]

    friend = await register(http, "Friend")
    # Without a pass code the app cannot reach anyone for its user.
    refused = await app.act(
        user["account_id"], "POST", "/v1/messages", {"to": friend.address, "body": "hi"}
    )
    assert refused.status_code == 403 and refused.json()["code"] == "refused"

    await connect_to(app, user["account_id"], friend)
    sent = await app.act(
        user["account_id"], "POST", "/v1/messages", {"to": friend.address, "body": "your order"}
    )
    assert sent.status_code == 201, sent.text
    assert sent.json()["body"] == "your order"  # the node opens it for the app
    assert sent.json()["app"]["app_id"] == "shop"
    # The friend reads it as any transport-encrypted message, tagged with the app.
    (event,) = await friend.sync()
    assert friend.text(event["message"]) == "your order"
    assert event["message"]["encryption"] == "transport-encrypted"
    assert event["message"]["app"]["app_id"] == "shop"

    reply = await friend.send(user["address"], "thanks")
    assert reply.status_code == 201
    synced = (await app.act(user["account_id"], "GET", "/v1/sync")).json()["events"]
    assert [e["message"]["body"] for e in synced] == ["thanks"]


async def test_the_node_attests_which_app_a_message_came_through(
    http: httpx.AsyncClient, clock: SettableClock
) -> None:
    owner = await registered(http, clock)
    app = await create_app(owner, "shop")
    user = await app.create_account()
    friend = await register(http, "Friend")
    await connect_to(app, user["account_id"], friend)
    assert app.signing_seed is not None
    envelope = Envelope(
        app_id="shop",
        sender=user["address"],
        sender_device=user["device_id"],
        to=friend.address,
        body_sha256=body_digest("signed by the app"),
        media_type="text",
        metadata_sha256=None,
    )
    signature = sign_with_seed(app.signing_seed, envelope.app_signed_bytes())
    sent = await app.act(
        user["account_id"],
        "POST",
        "/v1/messages",
        {"to": friend.address, "body": "signed by the app", "app_signature": signature},
    )
    assert sent.status_code == 201, sent.text
    (event,) = await friend.sync()
    message = event["message"]
    tag = message["app"]
    node_key = (await http.get("/.well-known/openmessenger")).json()["signing_key"]
    sent_at = int(datetime.fromisoformat(message["sent_at"].replace("Z", "+00:00")).timestamp())
    assert (tag["message_id"], tag["sender_device"], tag["sent_at"]) == (
        message["id"],
        user["device_id"],
        sent_at,
    )

    def attested(envelope: Envelope, app_key: str) -> bytes:
        return envelope.node_signed_bytes(
            node=tag["node"], message_id=message["id"], sent_at_s=sent_at, app_key=app_key
        )

    assert verify_ed25519(node_key, attested(envelope, tag["app_key"]), tag["attestation"])
    assert verify_ed25519(tag["app_key"], envelope.app_signed_bytes(), tag["app_signature"])
    # Altered in any field (here: the app, or the app key), it no longer verifies.
    altered = replace(envelope, app_id="bank")
    assert not verify_ed25519(node_key, attested(altered, tag["app_key"]), tag["attestation"])
    other_key = AppKeyPair.generate().public_key
    assert not verify_ed25519(node_key, attested(envelope, other_key), tag["attestation"])

    # A signature made for another body is refused, and nothing is stored.
    refused = await app.act(
        user["account_id"],
        "POST",
        "/v1/messages",
        {"to": friend.address, "body": "altered", "app_signature": signature},
    )
    assert refused.status_code == 403 and refused.json()["code"] == "app_signature_invalid"
    assert len(await friend.sync()) == 1


async def test_native_devices_cannot_sign_as_an_app(http: httpx.AsyncClient) -> None:
    alice = await register(http, "Alice")
    bob = await register(http, "Bob")
    response = await bob.connect(alice.address, await alice.issue_code())
    assert response.status_code == 201
    forged = await bob.post(
        "/v1/messages", {"to": alice.address, "body": "hi", "app_signature": "A" * 86}
    )
    assert forged.status_code == 422 and forged.json()["field"] == "app_signature"
    plain = await bob.send(alice.address, "hi")
    assert plain.json()["app"] is None


async def test_an_app_never_sees_another_apps_users(
    http: httpx.AsyncClient, clock: SettableClock
) -> None:
    shop = await create_app(await registered(http, clock, "Shop Inc"), "shop")
    bank = await create_app(await registered(http, clock, "Bank Inc"), "bank")
    customer = await shop.create_account("Customer")
    for method, path in [
        ("GET", "/v1/me"),
        ("GET", "/v1/sync"),
        ("GET", "/v1/connections"),
    ]:
        response = await bank.act(customer["account_id"], method, path)
        assert response.status_code == 404, (path, response.text)
        assert response.json()["code"] == "account_not_found"
    stolen = await bank.http.get(
        f"/v1/apps/bank/accounts/{customer['account_id']}", headers=bank.auth
    )
    assert stolen.status_code == 404
    # Its key does not open the other app's endpoints either.
    other = await bank.http.get(
        f"/v1/apps/shop/accounts/{customer['account_id']}", headers=bank.auth
    )
    assert other.status_code == 404 and other.json()["code"] == "app_not_found"
    deleted = await bank.http.delete(
        f"/v1/apps/bank/accounts/{customer['account_id']}/data", headers=bank.auth
    )
    assert deleted.status_code == 404
    assert (await shop.act(customer["account_id"], "GET", "/v1/me")).status_code == 200


async def test_a_revoked_key_stops_at_once_and_a_rotated_one_after_its_grace(
    http: httpx.AsyncClient, clock: SettableClock
) -> None:
    owner = await registered(http, clock)
    app = await create_app(owner, "shop")
    user = await app.create_account()
    extra = await owner.post("/v1/apps/shop/keys", {"scopes": ["messages"], "label": "worker"})
    assert extra.status_code == 201
    worker_key = extra.json()["key"]
    worker = {"Authorization": f"Bearer {worker_key}", "Openmessenger-Account": user["account_id"]}
    assert (await http.get("/v1/me", headers=worker)).status_code == 200
    # Scoped: this key cannot make accounts.
    scoped = await http.post(
        "/v1/apps/shop/accounts", json={}, headers={"Authorization": f"Bearer {worker_key}"}
    )
    assert scoped.status_code == 403 and scoped.json()["code"] == "scope_missing"

    revoked = await owner.http.delete(
        f"/v1/apps/shop/keys/{extra.json()['id']}", headers=owner.auth
    )
    assert revoked.status_code == 204
    again = await http.get("/v1/me", headers=worker)
    assert again.status_code == 401

    listed = (await owner.get("/v1/apps/shop/keys")).json()["keys"]
    first_key_id = next(k["id"] for k in listed if k["label"] == "first key")
    rotated = await owner.post(f"/v1/apps/shop/keys/{first_key_id}/rotate", {"grace_seconds": 60})
    assert rotated.status_code == 201
    new = {**app.acting(user["account_id"]), "Authorization": f"Bearer {rotated.json()['key']}"}
    assert (await http.get("/v1/me", headers=app.acting(user["account_id"]))).status_code == 200
    clock.advance(timedelta(seconds=61))
    assert (await http.get("/v1/me", headers=app.acting(user["account_id"]))).status_code == 401
    assert (await http.get("/v1/me", headers=new)).status_code == 200


async def test_an_api_key_needs_the_account_header(
    http: httpx.AsyncClient, clock: SettableClock
) -> None:
    app = await create_app(await registered(http, clock), "shop")
    response = await http.get("/v1/me", headers=app.auth)
    assert response.status_code == 422
    assert response.json()["field"] == "Openmessenger-Account"
    unknown = await http.get("/v1/me", headers={"Authorization": "Bearer omk_x_y"})
    assert unknown.status_code == 401


async def test_an_sdk_app_brings_its_own_device_keys(
    http: httpx.AsyncClient, clock: SettableClock
) -> None:
    from openmessenger.crypto.device_identity import DeviceIdentity
    from tests.support.api import signed_challenge

    app = await create_app(await registered(http, clock), "shop")
    identity = DeviceIdentity.create()
    proof = await signed_challenge(http, identity)
    proof["curve25519_key"] = identity.curve25519_key
    user = await app.create_account("Customer", device=proof)
    assert user["encryption"] == "end-to-end"
    # The same proof again: the challenge is spent.
    replay = await app.post("/v1/apps/shop/accounts", {"device": proof})
    assert replay.status_code == 401


async def test_users_choose_which_apps_reach_them(
    http: httpx.AsyncClient, clock: SettableClock, dump: Dump
) -> None:
    shop = await create_app(await registered(http, clock, "Shop Inc"), "shop")
    customer = await shop.create_account()
    person = await register(http, "Person")
    await connect_to(shop, customer["account_id"], person)

    def send(text: str) -> object:
        return shop.act(
            customer["account_id"], "POST", "/v1/messages", {"to": person.address, "body": text}
        )

    assert (
        await person.http.put("/v1/account/apps", json={"apps": ["bank"]}, headers=person.auth)
    ).status_code == 200
    refused = await send("blocked by the account list")
    assert refused.status_code == 403 and refused.json()["code"] == "app_not_accepted"
    # The contact's own list wins over the account's.
    allowed = await person.http.put(
        f"/v1/contacts/{customer['address']}/apps", json={"apps": ["shop"]}, headers=person.auth
    )
    assert allowed.status_code == 200 and allowed.json()["account_apps"] == ["bank"]
    assert (await send("allowed for this contact")).status_code == 201
    narrowed = await person.http.put(
        f"/v1/contacts/{customer['address']}/apps", json={"apps": []}, headers=person.auth
    )
    assert narrowed.status_code == 200
    assert (await send("refused again")).status_code == 403
    # Refused messages were never stored.
    assert [person.text(e["message"]) for e in await person.sync()] == ["allowed for this contact"]
    stored = await dump()
    assert len(stored["messages"]) == 1
    # Native devices are not apps: always delivered.
    reply = await person.send(customer["address"], "native")
    assert reply.status_code == 201


async def test_an_app_cannot_do_what_only_the_person_decides(
    http: httpx.AsyncClient, clock: SettableClock, dump: Dump
) -> None:
    app = await create_app(await registered(http, clock), "shop")
    user = await app.create_account()
    attempts = [
        ("DELETE", "/v1/account", None),
        ("GET", "/v1/account/export", None),
        ("PUT", "/v1/account/apps", {"apps": ["shop"]}),
        ("POST", "/v1/account/totp", None),
        ("POST", f"/v1/devices/{user['device_id']}/revoke", {}),
        ("POST", "/v1/apps", {"id": "shop-two", "name": "Shop 2"}),
    ]
    before = await dump()
    for method, path, body in attempts:
        response = await app.act(user["account_id"], method, path, body)
        assert response.status_code == 403, (path, response.text)
        assert response.json()["code"] == "not_for_apps", path
    assert await dump() == before
    assert (await app.act(user["account_id"], "GET", "/v1/me")).status_code == 200
