"""Receipts, edits and deletions for everyone over the real HTTP API, on SQLite and
PostgreSQL: who may change a message (attacked), what a deletion leaves in the
database (read back, and the SQLite file's bytes), the reserved media types,
and who gets receipts."""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import sqlite3
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import websockets
from sqlalchemy.engine import make_url

from openmessenger.core.revisions import DELETED_NOTICE
from openmessenger.settings import Settings
from tests.support.api import ApiDevice, register, rows_mentioning
from tests.support.apps import connect_to, create_app, registered
from tests.support.node import SettableClock
from tests.support.webhook_receiver import webhook_receiver

FORGED_TYPES = ["message.edit", "message.delete", "message.deleted", "Message.Edit", "message.x"]


def _b64(n: int) -> str:
    return base64.b64encode(secrets.token_bytes(n)).decode().rstrip("=")


def megolm_body() -> tuple[str, str]:
    """A well-formed om.megolm.v1 body (the node checks the shape only) and its
    ciphertext, a string to look for in the database afterwards."""
    ciphertext = _b64(120)
    body = json.dumps(
        {
            "alg": "om.megolm.v1",
            "sender_key": _b64(32),
            "session_id": _b64(32),
            "ciphertext": ciphertext,
            "key_shares": [],
        }
    )
    return body, ciphertext


async def connect(a: ApiDevice, b: ApiDevice) -> None:
    response = await b.connect(a.address, await a.issue_code())
    assert response.status_code == 201, response.text


async def send_e2e(sender: ApiDevice, to: str) -> tuple[dict[str, Any], str]:
    body, ciphertext = megolm_body()
    response = await sender.post(
        "/v1/messages", {"to": to, "body": body, "encryption": "end-to-end"}
    )
    assert response.status_code == 201, response.text
    return response.json(), ciphertext


async def edit(device: ApiDevice, message_id: str, txn: str | None = None) -> httpx.Response:
    body, _ = megolm_body()
    return await device.post(
        f"/v1/messages/{message_id}/edits", {"body": body, "client_txn_id": txn}
    )


async def delete(device: ApiDevice, message_id: str) -> httpx.Response:
    return await device.http.delete(f"/v1/messages/{message_id}", headers=device.auth)


async def history(device: ApiDevice, conversation_id: str) -> list[dict[str, Any]]:
    response = await device.get(f"/v1/conversations/{conversation_id}/messages")
    assert response.status_code == 200, response.text
    found: list[dict[str, Any]] = response.json()["messages"]
    return found


async def group_of(owner: ApiDevice, *members: ApiDevice) -> str:
    response = await owner.post(
        "/v1/groups", {"name": "Friends", "members": [m.address for m in members]}
    )
    assert response.status_code == 201, response.text
    group_id = str(response.json()["id"])
    for member in members:
        joined = await member.post(f"/v1/groups/{group_id}/join")
        assert joined.status_code == 200, joined.text
    return group_id


async def group_send(member: ApiDevice, group_id: str) -> tuple[dict[str, Any], str]:
    body, ciphertext = megolm_body()
    response = await member.post(f"/v1/groups/{group_id}/messages", {"body": body})
    assert response.status_code == 201, response.text
    return response.json(), ciphertext


async def read(device: ApiDevice, *ids: str, kind: str = "read") -> list[dict[str, Any]]:
    response = await device.post("/v1/receipts", {"kind": kind, "message_ids": list(ids)})
    assert response.status_code == 200, response.text
    found: list[dict[str, Any]] = response.json()["receipts"]
    return found


async def receipts_of(device: ApiDevice, message_id: str) -> list[tuple[str, str]]:
    response = await device.get(f"/v1/messages/{message_id}/receipts")
    assert response.status_code == 200, response.text
    return [(r["reader"], r["kind"]) for r in response.json()["receipts"]]


def problem(response: httpx.Response) -> tuple[int, str]:
    return response.status_code, response.json()["code"]


