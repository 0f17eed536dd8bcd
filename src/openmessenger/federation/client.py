"""Outbound HTTPS to other nodes (the ``FederationTransport`` port) over aiohttp.

One keep-alive connection pool per transport; optionally every connection goes
through a SOCKS5 proxy (Tor) that also resolves the names. Redirects are never
followed, answers are read up to a size cap, and every way of not getting an
answer becomes :class:`PeerUnreachable`.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import orjson
import python_socks
from aiohttp_socks import ProxyConnectionError, ProxyConnector, ProxyError, ProxyTimeoutError
from multidict import CIMultiDict
from python_socks import ProxyType, parse_proxy_url

from openmessenger.services.ports import PeerReply, PeerUnreachable

__all__ = ["AiohttpTransport", "build_ssl_context"]

_JSON: Final = "application/json"
# Peers' addresses change rarely; a minute of caching spares getaddrinfo at
# thousands of requests per second without pinning a moved peer for long.
_DNS_CACHE_SECONDS: Final = 60
_REASON_CHARS: Final = 200
# python-socks knows only socks5/socks4/http; the "h"/"a" variants ask for the
# proxy to resolve names, which this adapter always asks for anyway.
_REMOTE_DNS_SCHEMES: Final = {"socks5h": "socks5", "socks4a": "socks4"}

# aiohttp-socks re-raises python-socks' errors as its own classes, which derive
# from neither aiohttp.ClientError nor OSError; both families are listed.
_PROXY_ERRORS: Final = (
    ProxyError,
    ProxyConnectionError,
    ProxyTimeoutError,
    python_socks.ProxyError,
    python_socks.ProxyConnectionError,
    python_socks.ProxyTimeoutError,
)
# Everything that means "no answer came".
_NO_ANSWER: Final = (
    *_PROXY_ERRORS,
    aiohttp.ClientError,
    TimeoutError,  # asyncio.TimeoutError is the same class since Python 3.11
    OSError,  # includes ssl.SSLError
    ValueError,  # yarl/IDNA refusing a malformed peer domain
)


def build_ssl_context(ca_file: Path | None) -> ssl.SSLContext:
    """A verifying client context: the system store (``SSL_CERT_FILE`` and
    ``SSL_CERT_DIR`` honoured), plus ``ca_file`` when given."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    if ca_file is not None:
        context.load_verify_locations(cafile=ca_file)
    # create_default_context already sets both; stated so no caller can relax them.
    context.check_hostname = True
    context.verify_mode = ssl.CERT_REQUIRED
    return context


@dataclass(frozen=True, slots=True)
class _Proxy:
    kind: ProxyType
    host: str
    port: int
    username: str | None
    password: str | None


