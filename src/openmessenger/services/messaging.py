"""Sending, syncing and reading history of 1:1 conversations.

A message is committed together with its place in every receiving device's
stream before the sender hears "accepted"; only then is it published on the
bus for live delivery. A device that missed the live event reads the same
events from its stream (``sync``), so delivery is at-least-once on the wire and
exactly-once in effect (events carry positions and ids).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass, replace
from typing import Protocol

from pydantic import ValidationError

from openmessenger.core.envelope import (
    Encryption,
    Message,
    OutboundSeal,
    SendRequest,
    StreamEvent,
    validate_body,
)
from openmessenger.core.errors import InvalidInput, NotFound, Refused
from openmessenger.core.ids import (
    AccountId,
    ConversationId,
    DeviceId,
    Domain,
    MessageId,
    parse_address,
)
from openmessenger.core.policies import MessageRateLimited
from openmessenger.core.records import AuthenticatedDevice, Device
from openmessenger.core.revisions import check_not_reserved
from openmessenger.protocol.e2e import MAX_ENCRYPTED_BODY_CHARS, EncryptedBody
from openmessenger.services.app_envelopes import TEXT, AppEnvelopes, plain_text
from openmessenger.services.node_held import NodeHeldReader
from openmessenger.services.policies import PolicyService
from openmessenger.services.ports import (
    Bus,
    Clock,
    MessageLog,
    Secrets,
    SubscriptionLagged,
    UnitOfWork,
)
from openmessenger.services.sealing import BodySealer
from openmessenger.services.webhooks import WebhookQueue

MAX_PAGE = 500


@dataclass(frozen=True, slots=True)
class SendResult:
    message: Message
    created: bool
    """False when ``client_txn_id`` named a message sent before: nothing new was stored."""


@dataclass(frozen=True, slots=True)
class HistoryPage:
    messages: list[Message]
    has_more: bool


@dataclass(frozen=True, slots=True)
class SyncPage:
    events: list[StreamEvent]
    next_since: int
    has_more: bool


class Outbound(Protocol):
    """Where messages to addresses on other nodes go (the federation outbox)."""

    async def seal(
        self, recipient_domain: Domain, body: str, *, end_to_end: bool = False
    ) -> OutboundSeal:
        """``body`` is the text to deliver (kept only until delivery), or with
        ``end_to_end`` an om.megolm.v1 body for a node that takes them."""
        ...

    def notify(self, message: Message, sender_account: AccountId, seal: OutboundSeal) -> None:
        """The message is stored with ``seal``: make its first attempt now."""
        ...


class MessagingService:
    def __init__(
        self,
        uow: UnitOfWork,
        log: MessageLog,
        bus: Bus,
        clock: Clock,
        secrets: Secrets,
        domain: Domain,
        outbound: Outbound | None = None,
        *,
        policies: PolicyService,
    ) -> None:
        self._sealer = BodySealer(uow)
        self._envelopes = AppEnvelopes(uow, secrets, domain)
        self.reader: NodeHeldReader | None = None
        """Opens what was sealed to node-held app devices (set by wiring)."""
        self.webhooks: WebhookQueue | None = None
        """Queues webhook calls for the app devices among the receivers (set by wiring)."""
        self._uow = uow
        self._log = log
        self._bus = bus
        self._clock = clock
        self._secrets = secrets
        self._domain = domain
        self.outbound = outbound
        self._policies = policies
        """Message size and rate limits of the conversation's policy."""

    async def send(
        self,
        caller: AuthenticatedDevice,
        to: str,
        body: str,
        client_txn_id: str | None,
        encryption: Encryption = Encryption.TRANSPORT,
        *,
        media_type: str = TEXT,
        metadata: object | None = None,
        app_signature: str | None = None,
    ) -> SendResult:
        """Store and deliver one message. An end-to-end ``body`` is stored as it
        came; plain text is sealed to the devices that will read it first, so the
        node never keeps plain text (it is then ``transport-encrypted``). A
        message from an app's device is tagged with the app and attested by the
        node (services/app_envelopes.py)."""
        check_not_reserved(media_type)  # message.*: edits, deletions (services/revisions.py)
        recipient = parse_address(to, field="to")
        remote = recipient.domain != self._domain
        if remote and self.outbound is None:
            raise Refused()
        try:
            await self._policies.check_direct_send(caller.account.id, recipient.address, body)
        except MessageRateLimited:
            # A retry of a message that was stored is answered, not counted again.
            earlier = await self._sent_before(caller, client_txn_id)
            if earlier is None:
                raise
            return SendResult(await self._readable(caller.device, earlier), created=False)
        prepared = None
        if not plain_text(caller, media_type, metadata, app_signature):
            prepared = await self._envelopes.prepare(
                caller, recipient, body, encryption, media_type, metadata, app_signature
            )
        seal = None
        if encryption is Encryption.END_TO_END:
            body = validate_encrypted_body(body)
            if remote:
                assert self.outbound is not None
                seal = await self.outbound.seal(recipient.domain, body, end_to_end=True)
        else:
            text = validate_body(body)
            if remote:
                assert self.outbound is not None
                seal = await self.outbound.seal(recipient.domain, text)
            body = await self._sealer.seal_for(
                text, caller.account.id, None if remote else recipient.address
            )
        message_id = MessageId(self._secrets.identifier())
        sent_at = self._clock.now()
        request = SendRequest(
            message_id=message_id,
            sender_account=caller.account.id,
            sender=caller.account.address,
            sender_device=caller.device.id,
            recipient=recipient.address,
            body=body,
            client_txn_id=client_txn_id,
            sent_at=sent_at,
            outbound=seal,
            encryption=encryption,
        )
        if prepared is not None:
            request = replace(
                request,
                media_type=prepared.media_type,
                metadata=prepared.metadata,
                provenance=self._envelopes.attest(prepared, message_id, sent_at),
                grant_key_id=prepared.grant_key_id,
            )
        result = await self._log.append(request)
        if result.message is None:
            raise Refused()
        # Published only after the commit: a live event always names a stored message.
        await self._bus.publish(result.events)
        if self.webhooks is not None:
            await self.webhooks.enqueue(result.events)
        if result.created and seal is not None and self.outbound is not None:
            self.outbound.notify(result.message, caller.account.id, seal)
        return SendResult(await self._readable(caller.device, result.message), result.created)

    async def _sent_before(
        self, caller: AuthenticatedDevice, client_txn_id: str | None
    ) -> Message | None:
        if client_txn_id is None:
            return None
        async with self._uow() as tx:
            return await tx.messages.sent_by_txn(caller.device.id, client_txn_id)

    async def message(self, caller: AuthenticatedDevice, message_id: str) -> Message:
        """One message the caller's account sent or received (e.g. to follow its status)."""
        async with self._uow() as tx:
            found = await tx.messages.get(MessageId(message_id))
        address = caller.account.address
        if found is None or address not in (found.sender, found.recipient):
            raise NotFound("No such message.")
        return await self._readable(caller.device, found)

    async def sync(self, caller: AuthenticatedDevice, since: int, limit: int) -> SyncPage:
        limit = check_page(since, limit)
        async with self._uow() as tx:
            events = await tx.messages.stream(caller.device.id, since, limit + 1)
        page = await self._readable_events(caller.device, events[:limit])
        next_since = page[-1].position if page else since
        return SyncPage(page, next_since, has_more=len(events) > limit)

    async def history(
        self, caller: AuthenticatedDevice, conversation_id: str, after_seq: int, limit: int
    ) -> HistoryPage:
        limit = check_page(after_seq, limit, field="after_seq")
        async with self._uow() as tx:
            contact = await tx.connections.by_conversation(
                caller.account.id, ConversationId(conversation_id)
            )
            if contact is None:
                raise NotFound("No such conversation.")
            found = await tx.messages.history(contact.conversation_id, after_seq, limit + 1)
        page = await self._readable_many(caller.device, found[:limit])
        return HistoryPage(page, has_more=len(found) > limit)

    async def follow_as(self, device: Device, since: int) -> AsyncGenerator[StreamEvent]:
        """:meth:`follow`, as ``device`` reads it (opened for a node-held app device)."""
        events = self.follow(device.id, since)
        try:
            async for event in events:
                if device.node_held:
                    (event,) = await self._readable_events(device, [event])
                yield event
        finally:
            await events.aclose()

    async def follow(self, device_id: DeviceId, since: int) -> AsyncGenerator[StreamEvent]:
        """The device's stream from ``since`` on, backlog first, then live, in order, forever."""
        check_since(since)
        position = since
        while True:
            async with self._bus.subscribe(device_id) as live:
                # Subscribed before reading the backlog, so nothing falls between.
                async for event in self._backlog(device_id, position):
                    position = event.position
                    yield event
                try:
                    async for event in live:
                        if event.position <= position:
                            continue  # already sent from the backlog
                        if event.position > position + 1:  # a gap: the store has it
                            async for missed in self._backlog(device_id, position):
                                position = missed.position
                                yield missed
                            continue
                        position = event.position
                        yield event
                except SubscriptionLagged:
                    continue

    async def _readable(self, device: Device, message: Message) -> Message:
        if not device.node_held or self.reader is None:
            return message
        return (await self.reader.readable(device, [message]))[0]

    async def _readable_many(self, device: Device, found: list[Message]) -> list[Message]:
        if not device.node_held or self.reader is None:
            return found
        return await self.reader.readable(device, found)

    async def _readable_events(
        self, device: Device, events: list[StreamEvent]
    ) -> list[StreamEvent]:
        if not device.node_held or self.reader is None:
            return events
        opened = await self.reader.readable(device, [e.message for e in events])
        return [replace(e, message=m) for e, m in zip(events, opened, strict=True)]

    async def _backlog(self, device_id: DeviceId, since: int) -> AsyncIterator[StreamEvent]:
        while True:
            async with self._uow() as tx:
                batch = await tx.messages.stream(device_id, since, MAX_PAGE)
            for event in batch:
                since = event.position
                yield event
            if len(batch) < MAX_PAGE:
                return


def validate_encrypted_body(body: str) -> str:
    if len(body) > MAX_ENCRYPTED_BODY_CHARS:
        raise InvalidInput("body", f"must be at most {MAX_ENCRYPTED_BODY_CHARS} characters")
    try:
        EncryptedBody.model_validate_json(body)
    except ValidationError as exc:
        raise InvalidInput("body", "must be an om.megolm.v1 body (docs/encryption.md)") from exc
    return body


MAX_POSITION = 2**63 - 1
"""Positions and seqs are 64-bit signed in the database."""


def check_since(since: int, *, field: str = "since") -> None:
    if not 0 <= since <= MAX_POSITION:
        raise InvalidInput(field, f"must be from 0 to {MAX_POSITION}")


def check_page(since: int, limit: int, *, field: str = "since") -> int:
    check_since(since, field=field)
    if not 1 <= limit <= MAX_PAGE:
        raise InvalidInput("limit", f"must be between 1 and {MAX_PAGE}")
    return limit
