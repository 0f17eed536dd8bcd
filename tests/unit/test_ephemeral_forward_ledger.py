"""The pure parts of disappearing messages across nodes: what the sender's node
remembers of a message it passed on (to believe one expiry notice about it, from
that node only, for a while only), and the receiving relay dropping a remote
sender's message without a local notice."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import pytest

from openmessenger.core.ephemeral import (
    RELAY_FULL,
    EphemeralMessage,
    Forwarded,
    ForwardLedger,
    Relay,
    RelayLimits,
)
from openmessenger.core.errors import LimitExceeded, Unavailable
from openmessenger.core.ids import Address, DeviceId, Domain

T0 = datetime(2026, 1, 1, tzinfo=UTC)
LIMITS = RelayLimits(hold_seconds=2, max_body_chars=8192, per_device=2, total=3)
ALICE, BOB = Address("1*alpha.test"), Address("2*beta.test")
BOB_DEVICE = DeviceId("b1")


def sent(message_id: str, *, device: str = "a1", deadline: float = 10.0) -> Forwarded:
    return Forwarded(
        id=message_id,
        sender=ALICE,
        sender_device=DeviceId(device),
        recipient=BOB,
        recipient_device=DeviceId("b1"),
        node=Domain("beta.test"),
        sent_at=T0,
        deadline=deadline,
    )


def recall(
    ledger: ForwardLedger, message_id: str, node: str = "beta.test", now: float = 0.0
) -> Forwarded | None:
    return ledger.recall(message_id, Domain(node), ALICE, DeviceId("a1"), BOB, DeviceId("b1"), now)


def test_a_notice_is_believed_once_and_only_from_the_node_the_message_went_to() -> None:
    ledger = ForwardLedger(LIMITS)
    ledger.remember(sent("m1"), now=0.0)

    assert recall(ledger, "m1", node="gamma.test") is None
    assert recall(ledger, "unknown") is None
    other_device = DeviceId("a2")
    assert (
        ledger.recall("m1", Domain("beta.test"), ALICE, other_device, BOB, BOB_DEVICE, 0.0) is None
    )
    found = recall(ledger, "m1")
    assert found is not None and found.id == "m1"
    assert recall(ledger, "m1") is None  # taken: a second notice is not believed
    assert len(ledger) == 0


def test_it_is_forgotten_at_its_deadline() -> None:
    ledger = ForwardLedger(LIMITS)
    ledger.remember(sent("m1", deadline=5.0), now=0.0)

    assert ledger.get("m1", now=4.9) is not None
    assert recall(ledger, "m1", now=5.0) is None
    assert len(ledger) == 0


def test_it_is_bounded_per_sending_device_and_in_all() -> None:
    ledger = ForwardLedger(LIMITS)
    ledger.remember(sent("m1"), now=0.0)
    ledger.remember(sent("m2"), now=0.0)
    ledger.remember(sent("m1"), now=0.0)  # a retry replaces, counts once

    with pytest.raises(LimitExceeded):
        ledger.remember(sent("m3"), now=0.0)
    ledger.remember(sent("m4", device="a2"), now=0.0)
    with pytest.raises(Unavailable) as full:
        ledger.remember(sent("m5", device="a3"), now=0.0)
    assert full.value.code == RELAY_FULL
    # Past their deadlines, the room is back.
    ledger.remember(sent("m6"), now=10.0)
    assert len(ledger) == 1


def test_a_failed_attempt_undoes_only_its_own_entry() -> None:
    ledger = ForwardLedger(LIMITS)
    first, retry = sent("m1", deadline=10.0), sent("m1", deadline=11.0)
    ledger.remember(first, now=0.0)  # an attempt, and a retry of it at once
    ledger.remember(retry, now=0.0)
    held = dataclasses.replace(retry, deadline=12.0)
    ledger.remember(held, now=0.0)  # the retry was held over there ...
    ledger.undo(first, None, now=0.0)  # ... and the first attempt failed after it

    # The expiry notice of the held message is still believed.
    assert recall(ledger, "m1") is held

    # A failed attempt that is still the entry gives way to the one before it.
    ledger.remember(first, now=0.0)
    ledger.remember(retry, now=0.0)
    ledger.undo(retry, first, now=0.0)
    assert ledger.get("m1", now=0.0) is first
    ledger.undo(first, None, now=0.0)
    assert len(ledger) == 0


def test_a_remote_senders_message_is_dropped_without_a_notice_here() -> None:
    relay = Relay(LIMITS)
    message = EphemeralMessage(
        id="m1",
        sender=ALICE,
        sender_device=DeviceId("a1"),
        recipient=BOB,
        recipient_device=DeviceId("b1"),
        body="ciphertext",
        lifespan_seconds=60,
        sent_at=T0,
        expires_at=T0 + timedelta(seconds=2),
        deadline=2.0,
    )
    relay.admit(message)

    assert relay.drop("m1", DeviceId("b1")) == message
    assert relay.drop("m1", DeviceId("b1")) is None
    assert relay.take(DeviceId("a1")) == [] and relay.take(DeviceId("b1")) == []
    assert len(relay) == 0
