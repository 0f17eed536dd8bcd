"""Disappearing messages between two of our nodes over real TLS: the sender's node
passes the message straight on, the recipient's node holds it in memory as it
would a local one, its expiry comes back to the sender, and neither node keeps
anything of it anywhere."""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from openmessenger.client import (
    ApiError,
    Client,
    EphemeralExpired,
    EphemeralMessage,
    RefusedError,
)
from openmessenger.protocol import ephemeral_federation as ewire
from openmessenger.protocol.ephemeral import EphemeralSendIn
from openmessenger.services.ephemeral_federation import EphemeralFederation
from tests.e2e.test_ephemeral_traces import ciphertext_needles, dump_every_table, postgres_files
from tests.integration.test_sdk_groups import connect
from tests.support.api import ApiDevice, register
from tests.support.ephemeral import (
    OlmPair,
    files_holding,
    marker,
    needles,
    opaque_body,
    rows_holding,
    send_ephemeral,
    take,
)
from tests.support.federation import FederatedNode, OpenDevice, client_of, signed_by, until
from tests.support.tls import CertificateAuthority
from tests.support.v1peer import V1Peer

HOLD_SECONDS = 4
DEADLINE_SECONDS = 30

NodeFactory = Callable[..., FederatedNode]


@pytest.fixture
def alpha(federation_node_factory: NodeFactory) -> FederatedNode:
    return federation_node_factory("alpha.test", ephemeral_hold_seconds=HOLD_SECONDS)


@pytest.fixture
def beta(federation_node_factory: NodeFactory) -> FederatedNode:
    return federation_node_factory("beta.test", ephemeral_hold_seconds=HOLD_SECONDS)


async def across(
    alpha: FederatedNode, beta: FederatedNode, devices: OpenDevice
) -> tuple[Client, Client]:
    """Alice on alpha and Bob on beta, connected."""
    alice, bob = devices(alpha, "alice"), devices(beta, "bob")
    await connect(bob, alice)
    return alice, bob


def federation_of(node: FederatedNode) -> EphemeralFederation:
    remote = node.node.services.ephemeral.remote
    assert isinstance(remote, EphemeralFederation)
    return remote


async def signed(node: FederatedNode, to: str, path: str, body: dict[str, Any]) -> object:
    """A request ``node`` signs, as its own, to ``to``'s node: the answer."""
    request = (ewire.RelayRequest if path == ewire.RELAY_PATH else ewire.ExpiredRequest)(**body)
    return await signed_by(node, to, path, request)


def relay_body(sender: str, sender_device: str, to: Client, body: str) -> dict[str, Any]:
    return {
        "id": secrets.token_hex(16),
        "sender": sender,
        "sender_device": sender_device,
        "recipient": str(to.address),
        "recipient_device": str(to.device_id),
        "body": body,
        "lifespan_seconds": 60,
        "sent_at": datetime.now(UTC),
    }


async def raw_send(sender: Client, to: str, device: str, body: str) -> ApiError | None:
    """POST /v1/ephemeral as the SDK would, with a body of our choosing."""
    request = EphemeralSendIn(to=to, device=device, body=body, lifespan_seconds=60)
    try:
        await sender._call("POST", "/ephemeral", body=request)
    except ApiError as exc:
        return exc
    return None


async def sender_body(sender: Client, size: int = 120) -> str:
    """An om.olm.v1 body of the right shape from ``sender``'s device (not openable)."""
    engine = await sender.end_to_end()
    return json.dumps(
        {
            "alg": "om.olm.v1",
            "sender_key": engine.curve25519_key,
            "olm": {
                "type": 1,
                "body": secrets.token_urlsafe(size).replace("-", "A").replace("_", "B"),
            },
        }
    )


# -- what users see ----------------------------------------------------------------------


