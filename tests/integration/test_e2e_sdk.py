"""End-to-end encryption through the SDK against a real node: what the node stores
is ciphertext, every trusted device of an account reads, nothing else does."""

from __future__ import annotations

import json
import logging
import re
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from sqlalchemy import insert, select

from openmessenger.client import ApiError, Client
from openmessenger.client.e2e import DecryptionError, DeviceListChangedWarning
from openmessenger.crypto.device_identity import DeviceIdentity
from openmessenger.crypto.recovery import RecoveryKey
from openmessenger.crypto.sealing import SealingKeyPair
from openmessenger.protocol import client_api as wire
from openmessenger.protocol import e2e
from openmessenger.storage import tables
from tests.support.node import NodeThread
from tests.support.sdk import REQUEST_TIMEOUT_SECONDS, sdk_client

Dump = Callable[[], Awaitable[dict[str, list[dict[str, object]]]]]
OpenDevice = Callable[..., Client]


@pytest.fixture
async def devices(node_url: str, tmp_path: Path) -> AsyncIterator[OpenDevice]:
    """``devices("alice")``: a Client for that profile directory, closed after the test.
    Device lists are asked for at every use, so revocations show at once."""
    async with AsyncExitStack() as stack:

        def open_device(profile: str, **options: float) -> Client:
            options.setdefault("key_cache_seconds", 0.0)
            client = sdk_client(node_url, tmp_path / "profiles" / profile, **options)
            stack.push_async_callback(client.aclose)
            return client

        yield open_device


async def connected(devices: OpenDevice) -> tuple[Client, Client]:
    alice, bob = devices("alice"), devices("bob")
    code = await alice.issue_code()
    await bob.connect((await alice.whoami()).address, code.pass_code)
    return alice, bob


async def linked(approver: Client, new: Client) -> Client:
    """``new`` joins ``approver``'s account: a link request, approved."""
    await approver.approve_link((await new.request_link()).code)
    await new.wait_for_link()
    return new


def secret_text() -> str:
    """A text that cannot turn up anywhere by chance."""
    return f"the plaintext {secrets.token_hex(12)}"


def stored_bodies(tables: dict[str, list[dict[str, object]]]) -> list[e2e.EncryptedBody]:
    return [
        e2e.EncryptedBody.model_validate_json(str(row["body"]))
        for row in tables["messages"]
        if row["encryption"] == "end-to-end"
    ]


