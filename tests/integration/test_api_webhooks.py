"""App webhooks through the real HTTP API: a real node calls a real HTTP server
on loopback. Signatures, retries with backoff as the clock moves, giving up,
the delivery log, and what another app cannot do.

The node's worker is driven by its clock: a test that moves the clock asks it
to attempt what is due (``deliver_due``) and to finish recording outcomes
(``drain``); nothing waits by sleeping."""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest

from openmessenger.services.webhooks import WebhookSender
from tests.support.api import ApiDevice, Dump, register, rows_mentioning
from tests.support.apps import ApiApp, connect_to, create_app, registered
from tests.support.node import NodeThread, SettableClock
from tests.support.webhook_receiver import ReceivedCall, WebhookReceiver, webhook_receiver

GIVE_UP = timedelta(seconds=86_400)  # the default webhook_give_up_seconds


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with webhook_receiver() as server:
        yield server


def _sender(node: NodeThread) -> WebhookSender:
    assert node.node is not None
    return node.node.services.webhooks.sender


async def drain(node: NodeThread) -> None:
    """Until every call under way has its outcome in the log."""
    await node.call(_sender(node).drain())


async def deliver_due(node: NodeThread) -> None:
    """Attempt what is due by the node's clock, and record the outcomes."""
    await node.call(_sender(node).deliver_due())


def verify(secret: str, call: ReceivedCall) -> int:
    """The check docs/apps.md gives apps; the signature's timestamp."""
    header = call.header("Openmessenger-Signature")
    assert header is not None
    fields = dict(part.split("=", 1) for part in header.split(","))
    signed = f"{fields['t']}.".encode() + call.body
    expected = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(expected, fields["v1"]), "the signature does not verify"
    return int(fields["t"])


def payload(call: ReceivedCall) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(call.body)
    return data


@dataclass
class Shop:
    app: ApiApp
    user: dict[str, Any]
    person: ApiDevice
    secret: str

    async def log(self, **params: Any) -> list[dict[str, Any]]:
        response = await self.app.http.get(
            f"/v1/apps/{self.app.id}/webhook/deliveries", headers=self.app.auth, params=params
        )
        assert response.status_code == 200, response.text
        found: list[dict[str, Any]] = response.json()["deliveries"]
        return found

    async def app_sends(self, text: str) -> None:
        sent = await self.app.act(
            self.user["account_id"],
            "POST",
            "/v1/messages",
            {"to": self.person.address, "body": text},
        )
        assert sent.status_code == 201, sent.text

    async def person_sends(self, text: str) -> None:
        sent = await self.person.send(self.user["address"], text)
        assert sent.status_code == 201, sent.text


async def set_webhook(app: ApiApp, url: str) -> httpx.Response:
    return await app.http.put(f"/v1/apps/{app.id}/webhook", json={"url": url}, headers=app.auth)


async def shop_with_webhook(
    http: httpx.AsyncClient, clock: SettableClock, url: str, app_id: str = "shop"
) -> Shop:
    """An app with one user connected to a person, and its webhook set to ``url``."""
    app = await create_app(await registered(http, clock, f"{app_id} owner"), app_id)
    user = await app.create_account("Customer")  # node-held: a plain-HTTP app
    person = await register(http, "Person")
    await connect_to(app, user["account_id"], person)
    response = await set_webhook(app, url)
    assert response.status_code == 200, response.text
    return Shop(app, user, person, response.json()["secret"])


