"""Ports: the small interfaces the services need from the outside world.

Adapters in ``storage/`` and ``bus/`` implement them; tests use those real
adapters. A service receives exactly the ports it uses.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol

from openmessenger.core.apps import ApiKey, App, AppGrant, AppId
from openmessenger.core.envelope import (
    AppendResult,
    Message,
    ReceivedMessage,
    SendRequest,
    StreamEvent,
)
from openmessenger.core.groups import Group, GroupAppend, GroupForward, Member
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
from openmessenger.core.policies import Plan, PolicyOverride
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
    OwnerKind,
    PassCode,
    SignedOneTimeKey,
    ToDeviceEvent,
)
from openmessenger.services.preference_ports import (
    BlockRepository,
    ContactRequestRepository,
    PreferenceRepository,
)
from openmessenger.services.request_ports import RemoteRequestRepository
from openmessenger.services.revision_ports import RevisionRepository


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

    async def register(self, account_id: AccountId, owner_kind: OwnerKind, now: datetime) -> None:
        """The account is registered now (from anonymous or managed)."""
        ...


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

    async def sent_by_txn(self, sender_device: DeviceId, client_txn_id: str) -> Message | None:
        """The message the device sent under ``client_txn_id``, if it did."""
        ...

    async def append_received(
        self, received: Sequence[ReceivedMessage]
    ) -> list[AppendResult | None]:
        """Store messages that arrived from other nodes; ``None`` for one whose
        nonce its link took before (a replay or a retry)."""
        ...

    async def append_group(self, request: GroupAppend) -> AppendResult:
        """Append one message to a group whose lock the caller holds, into the
        streams of the receiving accounts' devices (services/groups.py)."""
        ...


class GroupRepository(Protocol):
    async def create(
        self, group_id: ConversationId, name: str, created_by: Address, now: datetime
    ) -> None: ...

    async def lock(self, group_id: ConversationId) -> Group | None:
        """The group, locked until the transaction ends; None: no such group."""
        ...

    async def get(self, group_id: ConversationId) -> Group | None: ...

    async def members(self, group_id: ConversationId) -> list[Member]: ...

    async def member(self, group_id: ConversationId, account_id: AccountId) -> Member | None: ...

    async def put_member(self, member: Member) -> None: ...

    async def of_account(self, account_id: AccountId) -> list[tuple[Group, Member]]: ...

    async def share_group(self, account_id: AccountId, address: Address) -> bool:
        """Whether the account and ``address`` both joined one group (maybe left since)."""
        ...

    # groups across nodes (services/group_federation.py)
    async def add_fanout(
        self,
        group_id: ConversationId,
        domain: Domain,
        seq: int,
        receivers: list[Address],
        now: datetime,
    ) -> None: ...

    async def claim_fanout(
        self, now: datetime, lease_until: datetime, limit: int
    ) -> list[tuple[ConversationId, Domain, int]]: ...

    async def fanout_rows(
        self, group_id: ConversationId, domain: Domain, limit: int
    ) -> list[tuple[int, list[Address]]]: ...

    async def settle_fanout(
        self,
        group_id: ConversationId,
        domain: Domain,
        *,
        up_to_seq: int | None,
        retry_at: datetime,
        attempts: int,
    ) -> None: ...

    async def add_forward(self, forward: GroupForward) -> None: ...

    async def forward_by_txn(
        self, sender_device: str, client_txn_id: str
    ) -> GroupForward | None: ...

    async def claim_forwards(
        self, now: datetime, lease_until: datetime, limit: int
    ) -> list[GroupForward]: ...

    async def settle_forward(
        self, message_id: MessageId, retry_at: datetime | None, attempts: int
    ) -> None: ...


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

    async def take_request_nonce(
        self, origin: Domain, nonce: str, expires_at: datetime, now: datetime
    ) -> bool:
        """False when ``origin`` used ``nonce`` before (a replayed signed request)."""
        ...

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


# --- Registered accounts: verified identities and TOTP ---------------------------


class IdentityKind(StrEnum):
    """What a verified identity is; its value exists on the node only as an HMAC."""

    EMAIL = "email"
    PHONE = "phone"


class Channel(StrEnum):
    """How a verification code travels."""

    EMAIL = "email"
    SMS = "sms"


