"""Deletion that is real, proven by reading the database and the grant keys
afterwards; export; media types; rate limits."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from openmessenger.settings import Settings
from openmessenger.storage.grant_keys import FileGrantKeys
from tests.support.api import Dump, register, rows_mentioning
from tests.support.apps import connect_to, create_app, registered
from tests.support.node import NodeThread, SettableClock


def _grant_key_files(settings: Settings) -> list[Path]:
    directory = settings.effective_grant_key_dir()
    return sorted(directory.iterdir()) if directory.exists() else []


async def test_deleting_an_apps_data_removes_it_and_destroys_its_key(
    http: httpx.AsyncClient,
    clock: SettableClock,
    dump: Dump,
    running_node: NodeThread,
) -> None:
    shop = await create_app(await registered(http, clock, "Shop Inc"), "shop")
    bank = await create_app(await registered(http, clock, "Bank Inc"), "bank")
    customer = await shop.create_account("Customer")
    person = await register(http, "Person")
    await connect_to(shop, customer["account_id"], person)
    sent = await shop.act(
        customer["account_id"],
        "POST",
        "/v1/messages",
        {
            "to": person.address,
            "body": "order 1234 shipped",
            "media_type": "location",
            "metadata": {"latitude": 51.5, "longitude": -0.12, "name": "Depot Nine Elms"},
        },
    )
    assert sent.status_code == 201, sent.text
    assert (await person.send(customer["address"], "where is it?")).status_code == 201
    other = await bank.create_account("Someone else")

    before = await dump()
    # At rest, the body and the metadata are under the grant key, not readable.
    (row,) = [m for m in before["messages"] if m["app_id"] == "shop"]
    assert str(row["body"]).startswith("om.grant.v1:")
    assert rows_mentioning(before, "Depot Nine Elms") == []
    keys_before = _grant_key_files(running_node.settings)
    assert len(keys_before) == 2  # one per (account, app) grant

    deleted = await shop.http.delete(
        f"/v1/apps/shop/accounts/{customer['account_id']}/data", headers=shop.auth
    )
    assert deleted.status_code == 200, deleted.text
    # Nothing else held the account: it is gone too.
    assert deleted.json() == {"account_deleted": True}

    after = await dump()
    assert rows_mentioning(after, customer["account_id"]) == []
    # Only the person's own log of the pass code they issued still names it.
    assert rows_mentioning(after, customer["address"]) == ["pass_codes.used_by"]
    assert rows_mentioning(after, customer["device_id"]) == []
    assert [m for m in after["messages"] if m["app_id"] == "shop"] == []
    assert after["app_grants"] == [
        g for g in before["app_grants"] if g["account_id"] == other["account_id"]
    ]
    # The grant's key file is gone; the other app's stays.
    remaining = _grant_key_files(running_node.settings)
    assert len(remaining) == 1 and remaining[0] in keys_before
    # The app's key no longer reaches the account, and the person's history lost it.
    gone = await shop.act(customer["account_id"], "GET", "/v1/me")
    assert gone.status_code == 404
    assert await person.sync() == []
    # Deleting again finds nothing.
    again = await shop.http.delete(
        f"/v1/apps/shop/accounts/{customer['account_id']}/data", headers=shop.auth
    )
    assert again.status_code == 404


async def test_a_backup_taken_before_deletion_cannot_open_the_apps_data(
    http: httpx.AsyncClient, clock: SettableClock, dump: Dump, running_node: NodeThread
) -> None:
    shop = await create_app(await registered(http, clock), "shop")
    customer = await shop.create_account()
    person = await register(http, "Person")
    await connect_to(shop, customer["account_id"], person)
    sent = await shop.act(
        customer["account_id"], "POST", "/v1/messages", {"to": person.address, "body": "secret"}
    )
    assert sent.status_code == 201
    backup = await dump()  # a copy of the database, as a backup or replica holds it
    (row,) = [m for m in backup["messages"] if m["app_id"] == "shop"]
    keys = FileGrantKeys(running_node.settings.effective_grant_key_dir())
    assert keys.unwrap(str(row["body"])) is not None  # the node can open it while the grant lives

    deleted = await shop.http.delete(
        f"/v1/apps/shop/accounts/{customer['account_id']}/data", headers=shop.auth
    )
    assert deleted.status_code == 200
    # Restoring the backup would bring the row back, but nothing opens it any more.
    fresh = FileGrantKeys(running_node.settings.effective_grant_key_dir())
    assert fresh.unwrap(str(row["body"])) is None


async def test_a_user_exports_then_deletes_their_account(
    http: httpx.AsyncClient, dump: Dump
) -> None:
    alice = await register(http, "Alice")
    bob = await register(http, "Bob")
    assert (await bob.connect(alice.address, await alice.issue_code())).status_code == 201
    assert (await bob.send(alice.address, "hello alice")).status_code == 201
    assert (await alice.send(bob.address, "hello bob")).status_code == 201

    exported = await alice.get("/v1/account/export")
    assert exported.status_code == 200
    data = exported.json()
    assert data["format"] == "openmessenger-account-export/1"
    assert data["account"][0]["address"] == alice.address
    assert [d["id"] for d in data["devices"]] == [alice.device_id]
    assert [c["peer_address"] for c in data["connections"]] == [bob.address]
    texts = [alice.text({**m, "encryption": m["encryption"]}) for m in data["messages"]]
    assert sorted(texts) == ["hello alice", "hello bob"]

    deleted = await alice.http.delete("/v1/account", headers=alice.auth)
    assert deleted.status_code == 204
    after = await dump()
    assert rows_mentioning(after, alice.address) == []
    assert rows_mentioning(after, alice.device_id) == []
    assert (await alice.get("/v1/me")).status_code == 401
    # Bob cannot reach the deleted address any more.
    assert (await bob.send(alice.address, "still there?")).status_code == 403


async def test_an_account_that_owns_apps_must_delete_them_first(
    http: httpx.AsyncClient, clock: SettableClock
) -> None:
    owner = await registered(http, clock)
    await create_app(owner, "shop")
    response = await owner.http.delete("/v1/account", headers=owner.auth)
    assert response.status_code == 409 and response.json()["code"] == "account_owns_apps"
    assert (await owner.get("/v1/me")).status_code == 200


@pytest.mark.parametrize(
    ("media_type", "metadata", "field"),
    [
        ("image", {"mime": "text/html"}, "metadata.mime"),
        ("image", {"mime": "image/png", "width": 0}, "metadata.width"),
        ("location", {"latitude": 91, "longitude": 0}, "metadata.latitude"),
        ("file", {"name": "a.pdf", "mime": "application/pdf"}, "metadata.size"),
        ("sticker", None, "media_type"),
        ("app.shop.order", {"id": 1}, "media_type"),
    ],
)
async def test_metadata_that_does_not_match_its_type_is_refused_naming_the_field(
    http: httpx.AsyncClient,
    dump: Dump,
    media_type: str,
    metadata: dict[str, object] | None,
    field: str,
) -> None:
    alice = await register(http, "Alice")
    bob = await register(http, "Bob")
    assert (await bob.connect(alice.address, await alice.issue_code())).status_code == 201
    response = await bob.post(
        "/v1/messages",
        {"to": alice.address, "body": "x", "media_type": media_type, "metadata": metadata},
    )
    assert response.status_code == 422, response.text
    assert response.json()["field"] == field
    assert (await dump())["messages"] == []


async def test_an_app_registers_a_media_type_and_its_schema_is_enforced(
    http: httpx.AsyncClient, clock: SettableClock
) -> None:
    shop = await create_app(await registered(http, clock), "shop")
    schema = {
        "type": "object",
        "properties": {"order_id": {"type": "string"}, "total_cents": {"type": "integer"}},
        "required": ["order_id"],
        "additionalProperties": False,
    }
    created = await shop.post("/v1/apps/shop/media-types", {"name": "order", "schema": schema})
    assert created.status_code == 201, created.text
    assert created.json()["name"] == "app.shop.order"
    twice = await shop.post("/v1/apps/shop/media-types", {"name": "order", "schema": schema})
    assert twice.status_code == 409
    bad_schema = await shop.post(
        "/v1/apps/shop/media-types",
        {"name": "remote", "schema": {"type": "object", "$ref": "https://evil.example/s"}},
    )
    assert bad_schema.status_code == 422 and bad_schema.json()["field"].startswith("schema")

    customer = await shop.create_account()
    person = await register(http, "Person")
    await connect_to(shop, customer["account_id"], person)

    async def send(metadata: dict[str, object]) -> httpx.Response:
        return await shop.act(
            customer["account_id"],
            "POST",
            "/v1/messages",
            {
                "to": person.address,
                "body": "order update",
                "media_type": "app.shop.order",
                "metadata": metadata,
            },
        )

    wrong = await send({"order_id": "A1", "total_cents": "12"})
    assert wrong.status_code == 422 and wrong.json()["field"] == "metadata.total_cents"
    right = await send({"order_id": "A1", "total_cents": 1200})
    assert right.status_code == 201, right.text
    (event,) = await person.sync()
    assert event["message"]["media_type"] == "app.shop.order"
    assert event["message"]["metadata"] == {"order_id": "A1", "total_cents": 1200}
    listed = (await shop.http.get("/v1/apps/shop/media-types", headers=shop.auth)).json()
    assert [m["name"] for m in listed["media_types"]] == ["app.shop.order"]


async def test_an_owner_deletes_an_app_with_all_it_holds_then_the_account(
    http: httpx.AsyncClient, clock: SettableClock, dump: Dump, running_node: NodeThread
) -> None:
    owner = await registered(http, clock)
    shop = await create_app(owner, "shop")
    customers = [await shop.create_account(f"Customer {n}") for n in range(2)]
    person = await register(http, "Person")
    await connect_to(shop, customers[0]["account_id"], person)
    sent = await shop.act(
        customers[0]["account_id"], "POST", "/v1/messages", {"to": person.address, "body": "hi"}
    )
    assert sent.status_code == 201
    media = await shop.post(
        "/v1/apps/shop/media-types", {"name": "order", "schema": {"type": "object"}}
    )
    assert media.status_code == 201
    # Another owner cannot delete it; it does not even exist for them.
    stranger = await registered(http, clock, "Stranger")
    assert (await stranger.http.delete("/v1/apps/shop", headers=stranger.auth)).status_code == 404

    deleted = await owner.http.delete("/v1/apps/shop", headers=owner.auth)
    assert deleted.status_code == 200 and deleted.json() == {"accounts": 2}
    assert (await shop.http.get("/v1/apps/shop/media-types", headers=shop.auth)).status_code == 401
    stored = await dump()
    for table in ("apps", "api_keys", "app_grants", "app_media_types"):
        assert stored[table] == [], table
    for customer in customers:
        assert rows_mentioning(stored, customer["account_id"]) == []
    assert _grant_key_files(running_node.settings) == []
    assert await person.sync() == []
    # With no app left, the owner may delete the account.
    assert (await owner.http.delete("/v1/account", headers=owner.auth)).status_code == 204
