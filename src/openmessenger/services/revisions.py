"""Receipts, edits and deletions for everyone (docs/conversations.md).

Edits and deletions travel in the conversation itself, as messages of the
reserved media types of ``core/revisions.py``: they take the conversation's next
``seq`` and a place in every receiving device's stream, so ``sync`` after any
time offline gives what live delivery gave, in the same order, and a client
that knows only ``message`` events still reads them as messages.

Receipts do not belong to the conversation's order: each is a row of its own
(``receipts``) on the feed of the message's *sender account* (every device of
it reads the same feed: ``GET /v1/receipts?since=`` and the receipt stream),
with an id that orders the feed. What the node learns from them: that a reader
account's device got or read a given message, and when; nothing more. A reader
whose ``send_receipts`` preference is off passes nothing on: the node drops
its receipts unseen.

A 1:1 conversation with an address on another of our nodes (one that announces
the ``revisions`` capability) works the same: the edit, deletion or receipt is
recorded here and queued for that node in the same transaction
(services/message_federation.py). With an Openmsg v1 peer, edits and deletions
are refused (409 ``revision_remote_unsupported``) and receipts stay here.

In a group hosted on another of our nodes, this node keeps a replica: the edit
or deletion goes to the host (services/group_federation.py, ``group-revise/``),
which checks it as for its own participants (``edit_from_peer``,
``delete_from_peer``), appends it to the group's log and fans it out to every
member node, this one included. A receipt for a group message whose sender is
on another of our nodes goes straight to that node (not through the host).
"""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace

from openmessenger.core.envelope import AppendResult, Encryption, Message
from openmessenger.core.errors import Conflict, Forbidden, InvalidInput, NotFound, Refused
from openmessenger.core.groups import (
    GroupAppend,
    Member,
    MemberState,
    check_joined,
    host_of,
    may_read,
)
from openmessenger.core.ids import (
    AccountId,
    Address,
    ConversationId,
    Domain,
    MessageId,
    address_domain,
    parse_address,
)
from openmessenger.core.preferences import Name
from openmessenger.core.records import AuthenticatedDevice
from openmessenger.core.revisions import (
    DELETE_MEDIA_TYPE,
    DELETED_NOTICE,
    EDIT_MEDIA_TYPE,
    NOT_REVISABLE,
    NOT_SENDER,
    REMOTE_UNSUPPORTED,
    Receipt,
    RemoteReference,
    RevisionAppend,
    check_receipt_ids,
    check_revisable,
    delete_metadata,
    edit_metadata,
    no_message,
    parse_kind,
    receivable,
)
from openmessenger.services.group_federation import GroupFederation
from openmessenger.services.groups import GroupService
from openmessenger.services.message_federation import MessageFederation
from openmessenger.services.messaging import (
    SendResult,
    check_page,
    check_since,
    validate_encrypted_body,
)
from openmessenger.services.policies import PolicyService
from openmessenger.services.ports import Bus, Clock, Secrets, Transaction, UnitOfWork
from openmessenger.services.preferences import PreferenceService
from openmessenger.services.webhooks import WebhookQueue

RECEIPT_PAGE = 500
_LIVE_LIMIT = 1024


@dataclass(frozen=True, slots=True)
class _Actor:
    """Who edits or deletes: an account here, or (its node forwarded the change to
    this host of the group) a participant on another node (``@ADDRESS``)."""

    account_id: AccountId
    address: Address
    device_id: str


def _actor(caller: AuthenticatedDevice) -> _Actor:
    return _Actor(caller.account.id, caller.account.address, caller.device.id)


def _metadata(value: dict[str, str]) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


class _Lagged(Exception):
    pass


class _ReceiptSubscription:
    def __init__(self) -> None:
        self._queue: asyncio.Queue[Receipt] = asyncio.Queue(maxsize=_LIVE_LIMIT)
        self.lagged = False

    def offer(self, receipt: Receipt) -> None:
        try:
            self._queue.put_nowait(receipt)
        except asyncio.QueueFull:
            self.lagged = True  # what it missed is in the store

    async def __aiter__(self) -> AsyncIterator[Receipt]:
        while True:
            receipt = await self._queue.get()
            if self.lagged:
                raise _Lagged()
            yield receipt


