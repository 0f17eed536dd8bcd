"""Groups over the real HTTP API: who may be invited, roles (attacked), system
participants, the one order and the fan-out, and what a removed or departed
participant no longer gets."""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from sqlalchemy import insert, select

from openmessenger.storage import tables
from tests.support.api import ApiDevice, register
from tests.support.apps import ApiApp, connect_to, create_app, registered
from tests.support.node import NodeThread, SettableClock
from tests.support.webhook_receiver import webhook_receiver


def _b64(n: int) -> str:
    return base64.b64encode(secrets.token_bytes(n)).decode().rstrip("=")


def megolm_body() -> str:
    """A well-formed om.megolm.v1 body (the node checks the shape, never the content)."""
    return json.dumps(
        {
            "alg": "om.megolm.v1",
            "sender_key": _b64(32),
            "session_id": _b64(32),
            "ciphertext": _b64(80),
            "key_shares": [],
        }
    )


async def connect(a: ApiDevice, b: ApiDevice) -> None:
    response = await b.connect(a.address, await a.issue_code())
    assert response.status_code == 201, response.text


async def people(http: httpx.AsyncClient, *names: str) -> list[ApiDevice]:
    return [await register(http, name) for name in names]


async def create(owner: ApiDevice, name: str, *members: ApiDevice | str) -> dict[str, Any]:
    listed = [m if isinstance(m, str) else m.address for m in members]
    response = await owner.post("/v1/groups", {"name": name, "members": listed})
    assert response.status_code == 201, response.text
    group: dict[str, Any] = response.json()
    return group


async def join(member: ApiDevice, group_id: str) -> dict[str, Any]:
    response = await member.post(f"/v1/groups/{group_id}/join")
    assert response.status_code == 200, response.text
    group: dict[str, Any] = response.json()
    return group


async def send(member: ApiDevice, group_id: str, body: str | None = None) -> dict[str, Any]:
    response = await member.post(f"/v1/groups/{group_id}/messages", {"body": body or megolm_body()})
    assert response.status_code == 201, response.text
    message: dict[str, Any] = response.json()
    return message


async def history(member: ApiDevice, group_id: str) -> list[dict[str, Any]]:
    response = await member.get(f"/v1/groups/{group_id}/messages", params={"limit": 500})
    assert response.status_code == 200, response.text
    found: list[dict[str, Any]] = response.json()["messages"]
    return found


