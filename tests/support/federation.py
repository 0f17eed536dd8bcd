"""Federating nodes for tests: each on its own loopback address, port 443, real HTTPS.

The names (alpha.test, beta.test, ...) resolve only inside the private namespace
that scripts/netns-run makes (``make test`` runs pytest in it); its hosts file,
tests/support/netns_hosts, is the one list of test domains. Outside it the
federation tests skip, or fail under CI=true.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from pydantic import BaseModel

from openmessenger.client import Client
from openmessenger.core.ids import Domain
from openmessenger.crypto.keys import NodeSecrets
from openmessenger.services.signed_requests import SignedRequests
from openmessenger.settings import Settings
from openmessenger.wiring import Node
from tests.support.node import NodeThread, SettableClock
from tests.support.sdk import REQUEST_TIMEOUT_SECONDS
from tests.support.tls import CertificateAuthority

T = TypeVar("T")

NETNS_ENV = "OPENMESSENGER_NETNS"
HOSTS_FILE = Path(__file__).with_name("netns_hosts")
FEDERATION_PORT = 443  # federation speaks https://{domain}/openmsg/...: no port in the URL


def netns_hosts() -> dict[str, str]:
    """Test domain -> its loopback address, as the namespace's hosts file maps them."""
    hosts: dict[str, str] = {}
    for line in HOSTS_FILE.read_text().splitlines():
        fields = line.split("#", 1)[0].split()
        for name in fields[1:]:
            if name != "localhost":
                hosts[name] = fields[0]
    return hosts


def require_netns() -> None:
    """Skip (fail under CI=true) unless running inside scripts/netns-run's namespace."""
    if not os.environ.get(NETNS_ENV):
        reason = (
            "federation tests need the private network namespace: run them through "
            "scripts/netns-run (make test does)"
        )
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason}; under CI=true this is a failure, not a skip")
        pytest.skip(reason)
    wrong = [name for name, address in netns_hosts().items() if _resolve(name) != address]
    if wrong:
        pytest.fail(
            f"{NETNS_ENV} is set but {', '.join(wrong)} do not resolve as {HOSTS_FILE} "
            "says: run through scripts/netns-run"
        )


def _resolve(name: str) -> str | None:
    try:
        return socket.gethostbyname(name)
    except OSError:
        return None


def federated_settings(
    domain: str,
    ca: CertificateAuthority,
    *,
    data_dir: Path,
    database_url: str,
    node_secret: str,
    **overrides: Any,
) -> Settings:
    """Settings of a node serving ``domain`` on its own address, port 443, over TLS."""
    address = netns_hosts()[domain]
    files = ca.server_files(domain, address)
    given: dict[str, Any] = {
        "host": address,
        "port": FEDERATION_PORT,
        "domain": domain,
        "tls_cert": files.cert,
        "tls_key": files.key,
        "ca_file": ca.ca_bundle,
        "data_dir": data_dir,
        "database_url": database_url,
        "node_secret": node_secret,
        "log_level": "warning",
    }
    return Settings(**{**given, **overrides})


@dataclass
class FederatedNode:
    """A node in a thread of this process that can stop and start again on the same
    data, database and address; each has its own clock that the test moves."""

    settings: Settings
    clock: SettableClock = field(default_factory=SettableClock)
    thread: NodeThread | None = None

    @property
    def domain(self) -> str:
        return self.settings.domain

    @property
    def url(self) -> str:
        """The base URL by name, as other nodes and clients reach it."""
        return f"https://{self.domain}"

    @property
    def node(self) -> Node:
        assert self.thread is not None and self.thread.node is not None, "not running"
        return self.thread.node

    def start(self) -> FederatedNode:
        assert self.thread is None, f"{self.domain} is already running"
        # A fresh thread each time: a NodeThread runs once.
        self.thread = NodeThread(self.settings, clock=self.clock).start()
        return self

    def stop(self) -> None:
        if self.thread is not None:
            self.thread.stop()
            self.thread = None

    def restart(self) -> FederatedNode:
        self.stop()
        return self.start()

    async def call(self, coro: Coroutine[Any, Any, T]) -> T:
        """Await ``coro`` on the node's own loop (its engine lives there)."""
        assert self.thread is not None, "not running"
        return await self.thread.call(coro)


# No idle pooled connections: a node stopping over TLS waits (up to 30 s) for each
# open connection's close_notify, which an idle httpx connection never reads.
NO_KEEPALIVE = httpx.Limits(max_keepalive_connections=0)


def client_of(node: FederatedNode, ca: CertificateAuthority) -> httpx.AsyncClient:
    """An HTTPS client of ``node``'s client API, trusting the test CA."""
    return httpx.AsyncClient(
        base_url=node.url,
        verify=ca.client_context(),
        limits=NO_KEEPALIVE,
        timeout=REQUEST_TIMEOUT_SECONDS,
    )


async def signed_by(
    node: FederatedNode, to: str, path: str, request: BaseModel | dict[str, object]
) -> object:
    """What ``to``'s node answers a request ``node`` signs as its own, whatever
    the request says (an attacker's): the decoded answer, None if not HTTP 200."""
    sender = SignedRequests(
        secrets=NodeSecrets(node.settings.load_node_secret()),
        clock=node.clock,
        domain=Domain(node.domain),
        transport=node.node.transport,
    )
    return await node.call(sender.exchange(Domain(to), path, request))


OpenDevice = Callable[[FederatedNode, str], Client]
"""The ``devices`` fixture of tests/integration/federation/conftest.py."""

UNTIL_SECONDS = 30.0


async def until(check: Callable[[], Awaitable[T]], what: str, seconds: float = UNTIL_SECONDS) -> T:
    """Poll an observable outcome until it holds, with a deadline."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while True:
        result = await check()
        if result:
            return result
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)
