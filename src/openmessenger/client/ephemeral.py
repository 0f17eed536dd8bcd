"""Disappearing (ephemeral) messages in the SDK: one device to one other device.

    sent = await client.send_ephemeral(address, "see you at 8", lifespan=60)
    async for event in client.listen_ephemeral():
        if isinstance(event, EphemeralMessage):
            print(event.text, f"[disappears in {event.remaining_seconds:.0f} s]")

The text is encrypted with Olm to exactly one trusted device of the recipient
(the pairwise sessions of docs/encryption.md), and the plaintext names sender,
sending device, recipient, receiving device and lifespan: the receiving device
opens only what its envelope agrees with. The node relays it from memory.

What arrives is kept in this process's memory only, never in ``state.json`` or
``crypto.db`` (Olm session state moves forward there as for any Olm message; it
holds no content), and only for the message's lifespan, counted from when it
arrived: then ``text`` reads ``""`` and :meth:`EphemeralMessaging.ephemeral_messages`
no longer lists it. Mixed into :class:`openmessenger.client.Client`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections import OrderedDict
from collections.abc import AsyncGenerator, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import httpx
import pydantic
from websockets.asyncio.client import ClientConnection

from openmessenger.client import transport
from openmessenger.client.devices import canonical_address
from openmessenger.client.e2e import DecryptionError
from openmessenger.client.errors import (
    ApiError,
    InvalidArgumentError,
    ProtocolError,
    ServerUnreachableError,
    api_error,
)
from openmessenger.core.ephemeral import (
    MAX_HOLD_SECONDS,
    MAX_LIFESPAN_SECONDS,
    MIN_LIFESPAN_SECONDS,
    REMOTE_UNSUPPORTED,
)
from openmessenger.core.ids import Address, DeviceId, address_domain
from openmessenger.core.preferences import Name
from openmessenger.protocol import client_api as wire
from openmessenger.protocol import e2e as e2e_wire
from openmessenger.protocol.ephemeral import (
    EphemeralBody,
    EphemeralEventOut,
    EphemeralExpiredOut,
    EphemeralMessageOut,
    EphemeralPlaintext,
    EphemeralPollOut,
    EphemeralSendIn,
    EphemeralSentOut,
    EphemeralStreamEvent,
)

if TYPE_CHECKING:
    from openmessenger.client.e2e import EndToEnd
    from openmessenger.client.preferences import Preference
    from openmessenger.client.state import DeviceState

DEFAULT_LIFESPAN_SECONDS = 60
MAX_TEXT_CHARS = 4000
"""Fits, encrypted, in the node's default ephemeral_max_body_chars (8192)."""
SEND_ATTEMPTS = 3
RETRY_DELAYS_SECONDS = (0.2, 1.0)
SEEN_SECONDS = 2 * MAX_HOLD_SECONDS + 60
"""How long an id is remembered to drop a second copy (a sender's retry)."""
SEEN_MAX = 10_000

_EVENTS: pydantic.TypeAdapter[EphemeralEventOut | EphemeralExpiredOut] = pydantic.TypeAdapter(
    EphemeralStreamEvent
)

Monotonic = Callable[[], float]


@dataclass(frozen=True, slots=True)
class EphemeralSent:
    """A disappearing message the node now holds for ``device`` of ``to``."""

    id: str
    to: Address
    device: DeviceId
    lifespan_seconds: int
    sent_at: datetime
    expires_at: datetime
    """Not taken by then, the node drops it and this device gets an EphemeralExpired."""


@dataclass(frozen=True, slots=True)
class EphemeralExpired:
    """The node dropped this device's disappearing message ``id``: never delivered."""

    id: str
    to: Address
    device: DeviceId
    sent_at: datetime
    expired_at: datetime


