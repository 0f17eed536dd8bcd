"""Signed requests between our nodes are served once: a request captured on the
wire and sent again (within its time window, byte for byte) is refused, and so is
one whose nonce was changed or left out."""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from openmessenger.core.ids import Domain
from openmessenger.crypto.keys import NodeSecrets
from openmessenger.protocol import openmsg
from openmessenger.services.ports import FederationTransport, PeerReply
from openmessenger.services.signed_requests import SignedRequests
from openmessenger.wiring import SystemClock
from tests.support.federation import FederatedNode


@dataclass
class RecordingTransport:
    """Alpha's own transport, keeping what it sent."""

    inner: FederationTransport
    sent: list[tuple[str, bytes, dict[str, str]]] = field(default_factory=list)

    async def post_json(
        self, url: str, body: Mapping[str, object] | bytes, headers: Mapping[str, str] | None = None
    ) -> PeerReply:
        assert isinstance(body, bytes)
        self.sent.append((url, body, dict(headers or {})))
        return await self.inner.post_json(url, body, headers)


def signed_requests(node: FederatedNode) -> SignedRequests:
    return SignedRequests(
        secrets=NodeSecrets(node.settings.load_node_secret()),
        clock=SystemClock(),
        domain=Domain(node.domain),
        transport=node.node.transport,
    )


def response_code(reply: PeerReply) -> object:
    """The Openmsg code of a refusal; None for an answer to the question."""
    assert reply.status == openmsg.ANSWER_HTTP_STATUS and isinstance(reply.body, dict)
    return reply.body.get("response_code") if reply.body.get("error") else None


async def test_a_captured_signed_request_is_served_once(
    alpha: FederatedNode, beta: FederatedNode
) -> None:
    recording = RecordingTransport(alpha.node.transport)
    signed = SignedRequests(
        secrets=NodeSecrets(alpha.settings.load_node_secret()),
        clock=SystemClock(),
        domain=Domain(alpha.domain),
        transport=recording,
    )
    query = openmsg.KeysQueryRequest(
        requester=f"1234567890*{alpha.domain}", address=f"0987654321*{beta.domain}"
    ).model_dump(mode="json")

    async def on_alpha() -> list[PeerReply]:
        first = await signed.post(Domain(beta.domain), openmsg.KEYS_QUERY_PATH, query)
        second = await signed.post(Domain(beta.domain), openmsg.KEYS_QUERY_PATH, query)
        [(url, raw, headers), _] = recording.sent
        replayed = await alpha.node.transport.post_json(url, raw, headers)
        other_nonce = headers | {openmsg.NONCE_HEADER: "x" * 32}
        renonced = await alpha.node.transport.post_json(url, raw, other_nonce)
        without = {k: v for k, v in headers.items() if k != openmsg.NONCE_HEADER}
        unsigned_nonce = await alpha.node.transport.post_json(url, raw, without)
        return [first, second, replayed, renonced, unsigned_nonce]

    first, second, replayed, renonced, without = await alpha.call(on_alpha())

    # The same question asked twice is two requests (a fresh nonce each): both served.
    assert response_code(first) is None, first.body
    assert response_code(second) is None, second.body
    assert first.body == second.body
    # The captured one sent again is not.
    assert response_code(replayed) == openmsg.ResponseCode.MESSAGE_NONCE_ERROR
    # Nor with another nonce (the signature covers it), nor with none.
    assert response_code(renonced) == openmsg.ResponseCode.MESSAGE_UNKNOWN
    assert response_code(without) == openmsg.ResponseCode.MESSAGE_DATA_MISSING


async def test_forged_requests_do_not_use_up_the_real_nodes_rate_limit(
    federation_node_factory: Callable[..., FederatedNode], beta: FederatedNode
) -> None:
    alpha = federation_node_factory("alpha.test", openmsg_domain_rate_limit="3/minute")
    query = openmsg.KeysQueryRequest(
        requester=f"1234567890*{beta.domain}", address=f"0987654321*{alpha.domain}"
    ).model_dump(mode="json")
    url = openmsg.extension_url(Domain(alpha.domain), openmsg.KEYS_QUERY_PATH)

    async def forge() -> PeerReply:
        headers = {
            openmsg.ORIGIN_HEADER: beta.domain,
            openmsg.TIMESTAMP_HEADER: str(int(alpha.clock.now().timestamp())),
            openmsg.NONCE_HEADER: secrets.token_urlsafe(16),
            openmsg.SIGNATURE_HEADER: "A" * 86 + "==",
        }
        return await beta.node.transport.post_json(url, json.dumps(query).encode(), headers)

    # Anyone can claim to be beta; ten such requests cost beta nothing...
    for _ in range(10):
        forged = await beta.call(forge())
        assert response_code(forged) == openmsg.ResponseCode.MESSAGE_UNKNOWN
    # ...so beta's own requests are still served, up to its limit, and then refused.
    answers = [
        response_code(
            await beta.call(
                signed_requests(beta).post(Domain(alpha.domain), openmsg.KEYS_QUERY_PATH, query)
            )
        )
        for _ in range(4)
    ]
    assert answers == [None, None, None, openmsg.ResponseCode.MESSAGE_REJECTED_TEMP]
