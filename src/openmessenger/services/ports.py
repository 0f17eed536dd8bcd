"""Ports: the small interfaces the services need from the outside world.

Adapters in ``storage/`` and ``bus/`` implement them; tests use those real
adapters. A service receives exactly the ports it uses.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from openmessenger.core.envelope import (
    AppendResult,
    Message,
    ReceivedMessage,
    SendRequest,
    StreamEvent,
)
from openmessenger.core.ids import (
    AccountId,
    Address,
    ConversationId,
    DeviceId,
    Domain,
    MessageId,
    PassCodeId,
)
from openmessenger.core.passcodes import CodeState
from openmessenger.core.records import (
    Account,
    AccountKeys,
    AccountKind,
    AddressKeys,
    ClaimedOneTimeKey,
    Contact,
    Device,
    DevicePublicKeys,
    KeyCounts,
    LinkRequest,
    OpenmsgLink,
    OutboxItem,
    OutboxOutcome,
    PassCode,
    SignedOneTimeKey,
    ToDeviceEvent,
)


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware UTC."""
        ...


class Secrets(Protocol):
    """Keyed hashing under the node secret, and fresh randomness."""

    def hmac(self, purpose: str, value: str) -> str: ...

    def token(self, nbytes: int) -> str: ...

    def digits(self, count: int) -> str: ...

    def identifier(self) -> str: ...

    def seal(self, purpose: str, plaintext: str) -> str:
        """Encrypt under a key derived from the node secret (for secrets the node
        must read back, such as a connection's Openmsg codes)."""
        ...

    def unseal(self, purpose: str, sealed: str) -> str:
        """The plaintext of :meth:`seal`; raises ValueError if it was altered."""
        ...

    def signing_key(self) -> str:
        """The node's Ed25519 public key (base64), as its descriptor publishes it."""
        ...

    def sign(self, message: bytes) -> str:
        """An Ed25519 signature (base64) by the node's key."""
        ...


class AccountRepository(Protocol):
    async def create(
        self, *, account_id: AccountId, address: Address, kind: AccountKind, now: datetime
    ) -> Account | None:
        """Insert; ``None`` when the address is taken (the caller draws another)."""
        ...

    async def get(self, account_id: AccountId) -> Account | None: ...

    async def by_address(self, address: Address) -> Account | None: ...

    async def set_display_name(self, account_id: AccountId, name: str) -> None: ...


class DeviceRepository(Protocol):
    async def create(self, device: Device) -> None: ...

    async def by_ed25519_key(self, key: str) -> Device | None: ...

    async def ids_of_account(self, account_id: AccountId) -> list[DeviceId]: ...

    async def add_token(self, device_id: DeviceId, token_hmac: str, now: datetime) -> None: ...

    async def by_token(self, token_hmac: str) -> Device | None: ...


class ChallengeRepository(Protocol):
    async def add(self, challenge_hmac: str, expires_at: datetime) -> None: ...

    async def consume(self, challenge_hmac: str, now: datetime) -> bool:
        """Delete the challenge; True only if it existed and had not expired."""
        ...


class PassCodeRepository(Protocol):
    async def add(self, code: PassCode) -> None: ...

    async def list_for(self, owner: AccountId) -> list[PassCode]: ...

    async def live(self, owner: AccountId, now: datetime) -> list[PassCode]: ...

    async def set_state(
        self,
        ids: Sequence[PassCodeId],
        state: CodeState,
        *,
        used_by: Address | None = None,
        at: datetime | None = None,
    ) -> None: ...

    async def budget_spent(self, owner: AccountId, pool: str) -> int: ...

    async def set_budget_spent(self, owner: AccountId, pool: str, spent: int) -> None: ...

    async def lock_owner(self, owner: AccountId) -> None:
        """Serialise redemptions against one owner (a row lock where supported)."""
        ...


class ConnectionRepository(Protocol):
    async def add(self, contact: Contact) -> bool:
        """Insert; False when the owner already has this contact."""
        ...

    async def get(self, owner: AccountId, address: Address) -> Contact | None: ...

    async def list_for(self, owner: AccountId) -> list[Contact]: ...

    async def by_conversation(
        self, owner: AccountId, conversation_id: ConversationId
    ) -> Contact | None: ...

    async def create_conversation(self, conversation_id: ConversationId, now: datetime) -> None: ...

    async def update_remote(
        self,
        owner: AccountId,
        address: Address,
        *,
        display_name: str | None = None,
        accepts_messages: bool | None = None,
        peer_accepts_messages: bool | None = None,
    ) -> None:
        """Record what a remote peer's node told us about it since."""
        ...