async def test_the_reserved_media_types_cannot_be_sent_by_a_client(
    http: httpx.AsyncClient,
) -> None:
    alice, bob = await register(http, "Alice"), await register(http, "Bob")
    await connect(alice, bob)
    for media_type in FORGED_TYPES:
        body, _ = megolm_body()
        response = await alice.post(
            "/v1/messages",
            {"to": bob.address, "body": body, "encryption": "end-to-end", "media_type": media_type},
        )
        assert problem(response) == (422, "invalid_input"), media_type
        assert response.json()["field"] == "media_type"
    group_id = await group_of(alice, bob)
    body, _ = megolm_body()
    forged = await alice.post(
        f"/v1/groups/{group_id}/messages", {"body": body, "media_type": "message.delete"}
    )
    assert forged.status_code == 422
    # Nothing reached Bob but the group's own events.
    assert [e["message"]["media_type"] for e in await bob.sync()] == ["group.member"] * 2


async def test_an_edit_reaches_every_device_and_the_original_shows_as_edited(
    http: httpx.AsyncClient,
) -> None:
    alice, bob = await register(http, "Alice"), await register(http, "Bob")
    await connect(alice, bob)
    original, _ = await send_e2e(alice, bob.address)

    edited = await edit(alice, original["id"], txn="edit-1")
    assert edited.status_code == 201, edited.text
    change = edited.json()
    assert (change["media_type"], change["replaces"], change["metadata"]) == (
        "message.edit",
        original["id"],
        {"replaces": original["id"]},
    )
    assert change["conversation_id"] == original["conversation_id"]
    assert change["seq"] == original["seq"] + 1
    again = await edit(alice, original["id"], txn="edit-1")
    assert (again.status_code, again.json()["id"]) == (200, change["id"])

    stream = [e["message"] for e in await bob.sync()]
    assert [(m["id"], m["media_type"]) for m in stream] == [
        (original["id"], "text"),
        (change["id"], "message.edit"),
    ]
    shown = await history(bob, original["conversation_id"])
    assert shown[0]["id"] == original["id"] and shown[0]["edited_at"] is not None
    assert shown[1]["replaces"] == original["id"]
    fetched = await alice.get(f"/v1/messages/{original['id']}")
    assert fetched.json()["edited_at"] == shown[0]["edited_at"]


async def test_only_the_sender_may_edit_or_delete_and_a_refusal_changes_nothing(
    http: httpx.AsyncClient, dump: Any
) -> None:
    alice, bob, carol = [await register(http, n) for n in ("Alice", "Bob", "Carol")]
    await connect(alice, bob)
    await connect(alice, carol)
    original, ciphertext = await send_e2e(alice, bob.address)
    before = await dump()

    assert problem(await edit(bob, original["id"])) == (403, "not_message_sender")
    assert problem(await delete(bob, original["id"])) == (403, "not_message_sender")
    for stranger_try in (edit(carol, original["id"]), delete(carol, original["id"])):
        assert problem(await stranger_try) == (404, "message_not_found")
    assert problem(await edit(alice, "no-such-message")) == (404, "message_not_found")
    assert problem(await delete(alice, "x" * 65)) == (404, "message_not_found")
    plain = await alice.post(
        f"/v1/messages/{original['id']}/edits",
        {"body": "plain", "encryption": "transport-encrypted"},
    )
    assert plain.status_code == 422
    not_megolm = await alice.post(f"/v1/messages/{original['id']}/edits", {"body": "plain"})
    assert problem(not_megolm) == (422, "invalid_input")

    after = await dump()
    assert after["messages"] == before["messages"]
    assert after["device_streams"] == before["device_streams"]
    assert rows_mentioning(after, ciphertext) == ["messages.body"]

    change = (await edit(alice, original["id"])).json()
    assert problem(await edit(alice, change["id"])) == (409, "message_not_revisable")
    assert problem(await delete(alice, change["id"])) == (409, "message_not_revisable")
    assert (await delete(alice, original["id"])).status_code == 200
    assert problem(await edit(alice, original["id"])) == (409, "message_deleted")
    assert problem(await delete(alice, original["id"])) == (409, "message_deleted")


