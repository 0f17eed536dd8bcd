"""Apps: what an app is, what its API keys may do, and what its messages carry.

An app belongs to a registered account, has an Ed25519 app key (its backend
keeps the private half) and API keys that the node keeps as HMACs only. Every
message sent through an app carries the app's id and the node's attestation:
the node's signature over the envelope, so that a recipient (its node, its
SDK) can check which app a message came from and that nothing was altered on
the way. An app that uses the SDK signs the envelope too.
"""

from __future__ import annotations

import enum
import hashlib
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from openmessenger.core.errors import InvalidInput
from openmessenger.core.ids import AccountId, Address, DeviceId

AppId = str
API_KEY_PREFIX = "omk_"
"""API keys read ``omk_<key id>_<secret>``: a bearer token that says it is an API key."""

APP_ID_PATTERN = r"^[a-z][a-z0-9-]{2,31}$"
"""App ids: they name custom media types (``app.<app-id>.<name>``) and URLs."""
_APP_ID_RE = re.compile(APP_ID_PATTERN)
MAX_APP_NAME_LENGTH = 64


class Scope(enum.StrEnum):
    """What an API key may do. A key has one or more; a new key has them all."""

    ACCOUNTS = "accounts"
    """Create its users' accounts and prove their e-mail or phone."""
    MESSAGES = "messages"
    """Act as its users' device: pass codes, connections, send, sync, stream."""
    MEDIA_TYPES = "media-types"
    """Register custom media types."""
    WEBHOOKS = "webhooks"
    """Set the webhook and read its delivery log."""
    DATA = "data"
    """Delete what the app holds for a user."""


ALL_SCOPES = frozenset(Scope)


def parse_app_id(value: str, *, field: str = "app_id") -> AppId:
    if not isinstance(value, str) or not _APP_ID_RE.fullmatch(value):
        raise InvalidInput(
            field, "must be 3 to 32 lower-case letters, digits or hyphens, starting with a letter"
        )
    return value


def parse_app_name(value: str, *, field: str = "name") -> str:
    name = value.strip()
    if not name or len(name) > MAX_APP_NAME_LENGTH or not name.isprintable():
        raise InvalidInput(field, f"must be 1 to {MAX_APP_NAME_LENGTH} printable characters")
    return name


def parse_scopes(values: Iterable[str] | None, *, field: str = "scopes") -> frozenset[Scope]:
    if values is None:
        return ALL_SCOPES
    scopes = set()
    for value in values:
        try:
            scopes.add(Scope(value))
        except ValueError:
            known = ", ".join(s.value for s in Scope)
            raise InvalidInput(field, f"{value!r} is not a scope; scopes are {known}") from None
    if not scopes:
        raise InvalidInput(field, "must name at least one scope")
    return frozenset(scopes)


def format_scopes(scopes: Iterable[Scope]) -> str:
    return " ".join(sorted(s.value for s in scopes))


def read_scopes(stored: str) -> frozenset[Scope]:
    return frozenset(Scope(s) for s in stored.split())


@dataclass(frozen=True, slots=True)
class App:
    id: AppId
    owner_account_id: AccountId
    name: str
    signing_key: str
    """The app key: Ed25519 public key, base64."""
    created_at: datetime


@dataclass(frozen=True, slots=True)
class ApiKey:
    id: str
    app_id: AppId
    scopes: frozenset[Scope]
    label: str | None
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None

    def usable(self, now: datetime) -> bool:
        return self.revoked_at is None and (self.expires_at is None or now < self.expires_at)


@dataclass(frozen=True, slots=True)
class AppGrant:
    """An app's link to an account; ``key_id`` names the grant's key (outside the database)."""

    account_id: AccountId
    app_id: AppId
    key_id: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class AppCaller:
    """An app authenticated by one of its API keys."""

    app: App
    key: ApiKey

    def allows(self, scope: Scope) -> bool:
        return scope in self.key.scopes


# --- Provenance ----------------------------------------------------------------------

PROVENANCE_VERSION = 1


def body_digest(body: str) -> str:
    """SHA-256 of the body as sent (ciphertext or text), hex."""
    return hashlib.sha256(body.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Envelope:
    """What the app and the node sign: who sent what, to whom, when, through which app.

    A 1:1 conversation is named by its two addresses (each node numbers its own
    conversations), so ``to`` stands for the conversation on the wire.
    """

    app_id: AppId
    sender: Address
    sender_device: DeviceId
    to: Address
    body_sha256: str
    media_type: str
    metadata_sha256: str | None

    def app_signed_bytes(self) -> bytes:
        """What the app signs (it cannot know the node's timestamp or message id)."""
        return _lines(
            "openmessenger-app-envelope",
            PROVENANCE_VERSION,
            self.app_id,
            self.sender,
            self.to,
            self.body_sha256,
            self.media_type,
            self.metadata_sha256 or "",
        )

    def node_signed_bytes(
        self, *, node: str, message_id: str, sent_at_s: int, app_key: str
    ) -> bytes:
        """What the sender's node attests: also the app key it knew the app by, so
        that the app's own signature cannot be swapped for another key's."""
        return _lines(
            "openmessenger-node-attestation",
            PROVENANCE_VERSION,
            node,
            message_id,
            sent_at_s,
            self.app_id,
            app_key,
            self.sender,
            self.sender_device,
            self.to,
            self.body_sha256,
            self.media_type,
            self.metadata_sha256 or "",
        )


def _lines(*parts: object) -> bytes:
    # Newlines cannot occur in any part (ids, addresses, hex digests, media type
    # names are all validated), so joining them is unambiguous.
    text = [str(p) for p in parts]
    assert all("\n" not in p for p in text)
    return "\n".join(text).encode()


def metadata_digest(canonical_metadata: str | None) -> str | None:
    return hashlib.sha256(canonical_metadata.encode()).hexdigest() if canonical_metadata else None


@dataclass(frozen=True, slots=True)
class Provenance:
    """Which app a message came through, as its sender's node attests it."""

    app_id: AppId
    app_key: str
    """The app's Ed25519 public key when the node attested (it may rotate later)."""
    node: str
    """The attesting node's domain; its signing key checks ``attestation``."""
    attestation: str
    """The node's Ed25519 signature over :meth:`Envelope.node_signed_bytes`, base64."""
    message_id: str
    """The message id, device and time (unix seconds) the node attested: those of
    the sending node, which a receiving node's copy of the message does not keep."""
    sender_device: str
    sent_at: int
    app_signature: str | None = None
    """The app's own signature over :meth:`Envelope.app_signed_bytes` (SDK apps)."""


def provenance_to_json(provenance: Provenance) -> str:
    return json.dumps(
        {
            "app_id": provenance.app_id,
            "app_key": provenance.app_key,
            "node": provenance.node,
            "attestation": provenance.attestation,
            "message_id": provenance.message_id,
            "sender_device": provenance.sender_device,
            "sent_at": provenance.sent_at,
            "app_signature": provenance.app_signature,
        },
        separators=(",", ":"),
    )


def provenance_from_json(stored: str) -> Provenance:
    data = json.loads(stored)
    return Provenance(
        app_id=data["app_id"],
        app_key=data["app_key"],
        node=data["node"],
        attestation=data["attestation"],
        message_id=data["message_id"],
        sender_device=data["sender_device"],
        sent_at=int(data["sent_at"]),
        app_signature=data.get("app_signature"),
    )
