"""Plans and policies over the real API: the node enforces each plan's message
size, message rate and retention; a participant's override is only ever stricter;
the operator's set-plan changes what is enforced."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from openmessenger.client import ApiError
from openmessenger.core.ids import AccountId, ConversationId
from openmessenger.core.policies import MessageTooLarge
from openmessenger.plan_settings import PlanLimits, PlansSetting
from openmessenger.settings import Settings
from tests.support.api import ApiDevice, Dump, connected_pair, register
from tests.support.apps import connect_to, create_app, registered
from tests.support.node import NodeThread, SettableClock
from tests.support.sdk import sdk_client
from tests.support.webhook_receiver import webhook_receiver

OPERATOR_TOKEN = "operator-token-for-policy-tests-0123456789"
OPERATOR = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}
DAY = 86_400

# Small limits, so that a test reaches them; "per hour" so that no window
# boundary falls between a test's sends.
PLANS = PlansSetting(
    free=PlanLimits(
        retention_days=1, max_participants=5, max_message_bytes=2000, message_rate="3/hour"
    ),
    subscription=PlanLimits(
        retention_days="forever",
        max_participants=50,
        max_message_bytes=5000,
        message_rate="6/hour",
    ),
)
FREE = {
    "retention_seconds": DAY,
    "max_participants": 5,
    "max_message_bytes": 2000,
    "message_rate": "3/hour",
}
SUBSCRIPTION = {
    "retention_seconds": None,
    "max_participants": 50,
    "max_message_bytes": 5000,
    "message_rate": "6/hour",
}


@pytest.fixture
def node_settings(node_settings: Settings) -> Settings:
    return node_settings.model_copy(
        update={"plans": PLANS, "operator_token": SecretStr(OPERATOR_TOKEN)}
    )


def problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["code"] == code, body
    return body


async def conversation_of(device: ApiDevice, peer: ApiDevice) -> str:
    contacts = (await device.get("/v1/connections")).json()["contacts"]
    (found,) = [c["conversation_id"] for c in contacts if c["address"] == peer.address]
    return str(found)


async def put_policy(device: ApiDevice, conversation_id: str, body: Any) -> httpx.Response:
    return await device.http.put(
        f"/v1/conversations/{conversation_id}/policy", json=body, headers=device.auth
    )


async def set_plan(http: httpx.AsyncClient, address: str, plan: str) -> httpx.Response:
    return await http.put(
        f"/v1/admin/accounts/{address}/plan", json={"plan": plan}, headers=OPERATOR
    )


def stored(dump: dict[str, list[dict[str, object]]], table: str) -> int:
    return len(dump[table])


# --- what a user sees ------------------------------------------------------------------


async def test_every_account_starts_on_free_and_sees_its_plan(http: httpx.AsyncClient) -> None:
    alice, bob = await connected_pair(http)
    mine = await alice.get("/v1/account/policy")
    assert mine.status_code == 200, mine.text
    assert mine.json() == {"address": alice.address, "plan": "free", "policy": FREE}

    conversation = await conversation_of(alice, bob)
    seen = (await bob.get(f"/v1/conversations/{conversation}/policy")).json()
    assert seen == {
        "conversation_id": conversation,
        "policy": FREE,
        "plans": FREE,
        "override": {
            "retention_seconds": None,
            "max_participants": None,
            "max_message_bytes": None,
            "message_rate": None,
        },
    }


# --- message size ---------------------------------------------------------------------------


async def test_an_oversize_message_is_refused_and_nothing_is_stored(
    http: httpx.AsyncClient, dump: Dump
) -> None:
    alice, bob = await connected_pair(http)
    before = await dump()
    # 1001 characters, 2002 bytes: the limit counts bytes.
    refused = await alice.send(bob.address, "é" * 1001, txn="big-1")
    body = problem(refused, 422, "message_too_large")
    assert body["field"] == "body"
    assert "2002 bytes" in body["detail"] and "2000" in body["detail"]
    after = await dump()
    for table in ("messages", "device_streams", "openmsg_outbox"):
        assert stored(after, table) == stored(before, table), table
    assert await bob.sync() == []

    # At the limit it goes.
    accepted = await alice.send(bob.address, "é" * 1000, txn="big-2")
    assert accepted.status_code == 201, accepted.text
    assert await bob.texts() == ["é" * 1000]


# --- message rate -----------------------------------------------------------------------------


async def test_the_rate_limit_trips_for_one_participant_and_not_the_other(
    http: httpx.AsyncClient, dump: Dump
) -> None:
    alice, bob = await connected_pair(http)
    for n in range(3):
        sent = await alice.send(bob.address, f"hello {n}")
        assert sent.status_code == 201, sent.text
    refused = await alice.send(bob.address, "one too many")
    problem(refused, 429, "message_rate_limited")
    assert int(refused.headers["retry-after"]) >= 1
    # Bob's own rate in the conversation is untouched.
    for n in range(3):
        sent = await bob.send(alice.address, f"reply {n}")
        assert sent.status_code == 201, sent.text
    problem(await bob.send(alice.address, "too many"), 429, "message_rate_limited")
    assert await bob.texts() == ["hello 0", "hello 1", "hello 2"]
    assert stored(await dump(), "messages") == 6


async def test_a_retry_of_a_stored_message_at_the_limit_gets_the_message_not_a_429(
    http: httpx.AsyncClient, dump: Dump
) -> None:
    alice, bob = await connected_pair(http)
    sent = [await alice.send(bob.address, f"hello {n}", txn=f"t{n}") for n in range(3)]
    assert [s.status_code for s in sent] == [201, 201, 201]
    # The last answer was lost on the way; the client sends it again, at the limit.
    retried = await alice.send(bob.address, "hello 2", txn="t2")
    assert retried.status_code == 200, retried.text
    assert retried.json()["id"] == sent[2].json()["id"]
    # A new message is still over the limit, and nothing more was stored.
    problem(await alice.send(bob.address, "new", txn="t3"), 429, "message_rate_limited")
    assert stored(await dump(), "messages") == 3


# --- overrides ------------------------------------------------------------------------------


async def test_an_override_can_only_be_stricter(http: httpx.AsyncClient) -> None:
    alice, bob = await connected_pair(http)
    conversation = await conversation_of(alice, bob)
    looser = {
        "retention_seconds": DAY + 1,
        "max_participants": 6,
        "max_message_bytes": 2001,
        "message_rate": "4/hour",
    }
    for field, value in looser.items():
        body = problem(
            await put_policy(bob, conversation, {field: value}), 422, "policy_not_stricter"
        )
        assert body["field"] == field
    # The same rate spelt per minute is still looser (4/hour < 1/minute = 60/hour).
    body = problem(
        await put_policy(bob, conversation, {"message_rate": "1/minute"}),
        422,
        "policy_not_stricter",
    )
    assert body["field"] == "message_rate"
    # One looser field spoils the whole request: nothing is kept.
    problem(
        await put_policy(bob, conversation, {"max_message_bytes": 10, "max_participants": 99}),
        422,
        "policy_not_stricter",
    )
    seen = (await bob.get(f"/v1/conversations/{conversation}/policy")).json()
    assert seen["policy"] == FREE and all(v is None for v in seen["override"].values())

    # Bob tightens the size; it applies to both of them.
    tightened = await put_policy(bob, conversation, {"max_message_bytes": 100})
    assert tightened.status_code == 200, tightened.text
    assert tightened.json()["policy"] == {**FREE, "max_message_bytes": 100}
    assert tightened.json()["override"]["max_message_bytes"] == 100
    problem(await alice.send(bob.address, "x" * 101), 422, "message_too_large")
    assert (await alice.send(bob.address, "x" * 100)).status_code == 201

    # Alice cannot lift Bob's override: hers is her own, and clearing it leaves his.
    hers = await put_policy(alice, conversation, {"max_message_bytes": 2000})
    assert hers.status_code == 200, hers.text
    assert hers.json()["policy"]["max_message_bytes"] == 100
    cleared = await alice.http.delete(
        f"/v1/conversations/{conversation}/policy", headers=alice.auth
    )
    assert cleared.status_code == 200
    assert cleared.json()["policy"]["max_message_bytes"] == 100
    problem(await alice.send(bob.address, "x" * 101), 422, "message_too_large")
    # Bob may lift his own.
    lifted = await bob.http.delete(f"/v1/conversations/{conversation}/policy", headers=bob.auth)
    assert lifted.json()["policy"] == FREE
    assert (await alice.send(bob.address, "x" * 101)).status_code == 201


async def test_bad_override_input_names_the_field_and_changes_nothing(
    http: httpx.AsyncClient,
) -> None:
    alice, bob = await connected_pair(http)
    conversation = await conversation_of(alice, bob)
    bad: list[tuple[Any, str]] = [
        ({"retention_seconds": "3600"}, "retention_seconds"),
        ({"retention_seconds": 0}, "retention_seconds"),
        ({"retention_seconds": True}, "retention_seconds"),
        ({"max_participants": 1}, "max_participants"),
        ({"max_message_bytes": -5}, "max_message_bytes"),
        ({"max_message_bytes": 10**12}, "max_message_bytes"),
        ({"message_rate": "fast"}, "message_rate"),
        ({"message_rate": "0/minute"}, "message_rate"),
        ({"message_rate": "5/fortnight"}, "message_rate"),
        ({"colour": "red"}, "colour"),
    ]
    for body, field in bad:
        answer = problem(await put_policy(alice, conversation, body), 422, "invalid_input")
        assert answer["field"] == field, (body, answer)
    malformed = await alice.http.put(
        f"/v1/conversations/{conversation}/policy",
        content=b"{nope",
        headers={**alice.auth, "Content-Type": "application/json"},
    )
    problem(malformed, 400, "malformed_json")
    seen = (await alice.get(f"/v1/conversations/{conversation}/policy")).json()
    assert seen["policy"] == FREE and all(v is None for v in seen["override"].values())


async def test_a_conversation_you_are_not_in_is_not_found(http: httpx.AsyncClient) -> None:
    alice, bob = await connected_pair(http)
    conversation = await conversation_of(alice, bob)
    eve = await register(http, "Eve")
    for answer in (
        await eve.get(f"/v1/conversations/{conversation}/policy"),
        await put_policy(eve, conversation, {"max_message_bytes": 1}),
        await eve.http.delete(f"/v1/conversations/{conversation}/policy", headers=eve.auth),
        await eve.get("/v1/conversations/no-such-conversation/policy"),
    ):
        problem(answer, 404, "conversation_not_found")
    # Eve's attempt left Alice and Bob's conversation as it was.
    assert (await alice.send(bob.address, "x" * 1500)).status_code == 201


# --- retention ------------------------------------------------------------------------------


async def sweep(node: NodeThread) -> int:
    assert node.node is not None
    return await node.call(node.node.services.policies.sweep_retention())


async def test_retention_deletes_expired_history_and_what_points_at_it(
    http: httpx.AsyncClient, clock: SettableClock, running_node: NodeThread, dump: Dump
) -> None:
    alice, bob = await connected_pair(http)
    for text in ("old one", "old two"):
        assert (await alice.send(bob.address, text)).status_code == 201
    old_ids = {m["id"] for m in (await dump())["messages"]}
    assert len(old_ids) == 2
    clock.advance(timedelta(hours=23))
    assert await sweep(running_node) == 0  # not a day old yet
    assert (await bob.send(alice.address, "newer")).status_code == 201
    clock.advance(timedelta(hours=2))

    assert await sweep(running_node) == 2
    after = await dump()
    left = {m["id"] for m in after["messages"]}
    assert left and not left & old_ids
    assert {e["message_id"] for e in after["device_streams"]} == left
    # Read back through the API: the old messages are gone from sync and history.
    assert await bob.texts() == []
    assert await alice.texts() == ["newer"]
    conversation = await conversation_of(alice, bob)
    history = (await alice.get(f"/v1/conversations/{conversation}/messages")).json()
    assert len(history["messages"]) == 1
    # Idempotent: nothing more to do.
    assert await sweep(running_node) == 0
    # Sending goes on after a sweep.
    assert (await alice.send(bob.address, "still here")).status_code == 201
    assert await bob.texts() == ["still here"]


async def test_a_stricter_retention_override_deletes_sooner(
    http: httpx.AsyncClient, clock: SettableClock, running_node: NodeThread, dump: Dump
) -> None:
    alice, bob = await connected_pair(http)
    carol, dave = await connected_pair(http)
    conversation = await conversation_of(alice, bob)
    assert (await put_policy(bob, conversation, {"retention_seconds": 3600})).status_code == 200
    assert (await alice.send(bob.address, "brief")).status_code == 201
    assert (await carol.send(dave.address, "kept a day")).status_code == 201
    clock.advance(timedelta(hours=2))
    assert await sweep(running_node) == 1
    assert [m["conversation_id"] for m in (await dump())["messages"]] == [
        await conversation_of(carol, dave)
    ]


async def test_the_stricter_plan_of_the_two_decides_and_subscription_keeps_forever(
    http: httpx.AsyncClient, clock: SettableClock, running_node: NodeThread, dump: Dump
) -> None:
    alice, bob = await connected_pair(http)
    carol, dave = await connected_pair(http)
    for who in (alice, carol, dave):
        assert (await set_plan(http, who.address, "subscription")).status_code == 200
    assert (await alice.send(bob.address, "alice is subscribed, bob is not")).status_code == 201
    assert (await carol.send(dave.address, "both subscribed")).status_code == 201
    assert (await alice.get("/v1/account/policy")).json()["policy"] == SUBSCRIPTION
    assert (await bob.get(f"/v1/conversations/{await conversation_of(bob, alice)}/policy")).json()[
        "policy"
    ] == FREE
    clock.advance(timedelta(days=400))
    assert await sweep(running_node) == 1
    (kept,) = (await dump())["messages"]
    assert kept["conversation_id"] == await conversation_of(carol, dave)


# --- the operator ----------------------------------------------------------------------------


async def test_the_operators_set_plan_changes_the_enforced_limits(
    http: httpx.AsyncClient,
) -> None:
    alice, bob = await connected_pair(http)
    big = "y" * 3000
    problem(await alice.send(bob.address, big), 422, "message_too_large")

    shown = await http.get(f"/v1/admin/accounts/{alice.address}", headers=OPERATOR)
    assert shown.json() == {
        "address": alice.address,
        "kind": "anonymous",
        "plan": "free",
        "policy": FREE,
    }
    changed = await set_plan(http, alice.address, "subscription")
    assert changed.status_code == 200, changed.text
    assert changed.json()["plan"] == "subscription"
    assert changed.json()["policy"] == SUBSCRIPTION
    assert (await alice.get("/v1/account/policy")).json()["plan"] == "subscription"
    # Bob is still free: in their conversation the stricter plan still rules.
    problem(await alice.send(bob.address, big), 422, "message_too_large")
    assert (await set_plan(http, bob.address, "subscription")).status_code == 200
    assert (await alice.send(bob.address, big)).status_code == 201
    # And the higher rate: 6 an hour each now (one sent already).
    for _ in range(5):
        assert (await alice.send(bob.address, "more")).status_code == 201
    problem(await alice.send(bob.address, "more"), 429, "message_rate_limited")
    # Back to free: the small limits apply again at once.
    assert (await set_plan(http, bob.address, "free")).status_code == 200
    problem(await bob.send(alice.address, big), 422, "message_too_large")


async def test_bad_operator_input_names_the_field(http: httpx.AsyncClient) -> None:
    alice = await register(http, "Alice")
    cases: list[tuple[str, Any, int, str, str | None]] = [
        (alice.address, {"plan": "gold"}, 422, "invalid_input", "plan"),
        (alice.address, {"plan": "FREE"}, 422, "invalid_input", "plan"),
        (alice.address, {"plan": 3}, 422, "invalid_input", "plan"),
        (alice.address, {}, 422, "invalid_input", "plan"),
        (alice.address, {"plan": "free", "extra": 1}, 422, "invalid_input", "extra"),
        ("not-an-address", {"plan": "free"}, 422, "invalid_input", "address"),
        ("1234567*elsewhere.example", {"plan": "free"}, 404, "account_not_found", None),
        ("9999999*localhost", {"plan": "usage"}, 404, "account_not_found", None),
    ]
    for address, body, status, code, field in cases:
        answer = await http.put(f"/v1/admin/accounts/{address}/plan", json=body, headers=OPERATOR)
        found = problem(answer, status, code)
        assert found.get("field") == field, (address, body, found)
    problem(await http.get("/v1/admin/accounts/bad", headers=OPERATOR), 422, "invalid_input")
    # Without the operator token: nothing shown, nothing changed.
    wrong = {"Authorization": f"Bearer {OPERATOR_TOKEN[:-1]}X"}
    for headers in ({}, wrong, alice.auth):
        shown = await http.get(f"/v1/admin/accounts/{alice.address}", headers=headers)
        problem(shown, 401, "operator_token_invalid")
        changed = await http.put(
            f"/v1/admin/accounts/{alice.address}/plan", json={"plan": "usage"}, headers=headers
        )
        problem(changed, 401, "operator_token_invalid")
    assert (await alice.get("/v1/account/policy")).json()["plan"] == "free"


async def test_retention_deletes_the_webhook_deliveries_of_expired_messages(
    http: httpx.AsyncClient, clock: SettableClock, running_node: NodeThread, dump: Dump
) -> None:
    app = await create_app(await registered(http, clock), "shop")
    user = await app.create_account("Customer")
    person = await register(http, "Person")
    await connect_to(app, user["account_id"], person)
    with webhook_receiver() as receiver:
        hooked = await app.http.put(
            f"/v1/apps/{app.id}/webhook", json={"url": receiver.webhook_url()}, headers=app.auth
        )
        assert hooked.status_code == 200, hooked.text
        assert (await person.send(user["address"], "where is my parcel?")).status_code == 201
        await receiver.next()  # delivered: the delivery log keeps a row for it
    assert running_node.node is not None
    await running_node.call(running_node.node.services.webhooks.sender.drain())
    before = await dump()
    (message,) = before["messages"]
    assert [d["message_id"] for d in before["webhook_deliveries"]] == [message["id"]]

    clock.advance(timedelta(days=2))
    assert await sweep(running_node) == 1
    after = await dump()
    assert after["messages"] == [] and after["device_streams"] == []
    assert after["webhook_deliveries"] == []


async def test_overrides_are_exported_and_deleted_with_the_account(
    http: httpx.AsyncClient, dump: Dump
) -> None:
    alice, bob = await connected_pair(http)
    conversation = await conversation_of(alice, bob)
    for who, limit in ((alice, 500), (bob, 600)):
        assert (
            await put_policy(who, conversation, {"max_message_bytes": limit})
        ).status_code == 200
    assert len((await dump())["conversation_policies"]) == 2
    exported = (await alice.get("/v1/account/export")).json()["conversation_policies"]
    assert [(o["conversation_id"], o["max_message_bytes"]) for o in exported] == [
        (conversation, 500)
    ]
    assert (await alice.http.delete("/v1/account", headers=alice.auth)).status_code == 204
    after = await dump()
    assert after["conversation_policies"] == []
    assert [a["address"] for a in after["accounts"]] == [bob.address]
    assert (await bob.http.delete("/v1/account", headers=bob.auth)).status_code == 204
    assert (await dump())["accounts"] == []


# --- the SDK ------------------------------------------------------------------------------


async def test_the_sdk_shows_and_tightens_policies(node_url: str, tmp_path: Path) -> None:
    async with (
        sdk_client(node_url, tmp_path / "alice") as alice,
        sdk_client(node_url, tmp_path / "bob") as bob,
    ):
        code = await alice.issue_code()
        await bob.connect((await alice.whoami()).address, code.pass_code)
        mine = await alice.policy()
        assert (mine.plan, mine.limits.max_message_bytes) == ("free", 2000)
        (contact,) = await bob.contacts()
        with pytest.raises(ApiError) as raised:
            await bob.set_conversation_policy(contact.conversation_id, message_rate="10/hour")
        assert (raised.value.code, raised.value.field) == ("policy_not_stricter", "message_rate")
        done = await bob.set_conversation_policy(
            contact.conversation_id, retention_seconds=60, message_rate="1/hour"
        )
        assert done.limits.retention_seconds == 60 and done.limits.message_rate == "1/hour"
        assert done.override.message_rate == "1/hour" and done.override.max_participants is None
        assert done.plans.message_rate == "3/hour"
        seen = await alice.conversation_policy(contact.conversation_id)
        assert seen.limits == done.limits and seen.override.message_rate is None
        await bob.send(contact.address, "the one message this hour")
        with pytest.raises(ApiError) as limited:
            await bob.send(contact.address, "one too many")
        assert limited.value.code == "message_rate_limited"
        cleared = await bob.clear_conversation_policy(contact.conversation_id)
        assert cleared.limits == cleared.plans


async def test_a_conversation_with_an_owner_follows_the_owners_plan(
    http: httpx.AsyncClient, running_node: NodeThread, dump: Dump
) -> None:
    """What groups call: ``for_conversation(id, owner)`` and ``check_send(..., owner)``."""
    alice, bob = await connected_pair(http)
    assert (await set_plan(http, alice.address, "subscription")).status_code == 200
    conversation = ConversationId(await conversation_of(alice, bob))
    accounts = {a["address"]: AccountId(str(a["id"])) for a in (await dump())["accounts"]}
    owner, member = accounts[alice.address], accounts[bob.address]
    assert running_node.node is not None
    policies = running_node.node.services.policies

    as_group = await running_node.call(policies.for_conversation(conversation, owner))
    assert (as_group.retention_seconds, as_group.max_message_bytes) == (None, 5000)
    as_direct = await running_node.call(policies.for_conversation(conversation))
    assert (as_direct.retention_seconds, as_direct.max_message_bytes) == (DAY, 2000)
    assert await running_node.call(policies.max_participants(owner)) == 50
    assert await running_node.call(policies.max_participants(member)) == 5

    await running_node.call(
        policies.check_send(member, conversation, "x" * 5000, owner_account_id=owner)
    )
    with pytest.raises(MessageTooLarge):
        await running_node.call(
            policies.check_send(member, conversation, "x" * 5001, owner_account_id=owner)
        )
    # An override still narrows it.
    assert (await put_policy(bob, conversation, {"max_message_bytes": 100})).status_code == 200
    narrowed = await running_node.call(policies.for_conversation(conversation, owner))
    assert narrowed.max_message_bytes == 100
