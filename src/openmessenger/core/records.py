"""Records the services read and write through their ports."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime

from openmessenger.core.ids import (
    AccountId,
    Address,
    ConversationId,
    DeviceId,
    MessageId,
    PassCodeId,
)
from openmessenger.core.passcodes import CodeState


class AccountKind(enum.StrEnum):
    ANONYMOUS = "anonymous"
    REGISTERED = "registered"
    MANAGED = "managed"


@dataclass(frozen=True, slots=True)
class Account:
    id: AccountId
    address: Address
    kind: AccountKind
    display_name: str | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Device:
    id: DeviceId
    account_id: AccountId
    ed25519_key: str
    curve25519_key: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class AuthenticatedDevice:
    """Who is calling: the device and the account (and address) it belongs to."""

    device: Device
    account: Account


@dataclass(frozen=True, slots=True)
class PassCode:
    id: PassCodeId
    owner_account_id: AccountId
    code_hmac: str
    bound_to: Address | None
    state: CodeState
    created_at: datetime
    expires_at: datetime
    used_by: Address | None
    used_at: datetime | None

    def effective_state(self, now: datetime) -> CodeState:
        if self.state is CodeState.LIVE and now >= self.expires_at:
            return CodeState.EXPIRED
        return self.state


@dataclass(frozen=True, slots=True)
class Contact:
    owner_account_id: AccountId
    address: Address
    display_name: str | None
    conversation_id: ConversationId
    connected_at: datetime
    accepts_messages: bool = True
    """The owner takes messages from the peer (Openmsg's "allow replies")."""
    peer_accepts_messages: bool = True
    """The peer takes the owner's messages."""


@dataclass(frozen=True, slots=True)
class OpenmsgLink:
    """A connection with an address on another node, as Openmsg keys it. ``sealed``
    holds the connection's codes and key, sealed under the node secret."""

    owner_account_id: AccountId
    owner_address: Address
    peer_address: Address
    conversation_id: ConversationId
    accepts_messages: bool
    sealed: str


@dataclass(frozen=True, slots=True)
class OutboxItem:
    """One undelivered message to a remote address, with what sending it takes."""

    message_id: MessageId
    owner_account_id: AccountId
    sender: Address
    peer_address: Address
    body: str
    nonce: str
    salt: str
    attempt_ts: int
    attempts: int
    give_up_at: datetime
    sealed_link: str | None
    """None when the connection's link is gone (the message cannot be sent)."""


class OutboxVerdict(enum.StrEnum):
    DELIVERED = "delivered"
    FAILED = "failed"
    RETRY = "retry"


@dataclass(frozen=True, slots=True)
class OutboxOutcome:
    message_id: MessageId
    verdict: OutboxVerdict
    next_attempt_at: datetime | None = None
    """For RETRY: when to try again."""
