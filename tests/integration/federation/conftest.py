"""Federating nodes over real HTTPS on 127.0.0.x:443, inside scripts/netns-run's
namespace (the tests here skip outside it, and fail under CI=true)."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest

from openmessenger.client import Client
from tests.support.federation import (
    FederatedNode,
    OpenDevice,
    client_of,
    federated_settings,
    require_netns,
)
from tests.support.postgres import create_database
from tests.support.sdk import sdk_client
from tests.support.tls import CertificateAuthority
from tests.support.v1peer import V1Peer

NodeFactory = Callable[..., FederatedNode]


@pytest.fixture(autouse=True, scope="session")
def _in_private_namespace() -> None:
    require_netns()


@pytest.fixture(scope="session")
def test_ca(tmp_path_factory: pytest.TempPathFactory) -> CertificateAuthority:
    """The session's CA: ``test_ca.ca_bundle``, ``test_ca.server_files(domain)``."""
    return CertificateAuthority(tmp_path_factory.mktemp("test-ca"))


@pytest.fixture
def federation_node_factory(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest, test_ca: CertificateAuthority
) -> Iterator[NodeFactory]:
    """``federation_node_factory("gamma.test", **settings)`` starts a node for that
    domain on the parametrised backend (a database of its own) and stops it after
    the test. The node keeps its data across ``stop()``/``start()``. Callable from
    sync and async tests alike."""
    admin_url = request.getfixturevalue("postgres_admin_url") if backend == "postgres" else ""
    nodes: list[FederatedNode] = []

    def start(domain: str, **overrides: Any) -> FederatedNode:
        if backend == "sqlite":
            database_url = f"sqlite:///{tmp_path / f'{domain}.db'}"
        else:
            # A loop of its own in a thread of its own: an async test's loop is running.
            with ThreadPoolExecutor(1) as pool:
                database_url = pool.submit(asyncio.run, create_database(admin_url)).result()
        settings = federated_settings(
            domain,
            test_ca,
            data_dir=tmp_path / domain,
            database_url=database_url,
            node_secret=secrets.token_hex(32),
            **overrides,
        )
        node = FederatedNode(settings)
        nodes.append(node)
        return node.start()

    try:
        yield start
    finally:
        for node in reversed(nodes):
            node.stop()


@pytest.fixture
def alpha(federation_node_factory: NodeFactory) -> FederatedNode:
    return federation_node_factory("alpha.test")


@pytest.fixture
def beta(federation_node_factory: NodeFactory) -> FederatedNode:
    return federation_node_factory("beta.test")


@pytest.fixture
async def clients(
    alpha: FederatedNode, beta: FederatedNode, test_ca: CertificateAuthority
) -> AsyncIterator[tuple[httpx.AsyncClient, httpx.AsyncClient]]:
    """HTTPS clients of alpha's and beta's client APIs."""
    async with client_of(alpha, test_ca) as on_alpha, client_of(beta, test_ca) as on_beta:
        yield on_alpha, on_beta


@pytest.fixture
async def devices(
    test_ca: CertificateAuthority, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[OpenDevice]:
    """``devices(alpha, "alice")``: an SDK client of that profile on that node,
    closed after the test. Device lists are asked for at every use."""
    # The SDK trusts the test CA the way a user's system store would.
    monkeypatch.setenv("SSL_CERT_FILE", str(test_ca.ca_bundle))
    async with AsyncExitStack() as stack:

        def open_device(node: FederatedNode, profile: str) -> Client:
            client = sdk_client(node.url, tmp_path / "profiles" / profile, key_cache_seconds=0)
            stack.push_async_callback(client.aclose)
            return client

        yield open_device


@pytest.fixture
async def v1peer(test_ca: CertificateAuthority, alpha: FederatedNode) -> AsyncIterator[V1Peer]:
    """An Openmsg v1 node (the reference's behaviour) on alpha's clock."""
    peer = await V1Peer(test_ca).start()
    peer.clock = alpha.clock.now
    try:
        yield peer
    finally:
        await peer.close()