def member_events(messages: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [
        (m["metadata"]["event"], m["metadata"]["address"])
        for m in messages
        if m["media_type"] == "group.member"
    ]


async def stream(device: ApiDevice) -> list[dict[str, Any]]:
    return [e["message"] for e in await device.sync()]


def said_to(messages: list[dict[str, Any]]) -> list[str]:
    """The ids of what people said (membership events left out)."""
    return [m["id"] for m in messages if m["media_type"] != "group.member"]


def addresses(group: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {m["address"]: (m["role"], m["state"]) for m in group["members"]}


async def test_a_group_of_contacts_is_created_and_invitations_are_accepted(
    http: httpx.AsyncClient,
) -> None:
    alice, bob, carol = await people(http, "Alice", "Bob", "Carol")
    await connect(alice, bob)
    await connect(alice, carol)

    group = await create(alice, "Friends", bob, carol)

    assert group["mode"] == "history" and group["name"] == "Friends"
    assert (group["role"], group["state"]) == ("owner", "joined")
    assert addresses(group) == {
        alice.address: ("owner", "joined"),
        bob.address: ("member", "invited"),
        carol.address: ("member", "invited"),
    }
    assert all(m["kind"] == "human" and m["app_id"] is None for m in group["members"])
    # The invitation reached Bob over his connection: an event in his stream.
    [invited] = await stream(bob)
    assert invited["to"] == group["id"] == invited["conversation_id"]
    assert invited["metadata"] == {
        "event": "invited",
        "address": bob.address,
        "by": alice.address,
        "role": "member",
        "kind": "human",
        "app_id": None,
    }
    listed = (await bob.get("/v1/groups")).json()["groups"]
    assert [(g["id"], g["state"]) for g in listed] == [(group["id"], "invited")]
    # Invited is not joined: no sending, no reading yet.
    refused = await bob.post(f"/v1/groups/{group['id']}/messages", {"body": megolm_body()})
    assert (refused.status_code, refused.json()["code"]) == (403, "group_forbidden")
    unread = await bob.get(f"/v1/groups/{group['id']}/messages")
    assert (unread.status_code, unread.json()["code"]) == (403, "group_forbidden")
    before_join = await send(alice, group["id"])

    joined = await join(bob, group["id"])
    assert addresses(joined)[bob.address] == ("member", "joined")
    declined = await carol.post(f"/v1/groups/{group['id']}/decline")
    assert declined.status_code == 204
    after_join = await send(alice, group["id"])

    bob_ids = [m["id"] for m in await stream(bob)]
    assert before_join["id"] not in bob_ids and after_join["id"] in bob_ids
    # Bob's history starts at his joining: what came before is not his to read.
    assert [m["id"] for m in await history(bob, group["id"])][-1] == after_join["id"]
    assert member_events(await history(bob, group["id"])) == [
        ("joined", bob.address),
        ("declined", carol.address),
    ]
    assert member_events(await history(alice, group["id"])) == [
        ("created", alice.address),
        ("invited", bob.address),
        ("invited", carol.address),
        ("joined", bob.address),
        ("declined", carol.address),
    ]
    assert carol.address not in addresses(await join(bob, group["id"]))


async def test_a_stranger_cannot_be_added_and_hears_nothing(
    http: httpx.AsyncClient, dump: Any
) -> None:
    alice, bob, stranger = await people(http, "Alice", "Bob", "Mallory")
    await connect(alice, bob)

    refused = await alice.post(
        "/v1/groups", {"name": "Spam", "members": [bob.address, stranger.address]}
    )
    assert (refused.status_code, refused.json()["code"]) == (403, "refused")
    assert (await alice.get("/v1/groups")).json()["groups"] == []
    assert await bob.sync() == []  # nothing was made, so nobody was invited

    group = await create(alice, "Friends", bob)
    invite = await alice.post(f"/v1/groups/{group['id']}/members", {"address": stranger.address})
    assert (invite.status_code, invite.json()["code"]) == (403, "refused")
    unknown = await alice.post(
        f"/v1/groups/{group['id']}/members", {"address": "1234567*nowhere.example"}
    )
    assert unknown.json() == invite.json()  # the same refusal, whoever it is
    assert await stranger.sync() == []
    assert (await stranger.get("/v1/groups")).json()["groups"] == []
    peek = await stranger.get(f"/v1/groups/{group['id']}")
    assert (peek.status_code, peek.json()["code"]) == (404, "group_not_found")
    rows = (await dump())["conversation_members"]
    assert stranger.address not in {r["address"] for r in rows}
    # Nor can the stranger read the group's members' keys.
    keys = await stranger.get(f"/v1/keys/{quote(alice.address, safe='')}")
    assert keys.status_code == 404


async def test_a_contact_on_a_node_that_cannot_be_asked_is_not_invited(
    http: httpx.AsyncClient, running_node: NodeThread
) -> None:
    """Whether a node takes part in groups is never guessed: one that cannot be
    asked gives 502 and nothing is made (an Openmsg v1 peer's 409 is tested in
    tests/integration/federation/test_groups_across_nodes.py)."""
    alice, bob = await people(http, "Alice", "Bob")
    await connect(alice, bob)
    remote = "7654321*elsewhere.example"

    async def remote_contact() -> None:
        assert running_node.node is not None
        async with running_node.node.database.connect() as conn:
            account = (
                await conn.execute(
                    select(tables.accounts.c.id).where(tables.accounts.c.address == alice.address)
                )
            ).scalar_one()
            conversation = secrets.token_hex(16)
            now = datetime.now(UTC)
            await conn.execute(
                insert(tables.conversations).values(
                    id=conversation, kind="direct", created_at=now, last_seq=0
                )
            )
            await conn.execute(
                insert(tables.connections).values(
                    owner_account_id=account,
                    peer_address=remote,
                    conversation_id=conversation,
                    connected_at=now,
                )
            )
            await conn.commit()

    await running_node.call(remote_contact())
    group = await create(alice, "Friends", bob)
    invite = await alice.post(f"/v1/groups/{group['id']}/members", {"address": remote})
    assert (invite.status_code, invite.json()["code"]) == (502, "peer_unavailable")
    made = await alice.post("/v1/groups", {"name": "Mixed", "members": [remote]})
    assert (made.status_code, made.json()["code"]) == (502, "peer_unavailable")
    assert [g["name"] for g in (await alice.get("/v1/groups")).json()["groups"]] == ["Friends"]


async def test_roles_are_enforced_against_attempts(http: httpx.AsyncClient) -> None:
    owner, admin, member, other, newcomer = await people(
        http, "Owner", "Admin", "Member", "Other", "New"
    )
    for person in (admin, member, other):
        await connect(owner, person)
    await connect(member, newcomer)
    await connect(admin, newcomer)
    group = await create(owner, "Club", admin, member, other)
    gid = group["id"]
    for person in (admin, member, other):
        await join(person, gid)
    members = f"/v1/groups/{gid}/members"

    # A member invites, removes, promotes: all forbidden, nothing changes.
    attempts = [
        await member.post(members, {"address": newcomer.address}),
        await member.http.delete(f"{members}/{quote(other.address)}", headers=member.auth),
        await member.http.put(
            f"{members}/{quote(member.address)}/role", json={"role": "admin"}, headers=member.auth
        ),
    ]
    assert [(r.status_code, r.json()["code"]) for r in attempts] == [(403, "group_forbidden")] * 3

    # Only the owner makes admins.
    promoted = await owner.http.put(
        f"{members}/{quote(admin.address)}/role", json={"role": "admin"}, headers=owner.auth
    )
    assert addresses(promoted.json())[admin.address] == ("admin", "joined")
    by_admin = await admin.http.put(
        f"{members}/{quote(other.address)}/role", json={"role": "admin"}, headers=admin.auth
    )
    assert (by_admin.status_code, by_admin.json()["code"]) == (403, "group_forbidden")

    # An admin cannot remove the owner, nor another admin.
    remove_owner = await admin.http.delete(f"{members}/{quote(owner.address)}", headers=admin.auth)
    assert (remove_owner.status_code, remove_owner.json()["code"]) == (403, "group_forbidden")
    await owner.http.put(
        f"{members}/{quote(other.address)}/role", json={"role": "admin"}, headers=owner.auth
    )
    remove_admin = await admin.http.delete(f"{members}/{quote(other.address)}", headers=admin.auth)
    assert (remove_admin.status_code, remove_admin.json()["code"]) == (403, "group_forbidden")
    # Nobody removes the owner, not even the owner.
    self_removal = await owner.http.delete(f"{members}/{quote(owner.address)}", headers=owner.auth)
    assert self_removal.status_code == 422

    # What an admin may do: invite its own contacts and remove members.
    invited = await admin.post(members, {"address": newcomer.address})
    assert addresses(invited.json())[newcomer.address] == ("member", "invited")
    removed = await admin.http.delete(f"{members}/{quote(member.address)}", headers=admin.auth)
    assert member.address not in addresses(removed.json())
    group_now = (await owner.get(f"/v1/groups/{gid}")).json()
    assert addresses(group_now) == {
        owner.address: ("owner", "joined"),
        admin.address: ("admin", "joined"),
        other.address: ("admin", "joined"),
        newcomer.address: ("member", "invited"),
    }
    assert member_events(await history(owner, gid))[-4:] == [
        ("role_changed", admin.address),
        ("role_changed", other.address),
        ("invited", newcomer.address),
        ("removed", member.address),
    ]


async def test_every_device_gets_each_message_in_the_one_order(http: httpx.AsyncClient) -> None:
    alice, bob, carol = await people(http, "Alice", "Bob", "Carol")
    await connect(alice, bob)
    await connect(alice, carol)
    gid = (await create(alice, "Busy", bob, carol))["id"]
    await join(bob, gid)
    await join(carol, gid)
    marks = {m["id"] for m in await stream(alice)}

    sent = await asyncio.gather(*(send(p, gid) for p in (alice, bob, carol) * 5))

    in_order = [m["id"] for m in sorted(sent, key=lambda m: m["seq"])]
    assert len(set(m["seq"] for m in sent)) == 15
    for person in (alice, bob, carol):
        own = {m["id"] for m in sent if m["from"] == person.address}
        seen = [m["id"] for m in await stream(person) if m["id"] not in marks]
        group_seen = [i for i in seen if i in set(in_order)]
        # Each participant's device gets every message but its own, in the group's order.
        assert group_seen == [i for i in in_order if i not in own]
    assert [m["id"] for m in await history(carol, gid)][-15:] == in_order


async def test_a_removed_participant_gets_nothing_new(http: httpx.AsyncClient) -> None:
    alice, bob, carol = await people(http, "Alice", "Bob", "Carol")
    await connect(alice, bob)
    await connect(alice, carol)
    gid = (await create(alice, "Team", bob, carol))["id"]
    await join(bob, gid)
    await join(carol, gid)
    before = await send(alice, gid)

    response = await alice.http.delete(
        f"/v1/groups/{gid}/members/{quote(carol.address)}", headers=alice.auth
    )
    assert response.status_code == 200
    after = await send(bob, gid)

    carol_stream = [m["id"] for m in await stream(carol)]
    assert before["id"] in carol_stream and after["id"] not in carol_stream
    # She learnt of her removal; her history ends there.
    readable = await history(carol, gid)
    assert readable[-1]["metadata"]["event"] == "removed"
    assert after["id"] not in [m["id"] for m in readable]
    refused = await carol.post(f"/v1/groups/{gid}/messages", {"body": megolm_body()})
    assert refused.status_code == 404
    assert (await carol.get("/v1/groups")).json()["groups"] == []
    assert after["id"] in [m["id"] for m in await stream(alice)]


async def test_a_blocked_address_reaches_nobody_who_blocked_it_through_a_group(
    http: httpx.AsyncClient,
) -> None:
    alice, bob, carol = await people(http, "Alice", "Bob", "Carol")
    for a, b in ((alice, bob), (alice, carol), (bob, carol)):
        await connect(a, b)
    blocked = await bob.post(f"/v1/contacts/{quote(carol.address)}/block")
    assert blocked.status_code == 201, blocked.text
    # Carol cannot put Bob into a group: the same refusal as a stranger gets.
    gid_of_carol = (await create(carol, "Carol's"))["id"]
    invited = await carol.post(f"/v1/groups/{gid_of_carol}/members", {"address": bob.address})
    assert (invited.status_code, invited.json()["code"]) == (403, "refused")
    assert [g["id"] for g in (await bob.get("/v1/groups")).json()["groups"]] == []
    # In Alice's group Bob sees everyone but Carol.
    gid = (await create(alice, "All", bob, carol))["id"]
    await join(bob, gid)
    await join(carol, gid)
    from_carol, from_alice = await send(carol, gid), await send(alice, gid)
    assert said_to(await stream(bob)) == [from_alice["id"]]
    assert said_to(await history(bob, gid)) == [from_alice["id"]]
    # Alice still reads both; unblocking brings Carol's next messages back to Bob.
    assert {from_carol["id"], from_alice["id"]} <= {m["id"] for m in await history(alice, gid)}
    unblocked = await bob.http.delete(
        f"/v1/contacts/{quote(carol.address)}/block", headers=bob.auth
    )
    assert unblocked.status_code == 204
    again = await send(carol, gid)
    assert said_to(await stream(bob)) == [from_alice["id"], again["id"]]


async def test_when_the_owner_leaves_the_longest_standing_admin_owns_the_group(
    http: httpx.AsyncClient,
) -> None:
    alice, bob, carol = await people(http, "Alice", "Bob", "Carol")
    await connect(alice, bob)
    await connect(alice, carol)
    gid = (await create(alice, "Team", bob, carol))["id"]
    await join(bob, gid)
    await join(carol, gid)
    await alice.http.put(
        f"/v1/groups/{gid}/members/{quote(carol.address)}/role",
        json={"role": "admin"},
        headers=alice.auth,
    )

    left = await alice.post(f"/v1/groups/{gid}/leave")
    assert left.status_code == 204

    group = (await bob.get(f"/v1/groups/{gid}")).json()
    assert addresses(group) == {
        bob.address: ("member", "joined"),
        carol.address: ("owner", "joined"),
    }
    assert member_events(await history(bob, gid))[-2:] == [
        ("left", alice.address),
        ("role_changed", carol.address),
    ]
    after = await send(bob, gid)
    alice_stream = await stream(alice)
    assert after["id"] not in [m["id"] for m in alice_stream]
    # Her leaving is the last she hears of the group, not even who owns it now.
    assert member_events(alice_stream)[-1] == ("left", alice.address)
    gone = await alice.get(f"/v1/groups/{gid}")
    assert gone.status_code == 404


async def test_an_apps_account_is_a_system_participant(
    http: httpx.AsyncClient, clock: SettableClock
) -> None:
    shop: ApiApp = await create_app(await registered(http, clock), "shop")
    alice = await register(http, "Alice")
    bot = await shop.create_account("Shop bot")
    await connect_to(shop, bot["account_id"], alice)

    group = await create(alice, "Orders", bot["address"])
    [system] = [m for m in group["members"] if m["address"] == bot["address"]]
    assert (system["kind"], system["app_id"]) == ("system", "shop")
    joined = await shop.act(bot["account_id"], "POST", f"/v1/groups/{group['id']}/join")
    assert joined.status_code == 200, joined.text
    listed = (await alice.get("/v1/groups")).json()["groups"][0]["members"]
    assert [(m["kind"], m["app_id"]) for m in listed] == [("human", None), ("system", "shop")]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": ""}, "name"),
        ({"name": "x" * 65}, "name"),
        ({"name": "ok", "members": ["not an address"]}, "members[0]"),
        ({"name": "ok", "colour": "red"}, "colour"),
    ],
)
async def test_bad_input_is_named_and_changes_nothing(
    http: httpx.AsyncClient, body: dict[str, Any], field: str
) -> None:
    alice = await register(http, "Alice")
    response = await alice.post("/v1/groups", body)
    assert response.status_code == 422, response.text
    assert response.json()["code"] == "invalid_input"
    assert field in json.dumps(response.json())
    assert (await alice.get("/v1/groups")).json()["groups"] == []