def _parse_proxy(url: str) -> _Proxy:
    """Parse a proxy URL such as ``socks5h://127.0.0.1:9050``; ValueError if bad."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    scheme = _REMOTE_DNS_SCHEMES.get(scheme, scheme)
    kind, host, port, username, password = parse_proxy_url(
        urlunsplit(parts._replace(scheme=scheme))
    )
    return _Proxy(kind, host, port, username, password)


class AiohttpTransport:
    """``FederationTransport`` over aiohttp, with an optional SOCKS proxy."""

    def __init__(
        self,
        *,
        ca_file: Path | None,
        proxy: str | None,
        timeout_seconds: float,
        user_agent: str,
        max_answer_bytes: int = 64 * 1024,
        max_connections: int = 256,
    ) -> None:
        if timeout_seconds <= 0:
            raise ValueError("timeout_seconds must be positive")
        if max_answer_bytes < 0 or max_connections < 1:
            raise ValueError("max_answer_bytes must be >= 0 and max_connections >= 1")
        # Built now so that a bad CA file or proxy URL stops the node at start.
        self._ssl = build_ssl_context(ca_file)
        self._proxy = _parse_proxy(proxy) if proxy is not None else None
        self._timeout_seconds = timeout_seconds
        self._user_agent = user_agent
        self._max_answer_bytes = max_answer_bytes
        self._max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None
        self._closed = False

    async def post_json(
        self,
        url: str,
        body: Mapping[str, object] | bytes,
        headers: Mapping[str, str] | None = None,
    ) -> PeerReply:
        """POST ``body`` as JSON (bytes: already encoded, e.g. signed as they are);
        PeerUnreachable when nothing answered."""
        if isinstance(body, bytes):
            data = body
        else:
            # orjson takes dicts (and subclasses), not arbitrary Mappings.
            data = orjson.dumps(body if isinstance(body, dict) else dict(body))
        sent: CIMultiDict[str] = CIMultiDict(headers or {})
        sent["Content-Type"] = _JSON
        return await self._request("POST", url, data=data, headers=sent)

    async def get_json(self, url: str) -> PeerReply:
        """GET ``url``; PeerUnreachable when nothing answered."""
        return await self._request("GET", url, data=None, headers=None)

    async def close(self) -> None:
        """Close the pool; later calls raise PeerUnreachable."""
        self._closed = True
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    async def _request(
        self, method: str, url: str, *, data: bytes | None, headers: CIMultiDict[str] | None
    ) -> PeerReply:
        session = self._session_in_loop()
        try:
            async with session.request(
                method, url, data=data, headers=headers, allow_redirects=False
            ) as response:
                raw = await self._read_capped(response)
                return PeerReply(status=response.status, body=_decode(raw))
        except _NO_ANSWER as exc:
            raise PeerUnreachable(self._reason(exc)) from exc

    def _session_in_loop(self) -> aiohttp.ClientSession:
        """The session, made on first use: aiohttp binds it to the running loop,
        and the node builds this adapter before its loop runs."""
        if self._closed:
            raise PeerUnreachable("federation transport is closed")
        if self._session is None:
            # No await between the check and the assignment: concurrent first
            # calls cannot make two sessions.
            self._session = aiohttp.ClientSession(
                connector=self._connector(),
                timeout=aiohttp.ClientTimeout(total=self._timeout_seconds),
                headers={
                    "User-Agent": self._user_agent,
                    "Accept": _JSON,
                    # Answers are small; refusing compression means a hostile peer
                    # cannot make us inflate a bomb before the size cap applies.
                    "Accept-Encoding": "identity",
                },
                auto_decompress=False,
                # Peers must not be able to plant state that we send elsewhere.
                cookie_jar=aiohttp.DummyCookieJar(),
                # The proxy comes from our settings only, never from HTTP(S)_PROXY.
                trust_env=False,
            )
        return self._session

    def _connector(self) -> aiohttp.TCPConnector:
        if self._proxy is None:
            return aiohttp.TCPConnector(
                ssl=self._ssl,
                limit=self._max_connections,
                ttl_dns_cache=_DNS_CACHE_SECONDS,
                # Explicit so that an installed aiodns never replaces getaddrinfo
                # (and with it /etc/hosts and the system's resolver settings).
                resolver=aiohttp.ThreadedResolver(),
            )
        # Every connection, whatever its outcome, goes through the proxy: the
        # connector has no direct path, and rdns hands the name to the proxy
        # so that no lookup leaks from this host (socks5h semantics).
        return ProxyConnector(
            proxy_type=self._proxy.kind,
            host=self._proxy.host,
            port=self._proxy.port,
            username=self._proxy.username,
            password=self._proxy.password,
            rdns=True,
            ssl=self._ssl,
            limit=self._max_connections,
        )

    async def _read_capped(self, response: aiohttp.ClientResponse) -> bytes | None:
        """The body, or None when it exceeds the cap (the rest is left unread and
        the connection dropped rather than drained)."""
        cap = self._max_answer_bytes
        if response.content_length is not None and response.content_length > cap:
            return None
        chunks: list[bytes] = []
        size = 0
        # Ask for one byte beyond the cap so that overflow is seen, not guessed.
        while size <= cap:
            chunk = await response.content.read(cap + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        return None if size > cap else b"".join(chunks)

    def _reason(self, exc: BaseException) -> str:
        if isinstance(exc, _PROXY_ERRORS):
            reason = f"proxy: {_describe(exc)}"
        elif isinstance(exc, TimeoutError):
            reason = f"no answer within {self._timeout_seconds:g} s"
        elif _caused_by_tls(exc):
            reason = f"TLS: {_describe(exc)}"
        elif isinstance(exc, ValueError):  # includes aiohttp.InvalidURL
            reason = f"invalid URL: {_describe(exc)}"
        else:
            reason = f"connection: {_describe(exc)}"
        return reason[:_REASON_CHARS]


def _chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and what caused it; short, and bounded in case of a cycle."""
    chain: list[BaseException] = []
    seen: BaseException | None = exc
    while seen is not None and len(chain) < 4:
        chain.append(seen)
        seen = seen.__cause__ or seen.__context__
    return chain


def _describe(exc: BaseException) -> str:
    """The first non-empty message along the chain: a peer hanging up behind a
    proxy surfaces as ``ClientOSError()`` wrapping ``ConnectionResetError()``."""
    chain = _chain(exc)
    return next((text for text in map(str, chain) if text), type(chain[-1]).__name__)


def _caused_by_tls(exc: BaseException) -> bool:
    """True when TLS failed. Through a proxy the handshake happens inside
    aiohttp-socks, and aiohttp re-raises its SSLError as a plain ClientOSError."""
    return any(isinstance(seen, aiohttp.ClientSSLError | ssl.SSLError) for seen in _chain(exc))


def _decode(raw: bytes | None) -> object:
    if raw is None:
        return None
    try:
        value: object = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    return value
