"""App-tagged messages between two of our nodes over real HTTPS: the tag, media
type and metadata travel; the receiving node checks the sending node's
attestation, refuses a tag altered on the way and honours its users' app
allowlists."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select, update

from openmessenger.core.apps import Envelope, body_digest, metadata_digest
from openmessenger.crypto.keys import verify_ed25519
from openmessenger.protocol.e2e import canonical_json
from openmessenger.storage.tables import messages, openmsg_outbox
from tests.integration.federation.test_two_nodes import (
    advance,
    eventually,
    off_loop,
    outbox_attempted,
    settled,
)
from tests.support.api import ApiDevice, register
from tests.support.apps import ApiApp, connect_to, create_app, registered
from tests.support.federation import FederatedNode
from tests.support.sdk import sdk_client
from tests.support.tls import CertificateAuthority
from tests.support.webhook_receiver import WebhookReceiver

IMAGE = {"mime": "image/png", "width": 640, "height": 480}


async def shop_user(http: httpx.AsyncClient, node: FederatedNode) -> tuple[ApiApp, str, str]:
    shop = await create_app(await registered(http, node.clock), "shop")
    user = await shop.create_account("Customer")
    return shop, user["account_id"], user["address"]


async def shop_user_and_person(
    clients: tuple[httpx.AsyncClient, httpx.AsyncClient], alpha: FederatedNode
) -> tuple[ApiApp, str, str, ApiDevice]:
    """A shop's user on alpha, connected with a person on beta (by the person's code)."""
    on_alpha, on_beta = clients
    shop, account_id, address = await shop_user(on_alpha, alpha)
    person = await register(on_beta, "Person")
    await connect_to(shop, account_id, person)
    return shop, account_id, address, person


async def test_an_app_tag_crosses_nodes_and_verifies_with_the_senders_node_key(
    alpha: FederatedNode,
    beta: FederatedNode,
    clients: tuple[httpx.AsyncClient, httpx.AsyncClient],
) -> None:
    on_alpha, _ = clients
    shop, account_id, address, person = await shop_user_and_person(clients, alpha)

    sent = await shop.act(
        account_id,
        "POST",
        "/v1/messages",
        {"to": person.address, "body": "your photo", "media_type": "image", "metadata": IMAGE},
    )
    assert sent.status_code == 201, sent.text
    assert await settled(_Acting(shop, account_id), sent.json()["id"]) == "delivered"

    events = await eventually(person.sync, "the message reached beta")
    message = events[0]["message"]
    assert person.text(message) == "your photo"
    assert (message["media_type"], message["metadata"]) == ("image", IMAGE)
    tag = message["app"]
    assert (tag["app_id"], tag["node"]) == ("shop", "alpha.test")
    # Anyone can check it with alpha's published key.
    alpha_key = (await on_alpha.get("/.well-known/openmessenger")).json()["signing_key"]
    envelope = Envelope(
        app_id="shop",
        sender=address,
        sender_device=tag["sender_device"],
        to=person.address,
        body_sha256=body_digest("your photo"),
        media_type="image",
        metadata_sha256=metadata_digest(canonical_json(IMAGE).decode()),
    )
    signed = envelope.node_signed_bytes(
        node="alpha.test",
        message_id=tag["message_id"],
        sent_at_s=tag["sent_at"],
        app_key=tag["app_key"],
    )
    assert verify_ed25519(alpha_key, signed, tag["attestation"])


class _Acting:
    """What ``settled`` needs of a device: ``get`` as the app's user."""

    def __init__(self, app: ApiApp, account_id: str) -> None:
        self._app, self._account_id = app, account_id

    async def get(self, path: str) -> httpx.Response:
        return await self._app.act(self._account_id, "GET", path)


async def test_a_tag_altered_on_the_way_is_refused_and_nothing_is_stored(
    alpha: FederatedNode,
    beta: FederatedNode,
    clients: tuple[httpx.AsyncClient, httpx.AsyncClient],
) -> None:
    shop, account_id, _, person = await shop_user_and_person(clients, alpha)
    await off_loop(beta.stop)  # the message waits in alpha's outbox
    sent = await shop.act(
        account_id, "POST", "/v1/messages", {"to": person.address, "body": "pay here"}
    )
    assert sent.status_code == 201
    await alpha.call(outbox_attempted(alpha))

    async def relabel() -> None:
        # Whoever can write alpha's database (or the wire) claims another app.
        async with alpha.node.database.connect() as conn:
            stored = (
                await conn.execute(
                    select(messages.c.provenance).where(messages.c.id == sent.json()["id"])
                )
            ).scalar_one()
            # Meanwhile the text waiting for delivery is under the app's grant key.
            waiting = (await conn.execute(select(openmsg_outbox.c.sealed_plaintext))).scalar_one()
            assert waiting.startswith("om.grant.v1:")
            forged = {**json.loads(stored), "app_id": "bank"}
            await conn.execute(
                update(messages)
                .where(messages.c.id == sent.json()["id"])
                .values(app_id="bank", provenance=json.dumps(forged))
            )
            await conn.commit()

    await alpha.call(relabel())
    await off_loop(beta.start)
    advance(timedelta(minutes=10), alpha, beta)  # past the backoff
    alpha.node.outbox.kick()
    assert await settled(_Acting(shop, account_id), sent.json()["id"]) == "failed"
    assert await person.sync() == []


async def test_a_person_on_another_node_refuses_an_app_they_did_not_allow(
    alpha: FederatedNode,
    beta: FederatedNode,
    clients: tuple[httpx.AsyncClient, httpx.AsyncClient],
) -> None:
    shop, account_id, _, person = await shop_user_and_person(clients, alpha)
    allow = await person.http.put("/v1/account/apps", json={"apps": ["bank"]}, headers=person.auth)
    assert allow.status_code == 200
    sent = await shop.act(
        account_id, "POST", "/v1/messages", {"to": person.address, "body": "offer"}
    )
    assert sent.status_code == 201  # alpha cannot know beta's lists: beta refuses
    assert await settled(_Acting(shop, account_id), sent.json()["id"]) == "failed"
    assert await person.sync() == []


async def test_a_person_on_another_node_writes_to_a_plain_http_app_that_reads_by_webhook(
    alpha: FederatedNode,
    beta: FederatedNode,
    clients: tuple[httpx.AsyncClient, httpx.AsyncClient],
    test_ca: CertificateAuthority,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _, on_beta = clients
    shop, account_id, address = await shop_user(on_beta, beta)
    receiver = WebhookReceiver().start()
    try:
        hook = await shop.http.put(
            "/v1/apps/shop/webhook", json={"url": receiver.webhook_url()}, headers=shop.auth
        )
        assert hook.status_code == 200, hook.text
        monkeypatch.setenv("SSL_CERT_FILE", str(test_ca.ca_bundle))
        async with sdk_client(alpha.url, tmp_path / "person") as person:
            code = await shop.act(account_id, "POST", "/v1/codes", {"for": None})
            assert code.status_code == 201
            await person.connect(address, code.json()["pass_code"])
            # beta says the address reads through keys it holds: the SDK on alpha
            # writes transport-encrypted, so the app can read it.
            sent = await person.send(address, "is my order ready?")
            assert sent.encryption == "transport-encrypted"
        call = await receiver.next()
        payload = json.loads(call.body)
        assert payload["account_id"] == account_id
        assert payload["message"]["body"] == "is my order ready?"
    finally:
        receiver.stop()
