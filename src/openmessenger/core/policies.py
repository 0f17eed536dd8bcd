"""Plans and policies: the limits a node enforces on a conversation, and how
they combine (docs/conversations.md, "Policies"). Pure: no I/O, no clock.

Every account has a plan (``free`` unless the operator says otherwise); each plan
gives a :class:`Policy` (defaults in the settings). A conversation's base policy
is the stricter of its local participants' plans (a group: its owner's plan);
each participant may lay an override on it that is only ever stricter, and the
effective policy is the stricter of all of them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, fields
from enum import StrEnum
from typing import TypeVar

from openmessenger.core.errors import InvalidInput, RateLimited

MAX_MESSAGE_BYTES = 524_288
"""No plan may allow more than the largest body the node takes at all."""
MAX_PARTICIPANTS = 100_000
MAX_RETENTION_SECONDS = 100 * 366 * 86_400
"""A century: anything longer is "forever" (``None``)."""
MAX_RATE_COUNT = 1_000_000

_UNITS = {"second": 1, "minute": 60, "hour": 3600, "day": 86_400}
_RATE = re.compile(r"^\s*([0-9]{1,7})\s*(?:/|per)\s*(second|minute|hour|day)s?\s*$")
FOREVER = "forever"
_T = TypeVar("_T")


class Plan(StrEnum):
    FREE = "free"
    """Every account's plan until the operator changes it."""
    SUBSCRIPTION = "subscription"
    USAGE = "usage"


def parse_plan(value: str, *, field: str = "plan") -> Plan:
    try:
        return Plan(value)
    except ValueError:
        names = ", ".join(p.value for p in Plan)
        raise InvalidInput(field, f"must be one of {names}") from None


@dataclass(frozen=True, slots=True)
class MessageRate:
    """``count`` messages per ``unit`` (second, minute, hour or day), per
    participant and conversation. Written like the ``limits`` notation: "60/minute"."""

    count: int
    unit: str

    @property
    def seconds(self) -> int:
        return _UNITS[self.unit]

    def __str__(self) -> str:
        return f"{self.count}/{self.unit}"

    def stricter_or_equal(self, other: MessageRate) -> bool:
        """Allows no more messages per unit of time than ``other``."""
        return self.count * other.seconds <= other.count * self.seconds


def parse_rate(value: object, *, field: str = "message_rate") -> MessageRate:
    found = _RATE.match(value) if isinstance(value, str) else None
    if found is None:
        raise InvalidInput(field, 'must read like "60/minute" (per second, minute, hour or day)')
    count = int(found.group(1))
    if not 1 <= count <= MAX_RATE_COUNT:
        raise InvalidInput(field, f"must allow from 1 to {MAX_RATE_COUNT} messages")
    return MessageRate(count, found.group(2))


def check_retention(value: object, *, field: str = "retention_seconds") -> int | None:
    """Seconds history is kept; ``None`` (or "forever"): kept until deleted."""
    if value is None or value == FOREVER:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput(field, 'must be a whole number of seconds, or null for "forever"')
    if not 1 <= value <= MAX_RETENTION_SECONDS:
        raise InvalidInput(field, f"must be from 1 to {MAX_RETENTION_SECONDS} seconds, or null")
    return value


def check_participants(value: object, *, field: str = "max_participants") -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 2 <= value <= MAX_PARTICIPANTS:
        raise InvalidInput(field, f"must be a whole number from 2 to {MAX_PARTICIPANTS}")
    return value


def check_message_bytes(value: object, *, field: str = "max_message_bytes") -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_MESSAGE_BYTES:
        raise InvalidInput(field, f"must be a whole number from 1 to {MAX_MESSAGE_BYTES}")
    return value


