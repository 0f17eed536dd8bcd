"""The SDK side of the app gateway: checking which app a message came through,
signing as an app, and making a managed account whose device is this SDK.

A message sent through an app carries the app's id, the sending node's
attestation over the envelope, and the app's own signature when the app uses
the SDK. The SDK checks the attestation with the sending node's key when that
is its own node (it asks for the key once), and the app's signature wherever
there is one; a tag from another node was checked by this device's node on
arrival (docs/apps.md). A tag that does not verify makes the message unreadable
here: its text is withheld and ``error`` says why.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from openmessenger.client.errors import ClientError
from openmessenger.core.apps import Envelope, body_digest, metadata_digest
from openmessenger.core.ids import Address, DeviceId
from openmessenger.crypto.app_keys import sign_with_seed
from openmessenger.crypto.keys import verify_ed25519
from openmessenger.protocol import client_api as wire
from openmessenger.protocol.e2e import canonical_json


@dataclass(frozen=True, slots=True)
class AppSigning:
    """An app backend's identity for the SDK: its app id and the app key's seed."""

    app_id: str
    seed: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class AppTag:
    """Which app a message came through."""

    app_id: str
    node: str
    """The node that attested it: the sender's."""
    checked_here: bool
    """True when this SDK checked the attestation itself (the sender is on this
    device's node); False when this device's node checked it on arrival."""
    signed_by_app: bool
    """The app signed the envelope with its key too (an app using the SDK)."""


class ProvenanceError(ClientError):
    """The app tag does not verify for this message."""


def envelope_of(
    *,
    app_id: str,
    sender: str,
    sender_device: str,
    to: str,
    body: str,
    media_type: str,
    metadata: dict[str, Any] | None,
) -> Envelope:
    canonical = canonical_json(metadata).decode() if metadata is not None else None
    return Envelope(
        app_id=app_id,
        sender=Address(sender),
        sender_device=DeviceId(sender_device),
        to=Address(to),
        body_sha256=body_digest(body),
        media_type=media_type,
        metadata_sha256=metadata_digest(canonical),
    )


def app_signature(
    signing: AppSigning,
    *,
    sender: str,
    sender_device: str,
    to: str,
    body: str,
    media_type: str,
    metadata: dict[str, Any] | None,
) -> str:
    envelope = envelope_of(
        app_id=signing.app_id,
        sender=sender,
        sender_device=sender_device,
        to=to,
        body=body,
        media_type=media_type,
        metadata=metadata,
    )
    return sign_with_seed(signing.seed, envelope.app_signed_bytes())


def check_tag(
    message: wire.MessageOut, signed_body: str, own_node: str, own_node_key: str | None
) -> AppTag | None:
    """The message's app tag, checked; ``signed_body`` is what the sender signed (the
    text of a transport-encrypted message, the body of an end-to-end one).
    ProvenanceError when it does not verify."""
    tag = message.app
    if tag is None:
        return None
    envelope = envelope_of(
        app_id=tag.app_id,
        sender=message.sender,
        sender_device=tag.sender_device,
        to=message.recipient,
        body=signed_body,
        media_type=message.media_type,
        metadata=message.metadata,
    )
    if tag.app_signature is not None and not verify_ed25519(
        tag.app_key, envelope.app_signed_bytes(), tag.app_signature
    ):
        raise ProvenanceError(f"the signature of the app {tag.app_id!r} does not verify")
    checked_here = tag.node == own_node
    if checked_here:
        signed = envelope.node_signed_bytes(
            node=tag.node, message_id=tag.message_id, sent_at_s=tag.sent_at, app_key=tag.app_key
        )
        if own_node_key is None or not verify_ed25519(own_node_key, signed, tag.attestation):
            raise ProvenanceError(
                f"the node's attestation of the app {tag.app_id!r} does not verify"
            )
    return AppTag(tag.app_id, tag.node, checked_here, tag.app_signature is not None)
