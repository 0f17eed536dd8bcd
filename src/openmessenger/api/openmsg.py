"""The Openmsg endpoints, ``/openmsg/{endpoint}/``, as v1 peers expect them.

Every answer is HTTP 200 with a JSON body, refusals included (v1 clients ignore
the body of any other status): a body over the size limit is refused with
SM_E008 before it is parsed, one that is not JSON with SM_E000. The handlers
only read, call the federation service and render its answer.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping

import orjson
from prometheus_client import Counter
from starlette.types import ASGIApp, Receive, Scope, Send

from openmessenger.protocol import openmsg
from openmessenger.protocol.group_federation import MAX_GROUP_BODY_BYTES
from openmessenger.protocol.openmsg import JsonObject, ResponseCode
from openmessenger.services.federation import FederationService

PREFIX = "/openmsg/"
MAX_OPENMSG_BODY_BYTES = 32 * 1024
"""Far above the largest valid v1 body (a 2,000-character text is a 10,720-character package)."""
MAX_LONG_BODY_BYTES = 1024 * 1024
"""The extension: a long text makes a package of at most 349,588 characters, an
end-to-end body (512 KiB of ASCII) one of at most 699,104."""

SignedHandler = Callable[[bytes, Mapping[str, str]], Awaitable[JsonObject]]

_HEADERS = [(b"content-type", b"application/json"), (b"cache-control", b"no-store")]


class OpenmsgMiddleware:
    def __init__(self, app: ASGIApp, federation: FederationService, answers: Counter) -> None:
        self._app = app
        self._answers = answers
        self._federation = federation
        self._handlers: dict[str, Callable[[object], Awaitable[JsonObject]]] = {
            "auth": federation.auth,
            "auth-confirm": federation.auth_confirm,
            "message-receive": federation.message_receive,
            "message-confirm": federation.message_confirm,
        }
        # Extended requests signed by one of our nodes: the service checks the
        # signature over the exact bytes, so it gets them unparsed.
        self._signed_handlers: dict[str, SignedHandler] = {
            openmsg.KEYS_QUERY_PATH: federation.keys_query,
            openmsg.KEYS_CLAIM_PATH: federation.keys_claim,
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        if scope["type"] != "http" or not path.startswith(PREFIX):
            if scope["type"] == "http" and path == openmsg.DESCRIPTOR_PATH:
                await _answer(send, self._federation.descriptor())
            else:
                await self._app(scope, receive, send)
            return
        if path.rstrip("/") == openmsg.LONG_MESSAGE_PATH.rstrip("/"):
            await self._long_message(scope, receive, send)
            return
        signed_handler = self._signed_handlers.get(path.rstrip("/") + "/")
        if signed_handler is not None:
            await self._signed(scope, receive, send, path, signed_handler)
            return
        extension = self._federation.extensions.get(path.rstrip("/") + "/")
        if extension is not None:  # groups across our nodes: larger bodies
            await self._signed(scope, receive, send, path, extension, MAX_GROUP_BODY_BYTES)
            return
        handler = self._handlers.get(path[len(PREFIX) :].rstrip("/"))
        if handler is None:
            await self._app(scope, receive, send)  # a 404 like any unknown path
            return
        body = await _read_body(scope, receive, MAX_OPENMSG_BODY_BYTES)
        if body is None:
            answer = _too_large(MAX_OPENMSG_BODY_BYTES)
        elif scope["method"] != "POST":
            answer = openmsg.error_body(ResponseCode.MESSAGE_DATA_MISSING, "Use POST.")
        else:
            try:
                data = orjson.loads(body)
            except orjson.JSONDecodeError:
                answer = openmsg.error_body(
                    ResponseCode.MESSAGE_DATA_MISSING, "The body is not JSON."
                )
            else:
                answer = await handler(data)
        self._count(path, answer)
        await _answer(send, answer)

    async def _long_message(self, scope: Scope, receive: Receive, send: Send) -> None:
        # Signed over the exact bytes, so the service gets them unparsed.
        body = await _read_body(scope, receive, MAX_LONG_BODY_BYTES)
        if body is None:
            answer = _too_large(MAX_LONG_BODY_BYTES)
        else:
            headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
            answer = await self._federation.long_message_receive(body, headers)
        self._count(openmsg.LONG_MESSAGE_PATH, answer)
        await _answer(send, answer)

    async def _signed(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        path: str,
        handler: SignedHandler,
        limit: int = MAX_OPENMSG_BODY_BYTES,
    ) -> None:
        body = await _read_body(scope, receive, limit)
        if body is None:
            answer = _too_large(limit)
        else:
            headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
            answer = await handler(body, headers)
        self._count(path, answer)
        await _answer(send, answer)

    def _count(self, path: str, answer: JsonObject) -> None:
        code = answer.get("response_code") or ("error" if answer.get("error") else "success")
        self._answers.labels(path.strip("/").removeprefix("openmsg/"), str(code)).inc()


def _too_large(limit: int) -> JsonObject:
    return openmsg.error_body(
        ResponseCode.MESSAGE_REJECTED_TEMP, f"The body must be at most {limit} bytes."
    )


async def _read_body(scope: Scope, receive: Receive, limit: int) -> bytes | None:
    """The whole body, or None once it exceeds the limit (the rest is not read)."""
    declared = dict(scope["headers"]).get(b"content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > limit):
        return None
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b""  # the peer went away; the answer goes nowhere
        chunk: bytes = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _answer(send: Send, answer: JsonObject) -> None:
    payload = orjson.dumps(answer)
    await send(
        {
            "type": "http.response.start",
            "status": openmsg.ANSWER_HTTP_STATUS,
            "headers": [*_HEADERS, (b"content-length", str(len(payload)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": payload})
