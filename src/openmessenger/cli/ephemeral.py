"""Disappearing messages in the CLI: ``send --ephemeral`` and ``listen --ephemeral``
(the options live on those commands in cli/device.py; docs/cli.md is the contract).

A received disappearing message is printed with its timer, e.g.
``[disappears in 60 s]``; the SDK forgets the text when the timer ends. The
CLI writes nothing of it anywhere but the terminal.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable
from typing import Any

from openmessenger.cli.device import _local, _Names, _print, _printable, _who, rfc3339
from openmessenger.client import (
    Client,
    EphemeralExpired,
    EphemeralMessage,
    EphemeralSent,
    Message,
)


async def send(
    client: Client,
    address: str,
    text: str,
    *,
    device: str | None,
    lifespan: int | None,
    as_json: bool,
) -> None:
    sent = await client.send_ephemeral(address, text, device=device, lifespan=lifespan)
    _print(_sent_json(sent), _sent_text(sent), as_json)


async def listen(
    client: Client,
    names: _Names,
    print_message: Callable[[Message], Awaitable[None]],
    *,
    as_json: bool,
) -> None:
    """Ordinary messages (``print_message``) and disappearing ones, side by side,
    until one of the two streams fails (or Ctrl-C)."""

    async def messages() -> None:
        async for message in client.listen():
            await print_message(message)

    async def ephemeral() -> None:
        async for event in client.listen_ephemeral():
            if isinstance(event, EphemeralMessage):
                await names.learn(event.sender)
            print_event(event, names, as_json=as_json)

    tasks = [asyncio.create_task(messages()), asyncio.create_task(ephemeral())]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            task.result()
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def print_event(
    event: EphemeralMessage | EphemeralExpired, names: _Names, *, as_json: bool
) -> None:
    if isinstance(event, EphemeralExpired):
        _print(_expired_json(event), _expired_text(event), as_json)
    else:
        _print(_message_json(event), _message_text(event, names), as_json)


def timer(message: EphemeralMessage) -> str:
    return f"[disappears in {math.ceil(message.remaining_seconds)} s]"


def _sent_json(sent: EphemeralSent) -> dict[str, Any]:
    return {
        "type": "ephemeral",
        "id": sent.id,
        "to": sent.to,
        "device": sent.device,
        "status": "pending",
        "lifespan_seconds": sent.lifespan_seconds,
        "sent_at": rfc3339(sent.sent_at),
        "expires_at": rfc3339(sent.expires_at),
    }


def _sent_text(sent: EphemeralSent) -> str:
    return (
        f"sent to {sent.to} (device {sent.device}) [disappears {sent.lifespan_seconds} s "
        f"after it arrives; dropped undelivered at {_local(sent.expires_at)}]"
    )


def _message_json(message: EphemeralMessage) -> dict[str, Any]:
    return {
        "type": "ephemeral",
        "id": message.id,
        "from": message.sender,
        "sender_device": message.sender_device,
        "to": message.recipient,
        "device": message.recipient_device,
        "text": message.text,
        "error": message.error,
        "lifespan_seconds": message.lifespan_seconds,
        "disappears_in": math.ceil(message.remaining_seconds),
        "sent_at": rfc3339(message.sent_at),
    }


def _message_text(message: EphemeralMessage, names: _Names) -> str:
    sender = _who(message.sender, names.name_of(message.sender))
    if message.error is not None:
        return f"[{_local(message.sent_at)}] {sender}: (unreadable: {_printable(message.error)})"
    return f"[{_local(message.sent_at)}] {timer(message)} {sender}: {_printable(message.text)}"


def _expired_json(expired: EphemeralExpired) -> dict[str, Any]:
    return {
        "type": "ephemeral.expired",
        "id": expired.id,
        "to": expired.to,
        "device": expired.device,
        "sent_at": rfc3339(expired.sent_at),
        "expired_at": rfc3339(expired.expired_at),
    }


def _expired_text(expired: EphemeralExpired) -> str:
    return (
        f"not delivered: your disappearing message {expired.id} to {expired.to} "
        f"(device {expired.device}) expired at {_local(expired.expired_at)}"
    )
