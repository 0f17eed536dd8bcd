"""The app gateway through the SDK: an app backend as a full end-to-end device
that signs as the app, and recipients' SDKs that check and show the app tag."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select, update
from typer.testing import Result

from openmessenger.client import Client
from openmessenger.client.apps import AppSigning
from openmessenger.storage.tables import messages
from tests.support.apps import ApiApp, create_app, registered
from tests.support.node import NodeThread, SettableClock
from tests.support.sdk import sdk_client


@pytest.fixture
async def shop(http: httpx.AsyncClient, clock: SettableClock) -> ApiApp:
    return await create_app(await registered(http, clock), "shop")


@pytest.fixture
async def person(node_url: str, tmp_path: Path) -> AsyncIterator[Client]:
    async with sdk_client(node_url, tmp_path / "person") as client:
        yield client


@pytest.fixture
async def app_user(node_url: str, tmp_path: Path, shop: ApiApp) -> AsyncIterator[Client]:
    assert shop.signing_seed is not None
    client = await Client.create_app_account(
        node_url,
        tmp_path / "shop-user",
        api_key=shop.key,
        app=AppSigning("shop", shop.signing_seed),
        display_name="Customer",
    )
    async with client:
        yield client


async def test_an_sdk_app_sends_end_to_end_signed_as_the_app(
    app_user: Client, person: Client
) -> None:
    code = await person.issue_code()
    contact = await app_user.connect(str(person.address), code.pass_code)
    assert contact.encryption == "end-to-end"
    sent = await app_user.send(
        str(person.address),
        "your parcel is here",
        media_type="location",
        metadata={"latitude": 48.85, "longitude": 2.35},
    )
    assert sent.encryption == "end-to-end"
    assert sent.app is not None and sent.app.signed_by_app

    (received,) = await person.sync()
    assert received.text == "your parcel is here"
    assert received.encryption == "end-to-end"
    assert (received.media_type, received.metadata) == (
        "location",
        {"latitude": 48.85, "longitude": 2.35},
    )
    assert received.app is not None
    assert (received.app.app_id, received.app.checked_here, received.app.signed_by_app) == (
        "shop",
        True,
        True,
    )
    # A native device's message carries no tag.
    await person.send(str(app_user.address), "thanks")
    (reply,) = await app_user.sync()
    assert reply.text == "thanks" and reply.app is None


async def test_an_sdk_withholds_a_message_whose_app_tag_was_altered(
    app_user: Client, person: Client, running_node: NodeThread
) -> None:
    code = await person.issue_code()
    await app_user.connect(str(person.address), code.pass_code)
    sent = await app_user.send(str(person.address), "from the shop")

    async def relabel() -> None:
        # A node (or anyone writing its database) claims the message came through
        # another app: neither the attestation nor the app signature fit any more.
        assert running_node.node is not None
        async with running_node.node.database.connect() as conn:
            query = select(messages.c.provenance).where(messages.c.id == sent.id)
            stored = json.loads((await conn.execute(query)).scalar_one())
            await conn.execute(
                update(messages)
                .where(messages.c.id == sent.id)
                .values(app_id="bank", provenance=json.dumps({**stored, "app_id": "bank"}))
            )
            await conn.commit()

    await running_node.call(relabel())
    (received,) = await person.sync()
    assert received.text == ""
    assert received.error is not None and "does not verify" in received.error
    assert received.app is None


async def test_a_plain_http_apps_message_is_transport_encrypted_and_tagged_in_the_sdk(
    shop: ApiApp, person: Client
) -> None:
    user = await shop.create_account("Customer")
    code = await person.issue_code()
    connected = await shop.act(
        user["account_id"],
        "POST",
        "/v1/connections",
        {"address": str(person.address), "pass_code": code.pass_code},
    )
    assert connected.status_code == 201, connected.text
    sent = await shop.act(
        user["account_id"], "POST", "/v1/messages", {"to": str(person.address), "body": "hi"}
    )
    assert sent.status_code == 201
    (received,) = await person.sync()
    assert (received.text, received.encryption) == ("hi", "transport-encrypted")
    assert received.app is not None
    assert (received.app.app_id, received.app.checked_here, received.app.signed_by_app) == (
        "shop",
        True,
        False,
    )
    # The app reads with keys the node holds: people's SDKs write to it
    # transport-encrypted, so that it can.
    reply = await person.send(user["address"], "see you")
    assert reply.encryption == "transport-encrypted"
    synced = (await shop.act(user["account_id"], "GET", "/v1/sync")).json()["events"]
    assert [e["message"]["body"] for e in synced] == ["see you"]


async def test_the_cli_shows_which_app_a_message_came_through(
    shop: ApiApp, run: Callable[..., Result]
) -> None:
    async def cli(*args: str) -> str:
        # The CLI runs its own event loop: off this one.
        return (await asyncio.to_thread(run, "person", *args)).stdout

    person = json.loads(await cli("whoami", "--json"))["address"]
    code = json.loads(await cli("code", "--json"))["pass_code"]
    user = await shop.create_account("Customer")
    connected = await shop.act(
        user["account_id"], "POST", "/v1/connections", {"address": person, "pass_code": code}
    )
    assert connected.status_code == 201, connected.text
    sent = await shop.act(
        user["account_id"],
        "POST",
        "/v1/messages",
        {
            "to": person,
            "body": "a photo",
            "media_type": "image",
            "metadata": {"mime": "image/jpeg"},
        },
    )
    assert sent.status_code == 201, sent.text
    line = await cli("sync")
    assert "[via shop]" in line and "[image]" in line and "a photo" in line
    as_json = json.loads(await cli("history", user["address"], "--json"))
    assert (as_json["app"], as_json["media_type"], as_json["metadata"]) == (
        "shop",
        "image",
        {"mime": "image/jpeg"},
    )
