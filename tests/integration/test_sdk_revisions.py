"""Receipts, edits and deletions through the SDK, end to end encrypted: every
device (one that was offline too) shows the latest version; an edit cannot be
re-targeted; a deletion reaches every device; receipts reach all the sender's
devices live and by sync, and none when the reader turned them off."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from pathlib import Path

import pytest

from openmessenger.client import Client, Message
from openmessenger.client.errors import ApiError
from openmessenger.client.groups import group_event
from openmessenger.client.revisions import Receipt, apply_revisions
from openmessenger.core.ids import Address
from openmessenger.protocol import client_api as wire
from openmessenger.protocol import revisions_api
from tests.support.sdk import sdk_client

OpenDevice = Callable[[str], Client]
WAIT_SECONDS = 15


@pytest.fixture
async def devices(node_url: str, tmp_path: Path) -> AsyncIterator[OpenDevice]:
    async with AsyncExitStack() as stack:

        def open_device(profile: str) -> Client:
            client = sdk_client(node_url, tmp_path / "profiles" / profile, key_cache_seconds=0.0)
            stack.push_async_callback(client.aclose)
            return client

        yield open_device


async def connect(owner: Client, other: Client) -> None:
    code = await owner.issue_code()
    await other.connect((await owner.whoami()).address, code.pass_code)


async def linked(approver: Client, new: Client) -> Client:
    await approver.approve_link((await new.request_link()).code)
    await new.wait_for_link()
    return new


def shown(messages: list[Message]) -> list[tuple[str, bool]]:
    """What a person sees: each message's text and whether it was edited."""
    return [
        (m.text if m.error is None else f"error: {m.error}", m.edited_at is not None)
        for m in apply_revisions(messages)
        if group_event(m) is None
    ]


async def test_an_edit_shows_as_the_latest_version_on_every_device(
    devices: OpenDevice,
) -> None:
    alice, bob = devices("alice"), devices("bob")
    await connect(alice, bob)
    alice_laptop = await linked(alice, devices("alice-laptop"))
    await alice_laptop.sync()
    sent = await alice.send(str(bob.address), "see you at 5")
    await bob.sync()
    # The laptop is offline from here on.

    edit = await alice.edit(sent.id, "see you at 6")

    assert (edit.media_type, edit.replaces, edit.text) == ("message.edit", sent.id, "see you at 6")
    [arrived] = await bob.sync()
    assert (arrived.media_type, arrived.replaces, arrived.text) == (
        "message.edit",
        sent.id,
        "see you at 6",
    )
    assert shown(await bob.history(str(alice.address))) == [("see you at 6", True)]
    assert shown(await alice.history(str(bob.address))) == [("see you at 6", True)]
    # Back online: the laptop syncs the original and the edit, in order.
    caught_up = await alice_laptop.sync()
    assert [m.text for m in caught_up] == ["see you at 5", "see you at 6"]
    assert shown(caught_up) == [("see you at 6", True)]
    assert shown(await alice_laptop.history(str(bob.address))) == [("see you at 6", True)]
    with pytest.raises(ApiError) as refused:
        await bob.edit(sent.id, "I say when")
    assert (refused.value.status, refused.value.code) == (403, "not_message_sender")


async def test_a_group_edit_reaches_every_member(devices: OpenDevice) -> None:
    alice, bob, carol = devices("alice"), devices("bob"), devices("carol")
    await connect(alice, bob)
    await connect(alice, carol)
    group = await alice.create_group("Friends", [str(bob.address), str(carol.address)])
    await bob.join_group(group.id)
    await carol.join_group(group.id)
    sent = await alice.send_to_group(group.id, "lunch at noon")

    await alice.edit(sent.id, "lunch at one")

    for member in (bob, carol):
        assert shown(await member.group_history(group.id)) == [("lunch at one", True)]
        assert shown(await member.sync()) == [("lunch at one", True)]


async def test_a_node_cannot_re_target_an_edit_or_pass_it_off_as_a_message(
    devices: OpenDevice,
) -> None:
    """The plaintext names the message it replaces: an edit encrypted for one
    message and stored as the edit of another (or as a new message) does not open."""
    alice, bob = devices("alice"), devices("bob")
    await connect(alice, bob)
    first = await alice.send(str(bob.address), "first")
    second = await alice.send(str(bob.address), "second")
    engine = await alice.end_to_end()
    for_first = await engine.encrypt(Address(str(bob.address)), "changed", replaces=first.id)
    edits = revisions_api.EditIn(body=for_first)
    await alice._call("POST", f"/messages/{second.id}/edits", body=edits)
    another = await engine.encrypt(Address(str(bob.address)), "changed", replaces=first.id)
    as_message = wire.SendIn(to=str(bob.address), body=another, encryption="end-to-end")
    await alice._call("POST", "/messages", body=as_message)

    arrived = await bob.sync()

    assert [m.text for m in arrived[:2]] == ["first", "second"]
    assert [m.error for m in arrived[2:]] == [
        "the ciphertext belongs to another message",
        "the ciphertext belongs to another message",
    ]
    assert shown(arrived)[:2] == [("first", False), ("second", False)]


