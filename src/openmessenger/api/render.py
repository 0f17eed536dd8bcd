"""Domain records -> client API models."""

from __future__ import annotations

import json

from openmessenger.core.apps import Provenance
from openmessenger.core.envelope import Encryption, Message, StreamEvent
from openmessenger.core.records import Account, Contact, PassCode
from openmessenger.protocol.client_api import (
    ContactOut,
    MeOut,
    MessageOut,
    PassCodeInfo,
    ProvenanceOut,
    StreamEventOut,
)
from openmessenger.services.ports import Clock


def message(m: Message) -> MessageOut:
    return MessageOut(
        id=m.id,
        conversation_id=m.conversation_id,
        seq=m.seq,
        sender=m.sender,
        sender_device=m.sender_device,
        recipient=m.recipient,
        body=m.body,
        sent_at=m.sent_at,
        status=m.status.value,
        encryption=m.encryption.value,
        media_type=m.media_type,
        metadata=json.loads(m.metadata) if m.metadata else None,
        app=_provenance(m.provenance) if m.provenance else None,
        replaces=m.replaces,
        edited_at=m.edited_at,
        deleted_at=m.deleted_at,
    )


def _provenance(p: Provenance) -> ProvenanceOut:
    return ProvenanceOut(
        app_id=p.app_id,
        app_key=p.app_key,
        node=p.node,
        attestation=p.attestation,
        message_id=p.message_id,
        sender_device=p.sender_device,
        sent_at=p.sent_at,
        app_signature=p.app_signature,
    )


def me(account: Account, device_id: str) -> MeOut:
    return MeOut(
        address=account.address,
        display_name=account.display_name,
        device_id=device_id,
        kind=account.kind.value,
        owner_kind=account.owner_kind.value if account.owner_kind else None,
    )


def stream_event(e: StreamEvent) -> StreamEventOut:
    return StreamEventOut(position=e.position, message=message(e.message))


def contact(c: Contact, encryption: Encryption) -> ContactOut:
    return ContactOut(
        address=c.address,
        display_name=c.display_name,
        conversation_id=c.conversation_id,
        connected_at=c.connected_at,
        accepts_messages=c.accepts_messages,
        peer_accepts_messages=c.peer_accepts_messages,
        encryption=encryption.value,
    )


def pass_code(code: PassCode, clock: Clock) -> PassCodeInfo:
    return PassCodeInfo(
        id=code.id,
        state=code.effective_state(clock.now()).value,
        for_address=code.bound_to,
        created_at=code.created_at,
        expires_at=code.expires_at,
        used_by=code.used_by,
        used_at=code.used_at,
    )