def _seconds(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


async def test_an_apps_user_receives_a_message_by_a_signed_webhook_call(
    http: httpx.AsyncClient,
    clock: SettableClock,
    receiver: WebhookReceiver,
    running_node: NodeThread,
    dump: Dump,
) -> None:
    url = receiver.webhook_url()
    shop = await shop_with_webhook(http, clock, url)
    assert shop.secret.startswith("whsec_") and len(shop.secret) > 40
    shown = await http.get("/v1/apps/shop/webhook", headers=shop.app.auth)
    assert shown.status_code == 200
    assert shown.json()["url"] == url and "secret" not in shown.json()

    await shop.person_sends("where is my parcel?")
    call = await receiver.next()
    assert call.method == "POST" and call.path == "/hooks/openmessenger"
    assert call.header("Content-Type") == "application/json"
    assert verify(shop.secret, call) == int(clock.now().timestamp())
    body = payload(call)
    assert body["type"] == "message"
    assert body["delivery_id"] == call.header("Openmessenger-Delivery")
    assert body["app_id"] == "shop"
    assert body["account_id"] == shop.user["account_id"]
    assert body["device_id"] == shop.user["device_id"]
    message = body["message"]
    # Opened for the app: the node holds its device's keys.
    assert message["body"] == "where is my parcel?"
    assert message["from"] == shop.person.address and message["to"] == shop.user["address"]
    assert message["encryption"] == "transport-encrypted"

    await drain(running_node)
    (logged,) = await shop.log()
    assert logged["id"] == body["delivery_id"]
    assert logged["message_id"] == message["id"]
    assert logged["account_id"] == shop.user["account_id"]
    assert logged["state"] == "delivered" and logged["attempts"] == 1
    assert logged["last_status"] == 200 and logged["last_error"] is None
    assert logged["finished_at"] is not None and logged["next_attempt_at"] is None

    # What the app sends for its user is not echoed back to it; the reply is.
    await shop.app_sends("on its way")
    clock.advance(timedelta(seconds=1))  # the log lists by time, newest first
    await shop.person_sends("thanks")
    reply = payload(await receiver.next())
    assert reply["message"]["body"] == "thanks"
    await drain(running_node)
    assert receiver.nothing_queued()
    assert [d["state"] for d in await shop.log()] == ["delivered", "delivered"]
    assert [d["message_id"] for d in await shop.log(state="delivered", limit=1)] == [
        reply["message"]["id"]
    ]

    # Neither the secret nor the opened text is in the database.
    stored = await dump()
    assert rows_mentioning(stored, shop.secret) == []
    assert rows_mentioning(stored, shop.secret.removeprefix("whsec_")) == []
    assert rows_mentioning(stored, "where is my parcel?") == []


async def test_a_failing_endpoint_is_retried_with_backoff_until_it_answers(
    http: httpx.AsyncClient,
    clock: SettableClock,
    receiver: WebhookReceiver,
    running_node: NodeThread,
) -> None:
    shop = await shop_with_webhook(http, clock, receiver.webhook_url())
    receiver.status = 500
    await shop.person_sends("hello?")
    first = await receiver.next()
    verify(shop.secret, first)
    await drain(running_node)
    (logged,) = await shop.log()
    assert logged["state"] == "pending" and logged["attempts"] == 1
    assert logged["last_status"] == 500 and logged["last_error"] == "HTTP 500"
    wait = _seconds(logged["next_attempt_at"]) - clock.now()
    assert timedelta(seconds=1) <= wait <= timedelta(seconds=1.1)  # the first backoff
    # Nothing is due while the clock stands still.
    await deliver_due(running_node)
    assert receiver.nothing_queued()

    # A new secret meanwhile (a PUT rotates it): the retry is signed with it.
    rotated = await set_webhook(shop.app, receiver.webhook_url("/v2"))
    assert rotated.status_code == 200
    new_secret = rotated.json()["secret"]
    assert new_secret != shop.secret
    receiver.status = 200
    clock.advance(timedelta(seconds=2))
    await deliver_due(running_node)
    second = await receiver.next()
    assert second.path == "/v2"
    assert second.header("Openmessenger-Delivery") == first.header("Openmessenger-Delivery")
    assert payload(second) == payload(first)
    verify(new_secret, second)
    with pytest.raises(AssertionError):
        verify(shop.secret, second)
    await drain(running_node)
    (logged,) = await shop.log()
    assert logged["state"] == "delivered" and logged["attempts"] == 2
    assert logged["last_status"] == 200 and logged["last_error"] is None


async def test_a_delivery_fails_for_good_after_the_give_up_time(
    http: httpx.AsyncClient,
    clock: SettableClock,
    receiver: WebhookReceiver,
    running_node: NodeThread,
) -> None:
    shop = await shop_with_webhook(http, clock, receiver.webhook_url())
    receiver.status = 503
    await shop.person_sends("anyone there?")
    await receiver.next()
    await drain(running_node)
    clock.advance(GIVE_UP + timedelta(seconds=1))
    await deliver_due(running_node)
    await receiver.next()  # one last try
    await drain(running_node)
    (logged,) = await shop.log(state="failed")
    assert logged["attempts"] == 2 and logged["last_status"] == 503
    assert logged["finished_at"] is not None and logged["next_attempt_at"] is None
    assert await shop.log(state="pending") == []
    clock.advance(GIVE_UP)
    await deliver_due(running_node)
    assert receiver.nothing_queued()


async def test_an_unreachable_endpoint_is_logged_without_its_url(
    http: httpx.AsyncClient, clock: SettableClock, running_node: NodeThread
) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    shop = await shop_with_webhook(http, clock, f"http://127.0.0.1:{port}/hook?token=s3cr3t")
    await shop.person_sends("hi")
    await deliver_due(running_node)
    (logged,) = await shop.log()
    assert logged["state"] == "pending" and logged["attempts"] == 1
    assert logged["last_status"] is None
    assert logged["last_error"].startswith("connection: ")
    assert "s3cr3t" not in logged["last_error"] and str(port) not in logged["last_error"]


async def test_deleting_the_webhook_stops_calls_and_drops_what_was_pending(
    http: httpx.AsyncClient,
    clock: SettableClock,
    receiver: WebhookReceiver,
    running_node: NodeThread,
) -> None:
    shop = await shop_with_webhook(http, clock, receiver.webhook_url())
    receiver.status = 500
    await shop.person_sends("one")
    await receiver.next()
    await drain(running_node)
    deleted = await http.delete("/v1/apps/shop/webhook", headers=shop.app.auth)
    assert deleted.status_code == 204
    gone = await http.get("/v1/apps/shop/webhook", headers=shop.app.auth)
    assert gone.status_code == 404 and gone.json()["code"] == "webhook_not_found"
    again = await http.delete("/v1/apps/shop/webhook", headers=shop.app.auth)
    assert again.status_code == 404
    assert await shop.log() == []
    receiver.status = 200
    await shop.person_sends("two")
    clock.advance(timedelta(minutes=5))
    await deliver_due(running_node)
    assert receiver.nothing_queued()
    assert await shop.log() == []


async def test_another_app_cannot_see_or_set_this_apps_webhook(
    http: httpx.AsyncClient, clock: SettableClock, receiver: WebhookReceiver
) -> None:
    shop = await shop_with_webhook(http, clock, receiver.webhook_url())
    bank = await create_app(await registered(http, clock, "Bank Inc"), "bank")
    for method, path, body in [
        ("GET", "/v1/apps/shop/webhook", None),
        ("PUT", "/v1/apps/shop/webhook", {"url": "https://bank.example/steal"}),
        ("DELETE", "/v1/apps/shop/webhook", None),
        ("GET", "/v1/apps/shop/webhook/deliveries", None),
    ]:
        response = await http.request(method, path, json=body, headers=bank.auth)
        assert response.status_code == 404, (method, path, response.text)
        assert response.json()["code"] == "app_not_found"
    assert (await http.get("/v1/apps/shop/webhook", headers=shop.app.auth)).json()["url"] == (
        receiver.webhook_url()
    )
    mine = await http.get("/v1/apps/bank/webhook", headers=bank.auth)
    assert mine.status_code == 404 and mine.json()["code"] == "webhook_not_found"
    listed = await http.get("/v1/apps/bank/webhook/deliveries", headers=bank.auth)
    assert listed.json() == {"deliveries": []}
    anonymous = await http.get("/v1/apps/shop/webhook")
    assert anonymous.status_code == 401


async def test_a_key_without_the_webhooks_scope_is_refused(
    http: httpx.AsyncClient, clock: SettableClock
) -> None:
    owner = await registered(http, clock)
    await create_app(owner, "shop")
    issued = await owner.post("/v1/apps/shop/keys", {"scopes": ["messages"]})
    assert issued.status_code == 201, issued.text
    narrow = {"Authorization": f"Bearer {issued.json()['key']}"}
    for method, path, body in [
        ("PUT", "/v1/apps/shop/webhook", {"url": "https://shop.example/hook"}),
        ("GET", "/v1/apps/shop/webhook", None),
        ("GET", "/v1/apps/shop/webhook/deliveries", None),
    ]:
        response = await http.request(method, path, json=body, headers=narrow)
        assert response.status_code == 403, (method, path, response.text)
        assert response.json()["code"] == "scope_missing"


BAD_URLS = [
    "http://shop.example/hook",  # plain HTTP off loopback
    "http://10.0.0.1/hook",
    "ftp://shop.example/hook",
    "https://user:pass@shop.example/hook",
    "https://token@shop.example/hook",
    "https://",
    "shop.example/hook",
    "https://shop.example/hook#part",
    "https://shop.example/ hook",
    "https://shop.example:99999/hook",
    "https://shop.example/" + "a" * 2000,
    "",
]


async def test_a_bad_webhook_url_is_refused_naming_the_field(
    http: httpx.AsyncClient, clock: SettableClock
) -> None:
    app = await create_app(await registered(http, clock), "shop")
    for url in BAD_URLS:
        response = await set_webhook(app, url)
        assert response.status_code == 422, (url, response.text)
        assert response.json()["field"] == "url", url
    assert (await http.get("/v1/apps/shop/webhook", headers=app.auth)).status_code == 404


async def test_https_and_loopback_http_urls_are_taken(
    http: httpx.AsyncClient, clock: SettableClock
) -> None:
    app = await create_app(await registered(http, clock), "shop")
    for url in [
        "https://shop.example/hooks/openmessenger?v=1",
        "https://203.0.113.7:8443/hook",
        "http://127.0.0.2:8080/hook",
        "http://[::1]:8080/hook",
        "http://localhost:3000/hook",
    ]:
        response = await set_webhook(app, url)
        assert response.status_code == 200, (url, response.text)
        assert response.json()["url"] == url


async def test_the_delivery_log_keeps_settled_deliveries_for_a_month(
    http: httpx.AsyncClient,
    clock: SettableClock,
    receiver: WebhookReceiver,
    running_node: NodeThread,
) -> None:
    shop = await shop_with_webhook(http, clock, receiver.webhook_url())
    await shop.person_sends("first")
    await receiver.next()
    await drain(running_node)
    assert [d["state"] for d in await shop.log()] == ["delivered"]

    # (The worker sweeps by itself each hour of the node's clock; calling the
    # sweep here makes it happen now.)
    clock.advance(timedelta(days=29))
    await running_node.call(_sender(running_node).forget_old_log())
    assert len(await shop.log()) == 1
    clock.advance(timedelta(days=2))
    await shop.person_sends("second")  # just delivered: kept
    second = payload(await receiver.next())
    await drain(running_node)
    await running_node.call(_sender(running_node).forget_old_log())
    assert [d["message_id"] for d in await shop.log()] == [second["message"]["id"]]
