"""``POST /v1/messages`` without the framework's per-request layers.

Sending is the node's hot path. This handler serves the ordinary request — a
JSON body that validates, a valid token — directly: it shares the route's
models, service call and error table, so what a client sees is the same. Any
request it does not take on (malformed or invalid input, no or a bad token,
another content type) is handed, body and all, to the FastAPI route, which
answers as for every other endpoint; so does the OpenAPI description.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import ValidationError
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from openmessenger.api import render
from openmessenger.api.deps import authenticate, bearer_token
from openmessenger.api.errors import domain_problem
from openmessenger.core.envelope import Encryption
from openmessenger.core.errors import DomainError
from openmessenger.protocol.client_api import API_PREFIX, SendIn
from openmessenger.services.node import NodeServices

SEND_PATH = f"{API_PREFIX}/messages"


@dataclass(frozen=True)
class _Route:
    """What the metrics middleware reads: the route's path template."""

    path: str = SEND_PATH


_ROUTE = _Route()


class FastSendMiddleware:
    def __init__(self, app: ASGIApp, services: NodeServices) -> None:
        self._app = app
        self._services = services

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] != SEND_PATH:
            await self._app(scope, receive, send)
            return
        body = await _read_body(receive)
        if body is None:
            return  # the client went away (or the body was cut off as too large)
        handled = await self._try_send(scope, body)
        if handled is None:
            await self._app(scope, _replay(body, receive), send)
            return
        scope["route"] = _ROUTE
        await handled(scope, receive, send)

    async def _try_send(self, scope: Scope, body: bytes) -> Response | None:
        headers = dict(scope["headers"])
        if not headers.get(b"content-type", b"").startswith(b"application/json"):
            return None
        if b"idempotency-key" in headers:
            return None  # rare: the route validates and reconciles the header
        if bearer_token(scope) is None:
            return None
        try:
            request = SendIn.model_validate_json(body)
        except ValidationError:
            return None
        try:
            caller = await authenticate(self._services, scope)
            result = await self._services.messaging.send(
                caller,
                request.to,
                request.body,
                request.client_txn_id,
                Encryption(request.encryption),
                media_type=request.media_type,
                metadata=request.metadata,
                app_signature=request.app_signature,
            )
        except DomainError as exc:
            return domain_problem(exc)
        payload = render.message(result.message).model_dump_json(by_alias=True)
        return Response(
            payload, status_code=201 if result.created else 200, media_type="application/json"
        )


async def _read_body(receive: Receive) -> bytes | None:
    chunks = []
    more = True
    while more:
        message = await receive()
        if message["type"] != "http.request":
            return None
        chunks.append(message.get("body", b""))
        more = message.get("more_body", False)
    return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