class VerificationPurpose(StrEnum):
    REGISTER = "register"
    """Upgrade the calling account (``POST /v1/account/verifications``)."""
    LINK = "link"
    """An app's managed account proving an identity (the apps feature merges)."""


@dataclass(frozen=True, slots=True)
class Verification:
    """A code on its way: the target and the code are kept only as HMACs."""

    id: str
    account_id: AccountId
    channel: Channel
    target_hmac: str
    code_hmac: str
    attempts: int
    expires_at: datetime
    purpose: VerificationPurpose
    app_id: str | None


@dataclass(frozen=True, slots=True)
class Identity:
    kind: IdentityKind
    value_hmac: str
    account_id: AccountId
    verified_at: datetime


@dataclass(frozen=True, slots=True)
class TotpSecret:
    account_id: AccountId
    sealed_secret: str
    confirmed_at: datetime | None
    last_step: int
    """Codes of this time step and older are refused (used once, or locked out)."""
    failures: int


class IdentityRepository(Protocol):
    async def owner(self, kind: IdentityKind, value_hmac: str) -> AccountId | None: ...

    async def bind(
        self, account_id: AccountId, kind: IdentityKind, value_hmac: str, now: datetime
    ) -> bool:
        """Insert; False if the identity is held already (by any account)."""
        ...

    async def list_for(self, account_id: AccountId) -> list[Identity]:
        """The account's identities, oldest first."""
        ...

    async def move(self, from_account: AccountId, to_account: AccountId) -> int:
        """Every identity of ``from_account`` now belongs to ``to_account`` (merging
        accounts); how many moved."""
        ...


class VerificationRepository(Protocol):
    async def lock_account(self, account_id: AccountId) -> bool:
        """Serialise starts for one account (a row lock where supported); False if
        there is no such account."""
        ...

    async def sweep(self, expired_before: datetime) -> None:
        """Delete the verifications that expired before this time."""
        ...

    async def expiries_for_account(
        self, account_id: AccountId, expiring_after: datetime
    ) -> list[datetime]:
        """Expiry times of the account's verifications (live, expired or retired)
        expiring after ``expiring_after``, oldest first."""
        ...

    async def expiries_for_target(
        self, target_hmac: str, expiring_after: datetime
    ) -> list[datetime]:
        """The same for every verification sent to one target, by any account."""
        ...

    async def add(self, verification: Verification) -> None: ...

    async def get(self, verification_id: str, *, for_update: bool = False) -> Verification | None:
        """``for_update``: serialise attempts on it (a row lock where supported)."""
        ...

    async def record_failure(self, verification_id: str) -> int:
        """One more wrong code; the number of attempts now."""
        ...

    async def retire(self, verification_id: str) -> None:
        """Forget the code, so that it never confirms; the row stays as a record of
        the send (for the send limits) until swept."""
        ...

    async def delete(self, verification_id: str) -> None: ...


class TotpRepository(Protocol):
    async def get(
        self, account_id: AccountId, *, for_update: bool = False
    ) -> TotpSecret | None: ...

    async def put(self, account_id: AccountId, sealed_secret: str) -> bool:
        """Store a new unconfirmed secret, replacing an unconfirmed one (counters
        reset); False if the account has a confirmed secret."""
        ...

    async def set_state(self, account_id: AccountId, *, last_step: int, failures: int) -> None: ...

    async def confirm(self, account_id: AccountId, step: int, now: datetime) -> None:
        """A code of ``step`` was accepted: confirmed (at ``now`` the first time),
        failures cleared, codes up to ``step`` refused from now on."""
        ...


# --- The app gateway ------------------------------------------------------------------