def sqlite_bytes(settings: Settings) -> bytes:
    """The SQLite database file and its WAL after a checkpoint (as SQLite runs one
    on its own every 1000 pages)."""
    path = Path(str(make_url(str(settings.database_url)).database))
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA busy_timeout=5000")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    wal = path.with_name(path.name + "-wal")
    return path.read_bytes() + (wal.read_bytes() if wal.exists() else b"")


async def assert_erased(
    dump: Any, settings: Settings, erased: list[str], ciphertexts: list[str]
) -> None:
    rows = await dump()
    for ciphertext in ciphertexts:
        assert rows_mentioning(rows, ciphertext) == []
    tombstones = [r for r in rows["messages"] if r["id"] in erased]
    assert len(tombstones) == len(erased)
    for row in tombstones:
        assert (row["body"], row["media_metadata"], row["media_type"]) == (
            "",
            None,
            "message.deleted",
        )
        assert row["replaces"] is None and row["deleted_at"] is not None
        assert row["provenance"] is None and row["app_id"] is None
    # Every table that points at a message: nothing about the erased ones but
    # their places in device streams (order stays).
    assert [r for r in rows["receipts"] if r["message_id"] in erased] == []
    assert [r for r in rows["webhook_deliveries"] if r["message_id"] in erased] == []
    assert [r for r in rows["openmsg_outbox"] if r["message_id"] in erased] == []
    if str(settings.database_url).startswith("sqlite"):
        stored = sqlite_bytes(settings)
        for ciphertext in ciphertexts:
            assert ciphertext.encode() not in stored


async def test_a_deletion_erases_the_message_and_its_edits_and_every_device_learns_it(
    http: httpx.AsyncClient, dump: Any, node_settings: Settings
) -> None:
    alice, bob = await register(http, "Alice"), await register(http, "Bob")
    await connect(alice, bob)
    original, ciphertext = await send_e2e(alice, bob.address)
    kept, kept_ciphertext = await send_e2e(bob, alice.address)
    edit_body, edit_ciphertext = megolm_body()
    change = (await alice.post(f"/v1/messages/{original['id']}/edits", {"body": edit_body})).json()
    assert len(await read(bob, original["id"])) == 1
    if str(node_settings.database_url).startswith("sqlite"):  # the check below can see it
        assert ciphertext.encode() in sqlite_bytes(node_settings)

    response = await delete(alice, original["id"])

    assert response.status_code == 200, response.text
    tombstone = response.json()
    assert (tombstone["id"], tombstone["seq"], tombstone["from"]) == (
        original["id"],
        original["seq"],
        alice.address,
    )
    assert (tombstone["body"], tombstone["metadata"], tombstone["deleted_at"] is not None) == (
        "",
        None,
        True,
    )
    await assert_erased(
        dump, node_settings, [original["id"], change["id"]], [ciphertext, edit_ciphertext]
    )
    assert kept_ciphertext in json.dumps((await alice.get(f"/v1/messages/{kept['id']}")).json())
    # Bob (offline all along) syncs: the message's place is a tombstone, then the
    # deletion event, in the conversation's order.
    stream = [e["message"] for e in await bob.sync()]
    assert [(m["id"], m["media_type"]) for m in stream] == [
        (original["id"], "message.deleted"),
        (change["id"], "message.deleted"),
        (stream[2]["id"], "message.delete"),
    ]
    notice = stream[2]
    assert (notice["replaces"], notice["metadata"], notice["from"]) == (
        original["id"],
        {"deletes": original["id"]},
        alice.address,
    )
    assert (notice["encryption"], notice["body"]) == ("transport-encrypted", DELETED_NOTICE)
    # The deleting device hears it too (the event is the node's, for every device).
    assert [e["message"]["media_type"] for e in await alice.sync()][-1] == "message.delete"
    shown = await history(bob, original["conversation_id"])
    assert [m["media_type"] for m in shown] == [
        "message.deleted",
        "text",
        "message.deleted",
        "message.delete",
    ]