async def test_it_reaches_the_named_device_on_the_other_node_live_and_by_polling(
    alpha: FederatedNode, beta: FederatedNode, devices: OpenDevice
) -> None:
    alice, bob = await across(alpha, beta, devices)
    text = marker()

    sent = await alice.send_ephemeral(str(bob.address), text, lifespan=30)
    [received] = await bob.receive_ephemeral()

    assert isinstance(received, EphemeralMessage)
    assert (received.text, received.error) == (text, None)
    assert (received.id, received.sender, received.sender_device) == (
        sent.id,
        alice.address,
        alice.device_id,
    )
    assert (received.recipient_device, received.lifespan_seconds) == (bob.device_id, 30)
    assert (sent.to, sent.device) == (bob.address, bob.device_id)
    # beta holds it for its own hold, at most HOLD_SECONDS after it arrived.
    assert 0 < (sent.expires_at - sent.sent_at).total_seconds() <= HOLD_SECONDS + 2
    assert await bob.receive_ephemeral() == []

    # The other way, live on Alice's stream this time.
    events = alice.listen_ephemeral()
    try:
        listening = asyncio.ensure_future(anext(events))
        reply_text = marker()
        reply = await bob.send_ephemeral(str(alice.address), reply_text)
        live = await asyncio.wait_for(listening, DEADLINE_SECONDS)
    finally:
        await events.aclose()
    assert isinstance(live, EphemeralMessage)
    assert (live.id, live.text, live.sender) == (reply.id, reply_text, bob.address)
    # Nobody else got anything: not the sender's history, not a sync.
    assert [m for m in await bob.sync() if m.text in (text, reply_text)] == []


async def test_undelivered_it_expires_on_the_other_node_and_the_sender_is_told(
    alpha: FederatedNode, beta: FederatedNode, devices: OpenDevice
) -> None:
    alice, bob = await across(alpha, beta, devices)
    sent = await alice.send_ephemeral(str(bob.address), marker())
    found: list[EphemeralExpired] = []

    async def told() -> bool:
        found.extend(e for e in await alice.receive_ephemeral() if isinstance(e, EphemeralExpired))
        return bool(found)

    await until(told, "the expiry notice on alpha")
    [notice] = found
    assert (notice.id, notice.to, notice.device) == (sent.id, bob.address, bob.device_id)
    assert notice.sent_at == sent.sent_at
    assert (notice.expired_at - sent.sent_at).total_seconds() <= HOLD_SECONDS + 2
    # Dropped for good: Bob never gets it, and the notice comes once.
    assert await bob.receive_ephemeral() == []
    assert await alice.receive_ephemeral() == []


async def test_a_retry_is_held_once_and_beta_unreachable_is_a_clear_retryable_error(
    alpha: FederatedNode, beta: FederatedNode, devices: OpenDevice
) -> None:
    alice, bob = await across(alpha, beta, devices)
    first = await alice.send_ephemeral(str(bob.address), "once", client_txn_id="txn-1")
    again = await alice.send_ephemeral(str(bob.address), "once", client_txn_id="txn-1")
    assert again.id == first.id
    assert [e.id for e in await bob.receive_ephemeral()] == [first.id]

    await asyncio.to_thread(beta.stop)
    with pytest.raises(ApiError) as unreachable:
        await alice.send_ephemeral(str(bob.address), "while you were away")
    assert (unreachable.value.status, unreachable.value.code) == (502, "peer_unavailable")
    await asyncio.to_thread(beta.start)
    # Nothing was kept to send later.
    assert await bob.receive_ephemeral() == []
    assert len(federation_of(alpha)._ledger) == 1  # the first message's, no body
    later = await alice.send_ephemeral(str(bob.address), "now")
    assert [e.id for e in await bob.receive_ephemeral()] == [later.id]


