"""Receipts, edits and deletions in the database (services/revisions.py).

A deletion really erases: the body, metadata, media type, app tag and
``replaces`` of the message and of each of its edits are overwritten in place
(what stays is a tombstone: id, seq, sender, recipient, sent_at, ``deleted_at``),
and the receipts and webhook deliveries that point at them are deleted.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, insert, select, update

from openmessenger.core.envelope import (
    AppendResult,
    DeliveryStatus,
    Encryption,
    Message,
    StreamEvent,
)
from openmessenger.core.ids import AccountId, Address, ConversationId, DeviceId, MessageId
from openmessenger.core.revisions import (
    EDIT_MEDIA_TYPE,
    TOMBSTONE_MEDIA_TYPE,
    OutboundRevision,
    Receipt,
    ReceiptKind,
    RemoteReference,
    RevisionAppend,
    key_shares_only,
)
from openmessenger.storage._base import Repository
from openmessenger.storage.tables import (
    conversations,
    device_streams,
    devices,
    messages,
    openmsg_outbox,
    openmsg_received,
    openmsg_revisions_out,
    openmsg_sent,
    receipts,
    webhook_deliveries,
)

_COLUMNS = (
    messages.c.id,
    messages.c.conversation_id,
    messages.c.seq,
    messages.c.sender,
    messages.c.sender_device,
    messages.c.recipient,
    messages.c.body,
    messages.c.sent_at,
    messages.c.status,
    messages.c.encryption,
    messages.c.media_type,
    messages.c.media_metadata,
    messages.c.replaces,
    messages.c.edited_at,
    messages.c.deleted_at,
)


def _message(row: Any) -> Message:
    return Message(
        id=MessageId(row.id),
        conversation_id=ConversationId(row.conversation_id),
        seq=int(row.seq),
        sender=Address(row.sender),
        sender_device=DeviceId(row.sender_device),
        recipient=Address(row.recipient),
        body=row.body,
        sent_at=row.sent_at,
        status=DeliveryStatus(row.status),
        encryption=Encryption(row.encryption),
        media_type=row.media_type,
        metadata=row.media_metadata,
        replaces=MessageId(row.replaces) if row.replaces else None,
        edited_at=row.edited_at,
        deleted_at=row.deleted_at,
    )


def _receipt(row: Any) -> Receipt:
    return Receipt(
        id=int(row.id),
        message_id=MessageId(row.message_id),
        conversation_id=ConversationId(row.conversation_id),
        sender_account=AccountId(row.sender_account_id),
        reader=Address(row.reader),
        kind=ReceiptKind(row.kind),
        at=row.at,
    )


class SqlRevisions(Repository):
    async def append(self, request: RevisionAppend) -> AppendResult:
        """The conversation's next ``seq`` and a place in each receiving device's
        stream; a ``client_txn_id`` the device used before gives that message back."""
        # The conversation locked before the retry lookup: two concurrent retries of
        # one edit find the first one's row instead of both inserting it.
        await self._conn.execute(
            select(conversations.c.id)
            .where(conversations.c.id == request.conversation_id)
            .with_for_update()
        )
        if request.client_txn_id:
            query = select(*_COLUMNS).where(
                messages.c.sender_device == request.sender_device,
                messages.c.client_txn_id == request.client_txn_id,
            )
            row = (await self._conn.execute(query)).first()
            if row is not None:
                return AppendResult(_message(row), created=False)
        seq_row = (
            await self._conn.execute(
                update(conversations)
                .where(conversations.c.id == request.conversation_id)
                .values(last_seq=conversations.c.last_seq + 1)
                .returning(conversations.c.last_seq)
            )
        ).first()
        assert seq_row is not None, "the conversation exists"
        receivers = [
            str(r.id)
            for r in await self._conn.execute(
                select(devices.c.id)
                .where(
                    devices.c.account_id.in_(list(request.receivers)),
                    devices.c.revoked_at.is_(None),
                    devices.c.id != request.sender_device,
                )
                .order_by(devices.c.id)
            )
        ]
        positions: dict[str, int] = {}
        for device_id in receivers:
            head = (
                await self._conn.execute(
                    update(devices)
                    .where(devices.c.id == device_id)
                    .values(stream_head=devices.c.stream_head + 1)
                    .returning(devices.c.stream_head)
                )
            ).scalar_one()
            positions[device_id] = int(head)
        metadata = json.dumps(request.metadata, sort_keys=True, separators=(",", ":"))
        stored = Message(
            id=request.message_id,
            conversation_id=request.conversation_id,
            seq=int(seq_row[0]),
            sender=request.sender,
            sender_device=DeviceId(request.sender_device),
            recipient=request.recipient,
            body=request.body,
            sent_at=request.sent_at,
            status=DeliveryStatus.DELIVERED,
            encryption=request.encryption,
            media_type=request.media_type,
            metadata=metadata,
            replaces=request.replaces,
        )
        await self._conn.execute(
            insert(messages).values(
                id=stored.id,
                conversation_id=stored.conversation_id,
                seq=stored.seq,
                sender=stored.sender,
                sender_device=stored.sender_device,
                recipient=stored.recipient,
                body=stored.body,
                sent_at=stored.sent_at,
                status=stored.status.value,
                encryption=stored.encryption.value,
                client_txn_id=request.client_txn_id,
                media_type=stored.media_type,
                media_metadata=metadata,
                replaces=stored.replaces,
            )
        )
        events = tuple(StreamEvent(DeviceId(d), positions[d], stored) for d in receivers)
        if events:
            await self._conn.execute(
                insert(device_streams),
                [
                    {"device_id": e.device_id, "position": e.position, "message_id": stored.id}
                    for e in events
                ],
            )
        return AppendResult(stored, created=True, events=events)

    async def mark_edited(self, message_id: MessageId, at: datetime) -> None:
        await self._conn.execute(
            update(messages).where(messages.c.id == message_id).values(edited_at=at)
        )

    async def set_replaces(self, message_id: MessageId, replaces: MessageId) -> None:
        """For an event appended by the group path, which does not write it."""
        await self._conn.execute(
            update(messages).where(messages.c.id == message_id).values(replaces=replaces)
        )

    async def erase(self, message_id: MessageId, at: datetime) -> list[MessageId]:
        """Erase ``message_id`` and its edits, leaving tombstones; the ids erased."""
        found = await self._conn.execute(
            select(messages.c.id, messages.c.body).where(
                (messages.c.id == message_id)
                | ((messages.c.replaces == message_id) & (messages.c.media_type == EDIT_MEDIA_TYPE))
            )
        )
        kept = {MessageId(r.id): key_shares_only(r.body) for r in found}
        ids = list(kept)
        for table, column in (
            (receipts, receipts.c.message_id),
            (webhook_deliveries, webhook_deliveries.c.message_id),
            # Not yet on its way to another node: it never goes (nor do its edits).
            (openmsg_outbox, openmsg_outbox.c.message_id),
            (openmsg_revisions_out, openmsg_revisions_out.c.message_id),
            (openmsg_sent, openmsg_sent.c.message_id),
        ):
            await self._conn.execute(delete(table).where(column.in_(ids)))
        for erased, body in kept.items():
            await self._conn.execute(
                update(messages).where(messages.c.id == erased).values(body=body)
            )
        await self._conn.execute(
            update(messages)
            .where(messages.c.id.in_(ids))
            .values(
                media_metadata=None,
                media_type=TOMBSTONE_MEDIA_TYPE,
                app_id=None,
                provenance=None,
                replaces=None,
                edited_at=None,
                deleted_at=at,
            )
        )
        return ids

    # -- receipts ---------------------------------------------------------------------

    async def add_receipt(
        self,
        message: Message,
        sender_account: AccountId,
        reader_account: AccountId,
        reader: Address,
        kind: ReceiptKind,
        at: datetime,
    ) -> Receipt | None:
        """Record a receipt once; None when it was recorded before."""
        added = await self._insert_unique(
            insert(receipts).values(
                message_id=message.id,
                conversation_id=message.conversation_id,
                sender_account_id=sender_account,
                reader_account_id=reader_account,
                reader=reader,
                kind=kind.value,
                at=at,
            )
        )
        if not added:
            return None
        row = (
            await self._conn.execute(
                select(receipts).where(
                    receipts.c.message_id == message.id,
                    receipts.c.reader_account_id == reader_account,
                    receipts.c.kind == kind.value,
                )
            )
        ).first()
        assert row is not None
        return _receipt(row)

    async def receipts_of(self, message_id: MessageId) -> list[Receipt]:
        query = select(receipts).where(receipts.c.message_id == message_id).order_by(receipts.c.id)
        return [_receipt(r) for r in await self._conn.execute(query)]

    async def receipt_feed(
        self, sender_account: AccountId, since: int, limit: int
    ) -> list[Receipt]:
        query = (
            select(receipts)
            .where(receipts.c.sender_account_id == sender_account, receipts.c.id > since)
            .order_by(receipts.c.id)
            .limit(limit)
        )
        return [_receipt(r) for r in await self._conn.execute(query)]

    # -- across nodes -----------------------------------------------------------------

    async def sent_reference(self, message_id: MessageId) -> RemoteReference | None:
        """How the other node names a message this node sent there."""
        query = select(messages.c.sender, openmsg_sent.c.peer_address, openmsg_sent.c.nonce).join(
            messages, messages.c.id == openmsg_sent.c.message_id
        )
        row = (
            await self._conn.execute(query.where(openmsg_sent.c.message_id == message_id))
        ).first()
        if row is None:
            return None
        return RemoteReference(Address(row.sender), Address(row.peer_address), str(row.nonce))

    async def received_reference(self, message_id: MessageId) -> RemoteReference | None:
        """How the sender's node names a message this node received from it."""
        query = select(
            openmsg_received.c.peer_address, messages.c.recipient, openmsg_received.c.nonce
        ).join(messages, messages.c.id == openmsg_received.c.message_id)
        row = (
            await self._conn.execute(query.where(openmsg_received.c.message_id == message_id))
        ).first()
        if row is None:
            return None
        return RemoteReference(Address(row.peer_address), Address(row.recipient), str(row.nonce))

    async def sent_by_reference(
        self, owner: AccountId, peer: Address, nonce: str
    ) -> MessageId | None:
        query = select(openmsg_sent.c.message_id).where(
            openmsg_sent.c.owner_account_id == owner,
            openmsg_sent.c.peer_address == peer,
            openmsg_sent.c.nonce == nonce,
        )
        found = (await self._conn.execute(query)).scalar()
        return MessageId(found) if found is not None else None

    async def received_by_reference(
        self, owner: AccountId, peer: Address, nonce: str
    ) -> MessageId | None:
        query = select(openmsg_received.c.message_id).where(
            openmsg_received.c.owner_account_id == owner,
            openmsg_received.c.peer_address == peer,
            openmsg_received.c.nonce == nonce,
        )
        found = (await self._conn.execute(query)).scalar()
        return MessageId(found) if found is not None else None

    async def in_outbox(self, message_id: MessageId) -> bool:
        """Whether the message still waits for its first delivery."""
        query = select(openmsg_outbox.c.message_id).where(openmsg_outbox.c.message_id == message_id)
        return (await self._conn.execute(query)).first() is not None

    async def queue_out(
        self, domain: str, message_id: MessageId, item: str, now: datetime, give_up_at: datetime
    ) -> bool:
        """Queue an item for ``domain``; False when the same one already waits."""
        waiting = select(openmsg_revisions_out.c.id).where(
            openmsg_revisions_out.c.message_id == message_id,
            openmsg_revisions_out.c.item == item,
        )
        if (await self._conn.execute(waiting)).first() is not None:
            return False
        await self._conn.execute(
            insert(openmsg_revisions_out).values(
                domain=domain,
                message_id=message_id,
                item=item,
                attempts=0,
                next_attempt_at=now,
                give_up_at=give_up_at,
            )
        )
        return True

    async def claim_out(
        self, now: datetime, lease_until: datetime, limit: int
    ) -> list[tuple[str, int]]:
        """(domain, attempts so far) whose oldest waiting item is due; each is leased
        until ``lease_until`` (its rows' next attempt moves there)."""
        query = (
            select(
                openmsg_revisions_out.c.domain,
                func.max(openmsg_revisions_out.c.attempts).label("attempts"),
            )
            .group_by(openmsg_revisions_out.c.domain)
            .having(func.min(openmsg_revisions_out.c.next_attempt_at) <= now)
            .limit(limit)
        )
        claimed = []
        for domain, attempts in [
            (str(r.domain), int(r.attempts)) for r in await self._conn.execute(query)
        ]:
            # Taken only if still due: another process that claimed it first moved
            # its rows to its lease (PostgreSQL re-reads the rows once it commits).
            taken = await self._conn.execute(
                update(openmsg_revisions_out)
                .where(
                    openmsg_revisions_out.c.domain == domain,
                    openmsg_revisions_out.c.next_attempt_at <= now,
                )
                .values(next_attempt_at=lease_until)
            )
            if taken.rowcount:
                await self._conn.execute(
                    update(openmsg_revisions_out)
                    .where(openmsg_revisions_out.c.domain == domain)
                    .values(next_attempt_at=lease_until)
                )
                claimed.append((domain, attempts))
        return claimed

    async def out_rows(self, domain: str, limit: int) -> list[OutboundRevision]:
        query = (
            select(openmsg_revisions_out)
            .where(openmsg_revisions_out.c.domain == domain)
            .order_by(openmsg_revisions_out.c.id)
            .limit(limit)
        )
        return [
            OutboundRevision(
                id=int(r.id),
                domain=str(r.domain),
                message_id=MessageId(r.message_id),
                item=str(r.item),
                give_up_at=r.give_up_at,
            )
            for r in await self._conn.execute(query)
        ]

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
        """Drop the items that are done with and move ``requeue`` behind the others
        (in their order). The items of ``domain`` this attempt leased are due at
        ``retry_at``; any queued meanwhile stay due."""
        if done:
            await self._conn.execute(
                delete(openmsg_revisions_out).where(openmsg_revisions_out.c.id.in_(done))
            )
        if requeue:
            # Only what this transaction deleted comes back: a concurrent attempt
            # that moved the same items first leaves nothing to copy twice.
            kept = [c for c in openmsg_revisions_out.c if c.name != "id"]
            moved = await self._conn.execute(
                delete(openmsg_revisions_out)
                .where(openmsg_revisions_out.c.id.in_(requeue))
                .returning(openmsg_revisions_out.c.id, *kept)
            )
            rows = sorted(moved, key=lambda r: int(r.id))
            if rows:
                await self._conn.execute(
                    insert(openmsg_revisions_out),
                    [{c.name: r._mapping[c.name] for c in kept} for r in rows],
                )
        await self._conn.execute(
            update(openmsg_revisions_out)
            .where(
                openmsg_revisions_out.c.domain == domain,
                openmsg_revisions_out.c.next_attempt_at > now,  # leased, not queued since
            )
            .values(next_attempt_at=retry_at, attempts=attempts)
        )