async def test_the_node_stores_and_logs_only_ciphertext(
    devices: OpenDevice, dump: Dump, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    alice, bob = await connected(devices)
    to_bob, to_alice = secret_text(), secret_text()

    sent = await alice.send(bob.address or "", to_bob)
    await bob.send(alice.address or "", to_alice)

    assert sent.text == to_bob and sent.encryption == "end-to-end"
    received = await bob.sync()
    assert [(m.text, m.encryption, m.error) for m in received] == [(to_bob, "end-to-end", None)]
    assert [m.text for m in await alice.sync()] == [to_alice]
    assert [m.text for m in await alice.history(bob.address or "")] == [to_bob, to_alice]
    everything = json.dumps(await dump(), default=str)
    logged = "\n".join(record.getMessage() for record in caplog.records)
    for plaintext in (to_bob, to_alice):
        assert plaintext not in everything
        assert plaintext not in logged
    assert len(stored_bodies(await dump())) == 2


async def test_a_plain_text_send_is_sealed_and_marked_transport_encrypted(
    devices: OpenDevice, node_url: str, dump: Dump
) -> None:
    alice, bob = await connected(devices)
    await alice.sync()  # registered, keys published
    text = secret_text()
    token = bob._state.access_token if bob._state else None
    async with httpx.AsyncClient(base_url=node_url, timeout=REQUEST_TIMEOUT_SECONDS) as http:
        response = await http.post(
            "/v1/messages",
            json={"to": alice.address, "body": text},
            headers={"Authorization": f"Bearer {token}"},
        )
    assert response.status_code == 201, response.text
    assert response.json()["encryption"] == "transport-encrypted"
    assert text not in response.text

    [message] = await alice.sync()

    assert (message.text, message.encryption) == (text, "transport-encrypted")
    assert text not in json.dumps(await dump(), default=str)


async def test_a_linked_device_reads_history_and_what_either_side_sends(
    devices: OpenDevice,
) -> None:
    alice, bob = await connected(devices)
    before = secret_text()
    await bob.send(alice.address or "", before)
    await alice.send(bob.address or "", "an answer from the first device")
    await alice.sync()  # the phone has read what came in: it holds those keys
    laptop = devices("alice-laptop")

    request = await laptop.request_link()
    approved = await alice.approve_link(request.code)
    me = await laptop.wait_for_link()

    assert me.address == alice.address and approved.device_id == me.device_id
    history = await laptop.history(bob.address or "")
    assert [m.text for m in history] == [before, "an answer from the first device"]
    after = secret_text()
    await bob.send(alice.address or "", after)
    await alice.send(bob.address or "", "sent from the phone")
    texts = [m.text for m in await laptop.sync()]
    assert after in texts and "sent from the phone" in texts
    await laptop.send(bob.address or "", "sent from the laptop")
    assert "sent from the laptop" in [m.text for m in await bob.sync()]
    assert {d.device_id for d in await alice.devices() if d.signed} == {
        alice.device_id,
        laptop.device_id,
    }


async def test_a_link_code_for_another_device_is_not_approved(devices: OpenDevice) -> None:
    alice = devices("alice")
    await alice.whoami()
    laptop = devices("laptop")
    request = await laptop.request_link()
    digits, _, check = request.code.partition("-")
    forged = f"{digits}-{'A' * len(check) if check != 'A' * len(check) else 'B' * len(check)}"

    with pytest.raises(Exception, match="check letters"):
        await alice.approve_link(forged)
    assert [d.device_id for d in await alice.devices()] == [alice.device_id]


async def test_a_revoked_device_gets_nothing_new_and_cannot_read_what_follows(
    devices: OpenDevice, dump: Dump
) -> None:
    alice, bob = await connected(devices)
    laptop = await linked(alice, devices("alice-laptop"))
    await bob.send(alice.address or "", "before the revocation")
    assert [m.text for m in await laptop.sync()] == ["before the revocation"]
    old_sessions = {b.session_id for b in stored_bodies(await dump())}

    assert laptop.device_id is not None
    await alice.revoke_device(laptop.device_id)
    after = secret_text()
    await bob.send(alice.address or "", after)
    await alice.send(bob.address or "", "alice after the revocation")

    with pytest.raises(ApiError) as refused:
        await laptop.sync()
    assert refused.value.status == 401
    bodies = stored_bodies(await dump())
    newest = bodies[-2:]
    for body in newest:
        assert body.session_id not in old_sessions  # rotated when the device left
        assert laptop.device_id not in {share.device_id for share in body.key_shares}
    assert after in [m.text for m in await alice.sync()]


async def test_a_device_the_node_slips_in_gets_no_keys(
    devices: OpenDevice, dump: Dump, running_node: NodeThread, node_url: str
) -> None:
    alice, bob = await connected(devices)
    await alice.sync()
    ghost = await _insert_ghost_device(running_node, alice)

    await bob.send(alice.address or "", secret_text())

    [body] = stored_bodies(await dump())
    assert ghost not in {share.device_id for share in body.key_shares}
    listed = {d.device_id: d.signed for d in await alice.devices()}
    assert listed[ghost] is False and listed[alice.device_id or ""] is True
    # Plain text the node seals goes only to the devices the account signed, too.
    token = bob._state.access_token if bob._state else None
    async with httpx.AsyncClient(base_url=node_url, timeout=REQUEST_TIMEOUT_SECONDS) as http:
        sent = await http.post(
            "/v1/messages",
            json={"to": alice.address, "body": "sealed to signed devices"},
            headers={"Authorization": f"Bearer {token}"},
        )
    sealed = e2e.SealedBody.model_validate_json(sent.json()["body"])
    assert ghost not in sealed.keys and alice.device_id in sealed.keys


async def test_losing_every_device_and_restoring_from_the_recovery_key(
    devices: OpenDevice,
) -> None:
    alice, bob = await connected(devices)
    earlier = secret_text()
    await bob.send(alice.address or "", earlier)
    await alice.sync()
    recovery_key = await alice.setup_backup()
    number_before = await bob.safety_number(alice.address or "")
    await alice.aclose()  # the phone is gone

    new_phone = devices("alice-new-phone")
    me = await new_phone.restore(alice.address or "", recovery_key)

    assert me.address == alice.address
    assert [m.text for m in await new_phone.history(bob.address or "")] == [earlier]
    await bob.send(alice.address or "", "welcome back")
    assert "welcome back" in [m.text for m in await new_phone.sync()]
    assert await bob.safety_number(alice.address or "") == number_before
    assert await new_phone.safety_number(bob.address or "") == number_before


async def test_a_wrong_recovery_key_restores_nothing(devices: OpenDevice) -> None:
    alice = devices("alice")
    await alice.setup_backup()
    thief = devices("thief")
    with pytest.raises(ApiError) as refused:
        await thief.restore(alice.address or "", str(RecoveryKey.generate()))
    assert refused.value.status == 401
    assert [d.device_id for d in await alice.devices()] == [alice.device_id]


async def test_a_new_device_in_a_contacts_list_raises_a_warning(devices: OpenDevice) -> None:
    alice, bob = await connected(devices)
    await bob.send(alice.address or "", "hello")
    await linked(alice, devices("alice-laptop"))

    with pytest.warns(DeviceListChangedWarning, match=re.escape(alice.address or "")):
        await bob.send(alice.address or "", "to both devices now")


async def test_a_replayed_ciphertext_is_refused(devices: OpenDevice) -> None:
    alice, bob = await connected(devices)
    await alice.send(bob.address or "", "pay 10 euros")
    [original] = await bob.sync()
    engine = await bob.end_to_end()
    stored = await bob._call("GET", f"/messages/{original.id}")
    message = wire.MessageOut.model_validate_json(stored.content)

    assert (await engine.open(message)).text == "pay 10 euros"  # reading again is fine
    replayed = message.model_copy(update={"id": "a-new-envelope"})
    with pytest.raises(DecryptionError, match="replayed"):
        await engine.open(replayed)


async def test_a_message_said_to_come_from_another_device_is_refused(devices: OpenDevice) -> None:
    alice, bob = await connected(devices)
    laptop = await linked(alice, devices("alice-laptop"))
    await alice.send(bob.address or "", "from the phone")
    [sent] = await bob.sync()
    engine = await bob.end_to_end()
    stored = await bob._call("GET", f"/messages/{sent.id}")
    message = wire.MessageOut.model_validate_json(stored.content)

    forged = message.model_copy(update={"sender_device": laptop.device_id})
    with pytest.raises(DecryptionError, match="has not signed"):
        await engine.open(forged)


async def test_sessions_rotate_after_the_configured_number_of_messages(
    devices: OpenDevice, dump: Dump
) -> None:
    alice, bob = await connected(devices)
    await alice.set_rotation(messages=2)

    for n in range(5):
        await alice.send(bob.address or "", f"message {n}")

    sessions = [b.session_id for b in stored_bodies(await dump())]
    assert sessions[0] == sessions[1] != sessions[2] == sessions[3] != sessions[4]
    assert [m.text for m in await bob.sync()] == [f"message {n}" for n in range(5)]


async def test_the_accounts_rotation_period_applies_to_its_devices(
    devices: OpenDevice, dump: Dump
) -> None:
    alice, bob = await connected(devices)
    laptop = await linked(alice, devices("alice-laptop"))

    await alice.set_account_rotation(messages=2, seconds=3600)
    for n in range(3):
        await laptop.send(bob.address or "", f"from the laptop {n}")

    sessions = [b.session_id for b in stored_bodies(await dump())]
    assert sessions[0] == sessions[1] != sessions[2]


async def test_a_device_restarted_from_its_saved_state_goes_on(
    devices: OpenDevice, node_url: str, tmp_path: Path
) -> None:
    alice, bob = await connected(devices)
    await alice.send(bob.address or "", "one")
    assert [m.text for m in await bob.sync()] == ["one"]
    await alice.aclose()
    await bob.aclose()

    alice_again = devices("alice")
    bob_again = devices("bob")
    await alice_again.send(bob_again.address or "", "two")
    await bob_again.send(alice_again.address or "", "three")

    assert [m.text for m in await bob_again.sync()] == ["two"]
    assert [m.text for m in await alice_again.sync()] == ["three"]


async def test_one_time_keys_are_replenished(devices: OpenDevice) -> None:
    alice, _bob = await connected(devices)
    await alice.sync()
    start = await _key_count(alice)
    for n in range(3):
        carol = devices(f"carol{n}")
        code = await alice.issue_code()
        await carol.connect(alice.address or "", code.pass_code)
        await carol.send(alice.address or "", "hi")  # claims one of alice's keys

    assert await _key_count(alice) == start - 3
    await alice.sync()
    assert await _key_count(alice) >= start


async def _key_count(client: Client) -> int:
    response = await client._call("GET", "/keys")
    return wire.KeyCountsOut.model_validate_json(response.content).one_time_keys


async def _insert_ghost_device(running_node: NodeThread, victim: Client) -> str:
    """What a malicious node could do: add a device of its own to the account."""
    ghost = DeviceIdentity.create()
    ghost.generate_one_time_keys(1)
    key_id, key = next(iter(ghost.unpublished_one_time_keys().items()))
    device_id = "ghost-device"

    async def insert_rows() -> None:
        assert running_node.node is not None
        async with running_node.node.database.connect() as conn:
            account = (
                await conn.execute(
                    select(tables.accounts.c.id).where(tables.accounts.c.address == victim.address)
                )
            ).scalar_one()
            await conn.execute(
                insert(tables.devices).values(
                    id=device_id,
                    account_id=account,
                    ed25519_key=ghost.ed25519_key,
                    curve25519_key=ghost.curve25519_key,
                    sealing_key=SealingKeyPair.generate().public_key,
                    created_at=datetime.now(UTC),
                    stream_head=0,
                )
            )
            await conn.execute(
                insert(tables.one_time_keys).values(
                    device_id=device_id,
                    key_id=key_id,
                    key=key,
                    signature=ghost.sign(e2e.one_time_key_signed_bytes(device_id, key_id, key)),
                    fallback=False,
                )
            )
            await conn.commit()

    await running_node.call(insert_rows())
    return device_id
