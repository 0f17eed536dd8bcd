"""The ephemeral (disappearing) relay: one device to one other device, from memory.

Nothing an ephemeral message carries is written anywhere: no database row, no
log line, no file. The node checks the sender may reach the address (the same
rule as an ordinary send), keeps the ciphertext in this process's memory, and
hands it to the receiving device the moment that device takes it, live on its
stream or by polling; then it forgets it. A message nobody took within the hold
(``ephemeral_hold_seconds``, at most 120 s) is dropped, and the sending device
is told so, by a notice held the same way.

Memory is per process: the receiving device must take the message from the
process that accepted it (one process, or a proxy that keeps a device on one).

To an address on another of our nodes (``remote``, services/ephemeral_federation.py)
the message is passed on at once, never held here: that node's relay holds it
(:meth:`EphemeralService.hold_from_peer`, with the same checks from its side),
and when it expires there, its notice comes back here
(:meth:`EphemeralService.notice_from_peer`) to wait for the sending device.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from pydantic import ValidationError

from openmessenger.core.ephemeral import (
    DEVICE_UNSUPPORTED,
    MAX_LIFESPAN_SECONDS,
    MIN_LIFESPAN_SECONDS,
    REMOTE_UNSUPPORTED,
    BodyTooLarge,
    EphemeralEvent,
    EphemeralMessage,
    ExpiryNotice,
    Relay,
    RelayLimits,
)
from openmessenger.core.errors import Conflict, Forbidden, InvalidInput, NotFound, Refused
from openmessenger.core.groups import remote_account_id
from openmessenger.core.ids import (
    AccountId,
    Address,
    ConversationId,
    DeviceId,
    Domain,
    address_domain,
    parse_address,
)
from openmessenger.core.records import AuthenticatedDevice, Device
from openmessenger.protocol.ephemeral import EphemeralBody
from openmessenger.services.ports import Clock, Secrets, Transaction, UnitOfWork


@dataclass(frozen=True, slots=True)
class EphemeralSent:
    message: EphemeralMessage
    created: bool
    """False: ``client_txn_id`` named a message still waiting; nothing new is held."""


class SendPolicy(Protocol):
    """The conversation's policy (services/policies.py): message size and rate."""

    async def check_direct_send(
        self, account_id: AccountId, recipient: Address, body: str
    ) -> None: ...

    async def check_send(
        self, account_id: AccountId, conversation_id: ConversationId, body: str
    ) -> None: ...


class RemoteRelay(Protocol):
    """Another of our nodes' relays (services/ephemeral_federation.py)."""

    async def ensure_supported(self, domain: Domain) -> None:
        """Conflict (``ephemeral_remote_unsupported``) when ``domain``'s node takes
        no disappearing messages; PeerUnavailable when it cannot be asked."""
        ...

    def forwarded(self, message_id: str) -> bool:
        """Whether a message with this id was passed on lately (a retry)."""
        ...

    async def forward(self, message: EphemeralMessage) -> EphemeralSent:
        """Pass ``message`` to its recipient's node; that node's answer (its times)
        or its refusal, raised as its client API would have."""
        ...

    def expired(self, message: EphemeralMessage) -> None:
        """Tell the sender's node that ``message`` was dropped undelivered (no wait)."""
        ...


async def reachable_account(
    tx: Transaction, sender: AccountId, sender_address: Address, recipient: Address
) -> AccountId | None:
    """The account of ``recipient`` (an address on this node) if ``sender`` may
    message it now, else None. The same rule as an ordinary send
    (``SqlMessages.append_batch``): a connection from the sender whose peer
    takes its messages, and a recipient who has not blocked the sender. Every
    other reason to refuse belongs here too, so that disappearing messages
    refuse exactly as ordinary ones do."""
    contact = await tx.connections.get(sender, recipient)
    if contact is None or not contact.peer_accepts_messages:
        return None
    account = await tx.accounts.by_address(recipient)
    if account is None or await tx.blocks.is_blocked(account.id, sender_address):
        return None
    return account.id


