"""HTTP and WebSocket plumbing: one place that turns the node's answers and the
network's failures into the SDK's errors. Knows nothing about sessions."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping
from typing import Any, TypeVar
from urllib.parse import urlencode, urlsplit

import httpx
import pydantic
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import InvalidHandshake, InvalidStatus

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


def stream_url(server_url: str, since: int) -> str:
    ws_base = "wss" + server_url[5:] if server_url.startswith("https") else "ws" + server_url[4:]
    return f"{ws_base}{wire.API_PREFIX}/stream?{urlencode({'since': since})}"


@contextlib.asynccontextmanager
async def open_stream(
    server_url: str, since: int, token: str, *, open_timeout_seconds: float
) -> AsyncIterator[ClientConnection]:
    """A connected stream socket; only failures to connect are translated here."""
    try:
        socket = await ws_connect(
            stream_url(server_url, since),
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
