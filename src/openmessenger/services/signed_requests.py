"""Extended requests between our own nodes, signed by the sending node.

The signature (protocol/openmsg/_extension.py ``signed_request_bytes``) covers
the method, path, both domains, a timestamp and the body, so a receiver knows
which node asked without a confirm callback. :class:`SignedRequests` sends them;
:class:`SignedRequestVerifier` is the one check every extension endpoint runs on
what it receives. The functions below are how every extension service reads
requests and answers, and carries a user's error from one node to the other
(protocol/extension_refusal.py).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from openmessenger.core.errors import (
    Conflict,
    DomainError,
    Forbidden,
    InvalidInput,
    LimitExceeded,
    NotFound,
    PeerUnavailable,
    RateLimited,
    Refused,
    Unavailable,
)
from openmessenger.core.ids import Domain, parse_domain
from openmessenger.crypto.keys import verify_ed25519
from openmessenger.protocol import openmsg
from openmessenger.protocol.extension_refusal import ExtensionRefusal
from openmessenger.protocol.openmsg import JsonObject, ResponseCode
from openmessenger.services.federation_gate import FederationGate
from openmessenger.services.peers import PeerDirectory
from openmessenger.services.ports import (
    Clock,
    FederationTransport,
    PeerReply,
    PeerUnreachable,
    Secrets,
    UnitOfWork,
)

log = logging.getLogger(__name__)
_Model = TypeVar("_Model", bound=BaseModel)

ExtensionHandler = Callable[[bytes, Mapping[str, str]], Awaitable[JsonObject]]
"""Serves one signed endpoint of our extension: the raw body and the headers in,
the JSON answer out (api/openmsg.py routes them by path)."""


class PeerRefusal(Exception):
    """A request from another node this node will not serve, answered with an
    Openmsg ``code`` (and, on our extension, a message)."""

    def __init__(self, code: ResponseCode, message: str | None = None) -> None:
        super().__init__(code.value)
        self.code = code
        self.message = message


class SignedRequests:
    def __init__(
        self, *, secrets: Secrets, clock: Clock, domain: Domain, transport: FederationTransport
    ) -> None:
        self._secrets = secrets
        self._clock = clock
        self._domain = domain
        self._transport = transport

    async def post(self, peer_domain: Domain, path: str, body: JsonObject) -> PeerReply:
        """POST ``body`` to ``https://{peer_domain}{path}``, signed by this node."""
        raw = json.dumps(body, separators=(",", ":")).encode()
        timestamp = int(self._clock.now().timestamp())
        nonce = self._secrets.identifier()
        signed = openmsg.signed_request_bytes(
            "POST", path, peer_domain, self._domain, timestamp, nonce, raw
        )
        headers = {
            openmsg.ORIGIN_HEADER: self._domain,
            openmsg.TIMESTAMP_HEADER: str(timestamp),
            openmsg.NONCE_HEADER: nonce,
            openmsg.SIGNATURE_HEADER: self._secrets.sign(signed),
        }
        return await self._transport.post_json(
            openmsg.extension_url(peer_domain, path), raw, headers
        )

    async def exchange(
        self, peer_domain: Domain, path: str, request: BaseModel | JsonObject
    ) -> object:
        """POST ``request``, signed: the decoded answer when the node answered as
        our extension does (HTTP 200), else None. ``PeerUnavailable`` when nothing
        answered."""
        body = request.model_dump(mode="json") if isinstance(request, BaseModel) else request
        try:
            reply = await self.post(peer_domain, path, body)
        except PeerUnreachable as exc:
            log.info("%s%s unreachable: %s", peer_domain, path, exc)
            raise PeerUnavailable(peer_domain) from None
        return reply.body if reply.status == openmsg.ANSWER_HTTP_STATUS else None

    async def ask(self, peer_domain: Domain, path: str, request: BaseModel) -> object:
        """:meth:`exchange` for a request whose refusal (``ok: false``) is the
        caller's error: raised here as the other node's client API raised it."""
        answer = await self.exchange(peer_domain, path, request)
        refusal = parse_answer(ExtensionRefusal, answer)
        if refusal is not None:
            raise error_of(refusal)
        return answer