class EphemeralMessage:
    """A disappearing message this device received. ``text`` is there for
    ``lifespan_seconds`` after it arrived, then reads ``""`` for good."""

    __slots__ = (
        "_clock",
        "_deadline",
        "_text",
        "error",
        "id",
        "lifespan_seconds",
        "received_at",
        "recipient",
        "recipient_device",
        "sender",
        "sender_device",
        "sent_at",
    )

    def __init__(
        self,
        *,
        id: str,
        sender: Address,
        sender_device: DeviceId,
        recipient: Address,
        recipient_device: DeviceId,
        text: str,
        lifespan_seconds: int,
        sent_at: datetime,
        received_at: datetime,
        error: str | None = None,
        clock: Monotonic = time.monotonic,
    ) -> None:
        self.id = id
        self.sender = sender
        self.sender_device = sender_device
        self.recipient = recipient
        self.recipient_device = recipient_device
        self.lifespan_seconds = lifespan_seconds
        self.sent_at = sent_at
        self.received_at = received_at
        self.error = error
        """Why it could not be opened (then ``text`` is empty): it was not for this
        device, its sender's device is not trusted, its envelope was changed, ..."""
        self._text = text
        self._clock = clock
        self._deadline = clock() + lifespan_seconds

    @property
    def text(self) -> str:
        if self._text and self.expired:
            self._text = ""
        return self._text

    @property
    def expired(self) -> bool:
        return self._clock() >= self._deadline

    @property
    def remaining_seconds(self) -> float:
        """Seconds until the text is gone (0 once it is)."""
        return max(0.0, self._deadline - self._clock())

    def forget(self) -> None:
        """Drop the text now, before the lifespan ends."""
        self._text = ""
        self._deadline = min(self._deadline, self._clock())

    def __repr__(self) -> str:  # never the text: reprs end up in logs
        return (
            f"EphemeralMessage(id={self.id!r}, sender={self.sender!r}, "
            f"remaining_seconds={self.remaining_seconds:.1f}, error={self.error!r})"
        )


EphemeralEvent = EphemeralMessage | EphemeralExpired


class EphemeralInbox:
    """What this client received, in memory, until each lifespan ends; and the ids
    seen lately, so a second copy of a message is dropped unopened."""

    def __init__(self, clock: Monotonic = time.monotonic) -> None:
        self.clock = clock
        self._messages: dict[str, EphemeralMessage] = {}
        self._seen: OrderedDict[str, float] = OrderedDict()

    def first_time(self, message_id: str) -> bool:
        """True the first time ``message_id`` comes (it is remembered from then on)."""
        now = self.clock()
        while self._seen and (
            len(self._seen) >= SEEN_MAX or next(iter(self._seen.values())) <= now - SEEN_SECONDS
        ):
            self._seen.popitem(last=False)
        if message_id in self._seen:
            return False
        self._seen[message_id] = now
        return True

    def keep(self, message: EphemeralMessage) -> None:
        self._purge()
        self._messages[message.id] = message

    def alive(self) -> list[EphemeralMessage]:
        """Messages whose lifespan has not ended, oldest first."""
        self._purge()
        return list(self._messages.values())

    def forget_all(self) -> None:
        for message in self._messages.values():
            message.forget()
        self._messages.clear()

    def _purge(self) -> None:
        for message_id in [i for i, m in self._messages.items() if m.expired]:
            self._messages.pop(message_id).forget()