async def test_a_group_deletion_is_the_senders_alone_and_erases_for_every_member(
    http: httpx.AsyncClient, dump: Any, node_settings: Settings
) -> None:
    alice, bob, carol = [await register(http, n) for n in ("Alice", "Bob", "Carol")]
    await connect(alice, bob)
    await connect(alice, carol)
    group_id = await group_of(alice, bob, carol)
    message, ciphertext = await group_send(alice, group_id)
    for member in (bob, carol):
        assert problem(await delete(member, message["id"])) == (403, "not_message_sender")
        assert problem(await edit(member, message["id"])) == (403, "not_message_sender")
    edited = await edit(alice, message["id"])
    assert edited.status_code == 201 and edited.json()["replaces"] == message["id"]
    assert edited.json()["to"] == group_id

    assert (await delete(alice, message["id"])).status_code == 200

    await assert_erased(dump, node_settings, [message["id"], edited.json()["id"]], [ciphertext])
    for member in (bob, carol):
        last = (await member.sync())[-1]["message"]
        assert (last["media_type"], last["replaces"], last["to"]) == (
            "message.delete",
            message["id"],
            group_id,
        )


async def test_receipts_go_to_the_sender_only_and_not_when_the_reader_turned_them_off(
    http: httpx.AsyncClient,
) -> None:
    alice, bob, carol = [await register(http, n) for n in ("Alice", "Bob", "Carol")]
    await connect(alice, bob)
    await connect(alice, carol)
    message, _ = await send_e2e(alice, bob.address)

    delivered = await read(bob, message["id"], kind="delivered")
    assert [(r["reader"], r["kind"], r["message_id"]) for r in delivered] == [
        (bob.address, "delivered", message["id"])
    ]
    assert len(await read(bob, message["id"])) == 1
    assert await read(bob, message["id"]) == []  # once each
    assert await read(carol, message["id"]) == []  # not hers to see: passed over
    assert await read(alice, message["id"]) == []  # her own
    assert await receipts_of(alice, message["id"]) == [
        (bob.address, "delivered"),
        (bob.address, "read"),
    ]
    assert problem(await bob.get(f"/v1/messages/{message['id']}/receipts")) == (
        403,
        "not_message_sender",
    )
    assert problem(await carol.get(f"/v1/messages/{message['id']}/receipts")) == (
        404,
        "message_not_found",
    )
    feed = (await alice.get("/v1/receipts", params={"since": 0})).json()
    assert [r["kind"] for r in feed["receipts"]] == ["delivered", "read"]
    assert (await bob.get("/v1/receipts")).json()["receipts"] == []
    bad = await bob.post("/v1/receipts", {"kind": "seen", "message_ids": [message["id"]]})
    assert bad.status_code == 422

    off = await bob.http.put(
        "/v1/preferences",
        json={"name": "send_receipts", "value": False, "level": "account"},
        headers=bob.auth,
    )
    assert off.status_code == 200, off.text
    second, _ = await send_e2e(alice, bob.address)
    assert await read(bob, second["id"], kind="delivered") == []
    assert await read(bob, second["id"]) == []
    assert await receipts_of(alice, second["id"]) == []
    after = (await alice.get("/v1/receipts", params={"since": feed["next_since"]})).json()
    assert after["receipts"] == []