class SignedRequestVerifier:
    """Which of our nodes signed a request to this one, or a refusal. A request
    is served once: its nonce is remembered (in the database, so every process
    of the node shares it) until its time window has closed."""

    def __init__(
        self,
        *,
        uow: UnitOfWork,
        clock: Clock,
        domain: Domain,
        gate: FederationGate,
        directory: PeerDirectory,
    ) -> None:
        self._uow = uow
        self._clock = clock
        self._domain = domain
        self._gate = gate
        self._directory = directory

    async def origin(self, raw: bytes, headers: Mapping[str, str], path: str) -> Domain:
        """The domain whose node signed ``raw`` for ``path`` on this node; raises
        :class:`PeerRefusal`. Only what the origin signed counts against its rate limits."""
        try:
            origin = parse_domain(headers.get(openmsg.ORIGIN_HEADER, ""))
            timestamp = int(headers.get(openmsg.TIMESTAMP_HEADER, ""))
            nonce = headers.get(openmsg.NONCE_HEADER, "")
            if not openmsg.NONCE_PATTERN.fullmatch(nonce):
                raise ValueError(nonce)
        except (InvalidInput, ValueError):
            raise PeerRefusal(ResponseCode.MESSAGE_DATA_MISSING, "Unsigned request.") from None
        now = self._clock.now()
        if not openmsg.within_window(timestamp, int(now.timestamp())):
            raise PeerRefusal(ResponseCode.MESSAGE_EXPIRED)
        descriptor = await self._directory.descriptor(origin)
        signed = openmsg.signed_request_bytes(
            "POST", path, self._domain, origin, timestamp, nonce, raw
        )
        signature = headers.get(openmsg.SIGNATURE_HEADER, "")
        if descriptor is None or not verify_ed25519(descriptor.signing_key, signed, signature):
            raise PeerRefusal(ResponseCode.MESSAGE_UNKNOWN, "The signature does not verify.")
        # Only a request its origin really signed counts against that origin's
        # rate limits, or uses up one of its nonces: a forger spends neither.
        code = await self._gate.refusal(origin)
        if code is not None:
            raise PeerRefusal(code)
        window_closes = datetime.fromtimestamp(timestamp + openmsg.MESSAGE_WINDOW_SECONDS + 1, UTC)
        async with self._uow() as tx:
            fresh = await tx.federation.take_request_nonce(origin, nonce, window_closes, now)
            await tx.commit()
        if not fresh:
            raise PeerRefusal(ResponseCode.MESSAGE_NONCE_ERROR, "This request was served before.")
        return origin


# --- reading requests, answering them -------------------------------------------------


async def serve(work: Awaitable[JsonObject]) -> JsonObject:
    """What an extension endpoint answers: ``work``'s answer, or the Openmsg error
    body of the request's refusal."""
    try:
        return await work
    except PeerRefusal as refusal:
        return openmsg.error_body(refusal.code, refusal.message)


def served(handler: ExtensionHandler) -> ExtensionHandler:
    """``handler``, answering a refused request with its Openmsg error body."""

    async def serve_request(raw: bytes, headers: Mapping[str, str]) -> JsonObject:
        return await serve(handler(raw, headers))

    return serve_request


def parse_request(model: type[_Model], raw: bytes) -> _Model:
    try:
        return model.model_validate_json(raw)
    except ValidationError:
        raise PeerRefusal(ResponseCode.MESSAGE_DATA_MISSING, "Not a valid request.") from None


def parse_answer(model: type[_Model], data: object) -> _Model | None:
    """``data`` as ``model`` when it is one (an ``ok: false`` refusal only as
    :class:`ExtensionRefusal`), else None."""
    if not isinstance(data, dict) or data.get("ok") is not (model is not ExtensionRefusal):
        return None
    try:
        return model.model_validate(data)
    except ValidationError:
        return None


_STATUS: tuple[tuple[type[DomainError], int], ...] = (
    (InvalidInput, 422),
    (RateLimited, 429),
    (LimitExceeded, 429),
    (Refused, 403),
    (Forbidden, 403),
    (NotFound, 404),
    (Conflict, 409),
    (Unavailable, 503),
)


def refusal_body(exc: DomainError) -> JsonObject:
    """A user's error here, for the node that asked on the user's behalf."""
    status = next((s for kind, s in _STATUS if isinstance(exc, kind)), 409)
    field = exc.field if isinstance(exc, InvalidInput | LimitExceeded) else None
    return ExtensionRefusal(
        status=status,
        code=exc.code,
        message=(exc.reason if isinstance(exc, InvalidInput) else exc.message)[:500],
        field=field,
        retry_after=exc.retry_after if isinstance(exc, RateLimited) else None,
    ).model_dump(mode="json")


def error_of(refusal: ExtensionRefusal) -> DomainError:
    """The other node's refusal, raised here as its client API would have."""
    if refusal.code == Refused.code:
        return Refused()
    if refusal.status == 404:
        return NotFound(refusal.message, code=refusal.code)
    if refusal.status == 403:
        return Forbidden(refusal.message, code=refusal.code)
    if refusal.status == 503:
        return Unavailable(refusal.message, code=refusal.code)
    error: DomainError
    if refusal.status == 422:
        error = InvalidInput(refusal.field or "body", refusal.message)
        error.reason = refusal.message.removeprefix(f"{error.field}: ")
    elif refusal.status == 429 and refusal.retry_after is not None:
        error = RateLimited("participant in this conversation", refusal.retry_after)
        error.message = refusal.message
    elif refusal.status == 429:
        error = LimitExceeded(refusal.message, field=refusal.field)
    else:
        return Conflict(refusal.message, code=refusal.code)
    error.code = refusal.code  # the other node's stable code (e.g. message_too_large)
    return error