class AppRepository(Protocol):
    async def create(self, app: App) -> bool:
        """False when the app id is taken."""
        ...

    async def get(self, app_id: AppId) -> App | None: ...

    async def owned_by(self, account_id: AccountId) -> list[App]: ...

    async def all(self) -> list[App]: ...

    async def add_key(self, key: ApiKey, key_hmac: str) -> None: ...

    async def key_by_hmac(self, key_hmac: str) -> ApiKey | None: ...

    async def keys(self, app_id: AppId) -> list[ApiKey]: ...

    async def revoke_key(self, app_id: AppId, key_id: str, now: datetime) -> bool: ...

    async def expire_key(self, app_id: AppId, key_id: str, at: datetime) -> bool: ...

    async def add_grant(self, grant: AppGrant) -> bool: ...

    async def grant(self, account_id: AccountId, app_id: AppId) -> AppGrant | None: ...

    async def grants_of(self, account_id: AccountId) -> list[AppGrant]: ...

    async def delete_grant(self, account_id: AccountId, app_id: AppId) -> None: ...

    async def move_grants(self, from_account: AccountId, to_account: AccountId) -> None: ...

    async def app_devices(self, account_id: AccountId, app_id: AppId) -> list[Device]: ...

    async def put_media_type(self, app_id: AppId, name: str, schema: str, now: datetime) -> bool:
        """False when the app registered that name already."""
        ...

    async def media_type_schema(self, app_id: AppId, name: str) -> str | None: ...

    async def media_types(self, app_id: AppId) -> list[tuple[str, str, datetime]]: ...

    async def set_allowlist(
        self,
        account_id: AccountId,
        peer: Address | None,
        allowed: list[AppId] | None,
        now: datetime,
    ) -> None: ...

    async def allowlists(
        self, account_id: AccountId, peer: Address | None
    ) -> dict[Address | None, list[AppId]]:
        """The account-wide list (key None) and the one for ``peer``, where set."""
        ...


class ErasureRepository(Protocol):
    """Deleting for real (storage/erasure.py); the grant key ids returned are for
    the caller to destroy once the transaction has committed."""

    async def delete_app_data(self, account_id: AccountId, app_id: AppId) -> list[str]: ...

    async def is_abandoned(self, account_id: AccountId) -> bool:
        """No app grant and no live device left."""
        ...

    async def owns_apps(self, account_id: AccountId) -> bool: ...

    async def delete_account(self, account_id: AccountId) -> list[str]: ...

    async def move_devices(self, from_account: AccountId, to_account: AccountId) -> None: ...

    async def accounts_of_app(self, app_id: AppId) -> list[AccountId]: ...

    async def delete_app(self, app_id: AppId) -> None:
        """The app's own rows, once its data for every account is gone."""
        ...


class ExportRepository(Protocol):
    async def account_rows(self, account_id: AccountId) -> dict[str, list[dict[str, Any]]]:
        """Every row of the account's data, by kind (storage/erasure.py)."""
        ...


# --- Webhooks (services/webhooks.py) ----------------------------------------------------


