"""Disappearing messages through the SDK against a real node: end to end with Olm
to one device, checked against their envelope, kept in memory for their lifespan."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from pathlib import Path

import pytest

from openmessenger.client import (
    Client,
    EphemeralExpired,
    EphemeralMessage,
    InvalidArgumentError,
    RefusedError,
)
from openmessenger.core.ids import Address
from openmessenger.protocol.ephemeral import EphemeralBody, EphemeralPlaintext, EphemeralSendIn
from openmessenger.settings import Settings
from tests.support.ephemeral import files_holding, marker, needles
from tests.support.sdk import sdk_client

HOLD_SECONDS = 5.0
TIMEOUT = 10.0

OpenDevice = Callable[..., Client]


@pytest.fixture
def node_settings(database_url: str, tmp_path: Path) -> Settings:
    return Settings(
        host="127.0.0.1",
        port=0,
        domain="localhost",
        data_dir=tmp_path / "node-data",
        database_url=database_url,
        node_secret=secrets.token_hex(32),
        log_level="warning",
        ephemeral_hold_seconds=HOLD_SECONDS,
    )


@pytest.fixture
async def devices(node_url: str, tmp_path: Path) -> AsyncIterator[OpenDevice]:
    async with AsyncExitStack() as stack:

        def open_device(profile: str) -> Client:
            client = sdk_client(node_url, tmp_path / "profiles" / profile, key_cache_seconds=0.0)
            stack.push_async_callback(client.aclose)
            return client

        yield open_device


async def connected(devices: OpenDevice) -> tuple[Client, Client]:
    alice, bob = devices("alice"), devices("bob")
    code = await alice.issue_code()
    await bob.connect((await alice.whoami()).address, code.pass_code)
    return alice, bob


async def linked(approver: Client, new: Client) -> Client:
    await approver.approve_link((await new.request_link()).code)
    await new.wait_for_link()
    return new


async def until(condition: Callable[[], bool], seconds: float) -> None:
    """Wait for ``condition`` to hold, at most ``seconds``."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "the condition did not hold in time"
        await asyncio.sleep(0.02)


async def test_the_recipient_reads_it_and_forgets_it_when_its_lifespan_ends(
    devices: OpenDevice, tmp_path: Path
) -> None:
    alice, bob = await connected(devices)
    text = marker()

    sent = await bob.send_ephemeral(alice.address or "", text, lifespan=1)
    [message] = await alice.receive_ephemeral()

    assert isinstance(message, EphemeralMessage)
    assert (message.text, message.error) == (text, None)
    assert (message.id, message.sender, message.sender_device) == (
        sent.id,
        bob.address,
        bob.device_id,
    )
    assert (message.recipient, message.recipient_device) == (alice.address, alice.device_id)
    assert message.lifespan_seconds == 1 and 0 < message.remaining_seconds <= 1
    assert alice.ephemeral_messages() == [message]
    await until(lambda: message.text == "", seconds=1 + TIMEOUT)
    assert message.expired and alice.ephemeral_messages() == []
    # Neither device wrote it down: not in state.json, not in crypto.db.
    assert files_holding(tmp_path / "profiles", needles(text)) == []


async def test_the_disappearing_timer_preference_sets_the_lifespan(
    devices: OpenDevice,
) -> None:
    alice, bob = await connected(devices)
    assert alice.address is not None and bob.address is not None
    default = await bob.send_ephemeral(alice.address, marker())
    assert default.lifespan_seconds == 60
    # The account's timer, then the narrower contact level wins over it.
    await bob.set_preference("disappearing_timer", 300)
    assert (await bob.send_ephemeral(alice.address, marker())).lifespan_seconds == 300
    await bob.set_preference("disappearing_timer", 5, contact=alice.address)
    assert (await bob.send_ephemeral(alice.address, marker())).lifespan_seconds == 5
    # An explicit lifespan still says the last word.
    assert (await bob.send_ephemeral(alice.address, marker(), lifespan=7)).lifespan_seconds == 7
    received = await alice.receive_ephemeral()
    assert [m.lifespan_seconds for m in received if isinstance(m, EphemeralMessage)] == [
        60,
        300,
        5,
        7,
    ]


async def test_it_arrives_live_and_the_sender_hears_when_one_expires(
    devices: OpenDevice,
) -> None:
    alice, bob = await connected(devices)
    carol = devices("carol")
    code = await carol.issue_code()
    await bob.connect(carol.address or "", code.pass_code)
    alice_events, bob_events = alice.listen_ephemeral(), bob.listen_ephemeral()
    try:
        text = marker()
        await bob.send_ephemeral(alice.address or "", text)
        live = await asyncio.wait_for(anext(alice_events), TIMEOUT)
        unread = await bob.send_ephemeral(carol.address or "", marker())  # carol is away
        expired = await asyncio.wait_for(anext(bob_events), HOLD_SECONDS + TIMEOUT)
    finally:
        await alice_events.aclose()
        await bob_events.aclose()

    assert isinstance(live, EphemeralMessage) and live.text == text
    assert isinstance(expired, EphemeralExpired)
    assert (expired.id, expired.to, expired.device) == (unread.id, carol.address, unread.device)
    assert await carol.receive_ephemeral() == []


