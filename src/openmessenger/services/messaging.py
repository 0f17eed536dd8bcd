"""Sending, syncing and reading history of 1:1 conversations.

A message is committed together with its place in every receiving device's
stream before the sender hears "accepted"; only then is it published on the
bus for live delivery. A device that missed the live event reads the same
events from its stream (``sync``), so delivery is at-least-once on the wire and
exactly-once in effect (events carry positions and ids).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

from openmessenger.core.envelope import DeliveryStatus, Message, StreamEvent, validate_body
from openmessenger.core.errors import InvalidInput, NotFound, Refused
from openmessenger.core.ids import Address, ConversationId, DeviceId, MessageId, parse_address
from openmessenger.core.records import AuthenticatedDevice
from openmessenger.services.ports import Bus, Clock, Secrets, SubscriptionLagged, UnitOfWork

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


class _DuplicateTxn(Exception):
    pass


class MessagingService:
    def __init__(self, uow: UnitOfWork, bus: Bus, clock: Clock, secrets: Secrets) -> None:
        self._uow = uow
        self._bus = bus
        self._clock = clock
        self._secrets = secrets

    async def send(
        self, caller: AuthenticatedDevice, to: str, body: str, client_txn_id: str | None
    ) -> SendResult:
        recipient = parse_address(to, field="to").address
        validate_body(body)
        try:
            return await self._send_once(caller, recipient, body, client_txn_id)
        except _DuplicateTxn:
            # A concurrent retry with the same key won the race: answer with its message.
            assert client_txn_id is not None
            async with self._uow() as tx:
                existing = await tx.messages.by_txn(caller.device.id, client_txn_id)
            assert existing is not None
            return SendResult(existing, created=False)

    async def _send_once(
        self, caller: AuthenticatedDevice, recipient: Address, body: str, client_txn_id: str | None
    ) -> SendResult:
        sender = caller.account
        async with self._uow() as tx:
            if client_txn_id is not None:
                existing = await tx.messages.by_txn(caller.device.id, client_txn_id)
                if existing is not None:
                    return SendResult(existing, created=False)
            contact = await tx.connections.get(sender.id, recipient)
            recipient_account = await tx.accounts.by_address(contact.address) if contact else None
            if contact is None or recipient_account is None:
                raise Refused()
            message = Message(
                id=MessageId(self._secrets.identifier()),
                conversation_id=contact.conversation_id,
                seq=await tx.messages.next_seq(contact.conversation_id),
                sender=sender.address,
                sender_device=caller.device.id,
                recipient=contact.address,
                body=body,
                sent_at=self._clock.now(),
                status=DeliveryStatus.ACCEPTED,
            )
            if not await tx.messages.add(message, client_txn_id):
                raise _DuplicateTxn()
            # The recipient's devices, and the sender's other devices, so that
            # every device of both accounts holds the whole conversation.
            receivers = await tx.devices.ids_of_account(recipient_account.id)
            receivers += [
                d for d in await tx.devices.ids_of_account(sender.id) if d != caller.device.id
            ]
            events = await tx.messages.fan_out(message, receivers)
            await tx.commit()
        await self._bus.publish(events)
        return SendResult(message, created=True)

    async def sync(self, caller: AuthenticatedDevice, since: int, limit: int) -> SyncPage:
        limit = _check_page(since, limit)
        async with self._uow() as tx:
            events = await tx.messages.stream(caller.device.id, since, limit + 1)
        page = events[:limit]
        next_since = page[-1].position if page else since
        return SyncPage(page, next_since, has_more=len(events) > limit)

    async def history(
        self, caller: AuthenticatedDevice, conversation_id: str, after_seq: int, limit: int
    ) -> HistoryPage:
        limit = _check_page(after_seq, limit, field="after_seq")
        async with self._uow() as tx:
            contact = await tx.connections.by_conversation(
                caller.account.id, ConversationId(conversation_id)
            )
            if contact is None:
                raise NotFound("No such conversation.")
            found = await tx.messages.history(contact.conversation_id, after_seq, limit + 1)
        return HistoryPage(found[:limit], has_more=len(found) > limit)

    async def follow(self, device_id: DeviceId, since: int) -> AsyncIterator[StreamEvent]:
        """The device's stream from ``since`` on, backlog first, then live, in order, forever."""
        _check_page(since, 1)
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

    async def _backlog(self, device_id: DeviceId, since: int) -> AsyncIterator[StreamEvent]:
        while True:
            async with self._uow() as tx:
                batch = await tx.messages.stream(device_id, since, MAX_PAGE)
            for event in batch:
                since = event.position
                yield event
            if len(batch) < MAX_PAGE:
                return


def _check_page(since: int, limit: int, *, field: str = "since") -> int:
    if since < 0:
        raise InvalidInput(field, "must be 0 or more")
    if not 1 <= limit <= MAX_PAGE:
        raise InvalidInput("limit", f"must be between 1 and {MAX_PAGE}")
    return limit
