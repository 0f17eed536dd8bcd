"""One person, one address: two apps' users who prove the same e-mail address
become one account, reachable whichever app they use."""

from __future__ import annotations

import asyncio
import re

import httpx
import pytest

from openmessenger.settings import Settings
from tests.support.api import Dump, register, rows_mentioning
from tests.support.apps import ApiApp, connect_to, create_app, registered
from tests.support.node import SettableClock
from tests.support.smtp import SmtpServer

EMAIL = "Dana.Person@example.org"


@pytest.fixture
def node_settings(node_settings: Settings, smtp_server: SmtpServer) -> Settings:
    return node_settings.model_copy(
        update={
            "smtp_host": smtp_server.host,
            "smtp_port": smtp_server.port,
            "smtp_starttls": False,
        }
    )


async def prove(app: ApiApp, account_id: str, smtp: SmtpServer) -> httpx.Response:
    started = await app.post(
        f"/v1/apps/{app.id}/accounts/{account_id}/verifications", {"channel": "email", "to": EMAIL}
    )
    assert started.status_code == 202, started.text
    mail = await asyncio.to_thread(smtp.next_mail)
    found = re.search(r"\b([0-9]{6})\b", mail.text)
    assert found is not None
    verification = started.json()["verification_id"]
    return await app.post(
        f"/v1/apps/{app.id}/accounts/{account_id}/verifications/{verification}/confirm",
        {"code": found.group(1)},
    )


async def test_proving_the_same_email_in_two_apps_makes_one_address(
    http: httpx.AsyncClient, clock: SettableClock, smtp_server: SmtpServer, dump: Dump
) -> None:
    shop = await create_app(await registered(http, clock, "Shop Inc"), "shop")
    bank = await create_app(await registered(http, clock, "Bank Inc"), "bank")
    in_shop = await shop.create_account("Dana")
    first = await prove(shop, in_shop["account_id"], smtp_server)
    assert first.status_code == 200, first.text
    assert first.json() == {
        "account_id": in_shop["account_id"],
        "address": in_shop["address"],
        "merged": False,
    }
    friend = await register(http, "Friend")
    await connect_to(shop, in_shop["account_id"], friend)

    in_bank = await bank.create_account("Dana")
    second = await prove(bank, in_bank["account_id"], smtp_server)
    assert second.status_code == 200, second.text
    assert second.json() == {
        "account_id": in_shop["account_id"],
        "address": in_shop["address"],
        "merged": True,
    }
    # The bank now acts for the one account; the old one is gone.
    gone = await bank.act(in_bank["account_id"], "GET", "/v1/me")
    assert gone.status_code == 404
    me = await bank.act(in_shop["account_id"], "GET", "/v1/me")
    assert me.status_code == 200 and me.json()["address"] == in_shop["address"]
    stored = await dump()
    assert rows_mentioning(stored, in_bank["account_id"]) == []
    assert rows_mentioning(stored, EMAIL.lower()) == []

    # The friend reaches the person through either app, tagged with the app used.
    assert (await friend.send(in_shop["address"], "hello Dana")).status_code == 201
    for app in (shop, bank):
        synced = (await app.act(in_shop["account_id"], "GET", "/v1/sync")).json()["events"]
        assert [e["message"]["body"] for e in synced] == ["hello Dana"], app.id
    reply = await bank.act(
        in_shop["account_id"], "POST", "/v1/messages", {"to": friend.address, "body": "via bank"}
    )
    assert reply.status_code == 201, reply.text
    (event,) = await friend.sync()
    assert event["message"]["app"]["app_id"] == "bank"
    assert event["message"]["from"] == in_shop["address"]

    # Each app still deletes only its own: the account stays while the other holds it.
    deleted = await bank.http.delete(
        f"/v1/apps/bank/accounts/{in_shop['account_id']}/data", headers=bank.auth
    )
    assert deleted.status_code == 200 and deleted.json() == {"account_deleted": False}
    assert (await shop.act(in_shop["account_id"], "GET", "/v1/me")).status_code == 200
    assert (await bank.act(in_shop["account_id"], "GET", "/v1/me")).status_code == 404


async def test_an_account_with_contacts_does_not_merge(
    http: httpx.AsyncClient, clock: SettableClock, smtp_server: SmtpServer
) -> None:
    shop = await create_app(await registered(http, clock, "Shop Inc"), "shop")
    bank = await create_app(await registered(http, clock, "Bank Inc"), "bank")
    in_shop = await shop.create_account()
    assert (await prove(shop, in_shop["account_id"], smtp_server)).status_code == 200
    in_bank = await bank.create_account()
    await connect_to(bank, in_bank["account_id"], await register(http, "Friend"))
    refused = await prove(bank, in_bank["account_id"], smtp_server)
    assert refused.status_code == 409 and refused.json()["code"] == "account_has_connections"
    assert (await bank.act(in_bank["account_id"], "GET", "/v1/me")).status_code == 200


async def test_an_app_cannot_prove_for_an_account_it_does_not_hold(
    http: httpx.AsyncClient, clock: SettableClock, smtp_server: SmtpServer
) -> None:
    shop = await create_app(await registered(http, clock, "Shop Inc"), "shop")
    bank = await create_app(await registered(http, clock, "Bank Inc"), "bank")
    in_shop = await shop.create_account()
    response = await bank.post(
        f"/v1/apps/bank/accounts/{in_shop['account_id']}/verifications",
        {"channel": "email", "to": EMAIL},
    )
    assert response.status_code == 404
    assert smtp_server.pending() == 0
