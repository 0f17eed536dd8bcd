"""The envelope fields beyond the body: media type and metadata, and the app
a message came through with the node's attestation of it.

The node reads and validates these (docs/apps.md); the content stays in the
body. A message sent by an app's device is tagged with the app and attested
by the node's key over the envelope; an SDK app signs the envelope as well,
and a signature that does not verify is refused. A recipient account that
takes messages from some apps only refuses the others, and nothing is stored.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from openmessenger.core.apps import (
    App,
    Envelope,
    Provenance,
    body_digest,
    metadata_digest,
)
from openmessenger.core.envelope import Encryption
from openmessenger.core.errors import Forbidden, InvalidInput
from openmessenger.core.ids import Address, DeviceId, Domain, ParsedAddress
from openmessenger.core.records import AuthenticatedDevice
from openmessenger.crypto.keys import verify_ed25519
from openmessenger.protocol import openmsg
from openmessenger.protocol.e2e import canonical_json
from openmessenger.protocol.media_types import parse_media_type, validate_metadata
from openmessenger.services.apps import accepts_app
from openmessenger.services.ports import Secrets, Transaction, UnitOfWork

TEXT = "text"


@dataclass(frozen=True, slots=True)
class PreparedEnvelope:
    media_type: str
    metadata: str | None
    """Canonical JSON."""
    app: App | None
    envelope: Envelope | None
    app_signature: str | None
    grant_key_id: str | None


def plain_text(
    caller: AuthenticatedDevice,
    media_type: str,
    metadata: object | None,
    app_signature: str | None,
) -> bool:
    """The common case that needs no lookups: text, no metadata, a native device."""
    return (
        media_type == TEXT
        and metadata is None
        and app_signature is None
        and caller.device.app_id is None
    )


class AppEnvelopes:
    def __init__(self, uow: UnitOfWork, secrets: Secrets, domain: Domain) -> None:
        self._uow = uow
        self._secrets = secrets
        self._domain = domain

    async def prepare(
        self,
        caller: AuthenticatedDevice,
        recipient: ParsedAddress,
        body: str,
        encryption: Encryption,
        media_type: str,
        metadata: object | None,
        app_signature: str | None,
    ) -> PreparedEnvelope:
        kind = parse_media_type(media_type)
        app_id = caller.device.app_id
        if app_id is None and app_signature is not None:
            raise InvalidInput("app_signature", "only an app's device signs as an app")
        if caller.device.node_held and encryption is Encryption.END_TO_END:
            raise InvalidInput(
                "encryption",
                "a device whose keys the node holds sends plain text (transport-encrypted)",
            )
        async with self._uow() as tx:
            schema: dict[str, Any] | None = None
            if kind.custom:
                assert kind.app_id is not None and kind.local_name is not None
                stored = await tx.apps.media_type_schema(kind.app_id, kind.local_name)
                schema = _json_object(stored) if stored is not None else None
            checked = validate_metadata(kind, metadata, schema)
            app = await tx.apps.get(app_id) if app_id is not None else None
            grant = await tx.apps.grant(caller.account.id, app_id) if app_id is not None else None
            if app is not None and recipient.domain == self._domain:
                await _check_allowlist(tx, caller, recipient, app.id)
        canonical = canonical_json(checked).decode() if checked is not None else None
        envelope = None
        if app is not None:
            envelope = Envelope(
                app_id=app.id,
                sender=caller.account.address,
                sender_device=caller.device.id,
                to=recipient.address,
                body_sha256=body_digest(body),
                media_type=kind.name,
                metadata_sha256=metadata_digest(canonical),
            )
            if app_signature is not None and not verify_ed25519(
                app.signing_key, envelope.app_signed_bytes(), app_signature
            ):
                raise Forbidden(
                    "The app signature does not verify for this envelope and app key.",
                    code="app_signature_invalid",
                )
        return PreparedEnvelope(
            media_type=kind.name,
            metadata=canonical,
            app=app,
            envelope=envelope,
            app_signature=app_signature,
            grant_key_id=grant.key_id if grant is not None else None,
        )

    def attest(
        self, prepared: PreparedEnvelope, message_id: str, sent_at: datetime
    ) -> Provenance | None:
        if prepared.app is None or prepared.envelope is None:
            return None
        sent_at_s = int(sent_at.timestamp())
        signed = prepared.envelope.node_signed_bytes(
            node=self._domain,
            message_id=message_id,
            sent_at_s=sent_at_s,
            app_key=prepared.app.signing_key,
        )
        return Provenance(
            app_id=prepared.app.id,
            app_key=prepared.app.signing_key,
            node=self._domain,
            attestation=self._secrets.sign(signed),
            message_id=message_id,
            sender_device=prepared.envelope.sender_device,
            sent_at=sent_at_s,
            app_signature=prepared.app_signature,
        )


async def _check_allowlist(
    tx: Transaction, caller: AuthenticatedDevice, recipient: ParsedAddress, app_id: str
) -> None:
    # Only over an existing connection: a stranger learns nothing from the answer
    # (the send is refused as for any address it is not connected with).
    if await tx.connections.get(caller.account.id, recipient.address) is None:
        return
    account = await tx.accounts.by_address(recipient.address)
    if account is not None and not await accepts_app(
        tx, account.id, caller.account.address, app_id
    ):
        raise Forbidden(
            f"{recipient.address} does not take messages sent through the app {app_id!r}.",
            code="app_not_accepted",
        )


def _json_object(stored: str) -> dict[str, Any]:
    value = json.loads(stored)
    assert isinstance(value, dict)
    return value


# --- envelopes from our other nodes (federation, capability "envelope") --------------


@dataclass(frozen=True, slots=True)
class ReceivedEnvelope:
    media_type: str = TEXT
    metadata: str | None = None
    provenance: Provenance | None = None


@dataclass(frozen=True, slots=True)
class RemoteEnvelope:
    """An envelope another node sent, checked in form; the attestation is checked
    with that node's key by the caller (it has the node's descriptor)."""

    media_type: str
    metadata: str | None
    wire: openmsg.Envelope
    envelope: Envelope | None

    @property
    def app(self) -> openmsg.AppTag | None:
        return self.wire.app

    def attested_bytes(self, node: str) -> bytes:
        assert self.envelope is not None and self.wire.app is not None
        return self.envelope.node_signed_bytes(
            node=node,
            message_id=self.wire.message_id,
            sent_at_s=self.wire.sent_at,
            app_key=self.wire.app.app_key,
        )

    def provenance(self, node: str) -> Provenance:
        assert self.wire.app is not None
        return Provenance(
            app_id=self.wire.app.app_id,
            app_key=self.wire.app.app_key,
            node=node,
            attestation=self.wire.app.attestation,
            message_id=self.wire.message_id,
            sender_device=self.wire.sender_device,
            sent_at=self.wire.sent_at,
            app_signature=self.wire.app.app_signature,
        )


_ANY_OBJECT: dict[str, Any] = {"type": "object"}


def check_remote_envelope(
    wire: openmsg.Envelope, sender: Address, to: Address, body: str
) -> RemoteEnvelope:
    """Media type and metadata in form (a custom type's schema lives on the sender's
    node: here its metadata need only be a JSON object within the size limit), and
    the app's own signature where there is one. InvalidInput names what is wrong."""
    kind = parse_media_type(wire.media_type, field="envelope.media_type")
    checked = validate_metadata(
        kind, wire.metadata, _ANY_OBJECT if kind.custom else None, field="envelope.metadata"
    )
    canonical = canonical_json(checked).decode() if checked is not None else None
    envelope = None
    if wire.app is not None:
        envelope = Envelope(
            app_id=wire.app.app_id,
            sender=sender,
            sender_device=DeviceId(wire.sender_device),
            to=to,
            body_sha256=body_digest(body),
            media_type=kind.name,
            metadata_sha256=metadata_digest(canonical),
        )
        if wire.app.app_signature is not None and not verify_ed25519(
            wire.app.app_key, envelope.app_signed_bytes(), wire.app.app_signature
        ):
            raise InvalidInput("envelope.app.app_signature", "does not verify")
    return RemoteEnvelope(kind.name, canonical, wire, envelope)