class ReceiptHub:
    """Live fan-out of new receipts to the processes' subscribers of an account's feed."""

    def __init__(self) -> None:
        self._subscribers: defaultdict[AccountId, set[_ReceiptSubscription]] = defaultdict(set)

    def publish(self, receipts: Sequence[Receipt]) -> None:
        for receipt in receipts:
            for subscription in self._subscribers.get(receipt.sender_account, ()):
                subscription.offer(receipt)

    @asynccontextmanager
    async def subscribe(self, account_id: AccountId) -> AsyncIterator[_ReceiptSubscription]:
        subscription = _ReceiptSubscription()
        self._subscribers[account_id].add(subscription)
        try:
            yield subscription
        finally:
            subscribers = self._subscribers[account_id]
            subscribers.discard(subscription)
            if not subscribers:
                del self._subscribers[account_id]


class RevisionService:
    def __init__(
        self,
        uow: UnitOfWork,
        bus: Bus,
        clock: Clock,
        secrets: Secrets,
        domain: Domain,
        preferences: PreferenceService,
        policies: PolicyService | None = None,
    ) -> None:
        self._uow = uow
        self._bus = bus
        self._clock = clock
        self._secrets = secrets
        self._domain = domain
        self._preferences = preferences
        self._policies = policies
        self.hub = ReceiptHub()
        self.groups: GroupService | None = None
        """Fans group edits and deletions out to other nodes (set by wiring)."""
        self.webhooks: WebhookQueue | None = None
        """Queues webhook calls for the app devices among the receivers (set by wiring)."""
        self.remote: MessageFederation | None = None
        """Carries 1:1 edits, deletions and receipts to our other nodes (set by wiring)."""

    # -- edits ------------------------------------------------------------------------

    async def edit(
        self,
        caller: AuthenticatedDevice,
        message_id: str,
        body: str,
        client_txn_id: str | None,
        encryption: Encryption = Encryption.END_TO_END,
    ) -> SendResult:
        """Append a new end-to-end body replacing ``message_id`` (which the caller's
        account sent) to its conversation; every device of every participant gets it."""
        if encryption is not Encryption.END_TO_END:
            raise InvalidInput("encryption", "must be end-to-end: edits are")
        body = validate_encrypted_body(body)
        replica = await self._replica_original(caller, message_id)
        if replica is not None:
            if replica.provenance is not None:
                raise Conflict(
                    "A message sent through an app cannot be edited.", code=NOT_REVISABLE
                )
            return await self._forwarder().revise(caller, replica, body, client_txn_id)
        actor = _actor(caller)
        await self._check_policy(actor, message_id, body)
        remote = await self._remote_node(caller, message_id)
        return await self._edit_as(actor, message_id, body, client_txn_id, remote=remote)

    async def edit_from_peer(
        self,
        account_id: AccountId,
        address: Address,
        device_id: str,
        group_id: ConversationId,
        message_id: str,
        body: str,
        client_txn_id: str,
    ) -> SendResult:
        """The host: an edit of a group message a participant on another node sent
        (its node forwarded it), checked as for a participant here."""
        actor = _Actor(account_id, address, device_id)
        await self._check_policy(actor, message_id, body)
        return await self._edit_as(
            actor, message_id, body, client_txn_id, remote=None, group_id=group_id
        )

    async def _edit_as(
        self,
        actor: _Actor,
        message_id: str,
        body: str,
        client_txn_id: str | None,
        *,
        remote: Domain | None,
        group_id: ConversationId | None = None,
    ) -> SendResult:
        async with self._uow() as tx:
            original, group_members = await self._target(tx, actor, message_id, group_id)
            if original.provenance is not None:
                raise Conflict(
                    "A message sent through an app cannot be edited.", code=NOT_REVISABLE
                )
            now = self._clock.now()
            new_id = MessageId(self._secrets.identifier())
            metadata = _metadata(edit_metadata(original.id))
            if group_members is not None:
                result = await tx.messages.append_group(
                    GroupAppend(
                        message_id=new_id,
                        conversation_id=original.conversation_id,
                        sender=actor.address,
                        sender_device=actor.device_id,
                        body=body,
                        client_txn_id=client_txn_id,
                        sent_at=now,
                        encryption=Encryption.END_TO_END.value,
                        receivers=await _unblocked(tx, group_members, actor.address),
                        media_type=EDIT_MEDIA_TYPE,
                        metadata=metadata,
                    )
                )
                if result.created:
                    assert result.message is not None
                    await tx.revisions.set_replaces(result.message.id, original.id)
                    await self._fan_out(tx, result, group_members)
                    result = _with_replaces(result, original.id)
            else:
                receivers = await self._direct_receivers(tx, actor, original, edit=True)
                reference = await self._reference(tx, original)
                result = await tx.revisions.append(
                    RevisionAppend(
                        message_id=new_id,
                        conversation_id=original.conversation_id,
                        sender=actor.address,
                        sender_device=actor.device_id,
                        recipient=original.recipient,
                        body=body,
                        encryption=Encryption.END_TO_END,
                        media_type=EDIT_MEDIA_TYPE,
                        metadata=edit_metadata(original.id),
                        replaces=original.id,
                        client_txn_id=client_txn_id,
                        sent_at=now,
                        receivers=receivers,
                    )
                )
                if reference is not None and result.created and self.remote is not None:
                    assert result.message is not None
                    await self.remote.queue_edit(tx, result.message, original, reference)
            assert result.message is not None
            if result.created:
                await tx.revisions.mark_edited(original.id, now)
                await tx.commit()
        await self._publish(result, in_group=group_members is not None)
        if remote and self.remote is not None:
            self.remote.kick()
        return SendResult(result.message, result.created)

    # -- deletions ----------------------------------------------------------------------

    async def delete(self, caller: AuthenticatedDevice, message_id: str) -> Message:
        """Erase the message and all its edits (tombstones stay) and tell every
        device of every participant, in the conversation's order."""
        replica = await self._replica_original(caller, message_id)
        if replica is not None:
            return (await self._forwarder().revise(caller, replica, None, None)).message
        remote = await self._remote_node(caller, message_id)
        tombstone, _ = await self._delete_as(_actor(caller), message_id, remote=remote)
        return tombstone

    async def delete_from_peer(
        self, account_id: AccountId, address: Address, group_id: ConversationId, message_id: str
    ) -> Message:
        """The host: a participant on another node deletes its group message for
        everyone (its node forwarded it); the deletion notice appended."""
        actor = _Actor(account_id, address, "")
        _, notice = await self._delete_as(actor, message_id, remote=None, group_id=group_id)
        return notice

    async def _delete_as(
        self,
        actor: _Actor,
        message_id: str,
        *,
        remote: Domain | None,
        group_id: ConversationId | None = None,
    ) -> tuple[Message, Message]:
        """The tombstone, and the deletion notice appended to the conversation."""
        async with self._uow() as tx:
            original, group_members = await self._target(tx, actor, message_id, group_id)
            reference = None
            if group_members is not None:
                receivers = tuple(m.account_id for m in group_members)
            else:
                receivers = await self._direct_receivers(tx, actor, original, edit=False)
                reference = await self._reference(tx, original)  # before erase forgets it
            now = self._clock.now()
            await tx.revisions.erase(original.id, now)
            new_id = MessageId(self._secrets.identifier())
            if group_members is not None:
                result = await tx.messages.append_group(
                    GroupAppend(
                        message_id=new_id,
                        conversation_id=original.conversation_id,
                        sender=actor.address,
                        sender_device="",  # the node's: every device of the sender gets it too
                        body=DELETED_NOTICE,
                        client_txn_id=None,
                        sent_at=now,
                        encryption=Encryption.TRANSPORT.value,
                        receivers=receivers,
                        media_type=DELETE_MEDIA_TYPE,
                        metadata=_metadata(delete_metadata(original.id)),
                    )
                )
                await tx.revisions.set_replaces(new_id, original.id)
                await self._fan_out(tx, result, group_members)
                result = _with_replaces(result, original.id)  # the live event names it too
            else:
                result = await tx.revisions.append(
                    RevisionAppend(
                        message_id=new_id,
                        conversation_id=original.conversation_id,
                        sender=actor.address,
                        sender_device="",
                        recipient=original.recipient,
                        body=DELETED_NOTICE,
                        encryption=Encryption.TRANSPORT,
                        media_type=DELETE_MEDIA_TYPE,
                        metadata=delete_metadata(original.id),
                        replaces=original.id,
                        client_txn_id=None,
                        sent_at=now,
                        receivers=receivers,
                    )
                )
                if reference is not None and self.remote is not None:
                    assert result.message is not None
                    await self.remote.queue_delete(tx, result.message, original, reference)
            tombstone = await tx.messages.get(original.id)
            assert tombstone is not None
            await tx.commit()
        await self._publish(result, in_group=group_members is not None)
        if remote and self.remote is not None:
            self.remote.kick()
        assert result.message is not None
        return tombstone, result.message

    # -- receipts -----------------------------------------------------------------------

    async def acknowledge(
        self, caller: AuthenticatedDevice, kind: str, message_ids: list[str]
    ) -> list[Receipt]:
        """Record that the caller's account got (or read) these messages; the new
        receipts go to each message's sender account. Messages the caller cannot
        see, its own, and events are passed over without a word; so is everything
        in a conversation where the caller's ``send_receipts`` preference is off."""
        receipt_kind = parse_kind(kind)
        ids = check_receipt_ids(message_ids)
        async with self._uow() as tx:
            found = [m for m in [await tx.messages.get(i) for i in ids] if m is not None]
        allowed: dict[ConversationId, bool] = {}
        for message in found:
            if message.conversation_id not in allowed:
                allowed[message.conversation_id] = await self._sends_receipts(
                    caller, message.conversation_id
                )
        queued = False
        added: list[Receipt] = []
        now = self._clock.now()
        async with self._uow() as tx:
            for message in found:
                if not allowed[message.conversation_id]:
                    continue
                if not receivable(message, caller.account.address):
                    continue
                if not await self._visible(tx, caller, message):
                    continue
                sender = await tx.accounts.by_address(message.sender)
                if sender is None:  # another node's, or gone
                    if self.remote is not None and address_domain(message.sender) != self._domain:
                        # For that node (dropped unsent if it turns out not to take them).
                        if await tx.groups.get(message.conversation_id) is None:
                            queued |= await self.remote.queue_receipt(tx, message, receipt_kind)
                        else:
                            reader = caller.account.address
                            await self.remote.queue_group_receipt(tx, message, reader, receipt_kind)
                            queued = True
                    continue
                receipt = await tx.revisions.add_receipt(
                    message, sender.id, caller.account.id, caller.account.address, receipt_kind, now
                )
                if receipt is not None:
                    added.append(receipt)
            await tx.commit()
        self.hub.publish(added)
        if queued and self.remote is not None:
            self.remote.kick()
        return added

    async def receipts_of(self, caller: AuthenticatedDevice, message_id: str) -> list[Receipt]:
        """The receipts of a message the caller's account sent."""
        async with self._uow() as tx:
            message = await tx.messages.get(MessageId(message_id))
            if message is None or not await self._visible(tx, caller, message):
                raise no_message()
            if message.sender != caller.account.address:
                raise Forbidden("Only the sender sees a message's receipts.", code=NOT_SENDER)
            return await tx.revisions.receipts_of(message.id)

    async def feed(
        self, caller: AuthenticatedDevice, since: int, limit: int
    ) -> tuple[list[Receipt], bool]:
        """The caller account's receipt feed after ``since``, and whether there is more."""
        limit = check_page(since, limit)
        async with self._uow() as tx:
            found = await tx.revisions.receipt_feed(caller.account.id, since, limit + 1)
        return found[:limit], len(found) > limit

    async def follow(self, account_id: AccountId, since: int) -> AsyncGenerator[Receipt]:
        """The account's receipt feed from ``since`` on: backlog first, then live."""
        check_since(since)
        last = since
        while True:
            async with self.hub.subscribe(account_id) as live:
                # Subscribed before reading the backlog, so nothing falls between.
                while True:
                    async with self._uow() as tx:
                        batch = await tx.revisions.receipt_feed(account_id, last, RECEIPT_PAGE)
                    for receipt in batch:
                        last = receipt.id
                        yield receipt
                    if len(batch) < RECEIPT_PAGE:
                        break
                try:
                    async for receipt in live:
                        if receipt.id <= last:
                            continue
                        last = receipt.id
                        yield receipt
                except _Lagged:
                    continue

    # -- inside -------------------------------------------------------------------------

    async def _target(
        self,
        tx: Transaction,
        actor: _Actor,
        message_id: str,
        group_id: ConversationId | None = None,
    ) -> tuple[Message, list[Member] | None]:
        """The message the actor's account may change, and for a group message its
        joined participants (the group locked). Unseen: not found. ``group_id``
        (a member node's request): the message must be of that group."""
        if not message_id or len(message_id) > 64:
            raise no_message()
        message = await tx.messages.get(MessageId(message_id))
        if message is None:
            raise no_message()
        if group_id is not None and message.conversation_id != group_id:
            raise no_message()
        group = await tx.groups.lock(message.conversation_id)
        if group is not None:
            members = await tx.groups.members(group.id)
            me = next((m for m in members if m.account_id == actor.account_id), None)
            if not _sees(me, message):
                raise no_message()
            check_revisable(message, actor.address)
            check_joined(me)
            if host_of(group) != self._domain:
                raise Conflict(  # a replica: its host orders the group's log
                    "Edits and deletions of this group go through its host.",
                    code=REMOTE_UNSUPPORTED,
                )
            return message, [m for m in members if m.state is MemberState.JOINED]
        if group_id is not None or actor.address not in (message.sender, message.recipient):
            raise no_message()
        check_revisable(message, actor.address)
        return message, None

    async def _replica_original(
        self, caller: AuthenticatedDevice, message_id: str
    ) -> Message | None:
        """The caller's message in a group hosted on another node, checked here as
        its host will check it again; None for any other message."""
        if not message_id or len(message_id) > 64:
            return None
        async with self._uow() as tx:
            message = await tx.messages.get(MessageId(message_id))
            group = await tx.groups.get(message.conversation_id) if message else None
            if message is None or group is None or host_of(group) == self._domain:
                return None
            me = await tx.groups.member(group.id, caller.account.id)
        if not _sees(me, message):
            raise no_message()
        check_revisable(message, caller.account.address)
        check_joined(me)
        return message

    def _forwarder(self) -> GroupFederation:
        federation = self.groups.federation if self.groups is not None else None
        if federation is None:
            raise Conflict(
                "Edits and deletions of this group go through its host.",
                code=REMOTE_UNSUPPORTED,
            )
        return federation

    async def _remote_node(self, caller: AuthenticatedDevice, message_id: str) -> Domain | None:
        """For the caller's own 1:1 message to an address on another node: that
        node, if it takes edits and deletions (asked outside any transaction);
        409 ``revision_remote_unsupported`` if it does not (an Openmsg v1 peer),
        502 if it cannot be asked and nothing is known of it."""
        if not message_id or len(message_id) > 64:
            return None
        async with self._uow() as tx:
            found = await tx.messages.get(MessageId(message_id))
            in_group = found is not None and await tx.groups.get(found.conversation_id) is not None
        if found is None or in_group or found.sender != caller.account.address:
            return None
        domain = address_domain(found.recipient)
        if domain == self._domain:
            return None
        if self.remote is None or not await self.remote.takes_revisions(domain):
            raise Conflict(
                "Edits and deletions do not reach that address's node.", code=REMOTE_UNSUPPORTED
            )
        return domain

    async def _reference(self, tx: Transaction, original: Message) -> RemoteReference | None:
        """How the recipient's node names a message to another node; None for a
        message on this node."""
        if address_domain(original.recipient) == self._domain:
            return None
        reference = await tx.revisions.sent_reference(original.id)
        if reference is None or self.remote is None:
            raise Conflict(
                "This message was sent before its edits could follow it to its node.",
                code=REMOTE_UNSUPPORTED,
            )
        return reference

    async def _check_policy(self, actor: _Actor, message_id: str, body: str) -> None:
        """An edit counts as a message: the conversation's size and rate limits
        apply (checked only for the sender's own message: nobody else's edit can
        succeed, and nothing is learnt from a limit)."""
        if self._policies is None or not message_id or len(message_id) > 64:
            return
        async with self._uow() as tx:
            found = await tx.messages.get(MessageId(message_id))
        if found is not None and found.sender == actor.address:
            await self._policies.check_send(actor.account_id, found.conversation_id, body)

    async def _direct_receivers(
        self, tx: Transaction, caller: _Actor, original: Message, *, edit: bool
    ) -> tuple[AccountId, ...]:
        recipient = parse_address(original.recipient, field="message_id")
        if recipient.domain != self._domain:
            if self.remote is None:
                raise Conflict(
                    "Edits and deletions reach addresses on this node only.",
                    code=REMOTE_UNSUPPORTED,
                )
            if edit:  # new content: only where a message could go
                contact = await tx.connections.get(caller.account_id, recipient.address)
                if contact is None or not contact.peer_accepts_messages:
                    raise Refused()
            return (caller.account_id,)  # the sender's other devices; its node, the rest
        account = await tx.accounts.by_address(recipient.address)
        if edit:  # new content: only where a message could go (a block refuses it alike)
            contact = await tx.connections.get(caller.account_id, recipient.address)
            if contact is None or not contact.peer_accepts_messages:
                raise Refused()
            if account is not None and await tx.blocks.is_blocked(account.id, caller.address):
                raise Refused()
        if account is None:
            return (caller.account_id,)
        return (account.id, caller.account_id)

    async def _visible(
        self, tx: Transaction, caller: AuthenticatedDevice, message: Message
    ) -> bool:
        group = await tx.groups.get(message.conversation_id)
        if group is not None:
            return _sees(await tx.groups.member(group.id, caller.account.id), message)
        return caller.account.address in (message.sender, message.recipient)

    async def _sends_receipts(
        self, caller: AuthenticatedDevice, conversation_id: ConversationId
    ) -> bool:
        """The reader's ``send_receipts`` preference where the message is (the
        narrowest level set: conversation, contact, device, account)."""
        try:
            found = await self._preferences.effective(
                caller, conversation=conversation_id, name=Name.SEND_RECEIPTS.value
            )
        except NotFound:
            found = await self._preferences.effective(caller, name=Name.SEND_RECEIPTS.value)
        return all(e.value is not False for e in found.preferences)

    async def _fan_out(
        self, tx: Transaction, result: AppendResult, members: Sequence[Member]
    ) -> None:
        """A group's participants on other nodes get edits and deletions as they get
        its messages (their nodes erase their copies of a deleted message too)."""
        if self.groups is not None and result.created:
            await self.groups.fan_out(tx, result, members)

    async def _publish(self, result: AppendResult, *, in_group: bool) -> None:
        if in_group and self.groups is not None:
            await self.groups.publish([result])  # webhooks and other nodes too
            return
        if result.created and result.events:
            await self._bus.publish(result.events)
            if self.webhooks is not None:  # an app's device learns of it as of a message
                await self.webhooks.enqueue(result.events)


async def _unblocked(
    tx: Transaction, members: Sequence[Member], sender: Address
) -> tuple[AccountId, ...]:
    """The members whose devices get new content from ``sender`` (not who blocked them)."""
    ids = [m.account_id for m in members]
    blockers = await tx.blocks.blockers(ids, sender)
    return tuple(a for a in ids if a not in blockers)


def _sees(member: Member | None, message: Message) -> bool:
    return may_read(member, message.seq)


def _with_replaces(result: AppendResult, replaces: MessageId) -> AppendResult:
    assert result.message is not None
    message = replace(result.message, replaces=replaces)
    return replace(
        result, message=message, events=tuple(replace(e, message=message) for e in result.events)
    )
