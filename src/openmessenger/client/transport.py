"""HTTP and WebSocket plumbing: one place that turns the node's answers and the
network's failures into the SDK's errors. Knows nothing about sessions."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping
from typing import Any, TypeVar
from urllib.parse import urlencode, urlsplit

import httpx
import pydantic
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosedError, InvalidHandshake, InvalidStatus

from openmessenger.client.errors import (
    ApiError,
    FieldProblem,
    InvalidArgumentError,
    ProtocolError,
    ServerUnreachableError,
    api_error,
)
from openmessenger.protocol import client_api as wire

RequestModel = TypeVar("RequestModel", bound=wire.Request)
ResponseModel = TypeVar("ResponseModel", bound=pydantic.BaseModel)

UNAUTHENTICATED = "unauthenticated"
STREAM_UNAUTHENTICATED_CLOSE_CODE = 4401


def normalise_server_url(server_url: str) -> str:
    """``http(s)://host[:port][/prefix]`` without a trailing slash."""
    parts = urlsplit(server_url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise InvalidArgumentError(
            "server", f"must be an http:// or https:// URL, got {server_url!r}"
        )
    if parts.query or parts.fragment:
        raise InvalidArgumentError("server", "must not have a query or fragment")
    return f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}"


def request_body(model: type[RequestModel], fields: Mapping[str, object]) -> RequestModel:
    """Build a request model by its JSON names, turning a bad value into InvalidArgumentError."""
    try:
        return model.model_validate(dict(fields))
    except pydantic.ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or model.__name__
        raise InvalidArgumentError(field, first["msg"]) from exc


def parse_response(model: type[ResponseModel], response: httpx.Response) -> ResponseModel:
    try:
        return model.model_validate(response.json())
    except (ValueError, pydantic.ValidationError) as exc:
        raise ProtocolError(
            f"{response.request.method} {response.request.url.path} answered "
            f"{response.status_code} with a body that is not a {model.__name__}: {exc}"
        ) from exc


def parse_stream_frame(frame: str | bytes) -> wire.StreamEventOut:
    try:
        return wire.StreamEventOut.model_validate_json(frame)
    except pydantic.ValidationError as exc:
        raise ProtocolError(f"the stream sent a frame that is not an event: {exc}") from exc


def error_from_response(response: httpx.Response) -> ApiError:
    """The ApiError an error response stands for, read leniently: RFC 9457
    allows extension members, and a proxy may answer with HTML."""
    try:
        body: Any = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        return ApiError(
            response.status_code, f"http_{response.status_code}", response.reason_phrase
        )
    code = body.get("code")
    errors = tuple(
        FieldProblem(str(item.get("field")), str(item.get("message")))
        for item in body.get("errors") or ()
        if isinstance(item, dict)
    )
    return api_error(
        status=response.status_code,
        code=code if isinstance(code, str) else f"http_{response.status_code}",
        detail=_optional_str(body.get("detail")) or _optional_str(body.get("title")),
        field=_optional_str(body.get("field")),
        errors=errors,
    )


def is_unauthenticated(response: httpx.Response) -> bool:
    return response.status_code == 401 and error_from_response(response).code == UNAUTHENTICATED


class NodeHttp:
    """JSON over HTTP to one node."""

    def __init__(self, server_url: str, *, timeout: float) -> None:
        self.server_url = server_url
        self._http = httpx.AsyncClient(base_url=server_url, timeout=timeout)

    async def request(
        self,
        method: str,
        path: str,
        *,
        token: str | None = None,
        body: wire.Request | None = None,
        params: Mapping[str, str | int] | None = None,
    ) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        payload = body.model_dump(mode="json", by_alias=True) if body is not None else None
        try:
            return await self._http.request(
                method, path, json=payload, params=params, headers=headers
            )
        except httpx.TransportError as exc:
            raise ServerUnreachableError(self.server_url, _reason(exc)) from exc

    async def aclose(self) -> None:
        await self._http.aclose()


class StreamUnauthenticatedError(Exception):
    """The node turned the stream's token away (close code 4401 or HTTP 401/403)."""


