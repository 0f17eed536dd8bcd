"""``/v1/stream``: a device's stream over a WebSocket, backlog first, then live."""

from __future__ import annotations

import asyncio
import contextlib

from fastapi import APIRouter, Query, WebSocket
from starlette.websockets import WebSocketDisconnect

from openmessenger.api import render
from openmessenger.api.deps import authenticate, services_of
from openmessenger.core.errors import DomainError
from openmessenger.core.ids import DeviceId
from openmessenger.protocol.client_api import API_PREFIX

router = APIRouter(prefix=API_PREFIX, tags=["stream"])

CLOSE_UNAUTHENTICATED = 4401
CLOSE_BAD_REQUEST = 4400


@router.websocket("/stream")
async def stream(websocket: WebSocket, since: int = Query(default=0)) -> None:
    # Accept first, then close with our own code: a refused handshake would
    # reach browsers and most clients only as an anonymous HTTP 403.
    await websocket.accept()
    try:
        caller = await authenticate(websocket)
    except DomainError:
        await websocket.close(code=CLOSE_UNAUTHENTICATED, reason="unauthenticated")
        return
    if since < 0:
        await websocket.close(code=CLOSE_BAD_REQUEST, reason="since must be 0 or more")
        return
    metrics = websocket.app.state.metrics
    metrics.stream_connections.inc()
    sender = asyncio.create_task(_send_events(websocket, caller.device.id, since))
    try:
        # The client sends nothing we need; reading is how a disconnect is noticed.
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                break
    except WebSocketDisconnect:
        pass
    finally:
        sender.cancel()
        with contextlib.suppress(asyncio.CancelledError, WebSocketDisconnect, RuntimeError):
            await sender
        metrics.stream_connections.dec()


async def _send_events(websocket: WebSocket, device_id: DeviceId, since: int) -> None:
    messaging = services_of(websocket).messaging
    events = messaging.follow(device_id, since)
    try:
        async for event in events:
            payload = render.stream_event(event).model_dump_json(by_alias=True)
            await websocket.send_text(payload)
    finally:
        await events.aclose()  # type: ignore[attr-defined]