async def test_a_tampered_envelope_is_refused_by_the_recipient(devices: OpenDevice) -> None:
    alice, bob = await connected(devices)
    engine = await bob.end_to_end()
    to = Address(alice.address or "")
    [alice_device] = (await engine.devices_of(to)).trusted

    async def send_bound(envelope_lifespan: int, **bound: object) -> None:
        plaintext = EphemeralPlaintext.model_validate(
            {
                "text": "stretched",
                "from": bob.address,
                "sender_device": bob.device_id,
                "to": alice.address,
                "recipient_device": alice.device_id,
                "lifespan_seconds": 5,
                **bound,
            }
        )
        olm = await engine.olm_encrypt_to(
            to, alice_device, plaintext.model_dump_json(by_alias=True).encode()
        )
        body = EphemeralBody(sender_key=engine.curve25519_key, olm=olm).model_dump_json()
        request = EphemeralSendIn(
            to=alice.address or "",
            device=alice.device_id or "",
            body=body,
            lifespan_seconds=envelope_lifespan,
        )
        await bob._call("POST", "/ephemeral", body=request)

    await send_bound(3600)  # the node (or anyone between) stretches the lifespan
    await send_bound(5, recipient_device="another-device")
    await send_bound(5, sender_device="another-device")
    genuine = marker()
    await bob.send_ephemeral(alice.address or "", genuine)

    received = await alice.receive_ephemeral()

    assert [(m.text, m.error) for m in received if isinstance(m, EphemeralMessage)] == [
        ("", "the ciphertext belongs to another envelope"),
        ("", "the ciphertext belongs to another envelope"),
        ("", "the ciphertext belongs to another envelope"),
        (genuine, None),
    ]
    assert [m.text for m in alice.ephemeral_messages()] == [genuine]


async def test_only_the_named_device_of_an_account_with_several_gets_it(
    devices: OpenDevice,
) -> None:
    alice, bob = await connected(devices)
    alice_laptop = await linked(alice, devices("alice-laptop"))
    bob_laptop = await linked(bob, devices("bob-laptop"))
    text = marker()

    with pytest.raises(InvalidArgumentError) as unnamed:
        await bob.send_ephemeral(alice.address or "", text)
    laptop_events = alice_laptop.listen_ephemeral()
    try:
        sent = await bob.send_ephemeral(alice.address or "", text, device=alice.device_id)
        # After it: a marker for the laptop. Had the laptop been sent the first,
        # it would have come first.
        after = await bob.send_ephemeral(
            alice.address or "", "for the laptop", device=alice_laptop.device_id
        )
        first_on_laptop = await asyncio.wait_for(anext(laptop_events), TIMEOUT)
    finally:
        await laptop_events.aclose()
    others = [await d.receive_ephemeral() for d in (bob, bob_laptop)]
    received = await alice.receive_ephemeral()

    assert unnamed.value.field == "device"
    assert str(alice.device_id) in str(unnamed.value)
    assert isinstance(first_on_laptop, EphemeralMessage)
    assert (first_on_laptop.id, first_on_laptop.text) == (after.id, "for the laptop")
    assert others == [[], []]
    assert [(m.id, m.text) for m in received if isinstance(m, EphemeralMessage)] == [
        (sent.id, text)
    ]


async def test_a_stranger_and_another_node_are_refused(devices: OpenDevice) -> None:
    alice, _ = await connected(devices)
    stranger = devices("stranger")

    with pytest.raises(RefusedError):
        await stranger.send_ephemeral(alice.address or "", "buy now")
    # An address of another node that is no contact: the same refusal (across our
    # nodes: tests/integration/federation/test_ephemeral_across_nodes.py).
    with pytest.raises(RefusedError):
        await alice.send_ephemeral("1234567*elsewhere.example", "hello")

    assert await alice.receive_ephemeral() == []


async def test_a_second_copy_of_one_message_is_dropped(devices: OpenDevice) -> None:
    alice, bob = await connected(devices)
    first = await bob.send_ephemeral(alice.address or "", "once", client_txn_id="txn-1")
    [received] = await alice.receive_ephemeral()

    # The node has forgotten it: a retry is relayed again, under the same id.
    again = await bob.send_ephemeral(alice.address or "", "once", client_txn_id="txn-1")

    assert again.id == first.id == received.id
    assert await alice.receive_ephemeral() == []