class MessageRepository(Protocol):
    async def append_batch(self, requests: Sequence[SendRequest]) -> list[AppendResult]:
        """Append each request to its conversation, in order, assigning ``seq`` and
        stream positions; refuse those without a connection, answer retries with
        the message stored before. One result per request."""
        ...

    async def stream(self, device_id: DeviceId, since: int, limit: int) -> list[StreamEvent]: ...

    async def history(
        self, conversation_id: ConversationId, after_seq: int, limit: int
    ) -> list[Message]: ...

    async def get(self, message_id: MessageId) -> Message | None: ...

    async def append_received(
        self, received: Sequence[ReceivedMessage]
    ) -> list[AppendResult | None]:
        """Store messages that arrived from other nodes; ``None`` for one whose
        nonce its link took before (a replay or a retry)."""
        ...


class FederationRepository(Protocol):
    async def put_link(
        self, owner: AccountId, peer: Address, ident_hmac: str, sealed: str, now: datetime
    ) -> None: ...

    async def link(self, owner: AccountId, peer: Address) -> OpenmsgLink | None: ...

    async def link_by_ident(self, ident_hmac: str) -> OpenmsgLink | None: ...

    async def add_handshake(
        self, hash_hmac: str, receiver: Address, expires_at: datetime
    ) -> None: ...

    async def handshake_pending(self, hash_hmac: str, receiver: Address, now: datetime) -> bool: ...

    async def end_handshake(self, hash_hmac: str, now: datetime) -> None: ...

    async def claim_due(
        self,
        now: datetime,
        lease_until: datetime,
        limit: int,
        message_ids: Sequence[MessageId] | None = None,
    ) -> list[OutboxItem]: ...

    async def outbox_by_nonce(self, nonce: str) -> OutboxItem | None: ...

    async def refresh_attempt(self, message_id: MessageId, salt: str, attempt_ts: int) -> None: ...

    async def settle(self, outcomes: Sequence[OutboxOutcome]) -> None: ...

    async def block(self, domain: Domain, now: datetime) -> bool: ...

    async def unblock(self, domain: Domain) -> bool: ...

    async def blocked_domains(self) -> list[Domain]: ...

    async def flag(self, name: str) -> str | None: ...

    async def set_flag(self, name: str, value: str, now: datetime) -> None: ...


class KeyRepository(Protocol):
    """Devices' public keys, one-time keys, revocation, and the account signing key
    with its device list. "Devices" here are those not revoked."""

    async def device(self, device_id: DeviceId) -> Device | None: ...

    async def devices(self, account_id: AccountId) -> list[Device]: ...

    async def public_keys(self, account_id: AccountId) -> list[DevicePublicKeys]: ...

    async def key_taken(self, ed25519_key: str) -> bool:
        """Whether any device, a revoked one too, has this Ed25519 key."""
        ...

    async def lock_device(self, device_id: DeviceId) -> bool:
        """Serialise writers of one device's keys; False if it is missing or revoked."""
        ...

    async def revoke(self, device_id: DeviceId, now: datetime) -> bool:
        """Revoke: its tokens, one-time keys and pending to-device messages go."""
        ...

    async def set_sealing_key(self, device_id: DeviceId, key: str, signature: str) -> None: ...

    async def sealing_keys(
        self, account_ids: Sequence[AccountId]
    ) -> dict[AccountId, dict[DeviceId, str]]:
        """Account -> device -> sealing key, for the devices that have one."""
        ...

    async def one_time_keys(self, device_id: DeviceId, key_ids: Sequence[str]) -> dict[str, str]:
        """Which of these one-time key ids the device holds: key id -> key."""
        ...

    async def add_one_time_keys(
        self, device_id: DeviceId, keys: Sequence[SignedOneTimeKey]
    ) -> None: ...

    async def set_fallback_key(self, device_id: DeviceId, key: SignedOneTimeKey) -> None:
        """Replaces the device's fallback key (there is at most one)."""
        ...

    async def counts(self, device_id: DeviceId) -> KeyCounts: ...

    async def claim(self, device_id: DeviceId) -> ClaimedOneTimeKey | None:
        """Pop one one-time key atomically, else the fallback key (kept), else None."""
        ...

    async def account_keys(
        self, account_id: AccountId, *, for_update: bool = False
    ) -> AccountKeys | None: ...

    async def put_device_list(
        self,
        account_id: AccountId,
        *,
        signing_key: str,
        device_list: str,
        version: int,
        expected_version: int | None,
    ) -> bool:
        """Compare and set by version; False if another list got there first."""
        ...

    async def set_recovery_auth_key(self, account_id: AccountId, key: str) -> bool: ...


