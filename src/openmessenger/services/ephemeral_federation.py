"""Disappearing messages across our nodes (capability ``ephemeral``,
protocol/ephemeral_federation.py).

Nothing here is stored: no table, no outbox, no retry, no log line with content.

- Sending: :meth:`EphemeralFederation.forward` passes one message to the
  recipient's node (``ephemeral-relay/``, signed) and answers the sending device
  only with that node's answer: held (its times), or its refusal, raised here as
  that node's client API rendered it. An unreachable node is ``PeerUnavailable``
  and nothing is kept. What it needs to believe a later expiry notice (ids and
  devices, never the body) waits in a bounded in-memory ledger until the hold
  over there is surely over.
- Receiving: ``ephemeral-relay/`` from a node that speaks for its own address
  only goes to :meth:`EphemeralService.hold_from_peer`, the same relay and the
  same checks as a local send. When such a message's hold ends undelivered, the
  notice goes back to the sender's node (``ephemeral-expired/``), once: if that
  node cannot be reached then, the notice is lost.
- ``ephemeral-expired/`` is taken only from the node a message was sent to, for a
  message this node sent there and still remembers; it then waits for the
  sending device like a local notice.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Mapping
from typing import TypeVar

from pydantic import BaseModel

from openmessenger.core.ephemeral import (
    MAX_HOLD_SECONDS,
    REMOTE_UNSUPPORTED,
    EphemeralMessage,
    Forwarded,
    ForwardLedger,
    RelayLimits,
)
from openmessenger.core.errors import (
    Conflict,
    DomainError,
    InvalidInput,
    PeerUnavailable,
)
from openmessenger.core.ids import Address, DeviceId, Domain, address_domain, parse_address
from openmessenger.protocol import ephemeral_federation as wire
from openmessenger.protocol import openmsg
from openmessenger.protocol.extension_refusal import ExtensionRefusal
from openmessenger.protocol.openmsg import JsonObject, ResponseCode
from openmessenger.services.ephemeral import EphemeralSent, EphemeralService
from openmessenger.services.peers import PeerDirectory
from openmessenger.services.ports import Clock, FederationTransport, Secrets
from openmessenger.services.signed_requests import (
    ExtensionHandler,
    PeerRefusal,
    SignedRequests,
    SignedRequestVerifier,
    error_of,
    parse_answer,
    parse_request,
    refusal_body,
    served,
)

log = logging.getLogger(__name__)
_Model = TypeVar("_Model", bound=BaseModel)

NOTICE_GRACE_SECONDS = 60.0
"""How long after the other node's hold ends its notice is still believed: time
for the request (and its 60-second signature window) to arrive."""


class EphemeralFederation:
    """``RemoteRelay`` over signed extension requests, and their two endpoints."""

    def __init__(
        self,
        *,
        clock: Clock,
        secrets: Secrets,
        domain: Domain,
        transport: FederationTransport,
        directory: PeerDirectory,
        verifier: SignedRequestVerifier,
        ephemeral: EphemeralService,
        limits: RelayLimits,
    ) -> None:
        self._clock = clock
        self._domain = domain
        self._directory = directory
        self._verifier = verifier
        self._ephemeral = ephemeral
        self._signed = SignedRequests(
            secrets=secrets, clock=clock, domain=domain, transport=transport
        )
        self._ledger = ForwardLedger(limits)
        self._notices: set[asyncio.Task[None]] = set()

    # --- RemoteRelay: this node's devices send to another node -----------------------

    async def ensure_supported(self, domain: Domain) -> None:
        found = await self._directory.capability(domain, wire.EPHEMERAL)
        if found is None:
            raise PeerUnavailable(domain)
        if not found:
            raise Conflict(
                "That address's node takes no disappearing messages.", code=REMOTE_UNSUPPORTED
            )

    def forwarded(self, message_id: str) -> bool:
        return self._ledger.get(message_id, _now()) is not None

    async def forward(self, message: EphemeralMessage) -> EphemeralSent:
        domain = address_domain(message.recipient)
        now = _now()
        entry = Forwarded(
            id=message.id,
            sender=message.sender,
            sender_device=message.sender_device,
            recipient=message.recipient,
            recipient_device=message.recipient_device,
            node=domain,
            sent_at=message.sent_at,
            deadline=now + MAX_HOLD_SECONDS + NOTICE_GRACE_SECONDS,
        )
        earlier = self._ledger.get(message.id, now)
        self._ledger.remember(entry, now)  # before asking: the notice may come quickly
        request = wire.RelayRequest(
            id=message.id,
            sender=message.sender,
            sender_device=message.sender_device,
            recipient=message.recipient,
            recipient_device=message.recipient_device,
            body=message.body,
            lifespan_seconds=message.lifespan_seconds,
            sent_at=message.sent_at,
        )
        try:
            answer = await self._signed.exchange(domain, wire.RELAY_PATH, request)
        except BaseException:
            self._ledger.undo(entry, earlier, _now())
            raise
        held = parse_answer(wire.RelayAnswer, answer)
        if held is None or held.id != message.id:
            self._ledger.undo(entry, earlier, _now())
            refusal = parse_answer(ExtensionRefusal, answer)
            if refusal is not None:
                raise error_of(refusal)
            log.info("ephemeral relay: %s answered something else", domain)
            raise PeerUnavailable(domain)
        # Keep it until the other node's hold is over (never beyond the bound), and then
        # long enough for its notice to arrive.
        remaining = (held.expires_at - self._clock.now()).total_seconds()
        hold = min(max(remaining, 0.0), MAX_HOLD_SECONDS)
        deadline = _now() + hold + NOTICE_GRACE_SECONDS
        self._ledger.remember(dataclasses.replace(entry, deadline=deadline), _now())
        return EphemeralSent(
            dataclasses.replace(message, expires_at=held.expires_at),
            created=held.created,
        )

    def expired(self, message: EphemeralMessage) -> None:
        task = asyncio.get_running_loop().create_task(self._tell_expired(message))
        self._notices.add(task)
        task.add_done_callback(self._notices.discard)

    async def _tell_expired(self, message: EphemeralMessage) -> None:
        domain = address_domain(message.sender)
        request = wire.ExpiredRequest(
            id=message.id,
            sender=message.sender,
            sender_device=message.sender_device,
            recipient=message.recipient,
            recipient_device=message.recipient_device,
            expired_at=message.expires_at,
        )
        try:
            answer = await self._signed.exchange(domain, wire.EXPIRED_PATH, request)
        except PeerUnavailable:
            log.info("ephemeral expiry notice to %s lost: unreachable", domain)
            return
        except Exception:
            log.exception("ephemeral expiry notice to %s failed", domain)
            return
        if parse_answer(wire.ExpiredAnswer, answer) is None:
            log.info("ephemeral expiry notice: %s did not take it", domain)

    async def close(self) -> None:
        """Stop telling other nodes (at shutdown): what is still on its way is lost."""
        for task in list(self._notices):
            task.cancel()
        await asyncio.gather(*self._notices, return_exceptions=True)

    # --- requests from our other nodes ------------------------------------------------

    def handlers(self) -> dict[str, ExtensionHandler]:
        """The signed endpoints this serves, by path (api/openmsg.py routes them)."""
        return {wire.RELAY_PATH: served(self._relay), wire.EXPIRED_PATH: served(self._expired)}

    async def _relay(self, raw: bytes, headers: Mapping[str, str]) -> JsonObject:
        origin = await self._verifier.origin(raw, headers, wire.RELAY_PATH)
        request = parse_request(wire.RelayRequest, raw)
        sender = self._address(request.sender, origin)  # a node speaks for its own only
        recipient = self._address(request.recipient, self._domain)
        window = openmsg.within_window(
            int(request.sent_at.timestamp()), int(self._clock.now().timestamp())
        )
        if not window:
            raise PeerRefusal(ResponseCode.MESSAGE_EXPIRED)
        try:
            sent = await self._ephemeral.hold_from_peer(
                request.id,
                sender,
                DeviceId(request.sender_device),
                recipient,
                DeviceId(request.recipient_device),
                request.body,
                request.lifespan_seconds,
                request.sent_at,
            )
        except DomainError as exc:
            return refusal_body(exc)
        return wire.RelayAnswer(
            id=sent.message.id,
            sent_at=sent.message.sent_at,
            expires_at=sent.message.expires_at,
            created=sent.created,
        ).model_dump(mode="json")

    async def _expired(self, raw: bytes, headers: Mapping[str, str]) -> JsonObject:
        origin = await self._verifier.origin(raw, headers, wire.EXPIRED_PATH)
        request = parse_request(wire.ExpiredRequest, raw)
        recipient = self._address(request.recipient, origin)
        sender = self._address(request.sender, self._domain)
        entry = self._ledger.recall(
            request.id,
            origin,
            sender,
            DeviceId(request.sender_device),
            recipient,
            DeviceId(request.recipient_device),
            _now(),
        )
        if entry is None:
            # Never sent there by us, or long forgotten: nobody hears of it.
            raise PeerRefusal(ResponseCode.MESSAGE_UNKNOWN, "No such message from this node.")
        expired_at = min(request.expired_at, self._clock.now())
        self._ephemeral.notice_from_peer(
            entry.id,
            entry.sender_device,
            entry.recipient,
            entry.recipient_device,
            entry.sent_at,
            max(expired_at, entry.sent_at),
        )
        return wire.ExpiredAnswer().model_dump(mode="json")

    def _address(self, value: str, domain: Domain) -> Address:
        try:
            parsed = parse_address(value)
        except InvalidInput:
            raise PeerRefusal(ResponseCode.MESSAGE_DATA_MISSING, "Not an address.") from None
        if parsed.domain != domain:
            raise PeerRefusal(ResponseCode.IDENT_CODE_INVALID)
        return parsed.address

    # --- shared -----------------------------------------------------------------------


def _now() -> float:
    return asyncio.get_running_loop().time()


__all__ = ["EphemeralFederation"]
