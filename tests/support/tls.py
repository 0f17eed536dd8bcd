"""A test certificate authority (trustme) and server certificates from it, as files.

The nodes serve HTTPS with these files and trust the CA bundle for their outbound
requests; clients trust it through ``client_context()`` or ``SSL_CERT_FILE=ca_bundle``.

Also a script, for scripts/two-nodes (no pytest needed)::

    python tests/support/tls.py DIR alpha.test beta.test

writes DIR/ca.pem and DIR/<domain>-cert.pem, DIR/<domain>-key.pem for each domain.
"""

from __future__ import annotations

import ssl
import sys
from dataclasses import dataclass, field
from pathlib import Path

import trustme


@dataclass(frozen=True)
class ServerFiles:
    cert: Path  # PEM chain: the server certificate, then the CA's
    key: Path


@dataclass
class CertificateAuthority:
    """One CA per test session; certificates are issued once per name and kept."""

    directory: Path
    _ca: trustme.CA = field(default_factory=trustme.CA)
    _issued: dict[str, tuple[tuple[str, ...], ServerFiles]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self._ca.cert_pem.write_to_path(str(self.ca_bundle))

    @property
    def ca_bundle(self) -> Path:
        """The CA certificate (PEM) that clients and nodes trust."""
        return self.directory / "ca.pem"

    def client_context(self) -> ssl.SSLContext:
        """What a client that trusts this CA (and nothing else) verifies with."""
        return ssl.create_default_context(cafile=str(self.ca_bundle))

    def server_files(self, domain: str, *also: str) -> ServerFiles:
        """Certificate and key files for ``domain`` (and extra names or IP addresses)."""
        identities = (domain, *also)
        known = self._issued.get(domain)
        if known is not None:
            if known[0] != identities:
                raise ValueError(f"{domain} was issued for {known[0]}, not {identities}")
            return known[1]
        issued = self._ca.issue_cert(*identities)
        files = ServerFiles(
            cert=self.directory / f"{domain}-cert.pem", key=self.directory / f"{domain}-key.pem"
        )
        issued.private_key_pem.write_to_path(str(files.key))
        files.key.chmod(0o600)
        # The whole chain, so that a client holding only the CA can verify it.
        files.cert.write_bytes(b"".join(blob.bytes() for blob in issued.cert_chain_pems))
        self._issued[domain] = (identities, files)
        return files


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print("usage: tls.py DIR DOMAIN...", file=sys.stderr)
        return 2
    ca = CertificateAuthority(Path(argv[0]))
    for domain in argv[1:]:
        ca.server_files(domain)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