class BackupRepository(Protocol):
    async def put_entries(self, account_id: AccountId, entries: Mapping[str, str]) -> None:
        """Insert or replace (entry id -> entry JSON)."""
        ...

    async def entries(self, account_id: AccountId) -> dict[str, str]: ...

    async def delete_all(self, account_id: AccountId) -> None: ...


class LinkRequestRepository(Protocol):
    async def add(self, request: LinkRequest, now: datetime) -> bool:
        """False if the code, the device id or the key is taken by a live request."""
        ...

    async def by_code_hmac(self, code_hmac: str) -> LinkRequest | None: ...

    async def by_ed25519_key(self, ed25519_key: str) -> LinkRequest | None: ...

    async def approve(self, code_hmac: str, now: datetime) -> bool:
        """Mark a live request used; False if it was not live."""
        ...


class ToDeviceRepository(Protocol):
    async def add(
        self,
        sender_device: DeviceId,
        sender_key: str,
        messages: Sequence[tuple[DeviceId, str]],
        now: datetime,
    ) -> None: ...

    async def after(
        self, device_id: DeviceId, after_id: int, limit: int
    ) -> list[ToDeviceEvent]: ...

    async def delete_up_to(self, device_id: DeviceId, up_to_id: int) -> None: ...


class RemoteKeyDirectory(Protocol):
    """The keys of addresses on other nodes (implemented over federation)."""

    async def query(self, requester: Address, address: Address) -> AddressKeys | None:
        """The address's devices and signed list; None if its node does not tell
        ``requester`` (not connected, unknown, unreachable)."""
        ...

    async def claim(
        self, requester: Address, address: Address, devices: Sequence[DeviceId]
    ) -> dict[DeviceId, ClaimedOneTimeKey]: ...

    async def end_to_end(self, domain: Domain) -> bool:
        """Whether that node takes end-to-end messages (PeerUnavailable: cannot tell)."""
        ...


class MessageLog(Protocol):
    """Where sends are appended; may group concurrent sends into one transaction."""

    async def append(self, request: SendRequest) -> AppendResult: ...


class Transaction(Protocol):
    """One atomic unit of work: every repository over one database transaction."""

    @property
    def accounts(self) -> AccountRepository: ...

    @property
    def devices(self) -> DeviceRepository: ...

    @property
    def challenges(self) -> ChallengeRepository: ...

    @property
    def codes(self) -> PassCodeRepository: ...

    @property
    def connections(self) -> ConnectionRepository: ...

    @property
    def messages(self) -> MessageRepository: ...

    @property
    def federation(self) -> FederationRepository: ...

    @property
    def keys(self) -> KeyRepository: ...

    @property
    def backups(self) -> BackupRepository: ...

    @property
    def link_requests(self) -> LinkRequestRepository: ...

    @property
    def to_device(self) -> ToDeviceRepository: ...

    async def commit(self) -> None: ...


class UnitOfWork(Protocol):
    def __call__(self) -> AbstractAsyncContextManager[Transaction]:
        """Open a transaction; leaving without ``commit()`` rolls back."""
        ...


class SubscriptionLagged(Exception):
    """The subscriber fell behind; re-read from the store and subscribe again."""


class Subscription(Protocol):
    def __aiter__(self) -> AsyncIterator[StreamEvent]:
        """Events in publish order; raises :class:`SubscriptionLagged` after an overflow."""
        ...


class Bus(Protocol):
    """Live fan-out of stream events to the processes that hold a device's stream."""

    async def publish(self, events: Sequence[StreamEvent]) -> None: ...

    def subscribe(self, device_id: DeviceId) -> AbstractAsyncContextManager[Subscription]: ...


# --- Federation ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PeerReply:
    """What a peer's HTTPS endpoint answered: the status, and the decoded JSON
    body (``None`` when the body was not JSON or was too large)."""

    status: int
    body: object


class PeerUnreachable(Exception):
    """No answer from the peer: name lookup, connection, TLS, proxy or timeout."""


class FederationTransport(Protocol):
    """Outbound HTTPS to other nodes. URLs are always ``https://{domain}/...``;
    redirects are not followed; a configured proxy is always used."""

    async def post_json(
        self,
        url: str,
        body: Mapping[str, object] | bytes,
        headers: Mapping[str, str] | None = None,
    ) -> PeerReply:
        """POST ``body`` as JSON (bytes: sent as they are); raises
        :class:`PeerUnreachable` when nothing answered."""
        ...

    async def get_json(self, url: str) -> PeerReply: ...

    async def close(self) -> None: ...