def is_client_error_close(close_code: int) -> bool:
    """Close codes 4400-4499 mirror HTTP 4xx (4401: unauthenticated, 4400: bad request)."""
    return 4400 <= close_code <= 4499


def socket_url(server_url: str, path: str, params: Mapping[str, str | int]) -> str:
    """The WebSocket URL of ``path`` under /v1/ on the node at ``server_url``."""
    ws_base = "wss" + server_url[5:] if server_url.startswith("https") else "ws" + server_url[4:]
    return f"{ws_base}{wire.API_PREFIX}{path}?{urlencode(params)}"


def stream_url(server_url: str, since: int) -> str:
    return socket_url(server_url, "/stream", {"since": since})


def open_stream(
    server_url: str, since: int, token: str, *, open_timeout_seconds: float
) -> contextlib.AbstractAsyncContextManager[ClientConnection]:
    """The device's stream socket from ``since`` on."""
    return open_socket(
        server_url, stream_url(server_url, since), token, open_timeout_seconds=open_timeout_seconds
    )


STREAM_RECONNECT_ATTEMPTS = 8
"""Consecutive failed reconnects before a stream gives up (about a minute)."""
STREAM_MAX_DELAY_SECONDS = 10.0


async def reconnecting_frames(
    open_: Callable[[str], contextlib.AbstractAsyncContextManager[ClientConnection]],
    token: str,
    reauthenticate: Callable[..., Awaitable[str]],
) -> AsyncGenerator[str | bytes]:
    """The frames of a socket the SDK keeps open. ``open_(token)`` is called again
    after a dropped connection (with backoff), so it may resume from where the
    caller got to; after a refused token, once more with a fresh one
    (``reauthenticate(stale_token=...)``). Raises ServerUnreachableError when the
    node cannot be reached at the start or after repeated attempts, and ApiError
    when it says the request is wrong (a 44xx close code)."""
    reconnects = 0
    token_refreshed = False
    ever_connected = False
    while True:
        close_code: int | None = None
        close_reason = ""
        try:
            async with open_(token) as socket:
                ever_connected = True
                reconnects = 0
                async for frame in socket:
                    token_refreshed = False
                    yield frame
                close_code, close_reason = socket.close_code, socket.close_reason or ""
        except ConnectionClosedError as closed:
            if closed.rcvd is not None:
                close_code, close_reason = closed.rcvd.code, closed.rcvd.reason
        except StreamUnauthenticatedError:
            close_code = STREAM_UNAUTHENTICATED_CLOSE_CODE
        except ServerUnreachableError:
            if not ever_connected or reconnects >= STREAM_RECONNECT_ATTEMPTS:
                raise
        if close_code == STREAM_UNAUTHENTICATED_CLOSE_CODE:
            if token_refreshed:  # even a fresh token was turned away
                raise ApiError(401, UNAUTHENTICATED, "the stream refused the token")
            token = await reauthenticate(stale_token=token)
            token_refreshed = True
            continue
        if close_code is not None and is_client_error_close(close_code):
            # The node says the request itself is wrong: retrying cannot help.
            raise ApiError(close_code - 4000, "stream_closed", close_reason or None)
        token_refreshed = False
        reconnects += 1
        await asyncio.sleep(min(STREAM_MAX_DELAY_SECONDS, 0.5 * 2 ** (reconnects - 1)))


@contextlib.asynccontextmanager
async def open_socket(
    server_url: str, url: str, token: str, *, open_timeout_seconds: float
) -> AsyncIterator[ClientConnection]:
    """A connected socket; only failures to connect are translated here."""
    try:
        socket = await ws_connect(
            url,
            additional_headers={"Authorization": f"Bearer {token}"},
            open_timeout=open_timeout_seconds,
        )
    except InvalidStatus as exc:
        if exc.response.status_code in (401, 403):
            raise StreamUnauthenticatedError from exc
        raise ServerUnreachableError(server_url, f"stream refused: {exc}") from exc
    except (OSError, TimeoutError, InvalidHandshake) as exc:
        raise ServerUnreachableError(server_url, _reason(exc)) from exc
    try:
        yield socket
    finally:
        await socket.close()


def _reason(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


def _optional_str(value: object) -> str | None:
    return value if isinstance(value, str) else None
