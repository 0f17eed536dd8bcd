"""The federation harness itself: two nodes on their own names, over real TLS."""

from __future__ import annotations

import os
import socket
import ssl
from pathlib import Path

import httpx
import pytest

from tests.support.federation import FederatedNode, netns_hosts
from tests.support.tls import CertificateAuthority


def health(url: str, verify: ssl.SSLContext) -> dict[str, str]:
    response = httpx.get(f"{url}/healthz", verify=verify, timeout=10)
    response.raise_for_status()
    body: dict[str, str] = response.json()
    return body


def test_each_node_answers_on_its_own_name_over_tls(
    alpha: FederatedNode, beta: FederatedNode, test_ca: CertificateAuthority
) -> None:
    ca = test_ca.client_context()
    assert health("https://alpha.test", ca)["domain"] == "alpha.test"
    assert health("https://beta.test", ca)["domain"] == "beta.test"
    # Each on its own address, on the port federation URLs imply.
    assert alpha.thread is not None and alpha.thread.url == "https://127.0.0.2:443"
    assert beta.thread is not None and beta.thread.url == "https://127.0.0.3:443"


def test_a_client_without_the_test_ca_is_refused(alpha: FederatedNode) -> None:
    trusts_nothing = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # verifies, but knows no CA
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        health(alpha.url, trusts_nothing)


def test_a_node_starts_again_on_the_same_address(
    alpha: FederatedNode, test_ca: CertificateAuthority
) -> None:
    alpha.restart()
    assert health(alpha.url, test_ca.client_context())["domain"] == "alpha.test"


def test_names_resolve_only_inside_the_private_namespace() -> None:
    assert os.environ.get("OPENMESSENGER_NETNS")
    for name, address in netns_hosts().items():
        assert socket.gethostbyname(name) == address
    try:
        outside = hosts_file_outside()
    except OSError:
        pytest.skip("the machine's /etc/hosts cannot be read from in here (not root)")
    assert "alpha.test" in Path("/etc/hosts").read_text()
    assert "alpha.test" not in outside


def hosts_file_outside() -> str:
    """/etc/hosts as seen by the nearest ancestor process outside our mount namespace
    (the shell that ran scripts/netns-run): the machine's own."""
    ours = os.readlink("/proc/self/ns/mnt")
    pid = os.getppid()
    while os.readlink(f"/proc/{pid}/ns/mnt") == ours:
        stat = Path(f"/proc/{pid}/stat").read_text()
        pid = int(stat.rsplit(")", 1)[1].split()[1])  # the parent's pid
        if pid <= 1:
            raise FileNotFoundError("no ancestor outside the namespace")
    return Path(f"/proc/{pid}/root/etc/hosts").read_text()