async def test_in_a_group_the_sender_sees_which_member_read(http: httpx.AsyncClient) -> None:
    alice, bob, carol = [await register(http, n) for n in ("Alice", "Bob", "Carol")]
    await connect(alice, bob)
    await connect(alice, carol)
    group_id = await group_of(alice, bob, carol)
    message, _ = await group_send(alice, group_id)

    await read(bob, message["id"])
    await read(carol, message["id"], kind="delivered")

    assert sorted(await receipts_of(alice, message["id"])) == sorted(
        [(bob.address, "read"), (carol.address, "delivered")]
    )
    assert problem(await bob.get(f"/v1/messages/{message['id']}/receipts")) == (
        403,
        "not_message_sender",
    )


async def test_an_edit_is_held_to_the_conversations_size_limit(http: httpx.AsyncClient) -> None:
    alice, bob = await register(http, "Alice"), await register(http, "Bob")
    await connect(alice, bob)
    original, _ = await send_e2e(alice, bob.address)
    tightened = await bob.http.put(
        f"/v1/conversations/{original['conversation_id']}/policy",
        json={"max_message_bytes": 100},
        headers=bob.auth,
    )
    assert tightened.status_code == 200, tightened.text

    refused = await edit(alice, original["id"])

    assert problem(refused) == (422, "message_too_large")
    assert [e["message"]["id"] for e in await bob.sync()] == [original["id"]]


async def test_an_apps_backend_hears_of_a_deletion_by_webhook(
    http: httpx.AsyncClient, clock: SettableClock
) -> None:
    with webhook_receiver() as receiver:
        shop = await create_app(await registered(http, clock), "shop")
        bot = await shop.create_account("Shop bot")
        alice = await register(http, "Alice")
        await connect_to(shop, bot["account_id"], alice)
        hook = await shop.http.put(
            "/v1/apps/shop/webhook", json={"url": receiver.webhook_url()}, headers=shop.auth
        )
        assert hook.status_code == 200, hook.text
        sent = await alice.send(bot["address"], "my order number is 4711")
        assert sent.status_code == 201, sent.text
        assert json.loads((await receiver.next()).body)["message"]["id"] == sent.json()["id"]

        deleted = await alice.http.delete(f"/v1/messages/{sent.json()['id']}", headers=alice.auth)
        assert deleted.status_code == 200, deleted.text

        call = json.loads((await receiver.next()).body)
        assert (call["account_id"], call["app_id"]) == (bot["account_id"], "shop")
        assert call["message"]["media_type"] == "message.delete"
        assert call["message"]["metadata"] == {"deletes": sent.json()["id"]}


async def test_a_blocked_sender_cannot_reach_anyone_through_an_edit(
    http: httpx.AsyncClient,
) -> None:
    alice, bob, carol = [await register(http, n) for n in ("Alice", "Bob", "Carol")]
    await connect(alice, bob)
    await connect(alice, carol)
    group_id = await group_of(alice, bob, carol)
    said, _ = await group_send(alice, group_id)
    sent, _ = await send_e2e(alice, bob.address)
    block = await bob.post(f"/v1/contacts/{quote(alice.address)}/block")
    assert block.status_code == 201, block.text
    seen_by_bob = {e["message"]["id"] for e in await bob.sync()}
    # 1:1: editing an old message is refused like a send, and Bob gets nothing.
    assert problem(await edit(alice, sent["id"])) == (403, "refused")
    # In the group, Alice's edit reaches Carol, never Bob.
    edited = await edit(alice, said["id"])
    assert edited.status_code == 201, edited.text
    assert edited.json()["id"] in {e["message"]["id"] for e in await carol.sync()}
    assert {e["message"]["id"] for e in await bob.sync()} == seen_by_bob


@pytest.mark.parametrize("since", ["abc", "-1", str(2**63)])
async def test_a_bad_since_on_the_receipt_stream_is_closed_with_4400(
    http: httpx.AsyncClient, since: str
) -> None:
    alice = await register(http, "Alice")
    url = str(http.base_url).replace("http://", "ws://").rstrip("/")
    async with websockets.connect(
        f"{url}/v1/receipts/stream?since={since}", additional_headers=alice.auth
    ) as ws:
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 10)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4400