async def test_group_messages_are_end_to_end_only(http: httpx.AsyncClient) -> None:
    alice = await register(http, "Alice")
    gid = (await create(alice, "Solo"))["id"]
    plain = await alice.post(
        f"/v1/groups/{gid}/messages", {"body": "hello", "encryption": "transport-encrypted"}
    )
    assert plain.status_code == 422
    not_megolm = await alice.post(f"/v1/groups/{gid}/messages", {"body": "hello"})
    assert (not_megolm.status_code, not_megolm.json()["field"]) == (422, "body")
    first = await alice.post(
        f"/v1/groups/{gid}/messages", {"body": megolm_body(), "client_txn_id": "t-1"}
    )
    again = await alice.post(
        f"/v1/groups/{gid}/messages", {"body": megolm_body(), "client_txn_id": "t-1"}
    )
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json()["id"] == again.json()["id"]
    unknown = await alice.get("/v1/groups/nosuchgroup")
    assert (unknown.status_code, unknown.json()["code"]) == (404, "group_not_found")


async def test_a_system_participant_gets_the_groups_messages_by_webhook(
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
        gid = (await create(alice, "Orders", bot["address"]))["id"]
        # The invitation reaches the app's backend too, as an event of its user.
        invited = json.loads((await receiver.next()).body)
        assert invited["message"]["metadata"]["event"] == "invited"
        joined = await shop.act(bot["account_id"], "POST", f"/v1/groups/{gid}/join")
        assert joined.status_code == 200, joined.text
        assert json.loads((await receiver.next()).body)["message"]["metadata"]["event"] == (
            "joined"
        )

        sent = await send(alice, gid)

        call = json.loads((await receiver.next()).body)
        assert (call["account_id"], call["app_id"]) == (bot["account_id"], "shop")
        assert call["message"]["id"] == sent["id"]
        assert call["message"]["to"] == gid == call["message"]["conversation_id"]


async def test_a_participants_export_and_deletion_take_its_groups(
    http: httpx.AsyncClient, dump: Any
) -> None:
    alice, bob = await people(http, "Alice", "Bob")
    await connect(alice, bob)
    gid = (await create(alice, "Pair", bob))["id"]
    await join(bob, gid)
    said = await send(bob, gid)

    exported = (await bob.get("/v1/account/export")).json()["groups"]
    assert [(g["conversation_id"], g["role"], g["state"]) for g in exported] == [
        (gid, "member", "joined")
    ]
    assert (await bob.http.delete("/v1/account", headers=bob.auth)).status_code == 204

    rows = await dump()
    assert bob.address not in {r["address"] for r in rows["conversation_members"]}
    assert said["id"] not in {r["id"] for r in rows["messages"]}
    group = (await alice.get(f"/v1/groups/{gid}")).json()
    assert [m["address"] for m in group["members"]] == [alice.address]


async def test_an_owner_who_deletes_the_account_hands_the_group_over(
    http: httpx.AsyncClient,
) -> None:
    alice, bob, carol = await people(http, "Alice", "Bob", "Carol")
    await connect(alice, bob)
    await connect(alice, carol)
    gid = (await create(alice, "Club", bob, carol))["id"]
    await join(bob, gid)
    await join(carol, gid)

    assert (await alice.http.delete("/v1/account", headers=alice.auth)).status_code == 204

    group = (await carol.get(f"/v1/groups/{gid}")).json()
    assert addresses(group) == {
        bob.address: ("owner", "joined"),
        carol.address: ("member", "joined"),
    }
    # The others see her go and who runs the group now, live and in its history.
    for member in (bob, carol):
        assert member_events(await stream(member))[-2:] == [
            ("left", alice.address),
            ("role_changed", bob.address),
        ]
        assert member_events(await history(member, gid))[-2:] == [
            ("left", alice.address),
            ("role_changed", bob.address),
        ]
    # The new owner runs the group.
    removed = await bob.http.delete(
        f"/v1/groups/{gid}/members/{quote(carol.address)}", headers=bob.auth
    )
    assert removed.status_code == 200, removed.text