async def test_the_other_nodes_checks_come_back_as_the_same_errors(
    federation_node_factory: NodeFactory, alpha: FederatedNode, devices: OpenDevice
) -> None:
    beta = federation_node_factory(
        "beta.test", ephemeral_hold_seconds=HOLD_SECONDS, ephemeral_max_pending_per_device=2
    )
    alice, bob = await across(alpha, beta, devices)
    carol = devices(beta, "carol")  # on beta, connected with bob only
    await connect(bob, carol)
    dave = devices(beta, "dave")  # on beta, nobody's contact
    await dave.whoami()

    # A stranger on the other node: the generic refusal, nothing asked of beta.
    with pytest.raises(RefusedError):
        await alice.send_ephemeral(str(dave.address), "hello")
    # A device that is not Bob's: refused by beta as by a single node.
    wrong = await raw_send(alice, str(bob.address), str(carol.device_id), await sender_body(alice))
    assert wrong is not None and (wrong.status, wrong.code) == (404, "device_not_found")
    # Bob's stricter size for the conversation lives on beta, and holds there.
    [contact] = [c for c in await bob.contacts() if c.address == alice.address]
    await bob.set_conversation_policy(contact.conversation_id, max_message_bytes=300)
    too_large = await raw_send(
        alice, str(bob.address), str(bob.device_id), await sender_body(alice, 600)
    )
    assert too_large is not None
    assert (too_large.status, too_large.code, too_large.field) == (422, "message_too_large", "body")
    # And so does his stricter rate: Alice's messages counted there, per conversation.
    await bob.set_conversation_policy(contact.conversation_id, message_rate="1/minute")
    await alice.send_ephemeral(str(bob.address), "one")
    with pytest.raises(ApiError) as rated:
        await alice.send_ephemeral(str(bob.address), "too soon")
    assert (rated.value.status, rated.value.code) == (429, "message_rate_limited")
    await bob.clear_conversation_policy(contact.conversation_id)
    # beta's relay bounds: two waiting from Alice's device, then 429.
    await alice.send_ephemeral(str(bob.address), "two")
    with pytest.raises(ApiError) as bounded:
        await alice.send_ephemeral(str(bob.address), "three")
    assert (bounded.value.status, bounded.value.code) == (429, "limit_exceeded")
    assert [e.text for e in await bob.receive_ephemeral() if isinstance(e, EphemeralMessage)] == [
        "one",
        "two",
    ]
    # Bob blocks Alice: the same refusal a stranger gets; unblocked, it arrives again.
    await bob.block(str(alice.address))
    with pytest.raises(RefusedError):
        await alice.send_ephemeral(str(bob.address), "let me in")
    await bob.unblock(str(alice.address))
    back = await alice.send_ephemeral(str(bob.address), "back")
    assert [e.id for e in await bob.receive_ephemeral()] == [back.id]
    assert await dave.receive_ephemeral() == [] and await carol.receive_ephemeral() == []


async def test_an_openmsg_v1_peer_keeps_getting_409(
    alpha: FederatedNode, v1peer: V1Peer, devices: OpenDevice
) -> None:
    alice = devices(alpha, "alice")
    await alice.connect(v1peer.address, v1peer.issue_code())

    with pytest.raises(ApiError) as sdk:
        await alice.send_ephemeral(v1peer.address, "hello")
    assert (sdk.value.status, sdk.value.code) == (409, "ephemeral_remote_unsupported")
    # The node says so itself too, to a client that does not ask first.
    node = await raw_send(alice, v1peer.address, "device", await sender_body(alice))
    assert node is not None and (node.status, node.code) == (409, "ephemeral_remote_unsupported")


# -- attacks ---------------------------------------------------------------------------


