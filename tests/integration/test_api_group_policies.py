"""A group follows its owner's plan: participants, message size and rate, and
retention; only its owner and admins tighten it. Over the real API."""

from __future__ import annotations

import base64
import json
import secrets
from datetime import timedelta
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from openmessenger.plan_settings import PlanLimits, PlansSetting
from openmessenger.settings import Settings
from tests.integration.test_api_groups import (
    connect,
    create,
    history,
    join,
    megolm_body,
    people,
    send,
)
from tests.support.api import ApiDevice, Dump
from tests.support.node import NodeThread, SettableClock

OPERATOR_TOKEN = "operator-token-for-group-policy-tests-0123"
PLANS = PlansSetting(
    free=PlanLimits(
        retention_days=1, max_participants=3, max_message_bytes=1500, message_rate="3/hour"
    ),
    subscription=PlanLimits(
        retention_days="forever",
        max_participants=10,
        max_message_bytes=5000,
        message_rate="20/hour",
    ),
)


@pytest.fixture
def node_settings(node_settings: Settings) -> Settings:
    return node_settings.model_copy(
        update={"plans": PLANS, "operator_token": SecretStr(OPERATOR_TOKEN)}
    )


def refused(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert (response.status_code, response.json().get("code")) == (status, code), response.text
    body: dict[str, Any] = response.json()
    return body


async def set_plan(http: httpx.AsyncClient, address: str, plan: str) -> None:
    response = await http.put(
        f"/v1/admin/accounts/{address}/plan",
        json={"plan": plan},
        headers={"Authorization": f"Bearer {OPERATOR_TOKEN}"},
    )
    assert response.status_code == 200, response.text


async def tighten(device: ApiDevice, group_id: str, limits: dict[str, Any]) -> httpx.Response:
    return await device.http.put(
        f"/v1/conversations/{group_id}/policy", json=limits, headers=device.auth
    )


async def test_the_owners_plan_bounds_the_participants(http: httpx.AsyncClient) -> None:
    alice, bob, carol, dave = await people(http, "Alice", "Bob", "Carol", "Dave")
    for person in (bob, carol, dave):
        await connect(alice, person)
    # Free: at most three, the owner counted.
    too_many = await alice.post(
        "/v1/groups", {"name": "Big", "members": [bob.address, carol.address, dave.address]}
    )
    refused(too_many, 409, "group_full")
    gid = (await create(alice, "Small", bob, carol))["id"]
    refused(
        await alice.post(f"/v1/groups/{gid}/members", {"address": dave.address}), 409, "group_full"
    )
    # A declined invitation frees its place.
    assert (await carol.post(f"/v1/groups/{gid}/decline")).status_code == 204
    assert (
        await alice.post(f"/v1/groups/{gid}/members", {"address": dave.address})
    ).status_code == 200
    # On a subscription the same owner makes the bigger group.
    await set_plan(http, alice.address, "subscription")
    big = await alice.post(
        "/v1/groups", {"name": "Big", "members": [bob.address, carol.address, dave.address]}
    )
    assert big.status_code == 201, big.text


async def test_only_the_owner_and_admins_tighten_a_group(http: httpx.AsyncClient) -> None:
    alice, bob, carol, dave = await people(http, "Alice", "Bob", "Carol", "Dave")
    for person in (bob, carol, dave):
        await connect(alice, person)
    await set_plan(http, alice.address, "subscription")
    gid = (await create(alice, "Club", bob, carol))["id"]
    await join(bob, gid)
    await join(carol, gid)
    # A member would bind everyone: refused, and nothing changes.
    refused(await tighten(bob, gid, {"max_participants": 3}), 403, "group_forbidden")
    refused(await tighten(bob, gid, {"message_rate": "1/day"}), 403, "group_forbidden")
    assert (
        await alice.post(f"/v1/groups/{gid}/members", {"address": dave.address})
    ).status_code == 200
    # An admin may; the limit then holds for the owner too.
    promoted = await alice.http.put(
        f"/v1/groups/{gid}/members/{bob.address}/role", json={"role": "admin"}, headers=alice.auth
    )
    assert promoted.status_code == 200, promoted.text
    assert (await tighten(bob, gid, {"max_participants": 4})).status_code == 200
    assert (await carol.post(f"/v1/groups/{gid}/leave")).status_code == 204
    eve = (await people(http, "Eve"))[0]
    await connect(alice, eve)
    assert (
        await alice.post(f"/v1/groups/{gid}/members", {"address": eve.address})
    ).status_code == 200
    refused(
        await alice.post(f"/v1/groups/{gid}/members", {"address": carol.address}), 409, "group_full"
    )
    # Never looser than the owner's plan.
    refused(await tighten(alice, gid, {"max_participants": 11}), 422, "policy_not_stricter")


async def test_group_messages_keep_to_size_and_rate(http: httpx.AsyncClient, dump: Dump) -> None:
    alice, bob, mallory = await people(http, "Alice", "Bob", "Mallory")
    await connect(alice, bob)
    gid = (await create(alice, "Chat", bob))["id"]
    await join(bob, gid)
    before = len((await dump())["messages"])
    body = json.loads(megolm_body())
    body["ciphertext"] = base64.b64encode(secrets.token_bytes(1200)).decode().rstrip("=")
    oversize = await alice.post(f"/v1/groups/{gid}/messages", {"body": json.dumps(body)})
    assert refused(oversize, 422, "message_too_large")["field"] == "body"
    assert len((await dump())["messages"]) == before
    # Three an hour each: Alice's fourth is refused, Bob still speaks.
    for _ in range(3):
        await send(alice, gid)
    refused(
        await alice.post(f"/v1/groups/{gid}/messages", {"body": megolm_body()}),
        429,
        "message_rate_limited",
    )
    await send(bob, gid)
    # A stranger learns nothing of the group's limits: it does not exist for them.
    refused(
        await mallory.post(f"/v1/groups/{gid}/messages", {"body": json.dumps(body)}),
        404,
        "group_not_found",
    )


async def test_retention_deletes_a_groups_expired_history(
    http: httpx.AsyncClient, clock: SettableClock, running_node: NodeThread, dump: Dump
) -> None:
    alice, bob = await people(http, "Alice", "Bob")
    await connect(alice, bob)
    gid = (await create(alice, "Chat", bob))["id"]
    await join(bob, gid)
    old = await send(alice, gid)
    clock.advance(timedelta(hours=25))
    new = await send(bob, gid)
    assert running_node.node is not None
    swept = await running_node.call(running_node.node.services.policies.sweep_retention())
    assert swept >= 1
    left = {m["id"] for m in (await dump())["messages"] if m["conversation_id"] == gid}
    assert old["id"] not in left and new["id"] in left
    assert {e["message_id"] for e in (await dump())["device_streams"]} <= {
        m["id"] for m in (await dump())["messages"]
    }
    assert [m["id"] for m in await history(bob, gid) if m["media_type"] == "text"] == [new["id"]]