@dataclass(frozen=True, slots=True)
class Policy:
    """The limits on one conversation (or what one plan gives)."""

    retention_seconds: int | None
    """How long history is kept; ``None``: forever."""
    max_participants: int
    max_message_bytes: int
    """Of a message's ``body`` as the node receives it, in UTF-8 bytes."""
    message_rate: MessageRate
    """Per participant, per conversation."""

    def stricter(self, other: Policy) -> Policy:
        """Each limit the stricter of the two."""
        return Policy(
            retention_seconds=_shorter(self.retention_seconds, other.retention_seconds),
            max_participants=min(self.max_participants, other.max_participants),
            max_message_bytes=min(self.max_message_bytes, other.max_message_bytes),
            message_rate=(
                self.message_rate
                if self.message_rate.stricter_or_equal(other.message_rate)
                else other.message_rate
            ),
        )

    def narrowed(self, override: PolicyOverride) -> Policy:
        """This policy with ``override`` laid on it (an override never loosens)."""
        return self.stricter(
            Policy(
                retention_seconds=_pick(override.retention_seconds, self.retention_seconds),
                max_participants=_pick(override.max_participants, self.max_participants),
                max_message_bytes=_pick(override.max_message_bytes, self.max_message_bytes),
                message_rate=override.message_rate or self.message_rate,
            )
        )


def strictest(policies: Iterable[Policy]) -> Policy:
    found = list(policies)
    if not found:
        raise ValueError("no policy to combine")
    combined = found[0]
    for policy in found[1:]:
        combined = combined.stricter(policy)
    return combined


def _pick(given: int | None, otherwise: _T) -> int | _T:
    return otherwise if given is None else given


def _shorter(a: int | None, b: int | None) -> int | None:
    if a is None:
        return b
    if b is None:
        return a
    return min(a, b)


@dataclass(frozen=True, slots=True)
class PolicyOverride:
    """What one participant tightened on a conversation; ``None``: not overridden.
    (An override cannot ask to keep history forever: that is never stricter.)"""

    retention_seconds: int | None = None
    max_participants: int | None = None
    max_message_bytes: int | None = None
    message_rate: MessageRate | None = None

    def given(self) -> dict[str, object]:
        return {
            f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None
        }

    @property
    def empty(self) -> bool:
        return not self.given()


class PolicyNotStricter(InvalidInput):
    """An override would loosen a limit: refused, naming the field."""

    code = "policy_not_stricter"


class MessageTooLarge(InvalidInput):
    """The body is larger than the conversation's policy allows (nothing is stored)."""

    code = "message_too_large"


class MessageRateLimited(RateLimited):
    """This participant sent the conversation's rate of messages already."""

    code = "message_rate_limited"

    def __init__(self, rate: MessageRate, retry_after: int) -> None:
        super().__init__("participant in this conversation", retry_after)
        self.message = (
            f"This conversation takes at most {rate} messages from each participant; "
            f"retry after {retry_after} s."
        )


def check_override(base: Policy, override: PolicyOverride) -> PolicyOverride:
    """Refuse an override that is looser than ``base`` on any limit it sets."""
    if override.retention_seconds is not None and not (
        base.retention_seconds is None or override.retention_seconds <= base.retention_seconds
    ):
        raise PolicyNotStricter(
            "retention_seconds",
            f"may only be stricter: at most {base.retention_seconds} seconds here",
        )
    if override.max_participants is not None and override.max_participants > base.max_participants:
        raise PolicyNotStricter(
            "max_participants", f"may only be stricter: at most {base.max_participants} here"
        )
    if (
        override.max_message_bytes is not None
        and override.max_message_bytes > base.max_message_bytes
    ):
        raise PolicyNotStricter(
            "max_message_bytes", f"may only be stricter: at most {base.max_message_bytes} here"
        )
    if override.message_rate is not None and not override.message_rate.stricter_or_equal(
        base.message_rate
    ):
        raise PolicyNotStricter(
            "message_rate", f"may only be stricter: at most {base.message_rate} here"
        )
    return override


def check_body_size(policy: Policy, body: str) -> None:
    size = len(body.encode("utf-8", "surrogatepass"))
    if size > policy.max_message_bytes:
        raise MessageTooLarge(
            "body",
            f"is {size} bytes; this conversation takes at most {policy.max_message_bytes}",
        )
