"""End-to-end encryption across two of our nodes over TLS, and what an Openmsg v1
link can and cannot be: three real devices (SDK clients) on two accounts."""

from __future__ import annotations

import asyncio
import json
import secrets
from pathlib import Path
from typing import Any

import pytest

from openmessenger.client import Client, Message
from openmessenger.client.e2e import DeviceListChangedWarning
from openmessenger.protocol import e2e
from tests.integration.test_e2e_sdk import linked
from tests.support.federation import FederatedNode, OpenDevice
from tests.support.node import dump_database
from tests.support.v1peer import V1Peer

DEADLINE_SECONDS = 20


def unique(text: str) -> str:
    return f"{text} {secrets.token_hex(8)}"


async def arrive(device: Client, count: int) -> list[Message]:
    """Sync until ``count`` messages arrived (delivery between nodes is asynchronous)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + DEADLINE_SECONDS
    found: list[Message] = []
    while len(found) < count:
        found += await device.sync()
        if loop.time() > deadline:
            raise AssertionError(f"{device.address} got {len(found)} of {count} messages")
        if len(found) < count:
            await asyncio.sleep(0.05)
    return found


async def stored(node: FederatedNode) -> str:
    return json.dumps(await node.call(dump_database(node.node)), default=str)


async def test_three_devices_on_two_nodes_talk_end_to_end_in_every_direction(
    alpha: FederatedNode, beta: FederatedNode, devices: OpenDevice
) -> None:
    phone, bob = devices(alpha, "alice-phone"), devices(beta, "bob")
    code = await phone.issue_code()
    contact = await bob.connect((await phone.whoami()).address, code.pass_code)
    assert contact.encryption == "end-to-end"
    laptop = await linked(phone, devices(alpha, "alice-laptop"))
    alice = phone.address or ""

    from_bob, from_phone, from_laptop = unique("bob"), unique("phone"), unique("laptop")
    await bob.send(alice, from_bob)
    seen_by_phone = await arrive(phone, 1)
    seen_by_laptop = await arrive(laptop, 1)
    await phone.send(bob.address or "", from_phone)
    await laptop.send(bob.address or "", from_laptop)
    seen_by_bob = await arrive(bob, 2)

    assert [(m.text, m.encryption) for m in seen_by_phone] == [(from_bob, "end-to-end")]
    assert [(m.text, m.encryption) for m in seen_by_laptop] == [(from_bob, "end-to-end")]
    assert sorted(m.text for m in seen_by_bob) == sorted([from_phone, from_laptop])
    assert {m.encryption for m in seen_by_bob} == {"end-to-end"}
    # What one device of an account sends, its other devices see too.
    assert [m.text for m in await arrive(phone, 1)] == [from_laptop]
    assert [m.text for m in await arrive(laptop, 1)] == [from_phone]
    for node in (alpha, beta):
        everything = await stored(node)
        for text in (from_bob, from_phone, from_laptop):
            assert text not in everything
    (bobs_contact,) = await bob.contacts()
    assert bobs_contact.encryption == "end-to-end"
    assert await bob.safety_number(alice) == await phone.safety_number(bob.address or "")


async def test_history_restarts_warnings_and_recovery_across_nodes(
    alpha: FederatedNode, beta: FederatedNode, devices: OpenDevice, tmp_path: Path
) -> None:
    phone, bob = devices(alpha, "alice-phone"), devices(beta, "bob")
    code = await phone.issue_code()
    await bob.connect((await phone.whoami()).address, code.pass_code)
    alice = phone.address or ""
    earlier = unique("before the laptop")
    await bob.send(alice, earlier)
    await arrive(phone, 1)
    recovery_key = await phone.setup_backup()

    # A new device reads the history its account had before it existed.
    laptop = await linked(phone, devices(alpha, "alice-laptop"))
    assert [m.text for m in await laptop.history(bob.address or "")] == [earlier]

    # The other side is told that alice's devices changed.
    with pytest.warns(DeviceListChangedWarning):
        await bob.send(alice, "to both of alice's devices")
    assert [m.text for m in await arrive(laptop, 1)] == ["to both of alice's devices"]

    # Devices restarted from their saved state go on where they were.
    await phone.aclose()
    await bob.aclose()
    phone_again, bob_again = devices(alpha, "alice-phone"), devices(beta, "bob")
    assert [m.text for m in await arrive(phone_again, 1)] == ["to both of alice's devices"]
    await phone_again.send(bob_again.address or "", "after a restart")
    assert [m.text for m in await arrive(bob_again, 1)] == ["after a restart"]

    # Every device lost: the recovery key brings the account and its history back.
    await phone_again.aclose()
    await laptop.aclose()
    new_phone = devices(alpha, "alice-new-phone")
    await new_phone.restore(alice, recovery_key)
    history = [m.text for m in await new_phone.history(bob.address or "")]
    assert earlier in history
    await bob_again.send(alice, "welcome back")
    assert "welcome back" in [m.text for m in await arrive(new_phone, 1)]


async def test_a_revoked_device_on_one_node_gets_no_key_from_the_other(
    alpha: FederatedNode, beta: FederatedNode, devices: OpenDevice
) -> None:
    phone, bob = devices(alpha, "alice-phone"), devices(beta, "bob")
    code = await phone.issue_code()
    await bob.connect((await phone.whoami()).address, code.pass_code)
    laptop = await linked(phone, devices(alpha, "alice-laptop"))
    assert laptop.device_id is not None
    await phone.revoke_device(laptop.device_id)

    await bob.send(phone.address or "", "after the revocation")

    [message] = await arrive(phone, 1)
    assert message.text == "after the revocation"
    rows = json.loads(await stored(alpha))["messages"]
    body = e2e.EncryptedBody.model_validate_json(rows[-1]["body"])
    assert laptop.device_id not in {share.device_id for share in body.key_shares}


async def test_a_v1_contact_is_transport_encrypted_and_nothing_readable_is_kept(
    alpha: FederatedNode, v1peer: V1Peer, devices: OpenDevice
) -> None:
    alice = devices(alpha, "alice")
    code = v1peer.issue_code()
    contact = await alice.connect(v1peer.address, code)
    assert contact.encryption == "transport-encrypted"
    outgoing, incoming = unique("to the v1 peer"), unique("from the v1 peer")

    sent = await alice.send(v1peer.address, outgoing)
    assert sent.encryption == "transport-encrypted"
    assert (await alice.wait_until_settled(sent)).status == "delivered"
    link = v1peer.link(v1peer.address, alice.address or "")
    answer = await v1peer.post("alpha.test", "message-receive", json=v1peer.message(link, incoming))
    assert answer.json().get("success") is True, answer.text

    [message] = await alice.sync()
    assert (message.text, message.encryption) == (incoming, "transport-encrypted")
    # The v1 peer read the text (it must); alpha keeps neither text, not even in
    # its outbox once the message is delivered.
    everything = await stored(alpha)
    assert outgoing not in everything and incoming not in everything
    assert json.loads(everything)["openmsg_outbox"] == []
    [history_out, history_in] = await alice.history(v1peer.address)
    assert (history_out.text, history_in.text) == (outgoing, incoming)


async def test_outgoing_v1_text_waits_sealed_in_the_outbox_until_delivered(
    alpha: FederatedNode, v1peer: V1Peer, devices: OpenDevice
) -> None:
    alice = devices(alpha, "alice")
    await alice.connect(v1peer.address, v1peer.issue_code())
    await v1peer.stop()
    text = unique("held while the peer is down")

    sent = await alice.send(v1peer.address, text)

    rows: list[dict[str, Any]] = json.loads(await stored(alpha))["openmsg_outbox"]
    assert [r["message_id"] for r in rows] == [sent.id]
    assert rows[0]["sealed_plaintext"] and text not in json.dumps(rows, default=str)
    assert sent.status == "accepted"