async def test_a_node_speaks_only_for_its_own_connected_users_and_forged_notices_are_refused(
    federation_node_factory: NodeFactory,
    alpha: FederatedNode,
    beta: FederatedNode,
    devices: OpenDevice,
) -> None:
    gamma = federation_node_factory("gamma.test")
    alice, bob = await across(alpha, beta, devices)
    carol = devices(beta, "carol")  # bob's contact, on beta
    await connect(bob, carol)
    eve = devices(alpha, "eve")  # on alpha, not connected with bob
    await eve.whoami()
    body = await sender_body(alice)

    # alpha naming a sender of beta's (bob's own contact carol): refused, SM_E001.
    as_carol = await signed(
        alpha,
        "beta.test",
        ewire.RELAY_PATH,
        relay_body(str(carol.address), str(carol.device_id), bob, body),
    )
    assert isinstance(as_carol, dict) and as_carol["response_code"] == "SM_E001", as_carol
    # gamma naming alice of alpha: the same.
    as_alice = await signed(
        gamma,
        "beta.test",
        ewire.RELAY_PATH,
        relay_body(str(alice.address), str(alice.device_id), bob, body),
    )
    assert isinstance(as_alice, dict) and as_alice["response_code"] == "SM_E001", as_alice
    # alpha speaking for its own eve, who is no contact of bob's: the generic refusal.
    stranger = await signed(
        alpha, "beta.test", ewire.RELAY_PATH, relay_body(str(eve.address), "eve-device", bob, body)
    )
    assert isinstance(stranger, dict) and (stranger["ok"], stranger["code"]) == (False, "refused")
    assert await bob.receive_ephemeral() == []

    # Expiry notices: only from the node the message went to, only for one it got.
    sent = await alice.send_ephemeral(str(bob.address), marker())
    notice = {
        "id": sent.id,
        "sender": str(alice.address),
        "sender_device": str(alice.device_id),
        "recipient": str(bob.address),
        "recipient_device": str(bob.device_id),
        "expired_at": datetime.now(UTC),
    }
    from_gamma = await signed(gamma, "alpha.test", ewire.EXPIRED_PATH, notice)
    assert isinstance(from_gamma, dict) and from_gamma["response_code"] == "SM_E001", from_gamma
    gamma_contact = {**notice, "recipient": "1234567*gamma.test"}
    unknown = await signed(gamma, "alpha.test", ewire.EXPIRED_PATH, gamma_contact)
    assert isinstance(unknown, dict) and unknown["response_code"] == "SM_E003", unknown
    never = await signed(beta, "alpha.test", ewire.EXPIRED_PATH, {**notice, "id": "0" * 32})
    assert isinstance(never, dict) and never["response_code"] == "SM_E003", never
    other_device = {**notice, "sender_device": str(eve.device_id)}
    wrong = await signed(beta, "alpha.test", ewire.EXPIRED_PATH, other_device)
    assert isinstance(wrong, dict) and wrong["response_code"] == "SM_E003", wrong
    assert await alice.receive_ephemeral() == [] and await eve.receive_ephemeral() == []
    # The message itself was never disturbed.
    assert [e.id for e in await bob.receive_ephemeral()] == [sent.id]


# -- no trace ----------------------------------------------------------------------------