class EphemeralService:
    def __init__(
        self,
        uow: UnitOfWork,
        clock: Clock,
        secrets: Secrets,
        domain: Domain,
        limits: RelayLimits,
    ) -> None:
        self._uow = uow
        self._clock = clock
        self._secrets = secrets
        self._domain = domain
        self._relay = Relay(limits)
        self._timers: dict[tuple[DeviceId, str], asyncio.TimerHandle] = {}
        self._wakers: dict[DeviceId, set[asyncio.Event]] = {}
        self.policy: SendPolicy | None = None
        """The conversation's size and rate limits apply as to any message (set by wiring)."""
        self.remote: RemoteRelay | None = None
        """Other nodes' relays (capability ``ephemeral``; set by wiring). None: to an
        address of another node the answer is ``ephemeral_remote_unsupported``."""

    @property
    def limits(self) -> RelayLimits:
        return self._relay.limits

    async def send(
        self,
        caller: AuthenticatedDevice,
        to: str,
        device: str,
        body: str,
        lifespan_seconds: int,
        client_txn_id: str | None = None,
    ) -> EphemeralSent:
        """Hold one ephemeral message for ``device`` of ``to``. Refused, like an
        ordinary send, unless the caller's account may message ``to``."""
        if caller.device.app_id is not None:
            # It carries no envelope: an app's send would pass by the
            # recipient's choice of apps (docs/apps.md).
            raise Forbidden(
                "Disappearing messages are sent by a person's own devices, not by apps.",
                code="not_for_apps",
            )
        recipient = parse_address(to, field="to")
        if recipient.domain != self._domain and self.remote is None:
            raise Conflict(
                "Disappearing messages reach addresses on this node only.",
                code=REMOTE_UNSUPPORTED,
            )
        if not MIN_LIFESPAN_SECONDS <= lifespan_seconds <= MAX_LIFESPAN_SECONDS:
            raise InvalidInput(
                "lifespan_seconds",
                f"must be from {MIN_LIFESPAN_SECONDS} to {MAX_LIFESPAN_SECONDS}",
            )
        self._check_body(caller.device, body)
        if recipient.domain != self._domain:
            return await self._send_away(
                caller, recipient.address, DeviceId(device), body, lifespan_seconds, client_txn_id
            )
        async with self._uow() as tx:
            account = await reachable_account(
                tx, caller.account.id, caller.account.address, recipient.address
            )
            if account is None:
                raise Refused()
            target = await tx.keys.device(DeviceId(device))
        if target is None or target.account_id != account:
            raise NotFound("That address has no such device.", code="device_not_found")
        if target.node_held:
            raise Conflict(
                "That device is run by an app's node: it cannot take disappearing messages.",
                code=DEVICE_UNSUPPORTED,
            )
        message_id = self._message_id(caller.device.id, target.id, client_txn_id)
        if self.policy is not None and self._relay.pending_for(target.id, message_id) is None:
            await self.policy.check_direct_send(caller.account.id, recipient.address, body)
        # From here to admit() nothing awaits: a retry racing this one sees its message.
        waiting = self._relay.pending_for(target.id, message_id)
        if waiting is not None:
            return EphemeralSent(waiting, created=False)
        hold = self._relay.limits.hold_seconds
        sent_at = self._clock.now()
        message = EphemeralMessage(
            id=message_id,
            sender=caller.account.address,
            sender_device=caller.device.id,
            recipient=recipient.address,
            recipient_device=target.id,
            body=body,
            lifespan_seconds=lifespan_seconds,
            sent_at=sent_at,
            expires_at=sent_at + timedelta(seconds=hold),
            deadline=asyncio.get_running_loop().time() + hold,
        )
        self._relay.admit(message)
        self._schedule(message)
        self._wake(target.id)
        return EphemeralSent(message, created=True)

    async def _send_away(
        self,
        caller: AuthenticatedDevice,
        recipient: Address,
        device: DeviceId,
        body: str,
        lifespan_seconds: int,
        client_txn_id: str | None,
    ) -> EphemeralSent:
        """To another of our nodes: checked here as far as this node knows (a
        connection whose peer takes the caller's messages, the policy), then passed
        on; the answer waits for that node's."""
        assert self.remote is not None
        async with self._uow() as tx:
            contact = await tx.connections.get(caller.account.id, recipient)
        if contact is None or not contact.peer_accepts_messages:
            raise Refused()
        await self.remote.ensure_supported(address_domain(recipient))
        message_id = self._message_id(caller.device.id, device, client_txn_id)
        if self.policy is not None and not self.remote.forwarded(message_id):
            await self.policy.check_direct_send(caller.account.id, recipient, body)
        hold = self._relay.limits.hold_seconds
        sent_at = self._clock.now()
        return await self.remote.forward(
            EphemeralMessage(
                id=message_id,
                sender=caller.account.address,
                sender_device=caller.device.id,
                recipient=recipient,
                recipient_device=device,
                body=body,
                lifespan_seconds=lifespan_seconds,
                sent_at=sent_at,
                expires_at=sent_at + timedelta(seconds=hold),
                deadline=asyncio.get_running_loop().time() + hold,
            )
        )

    async def hold_from_peer(
        self,
        message_id: str,
        sender: Address,
        sender_device: DeviceId,
        recipient: Address,
        recipient_device: DeviceId,
        body: str,
        lifespan_seconds: int,
        sent_at: datetime,
    ) -> EphemeralSent:
        """Hold a message another of our nodes passed on from ``sender`` (an address
        of that node's) for ``recipient_device`` of ``recipient`` (one of ours):
        the checks of :meth:`send`, from this side. Refused unless ``recipient``
        takes ``sender``'s messages over their connection and has not blocked it."""
        limit = self._relay.limits.max_body_chars
        if len(body) > limit:
            raise BodyTooLarge("body", f"must be at most {limit} characters")
        try:
            EphemeralBody.model_validate_json(body)
        except ValidationError:
            raise InvalidInput("body", "must be an om.olm.v1 body (docs/api.md)") from None
        async with self._uow() as tx:
            account = await tx.accounts.by_address(recipient)
            contact = await tx.connections.get(account.id, sender) if account else None
            if (
                account is None
                or contact is None
                or not contact.accepts_messages
                or await tx.blocks.is_blocked(account.id, sender)
                # A device of this node is not theirs to speak for.
                or await tx.keys.device(sender_device) is not None
            ):
                raise Refused()
            target = await tx.keys.device(recipient_device)
        if target is None or target.account_id != account.id:
            raise NotFound("That address has no such device.", code="device_not_found")
        if target.node_held:
            raise Conflict(
                "That device is run by an app's node: it cannot take disappearing messages.",
                code=DEVICE_UNSUPPORTED,
            )
        waiting = self._relay.pending_for(target.id, message_id)
        if waiting is None and self.policy is not None:
            await self.policy.check_send(remote_account_id(sender), contact.conversation_id, body)
            waiting = self._relay.pending_for(target.id, message_id)
        if waiting is not None:
            if (waiting.sender, waiting.sender_device) != (sender, sender_device):
                raise Refused()  # another sender's id: never theirs to replace
            return EphemeralSent(waiting, created=False)
        hold = self._relay.limits.hold_seconds
        message = EphemeralMessage(
            id=message_id,
            sender=sender,
            sender_device=sender_device,
            recipient=recipient,
            recipient_device=target.id,
            body=body,
            lifespan_seconds=lifespan_seconds,
            sent_at=sent_at,
            expires_at=self._clock.now() + timedelta(seconds=hold),
            deadline=asyncio.get_running_loop().time() + hold,
        )
        self._relay.admit(message)
        self._schedule(message)
        self._wake(target.id)
        return EphemeralSent(message, created=True)

    def notice_from_peer(
        self,
        message_id: str,
        sender_device: DeviceId,
        recipient: Address,
        recipient_device: DeviceId,
        sent_at: datetime,
        expired_at: datetime,
    ) -> None:
        """Another node dropped this node's device's message undelivered: the
        notice waits for the sending device as a local one would."""
        notice = ExpiryNotice(
            id=message_id,
            sender_device=sender_device,
            recipient=recipient,
            recipient_device=recipient_device,
            sent_at=sent_at,
            expired_at=expired_at,
            deadline=asyncio.get_running_loop().time() + self._relay.limits.hold_seconds,
        )
        self._relay.add_notice(notice)
        self._schedule(notice)
        self._wake(sender_device)

    async def poll(self, caller: AuthenticatedDevice) -> list[EphemeralEvent]:
        """Everything waiting for the calling device; handed over and forgotten."""
        return self._take(caller.device.id)

    async def follow(self, device_id: DeviceId) -> AsyncGenerator[EphemeralEvent]:
        """What arrives for ``device_id``, as it arrives, forever. An event counts
        as handed over once the consumer asks for the next one; one the consumer
        never finished with (its connection dropped) waits again, for what is
        left of its hold."""
        wake = asyncio.Event()
        self._wakers.setdefault(device_id, set()).add(wake)
        try:
            while True:
                wake.clear()
                events = self._take(device_id)
                if not events:
                    await wake.wait()
                    continue
                handed = 0
                loop = asyncio.get_running_loop()
                try:
                    for event in events:
                        if event.deadline <= loop.time():
                            # Its hold ended while a slow reader took the ones before:
                            # back it goes, to expire (and tell its sender) at once.
                            self._put_back([event])
                        else:
                            yield event
                        handed += 1
                finally:
                    self._put_back(events[handed:])
        finally:
            wakers = self._wakers.get(device_id)
            if wakers is not None:
                wakers.discard(wake)
                if not wakers:
                    del self._wakers[device_id]

    def _check_body(self, device: Device, body: str) -> None:
        limit = self._relay.limits.max_body_chars
        if len(body) > limit:
            raise BodyTooLarge("body", f"must be at most {limit} characters")
        try:
            parsed = EphemeralBody.model_validate_json(body)
        except ValidationError:
            raise InvalidInput("body", "must be an om.olm.v1 body (docs/api.md)") from None
        if parsed.sender_key != device.curve25519_key:
            raise InvalidInput("body", "sender_key must be this device's Curve25519 key")

    def _message_id(self, sender: DeviceId, recipient: DeviceId, txn: str | None) -> str:
        if txn is None:
            return self._secrets.identifier()
        # The same for a retry: a receiver that got the first copy drops the second.
        return self._secrets.hmac("ephemeral-message", f"{sender}\n{recipient}\n{txn}")[:32]

    def _take(self, device_id: DeviceId) -> list[EphemeralEvent]:
        events = self._relay.take(device_id)
        for event in events:
            timer = self._timers.pop((event.device, event.id), None)
            if timer is not None:
                timer.cancel()
        return events

    def _put_back(self, events: Iterable[EphemeralEvent]) -> None:
        for event in events:
            self._relay.put_back(event)
            self._schedule(event)  # at once when its hold ended meanwhile
            self._wake(event.device)

    def _schedule(self, event: EphemeralEvent) -> None:
        loop = asyncio.get_running_loop()
        key = (event.device, event.id)
        earlier = self._timers.pop(key, None)
        if earlier is not None:
            earlier.cancel()
        delay = max(0.0, event.deadline - loop.time())
        self._timers[key] = loop.call_later(delay, self._hold_over, event)

    def _hold_over(self, event: EphemeralEvent) -> None:
        self._timers.pop((event.device, event.id), None)
        if isinstance(event, ExpiryNotice):
            self._relay.drop_notice(event.id, event.device)
            return
        if address_domain(event.sender) != self._domain:
            # Its sender is on another node: the notice goes there, not into our relay.
            dropped = self._relay.drop(event.id, event.device)
            if dropped is not None and self.remote is not None:
                self.remote.expired(dropped)
            return
        notice = self._relay.expire(event.id, event.device, asyncio.get_running_loop().time())
        if notice is not None:
            self._schedule(notice)
            self._wake(notice.device)

    def _wake(self, device_id: DeviceId) -> None:
        for wake in self._wakers.get(device_id, ()):
            wake.set()
