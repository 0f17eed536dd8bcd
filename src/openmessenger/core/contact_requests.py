"""Two-way contact requests: what one is, and the note it may carry. Pure.

Off by default (pass codes alone, as Openmsg intends); an owner turns them on
with the ``accept_requests`` preference (core/preferences.py). Whatever happens
to a request, its sender hears the same answer (services/contact_requests.py).
A request from an address on another of our nodes is a ``RemoteContactRequest``
(services/request_federation.py); the owner sees both kinds alike
(``IncomingRequest``).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime

from openmessenger.core.errors import InvalidInput
from openmessenger.core.ids import AccountId, Address

MAX_NOTE_CHARS = 280


class RequestState(enum.StrEnum):
    PENDING = "pending"
    ACCEPTED = "accepted"
    DECLINED = "declined"
    """Kept: the sender's later requests to the same address are dropped."""


@dataclass(frozen=True, slots=True)
class ContactRequest:
    id: str
    target_account_id: AccountId
    sender_account_id: AccountId
    sender_address: Address
    note: str | None
    state: RequestState
    created_at: datetime
    decided_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class RemoteContactRequest:
    """A request from an address on another of our nodes, which vouches for the
    sender's name and whether its account is registered (verified)."""

    id: str
    target_account_id: AccountId
    sender_address: Address
    sender_name: str | None
    sender_verified: bool
    note: str | None
    state: RequestState
    created_at: datetime
    decided_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class IncomingRequest:
    """A request waiting for its owner's answer, as the owner sees it."""

    id: str
    sender_address: Address
    sender_name: str | None
    sender_verified: bool
    note: str | None
    created_at: datetime
    remote: bool


def validate_note(note: str | None, *, field: str = "note") -> str | None:
    """A short, printable note (line breaks allowed); empty means none."""
    if note is None:
        return None
    note = note.strip()
    if not note:
        return None
    if len(note) > MAX_NOTE_CHARS:
        raise InvalidInput(field, f"must be at most {MAX_NOTE_CHARS} characters")
    if any(not (ch.isprintable() or ch == "\n") for ch in note):
        raise InvalidInput(field, "must be printable text")
    return note
