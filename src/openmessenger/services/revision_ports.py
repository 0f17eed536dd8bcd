"""The port of receipts, edits and deletions (services/revisions.py);
``Transaction`` in ports.py exposes it. Implemented in storage/revisions.py."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

from openmessenger.core.envelope import AppendResult, Message
from openmessenger.core.ids import AccountId, Address, MessageId
from openmessenger.core.revisions import (
    OutboundRevision,
    Receipt,
    ReceiptKind,
    RemoteReference,
    RevisionAppend,
)


class RevisionRepository(Protocol):
    async def append(self, request: RevisionAppend) -> AppendResult:
        """Append an edit or deletion event to a 1:1 conversation (seq, streams)."""
        ...

    async def mark_edited(self, message_id: MessageId, at: datetime) -> None: ...

    async def set_replaces(self, message_id: MessageId, replaces: MessageId) -> None: ...

    async def erase(self, message_id: MessageId, at: datetime) -> list[MessageId]:
        """Erase the message and its edits in place (tombstones); the ids erased."""
        ...

    async def add_receipt(
        self,
        message: Message,
        sender_account: AccountId,
        reader_account: AccountId,
        reader: Address,
        kind: ReceiptKind,
        at: datetime,
    ) -> Receipt | None:
        """None when this receipt was recorded before."""
        ...

    async def receipts_of(self, message_id: MessageId) -> list[Receipt]: ...

    async def receipt_feed(
        self, sender_account: AccountId, since: int, limit: int
    ) -> list[Receipt]: ...

    # -- across nodes (services/message_federation.py) ------------------------------------

    async def sent_reference(self, message_id: MessageId) -> RemoteReference | None:
        """How the other node names a message this node sent there."""
        ...

    async def received_reference(self, message_id: MessageId) -> RemoteReference | None:
        """How the sender's node names a message this node received from it."""
        ...

    async def sent_by_reference(
        self, owner: AccountId, peer: Address, nonce: str
    ) -> MessageId | None: ...

    async def received_by_reference(
        self, owner: AccountId, peer: Address, nonce: str
    ) -> MessageId | None: ...

    async def in_outbox(self, message_id: MessageId) -> bool: ...

    async def queue_out(
        self, domain: str, message_id: MessageId, item: str, now: datetime, give_up_at: datetime
    ) -> bool:
        """False when the same item already waits."""
        ...

    async def claim_out(
        self, now: datetime, lease_until: datetime, limit: int
    ) -> list[tuple[str, int]]: ...

    async def out_rows(self, domain: str, limit: int) -> list[OutboundRevision]: ...

    async def settle_out(
        self,
        domain: str,
        done: list[int],
        *,
        now: datetime,
        retry_at: datetime,
        attempts: int,
        requeue: Sequence[int] = (),
    ) -> None:
        """Drop ``done``; move ``requeue`` behind every other item of ``domain``;
        what the attempt leased is due at ``retry_at``, what was queued since now."""
        ...
