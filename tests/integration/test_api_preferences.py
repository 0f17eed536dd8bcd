"""Preferences over the real API: levels, precedence (conversation > contact >
device > account > default), validation naming the field, and ``accept_apps``
being the app allowlist itself."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.support.api import ApiDevice, connected_pair, register
from tests.support.apps import create_app, registered
from tests.support.node import SettableClock

DEFAULTS = {
    "accept_requests": ("off", "default"),
    "accept_apps": (None, "default"),
    "mute": (False, "default"),
    "disappearing_timer": ("off", "default"),
    "send_receipts": (True, "default"),
}


async def effective(device: ApiDevice, **context: str) -> dict[str, tuple[Any, str]]:
    response = await device.get("/v1/preferences", params=context)
    assert response.status_code == 200, response.text
    return {p["name"]: (p["value"], p["level"]) for p in response.json()["preferences"]}


async def put(device: ApiDevice, **body: Any) -> httpx.Response:
    return await device.http.put("/v1/preferences", json=body, headers=device.auth)


async def clear(device: ApiDevice, **params: str) -> httpx.Response:
    return await device.http.delete("/v1/preferences", params=params, headers=device.auth)


async def test_every_preference_has_its_default(http: httpx.AsyncClient) -> None:
    alice = await register(http)
    response = await alice.get("/v1/preferences")
    assert response.json()["context"] == {
        "device_id": alice.device_id,
        "contact": None,
        "conversation": None,
    }
    assert await effective(alice) == DEFAULTS


async def test_the_narrowest_level_wins_and_clearing_falls_back(http: httpx.AsyncClient) -> None:
    alice, bob = await connected_pair(http)
    conversation = (await alice.get("/v1/connections")).json()["contacts"][0]["conversation_id"]
    for level, value, extra in (
        ("account", 3600, {}),
        ("device", 600, {}),
        ("contact", 60, {"contact": bob.address}),
        ("conversation", "off", {"conversation": conversation}),
    ):
        response = await put(alice, name="disappearing_timer", value=value, level=level, **extra)
        assert response.status_code == 200, response.text
        assert response.json() == {"name": "disappearing_timer", "value": value, "level": level}

    timer = "disappearing_timer"
    assert (await effective(alice))[timer] == (600, "device")
    assert (await effective(alice, contact=bob.address))[timer] == (60, "contact")
    # A 1:1 conversation brings its contact along.
    assert (await effective(alice, conversation=conversation))[timer] == ("off", "conversation")

    assert (
        await clear(alice, name=timer, level="conversation", conversation=conversation)
    ).status_code == 204
    assert (await effective(alice, conversation=conversation))[timer] == (60, "contact")
    await clear(alice, name=timer, level="contact", contact=bob.address)
    assert (await effective(alice, contact=bob.address))[timer] == (600, "device")
    await clear(alice, name=timer, level="device")
    assert (await effective(alice))[timer] == (3600, "account")
    await clear(alice, name=timer, level="account")
    assert (await effective(alice))[timer] == ("off", "default")
    # Bob's preferences are his own.
    assert await effective(bob) == DEFAULTS


async def test_mute_and_receipts_per_contact(http: httpx.AsyncClient) -> None:
    alice, bob = await connected_pair(http)
    await put(alice, name="mute", value=True, level="account")
    await put(alice, name="mute", value=False, level="contact", contact=bob.address)
    await put(alice, name="send_receipts", value=False, level="contact", contact=bob.address)
    with_bob = await effective(alice, contact=bob.address)
    assert with_bob["mute"] == (False, "contact")
    assert with_bob["send_receipts"] == (False, "contact")
    assert (await effective(alice))["mute"] == (True, "account")
    one = await alice.get("/v1/preferences", params={"name": "mute"})
    assert [p["name"] for p in one.json()["preferences"]] == ["mute"]


async def test_accept_apps_is_the_app_allowlist(http: httpx.AsyncClient) -> None:
    alice, bob = await connected_pair(http)
    set_ = await put(alice, name="accept_apps", value=["shop", "chat-app"], level="account")
    assert set_.json() == {
        "name": "accept_apps",
        "value": ["chat-app", "shop"],
        "level": "account",
    }
    assert (await alice.get("/v1/account/apps")).json()["apps"] == ["chat-app", "shop"]

    listed = await alice.http.put(
        f"/v1/contacts/{bob.address}/apps", json={"apps": ["games"]}, headers=alice.auth
    )
    assert listed.status_code == 200, listed.text
    assert (await effective(alice, contact=bob.address))["accept_apps"] == (["games"], "contact")
    assert (await effective(alice))["accept_apps"] == (["chat-app", "shop"], "account")

    await clear(alice, name="accept_apps", level="contact", contact=bob.address)
    assert (await alice.get(f"/v1/contacts/{bob.address}/apps")).json()["apps"] is None
    await put(alice, name="accept_apps", value=None, level="account")
    assert (await alice.get("/v1/account/apps")).json()["apps"] is None
    assert (await effective(alice))["accept_apps"] == (None, "default")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "volume", "value": 3, "level": "account"}, "name"),
        ({"name": "mute", "value": True, "level": "galaxy"}, "level"),
        ({"name": "accept_requests", "value": "anyone", "level": "device"}, "level"),
        (
            {
                "name": "accept_apps",
                "value": ["shop"],
                "level": "conversation",
                "conversation": "x",
            },
            "level",
        ),
        ({"name": "mute", "value": "yes", "level": "account"}, "value"),
        ({"name": "send_receipts", "value": 1, "level": "account"}, "value"),
        ({"name": "accept_requests", "value": "everyone", "level": "account"}, "value"),
        ({"name": "disappearing_timer", "value": 0, "level": "account"}, "value"),
        ({"name": "disappearing_timer", "value": 10**9, "level": "account"}, "value"),
        ({"name": "disappearing_timer", "value": True, "level": "account"}, "value"),
        ({"name": "accept_apps", "value": ["Not An App"], "level": "account"}, "value"),
        ({"name": "accept_apps", "value": "shop", "level": "account"}, "value"),
        ({"name": "mute", "value": True, "level": "contact"}, "contact"),
        ({"name": "mute", "value": True, "level": "conversation"}, "conversation"),
        ({"name": "mute", "value": True, "level": "account", "contact": "1*localhost"}, "contact"),
        ({"name": "mute", "value": True, "level": "contact", "contact": "nobody"}, "contact"),
        ({"name": "mute", "level": "account"}, "value"),
        ({"name": "mute", "value": True, "level": "account", "extra": 1}, "extra"),
    ],
)
async def test_bad_input_is_422_naming_the_field_and_changes_nothing(
    http: httpx.AsyncClient, body: dict[str, Any], field: str
) -> None:
    alice = await register(http)
    response = await put(alice, **body)
    assert response.status_code == 422, response.text
    assert response.json()["code"] == "invalid_input"
    assert response.json()["field"] == field
    assert await effective(alice) == DEFAULTS


async def test_strangers_and_foreign_conversations_are_not_found(http: httpx.AsyncClient) -> None:
    alice, bob = await connected_pair(http)
    carol = await register(http)
    conversation = (await alice.get("/v1/connections")).json()["contacts"][0]["conversation_id"]
    not_contact = await put(alice, name="mute", value=True, level="contact", contact=carol.address)
    assert not_contact.status_code == 404 and not_contact.json()["code"] == "contact_not_found"
    foreign = await put(
        carol, name="mute", value=True, level="conversation", conversation=conversation
    )
    assert foreign.status_code == 404 and foreign.json()["code"] == "conversation_not_found"
    read = await carol.get("/v1/preferences", params={"conversation": conversation})
    assert read.status_code == 404
    both = await alice.get(
        "/v1/preferences", params={"conversation": conversation, "contact": bob.address}
    )
    assert both.status_code == 422 and both.json()["field"] == "conversation"
    unknown = await alice.get("/v1/preferences", params={"name": "volume"})
    assert unknown.status_code == 422 and unknown.json()["field"] == "name"
    bad_clear = await clear(alice, name="mute", level="nowhere")
    assert bad_clear.status_code == 422 and bad_clear.json()["field"] == "level"


async def test_an_app_acting_for_its_user_cannot_open_the_door(
    http: httpx.AsyncClient, clock: SettableClock
) -> None:
    owner = await registered(http, clock)
    app = await create_app(owner, "shop")
    account = (await app.create_account("Customer"))["account_id"]
    for name, value in (("accept_requests", "anyone"), ("accept_apps", ["shop"])):
        body = {"name": name, "value": value, "level": "account"}
        refused = await app.act(account, "PUT", "/v1/preferences", body)
        assert refused.status_code == 403 and refused.json()["code"] == "not_for_apps"
    allowed = await app.act(
        account, "PUT", "/v1/preferences", {"name": "mute", "value": True, "level": "device"}
    )
    assert allowed.status_code == 200, allowed.text
    shown = await app.act(account, "GET", "/v1/preferences")
    found = {p["name"]: p for p in shown.json()["preferences"]}
    assert found["mute"]["level"] == "device" and found["accept_requests"]["value"] == "off"


async def test_a_group_is_a_conversation_level_of_its_participants(
    http: httpx.AsyncClient,
) -> None:
    alice, bob = await connected_pair(http)
    carol = await register(http)
    made = await alice.post("/v1/groups", {"name": "Climbing", "members": [bob.address]})
    assert made.status_code == 201, made.text
    group = made.json()["id"]
    stored = await put(alice, name="mute", value=True, level="conversation", conversation=group)
    assert stored.status_code == 200, stored.text
    in_group = await alice.get("/v1/preferences", params={"conversation": group})
    assert in_group.json()["context"]["contact"] is None  # a group has no one contact
    assert (await effective(alice, conversation=group))["mute"] == (True, "conversation")
    # The invited may set theirs; a stranger to the group may not.
    invited = await put(bob, name="mute", value=False, level="conversation", conversation=group)
    assert invited.status_code == 200, invited.text
    outsider = await put(carol, name="mute", value=True, level="conversation", conversation=group)
    assert outsider.status_code == 404 and outsider.json()["code"] == "conversation_not_found"
