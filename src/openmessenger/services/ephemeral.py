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
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Iterable
from dataclasses import dataclass
from datetime import timedelta
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
from openmessenger.core.ids import AccountId, Address, DeviceId, Domain, parse_address
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
        if recipient.domain != self._domain:
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
        notice = self._relay.expire(event.id, event.device, asyncio.get_running_loop().time())
        if notice is not None:
            self._schedule(notice)
            self._wake(notice.device)

    def _wake(self, device_id: DeviceId) -> None:
        for wake in self._wakers.get(device_id, ()):
            wake.set()
