"""Preferences, contact requests and blocks through the SDK against a real node."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from pathlib import Path

import pytest

from openmessenger.client import ApiError, Client, InvalidArgumentError, RefusedError
from tests.support.sdk import sdk_client


@pytest.fixture
async def devices(node_url: str, tmp_path: Path) -> AsyncIterator[Callable[[str], Client]]:
    async with AsyncExitStack() as stack:

        def open_device(profile: str) -> Client:
            client = sdk_client(node_url, tmp_path / "profiles" / profile)
            stack.push_async_callback(client.aclose)
            return client

        yield open_device


async def test_preferences_resolve_narrowest_first(devices: Callable[[str], Client]) -> None:
    alice, bob = devices("alice"), devices("bob")
    code = await alice.issue_code()
    bob_contact = await bob.connect((await alice.whoami()).address, code.pass_code)
    alice_address = bob_contact.address

    assert (await bob.preferences())["send_receipts"].level == "default"
    stored = await bob.set_preference("send_receipts", False)
    assert (stored.value, stored.level) == (False, "account")
    await bob.set_preference("send_receipts", True, device=True)
    await bob.set_preference("send_receipts", False, contact=alice_address)
    await bob.set_preference("mute", True, conversation=bob_contact.conversation_id)

    assert (await bob.preferences())["send_receipts"].level == "device"
    with_alice = await bob.preferences(contact=alice_address)
    assert (with_alice["send_receipts"].value, with_alice["send_receipts"].level) == (
        False,
        "contact",
    )
    in_conversation = await bob.preferences(conversation=bob_contact.conversation_id)
    assert in_conversation["mute"].value is True
    assert in_conversation["send_receipts"].level == "contact"

    await bob.clear_preference("send_receipts", contact=alice_address)
    assert (await bob.preferences(contact=alice_address))["send_receipts"].level == "device"

    with pytest.raises(ApiError) as bad:
        await bob.set_preference("accept_requests", "anyone", contact=alice_address)
    assert bad.value.status == 422 and bad.value.field == "level"
    with pytest.raises(InvalidArgumentError):
        await bob.set_preference("mute", True, contact=alice_address, device=True)


async def test_a_request_accepted_through_the_sdk_connects_the_two(
    devices: Callable[[str], Client],
) -> None:
    owner, asker = devices("owner"), devices("asker")
    owner_address = (await owner.whoami()).address
    await asker.set_display_name("Asker")
    await asker.request_contact(owner_address, "off by default")
    assert await owner.contact_requests() == []

    await owner.set_preference("accept_requests", "anyone")
    await asker.request_contact(owner_address, "may I?")
    [waiting] = await owner.contact_requests()
    assert (waiting.sender_display_name, waiting.note) == ("Asker", "may I?")
    contact = await owner.accept_request(waiting.id)
    assert contact.address == asker.address

    await asker.send(owner_address, "thanks")
    assert [m.text for m in await owner.sync()] == ["thanks"]

    blocked = await owner.block(contact.address)
    assert [b.address for b in await owner.blocks()] == [blocked.address]
    with pytest.raises(RefusedError):
        await asker.send(owner_address, "still there?")
    await owner.unblock(contact.address)
    assert await owner.blocks() == []
    await asker.send(owner_address, "back")
    assert [m.text for m in await owner.sync()] == ["back"]


async def test_a_declined_request_is_silent_for_the_sender(
    devices: Callable[[str], Client],
) -> None:
    owner, asker = devices("owner"), devices("asker")
    owner_address = (await owner.whoami()).address
    await owner.set_preference("accept_requests", "anyone")
    await asker.request_contact(owner_address)
    [waiting] = await owner.contact_requests()
    await owner.decline_request(waiting.id)
    await asker.request_contact(owner_address, "again")  # no error: nothing said
    assert await owner.contact_requests() == []
    with pytest.raises(ApiError) as remote:
        await asker.request_contact("42*elsewhere.example")
    assert remote.value.code == "peer_unavailable"  # a node that cannot be asked
