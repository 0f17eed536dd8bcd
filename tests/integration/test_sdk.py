"""The SDK against a real node on loopback: two devices that find each other with
a pass code and talk. Every assertion is something a user of the SDK would notice."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, aclosing
from pathlib import Path

import pytest

from openmessenger.client import (
    ApiError,
    Client,
    Message,
    NotAContactError,
    RefusedError,
    ServerUnreachableError,
    StateStore,
)
from tests.support.sdk import sdk_client

STREAM_TIMEOUT_SECONDS = 10


@pytest.fixture
async def devices(node_url: str, tmp_path: Path) -> AsyncIterator[Callable[[str], Client]]:
    """``devices("alice")``: a Client for that profile directory, closed after the test."""
    async with AsyncExitStack() as stack:

        def open_device(profile: str) -> Client:
            client = sdk_client(node_url, tmp_path / "profiles" / profile)
            stack.push_async_callback(client.aclose)
            return client

        yield open_device


async def connected_pair(devices: Callable[[str], Client]) -> tuple[Client, Client]:
    """Alice issues a code, Bob connects with it."""
    alice, bob = devices("alice"), devices("bob")
    code = await alice.issue_code()
    await bob.connect((await alice.whoami()).address, code.pass_code)
    return alice, bob


def texts(messages: list[Message]) -> list[str]:
    return [m.text for m in messages]


def wrong(pass_code: str) -> str:
    return f"{(int(pass_code) + 1) % 1_000_000:06d}"


async def test_first_use_registers_the_device_silently(
    devices: Callable[[str], Client], tmp_path: Path
) -> None:
    alice = devices("alice")

    me = await alice.whoami()

    number, domain = me.address.split("*")
    assert number.isdigit()
    assert domain == "localhost"
    assert me.display_name is None
    saved = StateStore(tmp_path / "profiles" / "alice").load()
    assert saved is not None
    assert saved.device_id == me.device_id
    assert saved.address == me.address


async def test_a_profile_keeps_its_address_across_runs(devices: Callable[[str], Client]) -> None:
    first_run = await devices("alice").whoami()

    second_run = await devices("alice").whoami()

    assert second_run == first_run


async def test_two_profiles_are_two_addresses(devices: Callable[[str], Client]) -> None:
    alice, bob = await devices("alice").whoami(), await devices("bob").whoami()

    assert alice.address != bob.address


async def test_display_name_is_set_and_validated(devices: Callable[[str], Client]) -> None:
    alice = devices("alice")

    updated = await alice.set_display_name("Alice Smith")

    assert updated.display_name == "Alice Smith"
    assert (await alice.whoami()).display_name == "Alice Smith"
    with pytest.raises(ApiError) as refused:
        await alice.set_display_name("Alice <script>")
    assert refused.value.field == "display_name"
    assert (await alice.whoami()).display_name == "Alice Smith"


async def test_connecting_with_a_code_makes_both_contacts(devices: Callable[[str], Client]) -> None:
    alice, bob = devices("alice"), devices("bob")
    await alice.set_display_name("Alice")
    alice_address = (await alice.whoami()).address
    code = await alice.issue_code()

    contact = await bob.connect(alice_address, code.pass_code)

    assert contact.address == alice_address
    assert contact.display_name == "Alice"
    [bob_seen_by_alice] = await alice.contacts()
    assert bob_seen_by_alice.address == (await bob.whoami()).address
    assert bob_seen_by_alice.conversation_id == contact.conversation_id
    assert [c.address for c in await bob.contacts()] == [alice_address]


async def test_a_message_is_synced_exactly_once(devices: Callable[[str], Client]) -> None:
    alice, bob = await connected_pair(devices)
    alice_address, bob_address = (await alice.whoami()).address, (await bob.whoami()).address

    sent = await bob.send(alice_address, "hello")
    [received] = await alice.sync()

    assert received.id == sent.id
    assert received.text == "hello"
    assert received.sender == bob_address
    assert received.recipient == alice_address
    assert received.position is not None
    assert await alice.sync() == []
    assert await devices("alice").sync() == []  # the cursor was saved, not just remembered


async def test_own_sends_do_not_come_back_in_own_sync(devices: Callable[[str], Client]) -> None:
    alice, bob = await connected_pair(devices)

    await bob.send((await alice.whoami()).address, "hello")

    assert await bob.sync() == []


async def test_history_is_the_whole_conversation_oldest_first(
    devices: Callable[[str], Client],
) -> None:
    alice, bob = await connected_pair(devices)
    alice_address, bob_address = (await alice.whoami()).address, (await bob.whoami()).address
    await bob.send(alice_address, "one")
    await bob.send(alice_address, "two")
    await alice.send(bob_address, "three")

    seen_by_alice = await alice.history(bob_address)
    seen_by_bob = await bob.history(alice_address)

    assert texts(seen_by_alice) == ["one", "two", "three"]
    assert seen_by_bob == seen_by_alice
    assert [m.seq for m in seen_by_alice] == sorted({m.seq for m in seen_by_alice})
    assert [m.sender for m in seen_by_alice] == [bob_address, bob_address, alice_address]


async def test_history_with_a_stranger_is_an_error(devices: Callable[[str], Client]) -> None:
    alice, bob = devices("alice"), devices("bob")

    with pytest.raises(NotAContactError):
        await alice.history((await bob.whoami()).address)


async def test_listen_gets_the_backlog_then_live_messages(
    devices: Callable[[str], Client],
) -> None:
    alice, bob = await connected_pair(devices)
    alice_address = (await alice.whoami()).address
    await bob.send(alice_address, "sent while alice was away")

    async with aclosing(alice.listen()) as stream, asyncio.timeout(STREAM_TIMEOUT_SECONDS):
        backlog = await anext(stream)
        # Alice is now connected and past her backlog: this one arrives live.
        await bob.send(alice_address, "sent while alice listens")
        live = await anext(stream)

    assert backlog.text == "sent while alice was away"
    assert live.text == "sent while alice listens"
    assert live.position is not None and backlog.position is not None
    assert live.position > backlog.position
    assert await alice.sync() == []  # what listen handed over counts as synced


async def test_listen_resumes_after_what_it_handed_over(devices: Callable[[str], Client]) -> None:
    alice, bob = await connected_pair(devices)
    alice_address = (await alice.whoami()).address
    for text in ("first", "second"):
        await bob.send(alice_address, text)

    async with aclosing(alice.listen()) as stream, asyncio.timeout(STREAM_TIMEOUT_SECONDS):
        assert (await anext(stream)).text == "first"
    async with (
        aclosing(devices("alice").listen()) as stream,
        asyncio.timeout(STREAM_TIMEOUT_SECONDS),
    ):
        assert (await anext(stream)).text == "second"


async def test_a_wrong_code_is_refused_without_a_reason(devices: Callable[[str], Client]) -> None:
    alice, bob, carol = devices("alice"), devices("bob"), devices("carol")
    alice_address = (await alice.whoami()).address
    code = await alice.issue_code()

    with pytest.raises(RefusedError) as wrong_code:
        await bob.connect(alice_address, wrong(code.pass_code))
    with pytest.raises(RefusedError) as unknown_address:
        await bob.connect("999999999*localhost", code.pass_code)

    assert wrong_code.value.code == unknown_address.value.code == "refused"
    assert str(wrong_code.value) == str(unknown_address.value)
    assert await alice.contacts() == []
    # One failed guess does not cost Alice the code: the real holder still connects.
    await carol.connect(alice_address, code.pass_code)
    assert len(await alice.contacts()) == 1


async def test_a_used_code_cannot_be_used_again(devices: Callable[[str], Client]) -> None:
    alice, bob, carol = devices("alice"), devices("bob"), devices("carol")
    alice_address = (await alice.whoami()).address
    code = await alice.issue_code()
    await bob.connect(alice_address, code.pass_code)

    with pytest.raises(RefusedError):
        await carol.connect(alice_address, code.pass_code)


async def test_a_code_for_one_address_refuses_everyone_else(
    devices: Callable[[str], Client],
) -> None:
    alice, bob, carol = devices("alice"), devices("bob"), devices("carol")
    alice_address, carol_address = (await alice.whoami()).address, (await carol.whoami()).address
    code = await alice.issue_code(for_address=carol_address)

    with pytest.raises(RefusedError):
        await bob.connect(alice_address, code.pass_code)
    contact = await carol.connect(alice_address, code.pass_code)

    assert code.for_address == carol_address
    assert contact.address == alice_address


async def test_codes_are_listed_with_their_state_and_can_be_withdrawn(
    devices: Callable[[str], Client],
) -> None:
    alice, bob = devices("alice"), devices("bob")
    alice_address, bob_address = (await alice.whoami()).address, (await bob.whoami()).address
    used = await alice.issue_code()
    withdrawn = await alice.issue_code()
    live = await alice.issue_code()
    await bob.connect(alice_address, used.pass_code)

    await alice.withdraw_code(withdrawn.id)

    states = {c.id: c for c in await alice.list_codes()}
    assert states[used.id].state == "used"
    assert states[used.id].used_by == bob_address
    assert states[withdrawn.id].state == "withdrawn"
    assert states[live.id].state == "live"
    with pytest.raises(RefusedError):
        await devices("carol").connect(alice_address, withdrawn.pass_code)


async def test_sending_to_a_stranger_is_refused_and_not_delivered(
    devices: Callable[[str], Client],
) -> None:
    alice, mallory = devices("alice"), devices("mallory")

    with pytest.raises(RefusedError):
        await mallory.send((await alice.whoami()).address, "buy now")

    assert await alice.sync() == []


async def test_a_retried_send_is_stored_once(devices: Callable[[str], Client]) -> None:
    alice, bob = await connected_pair(devices)
    alice_address = (await alice.whoami()).address

    first = await bob.send(alice_address, "only once", client_txn_id="txn-42")
    retry = await bob.send(alice_address, "only once", client_txn_id="txn-42")

    assert retry.id == first.id
    assert texts(await alice.sync()) == ["only once"]
    assert texts(await alice.history((await bob.whoami()).address)) == ["only once"]


async def test_sends_without_a_txn_id_are_separate_messages(
    devices: Callable[[str], Client],
) -> None:
    alice, bob = await connected_pair(devices)
    alice_address = (await alice.whoami()).address

    await bob.send(alice_address, "same words")
    await bob.send(alice_address, "same words")

    assert texts(await alice.sync()) == ["same words", "same words"]


async def test_an_expired_token_is_renewed_without_the_user_noticing(
    devices: Callable[[str], Client], tmp_path: Path
) -> None:
    me = await devices("alice").whoami()
    store = StateStore(tmp_path / "profiles" / "alice")
    store.save_session(me.device_id, me.address, "no-longer-valid")

    again = await devices("alice").whoami()

    assert again == me
    saved = store.load()
    assert saved is not None
    assert saved.access_token not in (None, "no-longer-valid")


async def test_a_stream_with_an_expired_token_renews_it(
    devices: Callable[[str], Client], tmp_path: Path
) -> None:
    alice, bob = await connected_pair(devices)
    me = await alice.whoami()
    await bob.send(me.address, "hello")
    StateStore(tmp_path / "profiles" / "alice").save_session(
        me.device_id, me.address, "no-longer-valid"
    )

    async with (
        aclosing(devices("alice").listen()) as stream,
        asyncio.timeout(STREAM_TIMEOUT_SECONDS),
    ):
        assert (await anext(stream)).text == "hello"


async def test_a_registration_cut_short_is_completed_on_the_next_run(
    devices: Callable[[str], Client], tmp_path: Path
) -> None:
    # The node registered the key but the device died before saving the answer:
    # the next run must come back as the same address, not a new one.
    me = await devices("alice").whoami()
    state_file = tmp_path / "profiles" / "alice" / "state.json"
    document = json.loads(state_file.read_text())
    document.update(device_id=None, address=None, access_token=None)
    state_file.write_text(json.dumps(document))

    again = await devices("alice").whoami()

    assert again.address == me.address
    assert again.device_id == me.device_id


async def test_an_unreachable_node_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    async with Client(f"http://127.0.0.1:{closed_port}", tmp_path / "profile") as client:
        with pytest.raises(ServerUnreachableError, match="cannot reach"):
            await client.whoami()