class BothNodes:
    """Where anything of a disappearing message could be kept on either node: every
    row of every table, every file under the test's directory (databases, their
    -wal and -shm, data directories), PostgreSQL's files, and every log record."""

    def __init__(
        self, nodes: list[FederatedNode], root: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        self.nodes = nodes
        self.root = root
        self._caplog = caplog
        self.texts: list[str] = []
        self.raw: list[bytes] = []
        self.checked: list[str] = []

    def watch(self, texts: list[str], raw: list[bytes]) -> None:
        self.texts += texts
        self.raw += raw

    @property
    def records(self) -> list[logging.LogRecord]:
        return self._caplog.records

    async def search(self, texts: list[str], raw: list[bytes]) -> list[str]:
        found = files_holding(self.root, raw)
        for node in self.nodes:
            url = node.settings.database_url
            assert url is not None
            if not url.startswith("sqlite"):
                for directory in await postgres_files(url):
                    found += files_holding(directory, raw)
            found += [
                f"{node.domain}: {hit}" for hit in rows_holding(await dump_every_table(url), texts)
            ]
        lines = "\n".join(r.getMessage() + repr(r.args) + repr(r.__dict__) for r in self.records)
        found += [f"log: {t[:20]}" for t in texts if t in lines]
        return found

    async def assert_none(self, moment: str) -> None:
        found = await self.search(self.texts, self.raw)
        assert found == [], f"{moment}: {found}"
        self.checked.append(moment)


@asynccontextmanager
async def registered_across(
    alpha: FederatedNode, beta: FederatedNode, test_ca: CertificateAuthority
) -> AsyncIterator[tuple[ApiDevice, ApiDevice]]:
    async with client_of(alpha, test_ca) as on_alpha, client_of(beta, test_ca) as on_beta:
        alice = await register(on_alpha, "Alice")
        bob = await register(on_beta, "Bob")
        code = await bob.issue_code()
        response = await alice.connect(bob.address, code)
        assert response.status_code == 201, response.text
        yield alice, bob


TRACE_HOLD_SECONDS = 20
"""Longer than a search of both nodes' tables, files and logs takes on a loaded
machine: the message must still be held when the search that runs while it is
held is over."""


async def test_neither_node_keeps_a_trace_while_held_after_delivery_and_after_expiry(
    federation_node_factory: NodeFactory,
    test_ca: CertificateAuthority,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    alpha = federation_node_factory("alpha.test", ephemeral_hold_seconds=TRACE_HOLD_SECONDS)
    beta = federation_node_factory("beta.test", ephemeral_hold_seconds=TRACE_HOLD_SECONDS)
    for noisy in ("alembic", "sqlalchemy.engine", "asyncpg", "httpcore", "httpx"):
        caplog.set_level(logging.WARNING, logger=noisy)  # as the node itself sets them
    caplog.set_level(logging.DEBUG)  # last: it sets the capturing handler's level too
    traces = BothNodes([alpha, beta], tmp_path, caplog)
    async with registered_across(alpha, beta, test_ca) as (alice, bob):
        # The search finds what is stored: an ordinary message's body, on both nodes
        # (each node seals it anew, so each has its own).
        stored = await alice.send(bob.address, marker())
        assert stored.status_code == 201, stored.text
        on_alpha = stored.json()["body"][20:80]

        async def arrived() -> list[dict[str, Any]]:
            return await bob.sync()

        [event] = await until(arrived, "the ordinary message on beta")
        on_beta = event["message"]["body"][20:80]
        control = await traces.search([on_alpha, on_beta], needles(on_alpha, on_beta))
        assert "alpha.test: messages.body" in control, control
        assert "beta.test: messages.body" in control, control
        assert any(hit.startswith("/") for hit in control), control
        logged = marker()
        logging.getLogger("openmessenger.test").debug("a record holding %s", logged)
        assert await traces.search([logged], []) == [f"log: {logged[:20]}"], "logs unseen"

        olm = OlmPair.open(alice, bob)
        delivered_text, expired_text = marker(), marker()
        delivered_body, expired_body = olm.body(delivered_text), olm.body(expired_text)
        for text, body in ((delivered_text, delivered_body), (expired_text, expired_body)):
            texts, raw = ciphertext_needles(body)
            traces.watch([text, *texts], needles(text) + raw)

        sent = await send_ephemeral(alice, bob, delivered_body)
        assert sent.status_code == 202, sent.text
        await traces.assert_none("held on beta, undelivered")
        [event] = await take(bob)
        assert event["message"]["id"] == sent.json()["id"]
        assert olm.open_body(event["message"]["body"]).text == delivered_text
        await traces.assert_none("delivered")

        unread = await send_ephemeral(alice, bob, expired_body)
        assert unread.status_code == 202, unread.text
        await traces.assert_none("held again")

        async def told() -> list[dict[str, Any]]:
            return await take(alice)

        [notice] = await until(told, "the expiry notice on alpha", TRACE_HOLD_SECONDS + 30)
        assert (notice["type"], notice["id"]) == ("ephemeral.expired", unread.json()["id"])
        assert await take(bob) == []
        await traces.assert_none("expired")
        # The opaque bodies of refused attempts are not kept either.
        refused = opaque_body(alice)
        traces.watch([refused], needles(refused))
        stranger = await register(bob.http, "Stranger")
        answer = await send_ephemeral(alice, stranger, refused)
        assert answer.status_code == 403, answer.text
        await traces.assert_none("refused")
    assert len(traces.checked) == 5
    # The nodes did log these requests (at debug level): only never their content.
    routes = {getattr(r, "fields", {}).get("route") for r in traces.records}
    assert "/v1/ephemeral" in routes, routes


async def test_a_relay_request_without_a_time_zone_is_refused_as_malformed(
    alpha: FederatedNode, beta: FederatedNode
) -> None:
    request = {
        "id": secrets.token_hex(16),
        "sender": f"1234567890*{alpha.domain}",
        "sender_device": "a" * 32,
        "recipient": f"0987654321*{beta.domain}",
        "recipient_device": "b" * 32,
        "body": '{"type": 0, "body": "x"}',
        "lifespan_seconds": 60,
        "sent_at": datetime.now(UTC).replace(tzinfo=None).isoformat(),  # naive
    }
    answer = await signed_by(alpha, beta.domain, ewire.RELAY_PATH, request)
    assert isinstance(answer, dict) and answer["response_code"] == "SM_E000", answer
