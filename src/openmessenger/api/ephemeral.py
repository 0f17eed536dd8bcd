"""Ephemeral events at the edge: their JSON, and their place on ``/v1/stream``.

The stream carries them only for a client that asks (``?ephemeral=1``: beside
the device's messages; ``?ephemeral=only``: nothing else), so a client that
knows only ``message`` events never meets another type.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Callable, Coroutine
from typing import Any
from urllib.parse import parse_qs

from starlette.types import Message, Scope, Send

from openmessenger.core.ephemeral import EphemeralEvent, EphemeralMessage
from openmessenger.core.records import Device
from openmessenger.protocol.ephemeral import (
    EphemeralEventOut,
    EphemeralExpiredOut,
    EphemeralMessageOut,
    EphemeralSentOut,
)
from openmessenger.services.ephemeral import EphemeralService


class StreamMode(enum.Enum):
    MESSAGES = "messages"
    BOTH = "both"
    EPHEMERAL_ONLY = "only"


_MODES = {
    "0": StreamMode.MESSAGES,
    "false": StreamMode.MESSAGES,
    "1": StreamMode.BOTH,
    "true": StreamMode.BOTH,
    "only": StreamMode.EPHEMERAL_ONLY,
}
BAD_MODE_REASON = "ephemeral must be 0, 1 or only"


def stream_mode(scope: Scope) -> StreamMode | None:
    """What the stream's ``?ephemeral=`` asks for; None when it is not a known value."""
    values = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("ephemeral", ["0"])
    return _MODES.get(values[-1].lower())


async def stream_events(
    mode: StreamMode,
    send: Send,
    ephemeral: EphemeralService,
    device: Device,
    messages: Callable[[Send], Coroutine[Any, Any, None]],
) -> None:
    """Run the stream's sources for ``mode`` on one socket: the device's
    messages (``messages``) and its ephemeral events, each frame sent whole."""
    if mode is StreamMode.MESSAGES:
        await messages(send)
        return
    if mode is StreamMode.EPHEMERAL_ONLY:
        await _send_ephemeral(send, ephemeral, device)
        return
    lock = asyncio.Lock()

    async def one_at_a_time(message: Message) -> None:
        async with lock:
            await send(message)

    tasks = [
        asyncio.create_task(messages(one_at_a_time)),
        asyncio.create_task(_send_ephemeral(one_at_a_time, ephemeral, device)),
    ]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            task.result()  # the first failure, as it was raised (the socket went away)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def _send_ephemeral(send: Send, ephemeral: EphemeralService, device: Device) -> None:
    events = ephemeral.follow(device.id)
    try:
        async for event in events:
            text = event_out(event).model_dump_json(by_alias=True)
            await send({"type": "websocket.send", "text": text})
    finally:
        await events.aclose()


def message_out(m: EphemeralMessage) -> EphemeralMessageOut:
    return EphemeralMessageOut(
        id=m.id,
        sender=m.sender,
        sender_device=m.sender_device,
        recipient=m.recipient,
        device=m.recipient_device,
        body=m.body,
        lifespan_seconds=m.lifespan_seconds,
        sent_at=m.sent_at,
        expires_at=m.expires_at,
    )


def event_out(event: EphemeralEvent) -> EphemeralEventOut | EphemeralExpiredOut:
    if isinstance(event, EphemeralMessage):
        return EphemeralEventOut(message=message_out(event))
    return EphemeralExpiredOut(
        id=event.id,
        to=event.recipient,
        device=event.recipient_device,
        sent_at=event.sent_at,
        expired_at=event.expired_at,
    )


def sent_out(m: EphemeralMessage) -> EphemeralSentOut:
    return EphemeralSentOut(
        id=m.id,
        to=m.recipient,
        device=m.recipient_device,
        lifespan_seconds=m.lifespan_seconds,
        sent_at=m.sent_at,
        expires_at=m.expires_at,
    )