class DeliveryState(StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"


class DeliveryVerdict(StrEnum):
    """What became of one attempt (or of a delivery that cannot be attempted)."""

    DELIVERED = "delivered"
    RETRY = "retry"
    FAILED = "failed"
    DROPPED = "dropped"
    """The message or the webhook is gone: the row goes."""
    RELEASED = "released"
    """Cut short (the worker stopped): due again at once, nothing else changes."""


@dataclass(frozen=True, slots=True)
class Webhook:
    app_id: AppId
    url: str
    sealed_secret: str
    """The signing secret, sealed under the node secret."""
    created_at: datetime


@dataclass(frozen=True, slots=True)
class WebhookDelivery:
    id: str
    app_id: AppId
    account_id: AccountId
    message_id: MessageId
    state: DeliveryState
    attempts: int
    next_attempt_at: datetime | None
    """None once settled (delivered or failed)."""
    last_status: int | None
    last_error: str | None
    created_at: datetime
    finished_at: datetime | None


@dataclass(frozen=True, slots=True)
class ClaimedDelivery:
    """A delivery leased to one worker, with where it goes (None: the webhook is gone)."""

    delivery: WebhookDelivery
    webhook: Webhook | None


@dataclass(frozen=True, slots=True)
class DeliveryOutcome:
    delivery_id: str
    verdict: DeliveryVerdict
    at: datetime
    """When it finished (delivered, failed), or its next attempt (retry, released)."""
    last_status: int | None = None
    last_error: str | None = None


class WebhookRepository(Protocol):
    async def put(self, webhook: Webhook) -> None:
        """Set or replace the app's webhook (its pending deliveries stay)."""
        ...

    async def get(self, app_id: AppId) -> Webhook | None: ...

    async def delete(self, app_id: AppId) -> bool:
        """Remove the webhook and its pending deliveries; False if there was none."""
        ...

    async def app_ids(self) -> list[AppId]:
        """The apps that have a webhook."""
        ...

    async def app_devices(
        self, device_ids: Sequence[DeviceId]
    ) -> list[tuple[DeviceId, AccountId, AppId]]:
        """Those of ``device_ids`` that are live devices of an app with a webhook."""
        ...

    async def add_deliveries(self, deliveries: Sequence[WebhookDelivery]) -> None: ...

    async def claim_due(
        self, now: datetime, lease_until: datetime, limit: int
    ) -> list[ClaimedDelivery]:
        """Lease up to ``limit`` pending deliveries that are due and not leased by
        another worker, counting the attempt; oldest due first."""
        ...

    async def settle(self, outcomes: Sequence[DeliveryOutcome]) -> None: ...

    async def forget_finished(self, before: datetime) -> int:
        """Delete the log of deliveries settled before ``before``; how many."""
        ...

    async def deliveries(
        self, app_id: AppId, state: DeliveryState | None, limit: int
    ) -> list[WebhookDelivery]:
        """The app's delivery log, newest first."""
        ...


class GrantKeyStore(Protocol):
    """The keys of app grants, kept outside the database (storage/grant_keys.py)."""

    def create(self) -> str:
        """A new key; its id."""
        ...

    def key(self, key_id: str) -> bytes | None:
        """The raw key; None once destroyed."""
        ...

    def destroy(self, key_id: str) -> None: ...


class PolicyRepository(Protocol):
    """Plans of accounts, policy overrides, expired history (storage/policies.py)."""

    async def plan(self, account_id: AccountId) -> Plan | None:
        """None: no such account."""
        ...

    async def set_plan(self, account_id: AccountId, plan: Plan) -> None: ...

    async def participant_plans(self, conversation_id: ConversationId) -> dict[AccountId, Plan]:
        """This node's accounts with a connection over the conversation, and their plans."""
        ...

    async def overrides(
        self, conversation_id: ConversationId
    ) -> dict[AccountId, PolicyOverride]: ...

    async def put_override(
        self,
        conversation_id: ConversationId,
        account_id: AccountId,
        override: PolicyOverride,
        now: datetime,
    ) -> None: ...

    async def delete_override(
        self, conversation_id: ConversationId, account_id: AccountId
    ) -> None: ...

    async def shortest_override_retention(self) -> int | None: ...

    async def conversations_with_history_before(
        self, before: datetime, after: ConversationId | None, limit: int
    ) -> list[ConversationId]: ...

    async def delete_history_before(
        self, conversation_id: ConversationId, before: datetime, limit: int
    ) -> list[MessageId]:
        """Delete up to ``limit`` messages sent before ``before`` and every row
        pointing at them; their ids."""
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

    @property
    def apps(self) -> AppRepository: ...

    @property
    def erasure(self) -> ErasureRepository: ...

    @property
    def export(self) -> ExportRepository: ...

    @property
    def webhooks(self) -> WebhookRepository: ...

    @property
    def identities(self) -> IdentityRepository: ...

    @property
    def verifications(self) -> VerificationRepository: ...

    @property
    def totp(self) -> TotpRepository: ...

    @property
    def preferences(self) -> PreferenceRepository: ...

    @property
    def contact_requests(self) -> ContactRequestRepository: ...

    @property
    def blocks(self) -> BlockRepository: ...

    @property
    def policies(self) -> PolicyRepository: ...

    @property
    def groups(self) -> GroupRepository: ...

    @property
    def revisions(self) -> RevisionRepository: ...

    @property
    def remote_requests(self) -> RemoteRequestRepository: ...

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


# --- Verification senders -------------------------------------------------------


class DeliveryFailed(Exception):
    """The mail or SMS server refused the message or could not be reached. The
    exception never names the recipient (it may end up in a log)."""


class EmailSender(Protocol):
    async def send(self, to: str, subject: str, text: str) -> None:
        """Hand one plain-text mail to the server; raises :class:`DeliveryFailed`."""
        ...


class SmsSender(Protocol):
    async def send(self, to: str, text: str) -> None:
        """Hand one text message (``to`` in E.164) to the operator's SMS gateway;
        raises :class:`DeliveryFailed`."""
        ...
