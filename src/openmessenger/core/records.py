"""Records the services read and write through their ports."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime

from openmessenger.core.ids import AccountId, Address, ConversationId, DeviceId, PassCodeId
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
