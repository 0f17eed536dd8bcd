"""Extended requests between our own nodes, signed by the sending node.

The signature (protocol/openmsg/_extension.py ``signed_request_bytes``) covers
the method, path, both domains, a timestamp and the body, so a receiver knows
which node asked without a confirm callback.
"""

from __future__ import annotations

import json

from openmessenger.core.ids import Domain
from openmessenger.protocol import openmsg
from openmessenger.protocol.openmsg import JsonObject
from openmessenger.services.ports import Clock, FederationTransport, PeerReply, Secrets


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
        signed = openmsg.signed_request_bytes(
            "POST", path, peer_domain, self._domain, timestamp, raw
        )
        headers = {
            openmsg.ORIGIN_HEADER: self._domain,
            openmsg.TIMESTAMP_HEADER: str(timestamp),
            openmsg.SIGNATURE_HEADER: self._secrets.sign(signed),
        }
        return await self._transport.post_json(
            openmsg.extension_url(peer_domain, path), raw, headers
        )