async def test_a_deletion_reaches_every_device_and_leaves_no_text(devices: OpenDevice) -> None:
    alice, bob = devices("alice"), devices("bob")
    await connect(alice, bob)
    alice_laptop = await linked(alice, devices("alice-laptop"))
    sent = await alice.send(str(bob.address), "oops, wrong chat")
    kept = await alice.send(str(bob.address), "hello")
    await bob.sync()

    gone = await alice.delete_for_everyone(sent.id)

    assert (gone.id, gone.deleted_at is not None, gone.text) == (sent.id, True, "")
    # What the node kept of the body: the key shares at most, never the ciphertext.
    raw = (await alice._call("GET", f"/messages/{sent.id}")).json()
    assert raw["body"] == "" or set(json.loads(raw["body"])) == {
        "alg",
        "sender_key",
        "session_id",
        "key_shares",
    }
    [event] = await bob.sync()
    assert (event.media_type, event.replaces) == ("message.delete", sent.id)
    assert shown(await bob.history(str(alice.address))) == [("hello", False)]
    laptop = await alice_laptop.sync()
    assert [(m.media_type, m.replaces) for m in laptop] == [
        ("message.deleted", None),
        ("text", None),
        ("message.delete", sent.id),
    ]
    assert [m.text or m.error for m in apply_revisions(laptop)] == ["hello"]
    assert kept.id in [m.id for m in apply_revisions(laptop)]
    with pytest.raises(ApiError) as refused:
        await bob.delete_for_everyone(kept.id)
    assert (refused.value.status, refused.value.code) == (403, "not_message_sender")


async def next_receipt(stream: AsyncIterator[Receipt]) -> Receipt:
    return await asyncio.wait_for(anext(stream), timeout=WAIT_SECONDS)


async def test_receipts_reach_every_device_of_the_sender_live_and_by_sync(
    devices: OpenDevice,
) -> None:
    alice, bob = devices("alice"), devices("bob")
    await connect(alice, bob)
    alice_laptop = await linked(alice, devices("alice-laptop"))
    phone_live, laptop_live = alice.listen_receipts(), alice_laptop.listen_receipts()
    try:
        sent = await alice.send(str(bob.address), "are you there?")

        await bob.sync()  # the SDK says "delivered" for what it hands over
        for live in (phone_live, laptop_live):
            got = await next_receipt(live)
            assert (got.message_id, got.reader, got.kind) == (sent.id, bob.address, "delivered")

        await bob.mark_read(sent.id)
        for live in (phone_live, laptop_live):
            got = await next_receipt(live)
            assert (got.message_id, got.kind) == (sent.id, "read")
    finally:
        await phone_live.aclose()
        await laptop_live.aclose()

    # Live delivery saved the cursor: sync has nothing more; a device that never
    # listened gets the same receipts, in the same order.
    assert await alice.sync_receipts() == []
    alice_tablet = await linked(alice, devices("alice-tablet"))
    synced = await alice_tablet.sync_receipts()
    assert [(r.message_id, r.reader, r.kind) for r in synced] == [
        (sent.id, bob.address, "delivered"),
        (sent.id, bob.address, "read"),
    ]
    assert await alice_tablet.sync_receipts() == []
    assert [(r.reader, r.kind) for r in await alice.receipts(sent.id)] == [
        (bob.address, "delivered"),
        (bob.address, "read"),
    ]


async def test_turning_receipts_back_on_applies_at_once_on_that_device(
    devices: OpenDevice,
) -> None:
    alice, bob = devices("alice"), devices("bob")
    await connect(alice, bob)
    await bob.set_preference("send_receipts", False)
    first = await alice.send(str(bob.address), "one")
    second = await alice.send(str(bob.address), "two")
    await bob.sync()  # the SDK asks, and remembers that bob sends none
    assert await bob.mark_read(first.id) == []
    await bob.set_preference("send_receipts", True)
    # The device follows its own change now, not after its cache runs out.
    [read] = await bob.mark_read(second.id)
    assert (read.message_id, read.reader, read.kind) == (second.id, bob.address, "read")
    assert "read" not in [r.kind for r in await alice.receipts(first.id)]


async def test_no_receipts_arrive_when_the_reader_turned_them_off(devices: OpenDevice) -> None:
    alice, bob = devices("alice"), devices("bob")
    await connect(alice, bob)
    await bob.set_preference("send_receipts", False)
    assert await bob.sends_receipts() is False
    live = alice.listen_receipts()
    try:
        sent = await alice.send(str(bob.address), "did you read this?")
        await bob.sync()
        assert await bob.mark_read(sent.id) == []
        # Bob's own raw acknowledgement is dropped by the node as well.
        raw = revisions_api.ReceiptsIn(kind="read", message_ids=[sent.id])
        answer = await bob._call("POST", "/receipts", body=raw)
        assert answer.json()["receipts"] == []
        # The feed stays empty: a receipt Carol causes afterwards is the first one.
        carol = devices("carol")
        await connect(alice, carol)
        to_carol = await alice.send(str(carol.address), "and you?")
        await carol.sync()
        got = await next_receipt(live)
        assert (got.message_id, got.reader) == (to_carol.id, carol.address)
    finally:
        await live.aclose()
    assert await alice.receipts(sent.id) == []
