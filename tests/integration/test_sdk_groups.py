"""Groups through the SDK, end to end: every trusted device of every participant
reads each message, in one order; a device that was offline catches up by sync;
a participant who is removed or leaves cannot read what follows."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from pathlib import Path

import httpx
import pytest

from openmessenger.client import Client, Message
from openmessenger.client.apps import AppSigning
from openmessenger.client.e2e import DecryptionError
from openmessenger.client.groups import group_event, is_group_message
from openmessenger.protocol import client_api as wire
from openmessenger.protocol import e2e
from tests.support.apps import create_app, registered
from tests.support.node import SettableClock
from tests.support.sdk import REQUEST_TIMEOUT_SECONDS, sdk_client

OpenDevice = Callable[[str], Client]


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


def texts(messages: list[Message], group_id: str) -> list[str]:
    """The texts of the group's messages (membership events left out)."""
    return [
        m.text if m.error is None else f"error: {m.error}"
        for m in messages
        if m.conversation_id == group_id and group_event(m) is None
    ]


async def raw_history(client: Client, group_id: str) -> list[wire.MessageOut]:
    response = await client._call("GET", f"/groups/{group_id}/messages")
    return wire.MessageList.model_validate_json(response.content).messages


async def started(devices: OpenDevice) -> tuple[Client, Client, Client, str]:
    """Alice's group with Bob and Carol, both joined."""
    alice, bob, carol = devices("alice"), devices("bob"), devices("carol")
    await connect(alice, bob)
    await connect(alice, carol)
    group = await alice.create_group("Friends", [str(bob.address), str(carol.address)])
    await bob.join_group(group.id)
    await carol.join_group(group.id)
    return alice, bob, carol, group.id


async def test_every_device_of_every_participant_reads_each_message_in_order(
    devices: OpenDevice,
) -> None:
    alice, bob, carol = devices("alice"), devices("bob"), devices("carol")
    await connect(alice, bob)
    await connect(alice, carol)
    bob_phone = await linked(bob, devices("bob-phone"))
    group = await alice.create_group("Friends", [str(bob.address), str(carol.address)])
    await bob.join_group(group.id)
    await carol.join_group(group.id)
    for client in (alice, bob, carol):
        await client.sync()

    await alice.send_to_group(group.id, "hello all")
    await bob.send_to_group(group.id, "hi from bob")
    await carol.send_to_group(group.id, "carol here")
    await alice.send_to_group(group.id, "second from alice")
    everything = ["hello all", "hi from bob", "carol here", "second from alice"]

    assert texts(await alice.sync(), group.id) == ["hi from bob", "carol here"]
    assert texts(await bob.sync(), group.id) == ["hello all", "carol here", "second from alice"]
    assert texts(await carol.sync(), group.id) == ["hello all", "hi from bob", "second from alice"]
    # Bob's phone was offline all along: one sync brings everything, in order,
    # its own account's message included.
    caught_up = await bob_phone.sync()
    assert texts(caught_up, group.id) == everything
    assert all(is_group_message(m) for m in caught_up if m.conversation_id == group.id)
    for client in (alice, bob, carol, bob_phone):
        assert texts(await client.group_history(group.id), group.id) == everything
    events = [group_event(m) for m in await alice.group_history(group.id)]
    assert [(e["event"], e["address"]) for e in events if e] == [
        ("created", alice.address),
        ("invited", bob.address),
        ("invited", carol.address),
        ("joined", bob.address),
        ("joined", carol.address),
    ]


async def test_a_removed_participant_cannot_read_what_follows(devices: OpenDevice) -> None:
    alice, bob, carol, gid = await started(devices)
    await alice.send_to_group(gid, "before the removal")
    assert texts(await carol.sync(), gid) == ["before the removal"]

    await alice.remove_from_group(gid, str(carol.address))
    await alice.send_to_group(gid, "after the removal")

    assert texts(await bob.sync(), gid) == ["before the removal", "after the removal"]
    # The ciphertext as Bob's device holds it...
    before, after = [m for m in await raw_history(bob, gid) if m.media_type == "text"]
    assert (
        e2e.EncryptedBody.model_validate_json(before.body).session_id
        != e2e.EncryptedBody.model_validate_json(after.body).session_id
    )  # the session rotated when Carol's device dropped out
    # ...does not open on Carol's device: she was given no key to it.
    engine = await carol.end_to_end()
    with pytest.raises(DecryptionError, match="not given the key"):
        await engine.open(after)
    assert (await engine.open(before)).text == "before the removal"
    # Nor does the node hand it to her: not in her stream, not in her history.
    new = await carol.sync()
    assert texts(new, gid) == []
    assert [event["event"] for m in new if (event := group_event(m))] == ["removed"]
    history = await carol.group_history(gid)
    assert texts(history, gid) == ["before the removal"]
    assert after.id not in {m.id for m in history}
    assert await carol.groups() == []


async def test_a_participant_who_left_cannot_read_what_follows(devices: OpenDevice) -> None:
    alice, bob, carol, gid = await started(devices)
    await carol.send_to_group(gid, "while bob is here")
    await bob.sync()

    await bob.leave_group(gid)
    await carol.send_to_group(gid, "after bob left")

    assert texts(await alice.sync(), gid) == ["while bob is here", "after bob left"]
    after = [m for m in await raw_history(alice, gid) if m.media_type == "text"][-1]
    with pytest.raises(DecryptionError):
        await (await bob.end_to_end()).open(after)
    assert texts(await bob.sync(), gid) == []
    assert texts(await bob.group_history(gid), gid) == ["while bob is here"]


async def test_an_apps_bot_takes_part_as_a_system_participant(
    devices: OpenDevice, node_url: str, tmp_path: Path, clock: SettableClock
) -> None:
    async with httpx.AsyncClient(base_url=node_url, timeout=REQUEST_TIMEOUT_SECONDS) as http:
        shop = await create_app(await registered(http, clock), "shop")
    assert shop.signing_seed is not None
    bot = await Client.create_app_account(
        node_url,
        tmp_path / "bot",
        api_key=shop.key,
        app=AppSigning("shop", shop.signing_seed),
        display_name="Shop bot",
    )
    async with bot:
        alice = devices("alice")
        code = await alice.issue_code()
        await bot.connect(str(alice.address), code.pass_code)
        group = await alice.create_group("Orders", [str(bot.address)])
        [member] = [m for m in group.members if m.address == bot.address]
        assert (member.kind, member.app_id) == ("system", "shop")
        await bot.join_group(group.id)

        await alice.send_to_group(group.id, "where is my order?")
        await bot.send_to_group(group.id, "on its way")

        assert texts(await bot.sync(), group.id) == ["where is my order?"]
        assert texts(await alice.sync(), group.id) == ["on its way"]


async def test_the_stream_delivers_group_messages(devices: OpenDevice) -> None:
    """``listen`` (the WebSocket stream: backlog, then live) carries group messages."""
    alice, bob, _carol, gid = await started(devices)
    await bob.sync()
    stream = bob.listen()
    try:
        await alice.send_to_group(gid, "live to the group")
        while True:
            message = await asyncio.wait_for(anext(stream), timeout=15)
            if group_event(message) is None:
                break
    finally:
        await stream.aclose()
    assert (message.text, message.recipient, message.sender) == (
        "live to the group",
        gid,
        alice.address,
    )
