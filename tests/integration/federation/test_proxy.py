"""Federation forced through a SOCKS5 proxy (as through Tor): every outbound
request of the node goes through it, names resolved by the proxy."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from openmessenger.settings import Settings
from tests.integration.federation.test_two_nodes import (
    federated_pair,
    outbox_attempted,
    received,
    settled,
    status_of,
)
from tests.support.federation import FederatedNode, client_of
from tests.support.proxy import Socks, running_socks_proxy
from tests.support.tls import CertificateAuthority


@pytest.fixture
def socks_proxy() -> Iterator[Socks]:
    with running_socks_proxy() as proxy:
        yield proxy


async def test_all_outbound_federation_goes_through_the_proxy(
    federation_node_factory: Callable[..., FederatedNode],
    test_ca: CertificateAuthority,
    socks_proxy: Socks,
) -> None:
    beta = federation_node_factory(
        "beta.test", federation_proxy=socks_proxy.url, federation_proxy_required=True
    )
    alpha = federation_node_factory("alpha.test")
    async with client_of(alpha, test_ca) as on_alpha, client_of(beta, test_ca) as on_beta:
        alice, bob = await federated_pair((on_alpha, on_beta))
        # beta's handshake went through the proxy, by name.
        socks_proxy.log.wait_for(r"-> alpha\.test:443$")
        sent = await bob.send(alice.address, "via the proxy")
        assert await received(alice, 1) == ["via the proxy"]
        assert await settled(bob, sent.json()["id"]) == "delivered"
        assert "127.0.0.2" not in socks_proxy.log.text  # never an address: the proxy resolved


async def test_with_the_proxy_down_nothing_goes_out_directly(
    federation_node_factory: Callable[..., FederatedNode],
    test_ca: CertificateAuthority,
) -> None:
    alpha = federation_node_factory("alpha.test")
    with running_socks_proxy() as proxy:
        beta = federation_node_factory("beta.test", federation_proxy=proxy.url)
        async with client_of(alpha, test_ca) as on_alpha, client_of(beta, test_ca) as on_beta:
            alice, bob = await federated_pair((on_alpha, on_beta))
    # The proxy is gone: beta holds the message rather than going direct.
    async with client_of(alpha, test_ca) as on_alpha, client_of(beta, test_ca) as on_beta:
        alice.http, bob.http = on_alpha, on_beta
        sent = await bob.send(alice.address, "held back")
        await beta.call(outbox_attempted(beta))
        assert await status_of(bob, sent.json()["id"]) == "accepted"
        assert await alice.sync() == []


def test_a_node_that_requires_a_proxy_does_not_start_without_one() -> None:
    with pytest.raises(ValueError, match="federation_proxy"):
        Settings(federation_proxy_required=True)