class EphemeralMessaging:
    """The disappearing-message methods of ``Client``."""

    if TYPE_CHECKING:  # provided by Client
        server_url: str
        _timeout: float
        _state: DeviceState | None

        @property
        def address(self) -> Address | None: ...
        @property
        def device_id(self) -> DeviceId | None: ...
        async def end_to_end(self) -> EndToEnd: ...
        async def preferences(
            self, *, contact: str | None = None, conversation: str | None = None
        ) -> dict[str, Preference]: ...
        async def _session_token(self) -> str: ...
        async def _reauthenticate(self, *, stale_token: str) -> str: ...
        async def _call(
            self,
            method: str,
            path: str,
            *,
            body: wire.Request | None = None,
            params: Mapping[str, str | int] | None = None,
        ) -> httpx.Response: ...

    async def _disappearing_timer(self, to: str) -> int:
        """The lifespan the user chose for ``to`` (narrowest level first), if any."""
        try:
            chosen = (await self.preferences(contact=to)).get(Name.DISAPPEARING_TIMER)
        except ApiError as exc:
            if exc.status != 404:  # not a contact: the send itself will say so
                raise
            chosen = None
        value = chosen.value if chosen is not None else None
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        return DEFAULT_LIFESPAN_SECONDS

    def ephemeral_inbox(self) -> EphemeralInbox:
        """This client's in-memory inbox of disappearing messages."""
        inbox: EphemeralInbox | None = getattr(self, "_ephemeral_inbox", None)
        if inbox is None:
            inbox = EphemeralInbox()
            self._ephemeral_inbox = inbox
        return inbox

    def ephemeral_messages(self) -> list[EphemeralMessage]:
        """The disappearing messages received that are still within their lifespan."""
        return self.ephemeral_inbox().alive()

    async def send_ephemeral(
        self,
        to: str,
        text: str,
        *,
        device: str | None = None,
        lifespan: int | None = None,
        client_txn_id: str | None = None,
    ) -> EphemeralSent:
        """Send a disappearing message to one device of a contact, on this node or
        another of our nodes: ``device``, or the contact's only trusted device.
        The recipient's client keeps the text ``lifespan`` seconds after it
        arrives. If no device takes it within the hold of the recipient's node
        (at most 120 s), that node drops it and this
        device gets an :class:`EphemeralExpired`. Without ``lifespan``, the
        ``disappearing_timer`` preference for ``to`` gives it (60 s when it is off).

        Raises RefusedError when you may not message ``to``, InvalidArgumentError
        when ``to`` has several devices and none was named, ApiError
        ``ephemeral_remote_unsupported`` when ``to``'s node takes none (an
        Openmsg v1 node), ``peer_unavailable`` when it cannot be reached now
        (nothing was kept: send again)."""
        if not text or len(text) > MAX_TEXT_CHARS:
            raise InvalidArgumentError("text", f"must be 1 to {MAX_TEXT_CHARS} characters")
        if lifespan is None:
            lifespan = await self._disappearing_timer(to)
        if not MIN_LIFESPAN_SECONDS <= lifespan <= MAX_LIFESPAN_SECONDS:
            raise InvalidArgumentError(
                "lifespan", f"must be from {MIN_LIFESPAN_SECONDS} to {MAX_LIFESPAN_SECONDS} seconds"
            )
        target = canonical_address(to)
        engine = await self.end_to_end()
        me, my_device = self.address, self.device_id
        assert me is not None and my_device is not None
        try:
            devices = await engine.devices_of(target)
        except ApiError as exc:
            if exc.status == 404:  # not a contact: the same refusal the node would give
                raise api_error(403, "refused") from exc
            raise
        if address_domain(target) != address_domain(me) and devices.encryption != "end-to-end":
            # An Openmsg v1 node: no device keys, so no Olm, so no disappearing message.
            raise api_error(
                409, REMOTE_UNSUPPORTED, "that address's node takes no disappearing messages"
            )
        chosen = _choose_device(target, devices.trusted, device)
        plaintext = EphemeralPlaintext(
            text=text,
            sender=me,
            sender_device=my_device,
            recipient=target,
            recipient_device=chosen.device_id,
            lifespan_seconds=lifespan,
        )
        olm = await engine.olm_encrypt_to(
            target, chosen, plaintext.model_dump_json(by_alias=True).encode()
        )
        body = transport.request_body(
            EphemeralSendIn,
            {
                "to": target,
                "device": chosen.device_id,
                "body": EphemeralBody(sender_key=engine.curve25519_key, olm=olm).model_dump_json(),
                "lifespan_seconds": lifespan,
                "client_txn_id": client_txn_id or uuid.uuid4().hex,
            },
        )
        for attempt in range(SEND_ATTEMPTS):
            try:
                response = await self._call("POST", "/ephemeral", body=body)
                break
            except ServerUnreachableError:
                if attempt == SEND_ATTEMPTS - 1:
                    raise
                await asyncio.sleep(RETRY_DELAYS_SECONDS[attempt])
        sent = transport.parse_response(EphemeralSentOut, response)
        return EphemeralSent(
            id=sent.id,
            to=Address(sent.to),
            device=DeviceId(sent.device),
            lifespan_seconds=sent.lifespan_seconds,
            sent_at=sent.sent_at,
            expires_at=sent.expires_at,
        )

    async def receive_ephemeral(self) -> list[EphemeralEvent]:
        """What waited at the node for this device: disappearing messages to it
        and expiry notices about its own. The node forgets them as it hands them
        over; a message is opened here and kept in memory for its lifespan."""
        engine = await self.end_to_end()
        page = transport.parse_response(EphemeralPollOut, await self._call("GET", "/ephemeral"))
        received: list[EphemeralEvent] = []
        for event in page.events:
            opened = await self._ephemeral_event(engine, event)
            if opened is not None:
                received.append(opened)
        return received

    async def listen_ephemeral(self) -> AsyncGenerator[EphemeralEvent, None]:
        """Disappearing messages and expiry notices as they arrive, over the
        node's stream (``/v1/stream?ephemeral=only``), until the caller stops.
        Reconnects after a dropped connection; raises ServerUnreachableError
        when the node cannot be reached at the start or after repeated attempts."""
        engine = await self.end_to_end()
        token = await self._session_token()

        def open_(token: str) -> contextlib.AbstractAsyncContextManager[ClientConnection]:
            url = transport.socket_url(self.server_url, "/stream", {"ephemeral": "only"})
            return transport.open_socket(
                self.server_url, url, token, open_timeout_seconds=self._timeout
            )

        frames = transport.reconnecting_frames(open_, token, self._reauthenticate)
        try:
            async for frame in frames:
                opened = await self._ephemeral_event(engine, _parse_frame(frame))
                if opened is not None:
                    yield opened
        finally:
            await frames.aclose()

    async def _ephemeral_event(
        self, engine: EndToEnd, event: EphemeralEventOut | EphemeralExpiredOut
    ) -> EphemeralEvent | None:
        if isinstance(event, EphemeralExpiredOut):
            return EphemeralExpired(
                id=event.id,
                to=Address(event.to),
                device=DeviceId(event.device),
                sent_at=event.sent_at,
                expired_at=event.expired_at,
            )
        inbox = self.ephemeral_inbox()
        message = event.message
        if not inbox.first_time(message.id):
            return None  # a second copy (the sender retried): Olm would refuse it anyway
        text, error = "", None
        try:
            text = await self._open_ephemeral(engine, message)
        except DecryptionError as exc:
            error = str(exc)
        opened = EphemeralMessage(
            id=message.id,
            sender=Address(message.sender),
            sender_device=DeviceId(message.sender_device),
            recipient=Address(message.recipient),
            recipient_device=DeviceId(message.device),
            text=text,
            lifespan_seconds=message.lifespan_seconds,
            sent_at=message.sent_at,
            received_at=datetime.now(UTC),
            error=error,
            clock=inbox.clock,
        )
        if error is None:
            inbox.keep(opened)
        return opened

    async def _open_ephemeral(self, engine: EndToEnd, message: EphemeralMessageOut) -> str:
        """The text, if everything about the message checks out; DecryptionError otherwise."""
        if message.recipient != self.address or message.device != self.device_id:
            raise DecryptionError("the message is for another device")
        try:
            body = EphemeralBody.model_validate_json(message.body)
        except pydantic.ValidationError as exc:
            raise DecryptionError("the body is not an om.olm.v1 body") from exc
        try:
            sender = await engine.devices_of(Address(message.sender))
        except ApiError as exc:
            raise DecryptionError("the sender's devices could not be checked") from exc
        if not any(
            d.device_id == message.sender_device and d.curve25519_key == body.sender_key
            for d in sender.trusted
        ):
            raise DecryptionError("sent from a device its account has not signed")
        plaintext = engine.olm_decrypt_from(body.sender_key, body.olm)
        if body.olm.type == 0:
            # It opened a session with one of this device's one-time keys: replace it.
            with contextlib.suppress(ApiError, ServerUnreachableError):
                await engine.publish_keys()
        try:
            content = EphemeralPlaintext.model_validate_json(plaintext)
        except pydantic.ValidationError as exc:
            raise DecryptionError("the plaintext is not a disappearing message") from exc
        bound = (
            content.sender,
            content.sender_device,
            content.recipient,
            content.recipient_device,
            content.lifespan_seconds,
        )
        envelope = (
            message.sender,
            message.sender_device,
            message.recipient,
            message.device,
            message.lifespan_seconds,
        )
        if bound != envelope:
            raise DecryptionError("the ciphertext belongs to another envelope")
        return content.text


def _choose_device(
    address: Address, trusted: tuple[e2e_wire.ListedDevice, ...], wanted: str | None
) -> e2e_wire.ListedDevice:
    if wanted is not None:
        for device in trusted:
            if device.device_id == wanted:
                return device
        raise InvalidArgumentError("device", f"{wanted} is not a trusted device of {address}")
    if len(trusted) == 1:
        return trusted[0]
    if not trusted:
        raise InvalidArgumentError("to", f"{address} has no device this device trusts")
    names = ", ".join(d.device_id for d in trusted)
    raise InvalidArgumentError(
        "device", f"{address} has {len(trusted)} devices ({names}): name the one to send to"
    )


def _parse_frame(frame: str | bytes) -> EphemeralEventOut | EphemeralExpiredOut:
    try:
        return _EVENTS.validate_json(frame)
    except pydantic.ValidationError as exc:
        raise ProtocolError(f"the stream sent a frame that is no ephemeral event: {exc}") from exc


__all__ = [
    "DEFAULT_LIFESPAN_SECONDS",
    "EphemeralEvent",
    "EphemeralExpired",
    "EphemeralInbox",
    "EphemeralMessage",
    "EphemeralMessaging",
    "EphemeralSent",
]
