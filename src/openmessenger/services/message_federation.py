"""Receipts, edits and deletions of 1:1 messages between our nodes (capability
``revisions``, protocol/message_federation.py).

Each node stores a message under an id of its own; between nodes a message is
named by its reference ``(sender, recipient, nonce)``: the sending node keeps
the nonce of every message it sent to another node (``openmsg_sent``), the
receiving node the nonce of every message it took (``openmsg_received``).

Going out: an edit or deletion made here (services/revisions.py) and a receipt
for a message from another node are queued (``openmsg_revisions_out``) in the
transaction that records them, and sent in order, a batch per node at a time,
retried with backoff while that node is unreachable, until the federation
give-up time. An edit waits while its message still waits for its first
delivery (the peer could not name it yet). Nothing goes to a node that does not
announce the capability.

Receipts of group messages take the same queue, from the reader's node straight
to the sender's node (not through the group's host), only to a node that also
announces ``group-receipts``. A group message has the host's id on every node,
so they name it by id. The sender's node may not have the message yet (the
host's fan-out to it can trail the reader's node): it answers ``later`` and
the item is sent again with backoff, until the give-up time.

Coming in: the signing node must be the node of the address it speaks for (the
sender of an edit or deletion, the reader of a receipt), the other address
must be ours, and the reference must name a message that sender sent that
recipient (for a group receipt: a message of that group, sent by that sender,
which the reader may read as the group's membership stands here); then the
item is applied here exactly as on one node (an edit appended for the
recipient's devices, a deletion erasing the copy and telling every device, a
receipt on the sender's feed). Anything else is ``refused``, without saying
why, and changes nothing. Items are idempotent: an edit is stored once per
``(sender, id)``, a deletion again changes nothing, a receipt is kept once.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
from collections.abc import Callable, Mapping, Sequence
from datetime import timedelta
from typing import Any

from pydantic import ValidationError

from openmessenger.core.envelope import AppendResult, Encryption, Message
from openmessenger.core.errors import InvalidInput, PeerUnavailable
from openmessenger.core.groups import host_of, may_read, remote_account_id, visible_seqs
from openmessenger.core.ids import (
    AccountId,
    Address,
    ConversationId,
    Domain,
    MessageId,
    parse_address,
)
from openmessenger.core.revisions import (
    DELETE_MEDIA_TYPE,
    DELETED_NOTICE,
    EDIT_MEDIA_TYPE,
    REMOTE_REPLACES,
    OutboundRevision,
    Receipt,
    ReceiptKind,
    RemoteReference,
    RevisionAppend,
    delete_metadata,
    edit_metadata,
    is_content,
    receivable,
    remote_reader_id,
)
from openmessenger.protocol import message_federation as wire
from openmessenger.protocol.openmsg import JsonObject, ResponseCode
from openmessenger.services.messaging import validate_encrypted_body
from openmessenger.services.peers import PeerDirectory
from openmessenger.services.polling import PollingLoop, any_more_due, backoff_seconds
from openmessenger.services.ports import (
    Bus,
    Clock,
    FederationTransport,
    Secrets,
    Transaction,
    UnitOfWork,
)
from openmessenger.services.signed_requests import (
    ExtensionHandler,
    PeerRefusal,
    SignedRequests,
    SignedRequestVerifier,
    parse_answer,
    parse_request,
    served,
)
from openmessenger.services.webhooks import WebhookQueue

log = logging.getLogger(__name__)

_LEASE = timedelta(seconds=120)
_BATCH = 32


def _txn_of(sender: Address, edit_id: str) -> str:
    """The idempotency key an edit from another node is stored under: one per
    (sender, the edit's id on the sender's node)."""
    return "om.remote." + hashlib.sha256(f"{sender}\n{edit_id}".encode()).hexdigest()


class MessageFederation:
    def __init__(
        self,
        *,
        uow: UnitOfWork,
        clock: Clock,
        secrets: Secrets,
        domain: Domain,
        transport: FederationTransport,
        directory: PeerDirectory,
        verifier: SignedRequestVerifier,
        bus: Bus,
        publish_receipts: Callable[[list[Receipt]], None],
        give_up_after: timedelta,
        poll_seconds: float = 1.0,
    ) -> None:
        self._uow = uow
        self._clock = clock
        self._secrets = secrets
        self._domain = domain
        self._directory = directory
        self._verifier = verifier
        self._bus = bus
        self._publish_receipts = publish_receipts
        self._give_up_after = give_up_after
        self._signed = SignedRequests(
            secrets=secrets, clock=clock, domain=domain, transport=transport
        )
        self.webhooks: WebhookQueue | None = None
        """Queues webhook calls for the app devices among the receivers (set by wiring)."""
        self._rng = random.Random()  # noqa: S311 - jitter, not a secret
        self._loop = PollingLoop("message-federation", self._round, poll_seconds)

    # --- asked by RevisionService --------------------------------------------------------

    async def takes_revisions(self, domain: Domain) -> bool:
        """Whether ``domain``'s node takes edits and deletions; PeerUnavailable when
        it could not be asked and nothing is known of it. Outside any transaction."""
        found = await self._directory.capability(domain, wire.REVISIONS)
        if found is None:
            raise PeerUnavailable(domain)
        return found

    async def queue_edit(
        self, tx: Transaction, edit: Message, original: Message, reference: RemoteReference
    ) -> None:
        await self._queue(
            tx,
            reference.recipient,
            edit.id,
            {"type": "edit", "original": original.id, **_reference(reference)},
        )

    async def queue_delete(
        self, tx: Transaction, event: Message, original: Message, reference: RemoteReference
    ) -> None:
        await self._queue(
            tx,
            reference.recipient,
            event.id,
            {
                "type": "delete",
                "original": original.id,
                "sent_at": event.sent_at.isoformat(),
                **_reference(reference),
            },
        )

    async def queue_receipt(self, tx: Transaction, message: Message, kind: ReceiptKind) -> bool:
        """A receipt for a message that came from another node, for its sender's
        node; False when this node cannot name the message there."""
        reference = await tx.revisions.received_reference(message.id)
        if reference is None:
            return False
        item = {
            "type": "receipt",
            "kind": kind.value,
            "at": self._clock.now().isoformat(),
            **_reference(reference),
        }
        await self._queue(tx, reference.sender, message.id, item, dedupe_on=("type", "kind"))
        return True

    async def queue_group_receipt(
        self, tx: Transaction, message: Message, reader: Address, kind: ReceiptKind
    ) -> None:
        """A receipt for a group message whose sender is on another node, for that
        node (dropped unsent if it turns out not to take group receipts)."""
        item = {
            "type": "group-receipt",
            "group_id": message.conversation_id,
            "message_id": message.id,
            "seq": message.seq,
            "sender": message.sender,
            "reader": reader,
            "kind": kind.value,
            "at": self._clock.now().isoformat(),
        }
        # One message has many readers: each one's receipt waits once.
        dedupe_on = ("type", "kind", "reader")
        await self._queue(tx, message.sender, message.id, item, dedupe_on=dedupe_on)

    async def _queue(
        self,
        tx: Transaction,
        remote: Address,
        message_id: MessageId,
        item: Mapping[str, object],
        dedupe_on: tuple[str, ...] | None = None,
    ) -> None:
        now = self._clock.now()
        domain = parse_address(remote).domain
        if dedupe_on is not None:
            # The same receipt twice waits once (its time is the first one's).
            key = {k: item[k] for k in dedupe_on}
            for row in await tx.revisions.out_rows(domain, wire.MAX_ITEMS * 4):
                if row.message_id == message_id and _subset(key, json.loads(row.item)):
                    return
        await tx.revisions.queue_out(
            domain, message_id, json.dumps(item, sort_keys=True), now, now + self._give_up_after
        )

    # --- the loop --------------------------------------------------------------------

    def kick(self) -> None:
        self._loop.kick()

    def start(self) -> None:
        self._loop.start()

    async def stop(self) -> None:
        await self._loop.stop()

    async def _round(self) -> bool:
        """One pass over what is due; True when more may be due at once."""
        now = self._clock.now()
        async with self._uow() as tx:
            claimed = await tx.revisions.claim_out(now, now + _LEASE, _BATCH)
            await tx.commit()
        return await any_more_due(
            (self._deliver(Domain(d), attempts) for d, attempts in claimed),
            "a revision delivery failed",
        )

    async def _deliver(self, domain: Domain, attempts: int) -> bool:
        """Send ``domain``'s next batch, in order; True when more may wait."""
        takes = await self._directory.capability(domain, wire.REVISIONS)
        takes_group_receipts = await self._directory.capability(domain, wire.GROUP_RECEIPTS)
        now = self._clock.now()
        done: list[int] = []
        batch: list[tuple[int, wire.Item]] = []
        waiting = False
        chars = 0
        async with self._uow() as tx:
            rows = await tx.revisions.out_rows(domain, wire.MAX_ITEMS)
            for row in rows:
                stored = json.loads(row.item)
                taken = takes
                if takes and stored.get("type") == "group-receipt":
                    taken = takes_group_receipts
                if now >= row.give_up_at or taken is False:
                    log.info("revision %d for %s: given up", row.id, domain)
                    done.append(row.id)
                    continue
                if taken is None:  # cannot tell yet: never drop anything by guessing
                    takes = None
                    break
                original = stored.get("original")
                if original and await tx.revisions.in_outbox(MessageId(original)):
                    waiting = True  # the peer cannot name the message before it has it
                    break
                item = await self._wire_item(tx, row, stored)
                if item is None:
                    done.append(row.id)  # deleted meanwhile: nothing left to send
                    continue
                size = len(item.body) if isinstance(item, wire.EditItem) else 0
                if batch and chars + size > wire.MAX_BATCH_BODY_CHARS:
                    break
                chars += size
                batch.append((row.id, item))
        if takes is None:
            await self._settle(domain, done, self._backoff(attempts + 1), attempts + 1)
            return False
        if not batch:
            # Waiting for a delivery: looked at again at the next poll.
            await self._settle(domain, done, timedelta(0), attempts)
            return bool(done) and not waiting
        request = wire.RevisionsRequest(items=[item for _, item in batch])
        answer = await self._post(domain, request)
        if answer is None or len(answer.results) != len(batch):
            await self._settle(domain, done, self._backoff(attempts + 1), attempts + 1)
            return False
        later: list[int] = []
        for (row_id, item), result in zip(batch, answer.results, strict=True):
            if result == wire.LATER and isinstance(item, wire.GroupReceiptItem):
                later.append(row_id)
            elif result != wire.APPLIED:
                log.info("revision %d refused by %s", row_id, domain)
        settled = done + [row_id for row_id, _ in batch if row_id not in later]
        # A receipt the peer cannot take yet goes behind the rest (receipts keep no
        # order) rather than in front of what comes next; when nothing moved, back off.
        if len(later) == len(batch):
            await self._settle(domain, done, self._backoff(attempts + 1), attempts + 1, later)
            return False
        await self._settle(domain, settled, timedelta(0), 0, later)
        return True

    async def _wire_item(
        self, tx: Transaction, row: OutboundRevision, stored: dict[str, Any]
    ) -> wire.Item | None:
        try:
            if stored["type"] == "group-receipt":
                return wire.GroupReceiptItem.model_validate(stored)
            reference = {k: stored[k] for k in ("sender", "recipient", "nonce")}
            if stored["type"] == "edit":
                edit = await tx.messages.get(row.message_id)
                if edit is None or edit.deleted_at is not None:
                    return None
                return wire.EditItem(
                    id=edit.id,
                    replaces=stored["original"],
                    body=edit.body,
                    sent_at=edit.sent_at,
                    **reference,
                )
            if stored["type"] == "delete":
                return wire.DeleteItem(sent_at=stored["sent_at"], **reference)
            return wire.ReceiptItem(kind=stored["kind"], at=stored["at"], **reference)
        except (KeyError, ValidationError):
            log.warning("revision %d cannot be sent: %s", row.id, stored.get("type"))
            return None

    def _backoff(self, attempts: int) -> timedelta:
        return timedelta(seconds=backoff_seconds(attempts, self._rng))

    async def _settle(
        self,
        domain: Domain,
        done: list[int],
        delay: timedelta,
        attempts: int,
        requeue: Sequence[int] = (),
    ) -> None:
        now = self._clock.now()
        async with self._uow() as tx:
            await tx.revisions.settle_out(
                domain, done, now=now, retry_at=now + delay, attempts=attempts, requeue=requeue
            )
            await tx.commit()

    async def _post(
        self, domain: Domain, request: wire.RevisionsRequest
    ) -> wire.RevisionsAnswer | None:
        try:
            answer = await self._signed.exchange(domain, wire.MESSAGE_REVISIONS_PATH, request)
        except PeerUnavailable:
            return None
        found = parse_answer(wire.RevisionsAnswer, answer)
        if found is None:
            log.info("%s did not take revisions: %s", domain, answer)
        return found

    # --- requests from our other nodes -------------------------------------------------

    def handlers(self) -> dict[str, ExtensionHandler]:
        """The signed endpoint this serves, by path (api/openmsg.py routes it)."""
        return {wire.MESSAGE_REVISIONS_PATH: served(self._receive)}

    async def _receive(self, raw: bytes, headers: Mapping[str, str]) -> JsonObject:
        origin = await self._verifier.origin(raw, headers, wire.MESSAGE_REVISIONS_PATH)
        request = parse_request(wire.RevisionsRequest, raw)
        parties = [self._parties(item, origin) for item in request.items]
        results: list[wire.Result] = []
        appended: list[AppendResult] = []
        receipts: list[Receipt] = []
        for item, (sender, recipient) in zip(request.items, parties, strict=True):
            async with self._uow() as tx:
                if isinstance(item, wire.GroupReceiptItem):
                    result = await self._take_group_receipt(tx, item, sender, recipient, receipts)
                elif isinstance(item, wire.ReceiptItem):
                    applied = await self._take_receipt(tx, item, sender, recipient, receipts)
                    result = wire.APPLIED if applied else wire.REFUSED
                else:
                    applied = await self._take_revision(tx, item, sender, recipient, appended)
                    result = wire.APPLIED if applied else wire.REFUSED
                await tx.commit()
            results.append(result)
        events = [e for result in appended for e in result.events]
        if events:
            await self._bus.publish(events)
            if self.webhooks is not None:
                await self.webhooks.enqueue(events)
        if receipts:
            self._publish_receipts(receipts)
        return wire.RevisionsAnswer(results=results).model_dump(mode="json")

    def _parties(self, item: wire.Item, origin: Domain) -> tuple[Address, Address]:
        """(sender, recipient or reader), canonical. The signing node speaks only for
        its own address (an edit's or deletion's sender, a receipt's reader); the
        other must be ours."""
        try:
            sender = parse_address(item.sender)
            if isinstance(item, wire.GroupReceiptItem):
                recipient = parse_address(item.reader)
            else:
                recipient = parse_address(item.recipient)
        except InvalidInput:
            raise PeerRefusal(ResponseCode.MESSAGE_DATA_MISSING, "Not an address.") from None
        receipt = isinstance(item, wire.ReceiptItem | wire.GroupReceiptItem)
        theirs, ours = (recipient, sender) if receipt else (sender, recipient)
        if theirs.domain != origin or ours.domain != self._domain:
            raise PeerRefusal(ResponseCode.IDENT_CODE_INVALID)  # a node speaks for its own only
        return sender.address, recipient.address

    async def _take_receipt(
        self,
        tx: Transaction,
        item: wire.ReceiptItem,
        sender: Address,
        reader: Address,
        receipts: list[Receipt],
    ) -> bool:
        account = await tx.accounts.by_address(sender)
        if account is None:
            return False
        found = await tx.revisions.sent_by_reference(account.id, reader, item.nonce)
        message = await tx.messages.get(found) if found is not None else None
        if message is None or not _between(message, sender, reader):
            return False
        if not receivable(message, reader) or await tx.groups.get(message.conversation_id):
            return False
        await self._record(tx, message, account.id, reader, item, receipts)
        return True

    async def _take_group_receipt(
        self,
        tx: Transaction,
        item: wire.GroupReceiptItem,
        sender: Address,
        reader: Address,
        receipts: list[Receipt],
    ) -> wire.Result:
        account = await tx.accounts.by_address(sender)
        group = await tx.groups.get(ConversationId(item.group_id))
        if account is None or group is None:
            return wire.REFUSED
        if visible_seqs(await tx.groups.member(group.id, account.id)) is None:
            return wire.REFUSED  # the sender never took part
        if host_of(group) != self._domain and item.seq > group.last_seq:
            # The host's fan-out of that message (and of who has joined since)
            # has yet to reach this member's node: checked once it has.
            return wire.LATER
        message = await tx.messages.get(MessageId(item.message_id))
        if message is None or (message.conversation_id, message.seq) != (group.id, item.seq):
            return wire.REFUSED
        if message.sender.lower() != sender.lower() or not receivable(message, reader):
            return wire.REFUSED
        if not may_read(await tx.groups.member(group.id, remote_account_id(reader)), item.seq):
            return wire.REFUSED
        await self._record(tx, message, account.id, reader, item, receipts)
        return wire.APPLIED

    async def _record(
        self,
        tx: Transaction,
        message: Message,
        sender_account: AccountId,
        reader: Address,
        item: wire.ReceiptItem | wire.GroupReceiptItem,
        receipts: list[Receipt],
    ) -> None:
        """Keep the receipt on the sender account's feed (once), at a time between
        the message's sending and now."""
        receipt = await tx.revisions.add_receipt(
            message,
            sender_account,
            remote_reader_id(reader),
            reader,
            ReceiptKind(item.kind),
            max(message.sent_at, min(item.at, self._clock.now())),
        )
        if receipt is not None:
            receipts.append(receipt)

    async def _take_revision(
        self,
        tx: Transaction,
        item: wire.EditItem | wire.DeleteItem,
        sender: Address,
        recipient: Address,
        appended: list[AppendResult],
    ) -> bool:
        account = await tx.accounts.by_address(recipient)
        if account is None:
            return False
        found = await tx.revisions.received_by_reference(account.id, sender, item.nonce)
        original = await tx.messages.get(found) if found is not None else None
        if original is None or not _between(original, sender, recipient):
            return False
        if isinstance(item, wire.DeleteItem) and original.deleted_at is not None:
            return True  # deleted before (a retry whose answer was lost)
        if original.deleted_at is not None or not is_content(original):
            return False
        now = self._clock.now()
        if isinstance(item, wire.DeleteItem):
            await tx.revisions.erase(original.id, now)
            request = RevisionAppend(
                message_id=MessageId(self._secrets.identifier()),
                conversation_id=original.conversation_id,
                sender=sender,
                sender_device="",
                recipient=recipient,
                body=DELETED_NOTICE,
                encryption=Encryption.TRANSPORT,
                media_type=DELETE_MEDIA_TYPE,
                metadata=delete_metadata(original.id),
                replaces=original.id,
                client_txn_id=None,
                sent_at=now,
                receivers=(account.id,),
            )
            appended.append(await tx.revisions.append(request))
            return True
        # New content: only where a message from this sender could arrive.
        contact = await tx.connections.get(account.id, sender)
        if contact is None or not contact.accepts_messages:
            return False
        if await tx.blocks.is_blocked(account.id, sender):
            return False
        try:
            body = validate_encrypted_body(item.body)
        except InvalidInput:
            return False
        sent_at = min(item.sent_at, now)
        result = await tx.revisions.append(
            RevisionAppend(
                message_id=MessageId(self._secrets.identifier()),
                conversation_id=original.conversation_id,
                sender=sender,
                sender_device="",  # on another node: not ours to name
                recipient=recipient,
                body=body,
                encryption=Encryption.END_TO_END,
                media_type=EDIT_MEDIA_TYPE,
                metadata={**edit_metadata(original.id), REMOTE_REPLACES: item.replaces},
                replaces=original.id,
                client_txn_id=_txn_of(sender, item.id),
                sent_at=sent_at,
                receivers=(account.id,),
            )
        )
        if result.created:
            await tx.revisions.mark_edited(original.id, sent_at)
            appended.append(result)
        return True


def _reference(reference: RemoteReference) -> dict[str, str]:
    return {
        "sender": reference.sender,
        "recipient": reference.recipient,
        "nonce": reference.nonce,
    }


def _between(message: Message, sender: Address, recipient: Address) -> bool:
    """``message`` is one ``sender`` sent ``recipient`` (1:1)."""
    return message.sender.lower() == sender.lower() and message.recipient.lower() == (
        recipient.lower()
    )


def _subset(wanted: Mapping[str, object], found: object) -> bool:
    return isinstance(found, dict) and all(found.get(k) == v for k, v in wanted.items())
