"""Outbound calls to apps' webhook URLs (the ``WebhookPoster`` port) over aiohttp.

One keep-alive pool for every app. Redirects are never followed, no proxy or
cookie from the environment applies, and the answer's body is never read (only
its status counts). Failures are described in a few words that never include
the URL: it may carry a token of the app's, and the reason ends up in the
delivery log.
"""

from __future__ import annotations

import os
import socket
import ssl
from collections.abc import Mapping
from pathlib import Path

import aiohttp

from openmessenger.federation.client import build_ssl_context
from openmessenger.services.webhooks import WebhookUnreachable

__all__ = ["AiohttpWebhookPoster"]


class AiohttpWebhookPoster:
    def __init__(
        self,
        *,
        timeout_seconds: float,
        user_agent: str,
        ca_file: Path | None = None,
        max_connections: int = 256,
    ) -> None:
        if timeout_seconds <= 0:
            raise ValueError("timeout_seconds must be positive")
        self._ssl = build_ssl_context(ca_file)
        self._timeout_seconds = timeout_seconds
        self._user_agent = user_agent
        self._max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None
        self._closed = False

    async def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> int:
        session = self._session_in_loop()
        try:
            async with session.post(
                url, data=body, headers=dict(headers), allow_redirects=False
            ) as response:
                return response.status
        except TimeoutError:
            raise WebhookUnreachable(f"no answer within {self._timeout_seconds:g} s") from None
        except (aiohttp.ClientSSLError, ssl.SSLError) as exc:
            raise WebhookUnreachable(f"TLS: {type(exc).__name__}") from None
        except aiohttp.ClientConnectorError as exc:
            code = exc.os_error.errno
            if isinstance(exc.os_error, socket.gaierror):
                reason = "the host name does not resolve"
            else:
                reason = os.strerror(code) if code else type(exc.os_error).__name__
            raise WebhookUnreachable(f"connection: {reason}") from None
        except (aiohttp.ClientError, OSError) as exc:
            raise WebhookUnreachable(f"request: {type(exc).__name__}") from None
        except ValueError:  # yarl refusing the URL
            raise WebhookUnreachable("invalid URL") from None

    async def close(self) -> None:
        self._closed = True
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    def _session_in_loop(self) -> aiohttp.ClientSession:
        """Made on first use: aiohttp binds a session to the running loop."""
        if self._closed:
            raise WebhookUnreachable("the node is stopping")
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(
                    ssl=self._ssl,
                    limit=self._max_connections,
                    resolver=aiohttp.ThreadedResolver(),
                ),
                timeout=aiohttp.ClientTimeout(total=self._timeout_seconds),
                headers={"User-Agent": self._user_agent},
                auto_decompress=False,
                cookie_jar=aiohttp.DummyCookieJar(),
                trust_env=False,
            )
        return self._session
