"""``/v1/stream``: a device's stream over a WebSocket, backlog first, then live.

Served as plain ASGI, outside the framework: a node holds many of these open
at once, and each one otherwise keeps the framework's whole middleware stack
alive for as long as it lasts (about a third of its memory, measured in
``bench/``).

Close codes: 4401 no or a bad token, 4400 a bad ``since`` or ``ephemeral``.
"""

from __future__ import annotations

import asyncio
import contextlib
from urllib.parse import parse_qs

from prometheus_client import Gauge
from starlette.types import ASGIApp, Receive, Scope, Send

from openmessenger.api import render
from openmessenger.api.deps import authenticate
from openmessenger.api.ephemeral import BAD_MODE_REASON, stream_events, stream_mode
from openmessenger.core.errors import DomainError
from openmessenger.core.records import Device
from openmessenger.protocol.client_api import API_PREFIX
from openmessenger.services.node import NodeServices

STREAM_PATH = f"{API_PREFIX}/stream"
CLOSE_UNAUTHENTICATED = 4401
CLOSE_BAD_REQUEST = 4400


class StreamMiddleware:
    def __init__(self, app: ASGIApp, services: NodeServices, connections: Gauge) -> None:
        self._app = app
        self._services = services
        self._connections = connections

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "websocket" or scope["path"] != STREAM_PATH:
            await self._app(scope, receive, send)
            return
        if (await receive())["type"] != "websocket.connect":
            return
        # Accept first, then close with our own code: a refused handshake would
        # reach browsers and most clients only as an anonymous HTTP 403.
        await send({"type": "websocket.accept"})
        since = _since(scope)
        if since is None:
            await _close(send, CLOSE_BAD_REQUEST, "since must be a whole number, 0 or more")
            return
        mode = stream_mode(scope)  # ?ephemeral=: api/ephemeral.py
        if mode is None:
            await _close(send, CLOSE_BAD_REQUEST, BAD_MODE_REASON)
            return
        try:
            caller = await authenticate(self._services, scope)
        except DomainError:
            await _close(send, CLOSE_UNAUTHENTICATED, "unauthenticated")
            return
        self._connections.inc()
        sender = asyncio.create_task(
            stream_events(
                mode,
                send,
                self._services.ephemeral,
                caller.device,
                lambda out: self._send_events(out, caller.device, since),
            )
        )
        try:
            # The client sends nothing we need; reading is how a disconnect is noticed.
            while (await receive())["type"] != "websocket.disconnect":
                pass
        finally:
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError, OSError, RuntimeError):
                await sender
            self._connections.dec()

    async def _send_events(self, send: Send, device: Device, since: int) -> None:
        events = self._services.messaging.follow_as(device, since)
        try:
            async for event in events:
                text = render.stream_event(event).model_dump_json(by_alias=True)
                await send({"type": "websocket.send", "text": text})
        finally:
            await events.aclose()


def _since(scope: Scope) -> int | None:
    values = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("since", ["0"])
    value = values[-1]
    return int(value) if value.isascii() and value.isdigit() else None


async def _close(send: Send, code: int, reason: str) -> None:
    await send({"type": "websocket.close", "code": code, "reason": reason})
