"""The pure parts of disappearing messages: the relay's bounded mailboxes (node),
and the SDK's in-memory inbox that forgets a text when its lifespan ends."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from openmessenger.client.ephemeral import SEEN_SECONDS, EphemeralInbox, EphemeralMessage
from openmessenger.core.ephemeral import (
    RELAY_FULL,
    ExpiryNotice,
    Relay,
    RelayLimits,
)
from openmessenger.core.ephemeral import (
    EphemeralMessage as HeldMessage,
)
from openmessenger.core.errors import LimitExceeded, Unavailable
from openmessenger.core.ids import Address, DeviceId
from openmessenger.settings import Settings

T0 = datetime(2026, 1, 1, tzinfo=UTC)
LIMITS = RelayLimits(hold_seconds=2, max_body_chars=8192, per_device=2, total=4)


def held(message_id: str, *, sender: str = "s1", to: str = "r1", now: float = 0.0) -> HeldMessage:
    return HeldMessage(
        id=message_id,
        sender=Address("1*localhost"),
        sender_device=DeviceId(sender),
        recipient=Address("2*localhost"),
        recipient_device=DeviceId(to),
        body="ciphertext",
        lifespan_seconds=60,
        sent_at=T0,
        expires_at=T0 + timedelta(seconds=LIMITS.hold_seconds),
        deadline=now + LIMITS.hold_seconds,
    )


# -- the node's relay ----------------------------------------------------------------


def test_a_device_takes_only_its_own_messages_and_the_relay_forgets_them() -> None:
    relay = Relay(LIMITS)
    relay.admit(held("a", to="r1"))
    relay.admit(held("b", to="r2"))

    assert [e.id for e in relay.take(DeviceId("r1"))] == ["a"]
    assert relay.take(DeviceId("r1")) == []
    assert relay.take(DeviceId("s1")) == []  # the sender's device sees nothing of it
    assert [e.id for e in relay.take(DeviceId("r2"))] == ["b"]
    assert len(relay) == 0


def test_too_many_waiting_for_one_device_is_refused_and_changes_nothing() -> None:
    relay = Relay(LIMITS)
    relay.admit(held("a", sender="s1"))
    relay.admit(held("b", sender="s2"))

    with pytest.raises(LimitExceeded) as refused:
        relay.admit(held("c", sender="s3"))

    assert refused.value.field == "device"
    assert len(relay) == 2
    relay.take(DeviceId("r1"))
    relay.admit(held("c", sender="s3"))  # room again once the device took its messages


def test_one_sending_device_cannot_hold_more_than_its_share() -> None:
    relay = Relay(LIMITS)
    relay.admit(held("a", to="r1"))
    relay.admit(held("b", to="r2"))

    with pytest.raises(LimitExceeded):
        relay.admit(held("c", to="r3"))


def test_a_full_relay_answers_unavailable() -> None:
    relay = Relay(LIMITS)
    for i in range(4):
        relay.admit(held(f"m{i}", sender=f"s{i}", to=f"r{i}"))

    with pytest.raises(Unavailable) as full:
        relay.admit(held("one more", sender="s9", to="r9"))

    assert full.value.code == RELAY_FULL
    assert len(relay) == 4


def test_an_expired_message_becomes_a_notice_for_its_sender_only() -> None:
    relay = Relay(LIMITS)
    relay.admit(held("a"))

    notice = relay.expire("a", DeviceId("r1"), now=2.0)

    assert isinstance(notice, ExpiryNotice)
    assert notice.deadline == 4.0  # held as long again, no longer
    assert relay.take(DeviceId("r1")) == []
    assert relay.take(DeviceId("s1")) == [notice]
    assert len(relay) == 0


def test_a_delivered_message_does_not_expire() -> None:
    relay = Relay(LIMITS)
    relay.admit(held("a"))
    relay.take(DeviceId("r1"))

    assert relay.expire("a", DeviceId("r1"), now=2.0) is None
    assert relay.take(DeviceId("s1")) == []


def test_a_notice_nobody_takes_is_dropped_and_counts_no_more() -> None:
    relay = Relay(LIMITS)
    relay.admit(held("a"))
    relay.expire("a", DeviceId("r1"), now=2.0)
    relay.admit(held("b", now=2.0))

    with pytest.raises(LimitExceeded):  # the notice counts against its sender
        relay.admit(held("c", now=2.0))
    assert relay.drop_notice("a", DeviceId("s1"))
    assert not relay.drop_notice("a", DeviceId("s1"))
    relay.admit(held("c", now=4.0))
    assert len(relay) == 2


def test_an_event_put_back_waits_again_for_the_same_device() -> None:
    relay = Relay(LIMITS)
    relay.admit(held("a"))
    [taken] = relay.take(DeviceId("r1"))

    relay.put_back(taken)

    assert relay.pending_for(DeviceId("r1"), "a") == taken
    assert relay.take(DeviceId("r1")) == [taken]


def test_one_id_is_held_once() -> None:
    relay = Relay(LIMITS)
    relay.admit(held("a"))
    relay.put_back(held("a"))

    assert len(relay) == 1


# -- settings ------------------------------------------------------------------------


@pytest.mark.parametrize("seconds", [121, 0, -1])
def test_the_hold_is_never_longer_than_120_seconds(seconds: float) -> None:
    with pytest.raises(ValidationError, match="ephemeral_hold_seconds"):
        Settings(ephemeral_hold_seconds=seconds)


def test_the_hold_is_120_seconds_unless_set_lower() -> None:
    assert Settings().ephemeral_hold_seconds == 120
    assert Settings(ephemeral_hold_seconds=2).ephemeral_hold_seconds == 2


# -- the SDK's inbox ------------------------------------------------------------------


class FakeMonotonic:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def received(clock: FakeMonotonic, message_id: str = "m1", lifespan: int = 60) -> EphemeralMessage:
    return EphemeralMessage(
        id=message_id,
        sender=Address("1*localhost"),
        sender_device=DeviceId("d1"),
        recipient=Address("2*localhost"),
        recipient_device=DeviceId("d2"),
        text="meet me at eight",
        lifespan_seconds=lifespan,
        sent_at=T0,
        received_at=T0,
        clock=clock,
    )


def test_the_text_is_gone_when_the_lifespan_ends() -> None:
    clock = FakeMonotonic()
    message = received(clock, lifespan=60)

    clock.now += 59.9
    assert message.text == "meet me at eight"
    assert message.remaining_seconds == pytest.approx(0.1)
    clock.now += 0.1
    assert message.expired
    assert message.text == ""
    clock.now -= 30  # even a clock that steps back does not bring it back
    assert message.text == ""


def test_the_text_never_shows_in_a_repr() -> None:
    message = received(FakeMonotonic())
    assert "eight" not in repr(message)


def test_the_inbox_lists_only_live_messages_and_forgets_the_rest() -> None:
    clock = FakeMonotonic()
    inbox = EphemeralInbox(clock)
    short, long = received(clock, "short", lifespan=5), received(clock, "long", lifespan=50)
    inbox.keep(short)
    inbox.keep(long)

    clock.now += 5
    assert inbox.alive() == [long]
    assert short.text == ""
    inbox.forget_all()
    assert inbox.alive() == [] and long.text == ""


def test_a_second_copy_is_recognised_while_it_could_still_arrive() -> None:
    clock = FakeMonotonic()
    inbox = EphemeralInbox(clock)

    assert inbox.first_time("m1")
    assert not inbox.first_time("m1")
    clock.now += SEEN_SECONDS + 1
    assert inbox.first_time("m2")
    assert inbox.first_time("m1")  # long after the node could hold a copy
