"""Interoperability with Openmsg v1: our node (alpha.test) against a stand-in v1
node (tests/support/v1peer.py, on v1peer.test) over real HTTPS.

The peer speaks hand-built v1 JSON, exactly as the reference PHP implementation
(Openmsg-io/version_1.0) and its guide describe it; nothing here uses our
client code or our protocol module's builders. Each test asserts what the peer
and alice (a user of alpha) would observe: the answers and callbacks on the
wire, alice's contacts, sync and message status, and alpha's stored rows.
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

import httpx
import limits
import pytest
from nacl.secret import SecretBox

from openmessenger.api.openmsg import MAX_OPENMSG_BODY_BYTES
from openmessenger.core.ids import Domain
from openmessenger.core.passcodes import CODE_DIGITS, CODE_SPACE, CODE_TTL_SECONDS, GUESS_BUDGET
from tests.support.api import ApiDevice, register
from tests.support.federation import FederatedNode
from tests.support.node import dump_database
from tests.support.tls import CertificateAuthority
from tests.support.v1peer import (
    ERROR_CODES,
    NONCE_BYTES,
    PEER_DOMAIN,
    Link,
    V1Peer,
    b64url,
    b64url_decode,
    message_hash,
    nonce_of,
    open_package,
    passcode_hash,
    seal,
)

NodeFactory = Callable[..., FederatedNode]
Dump = dict[str, list[dict[str, object]]]

AUTH = "/openmsg/auth/"
AUTH_CONFIRM = "/openmsg/auth-confirm/"
MESSAGE_RECEIVE = "/openmsg/message-receive/"
MESSAGE_CONFIRM = "/openmsg/message-confirm/"

HEX64 = re.compile(r"[0-9a-f]{64}")
HEX32 = re.compile(r"[0-9a-f]{32}")
V1_AUTH_FIELDS = {
    "receiving_openmsg_address_id",
    "pass_code",
    "sending_openmsg_address",
    "sending_openmsg_address_name",
    "sending_allow_replies",
    "openmsg_version",
}
V1_MESSAGE_FIELDS = {
    "receiving_openmsg_address_id",
    "ident_code",
    "message_package",
    "message_hash",
    "message_salt",
    "message_timestamp",
    "openmsg_version",
}
OPTIONAL_MESSAGE_FIELDS = {"sending_openmsg_address_name"}  # sent only when the name changed
ACCEPTED = {"success": True, "response_code": "SM_S888"}
DEADLINE_SECONDS = 15.0
GATE_REFRESH = timedelta(seconds=2)  # the gate rereads admin switches after 1 s


# --- fixtures ------------------------------------------------------------------------


@pytest.fixture
async def v1peer(test_ca: CertificateAuthority) -> AsyncIterator[V1Peer]:
    peer = await V1Peer(test_ca).start()
    try:
        yield peer
    finally:
        await peer.close()


# Nodes with other settings come from sync fixtures: the factory makes PostgreSQL
# databases with asyncio.run(), which cannot run inside an async test.
ADDRESS_RATE = "3/minute"
GIVE_UP_SECONDS = 30


@pytest.fixture
def rate_limited_alpha(federation_node_factory: NodeFactory) -> FederatedNode:
    return federation_node_factory("alpha.test", openmsg_address_rate_limit=ADDRESS_RATE)


@pytest.fixture
def quickly_giving_up_alpha(federation_node_factory: NodeFactory) -> FederatedNode:
    return federation_node_factory("alpha.test", federation_give_up_seconds=GIVE_UP_SECONDS)


@pytest.fixture
def peer(alpha: FederatedNode, v1peer: V1Peer) -> V1Peer:
    """The v1 peer, sharing alpha's clock (both sides agree on "now")."""
    v1peer.clock = alpha.clock.now
    return v1peer


@asynccontextmanager
async def client_of(
    node: FederatedNode, ca: CertificateAuthority
) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        base_url=node.url, verify=ca.client_context(), timeout=DEADLINE_SECONDS
    ) as client:
        yield client


@pytest.fixture
async def alpha_http(
    alpha: FederatedNode, test_ca: CertificateAuthority
) -> AsyncIterator[httpx.AsyncClient]:
    async with client_of(alpha, test_ca) as client:
        yield client


@pytest.fixture
async def alice(alpha_http: httpx.AsyncClient) -> ApiDevice:
    return await register(alpha_http, "Alice")


# --- helpers -------------------------------------------------------------------------


def v1_answer(response: httpx.Response) -> dict[str, Any]:
    """Every /openmsg/ answer: HTTP 200, a JSON object."""
    assert response.status_code == 200, (response.status_code, response.text)
    assert response.headers["content-type"].split(";")[0].strip() == "application/json"
    body = response.json()
    assert isinstance(body, dict), body
    return body


def v1_error(response: httpx.Response, code: str | None = None) -> dict[str, Any]:
    """A v1 error answer with all four fields, ``code`` if given."""
    body = v1_answer(response)
    assert set(body) == {"error", "response_code", "error_code", "error_message"}, body
    assert body["error"] is True
    assert body["error_code"] == ERROR_CODES[body["response_code"]], body
    assert isinstance(body["error_message"], str) and body["error_message"]
    if code is not None:
        assert body["response_code"] == code, body
    return body


async def dump(node: FederatedNode, *leave_out: str) -> Dump:
    rows = await node.call(dump_database(node.node))
    return {table: r for table, r in rows.items() if table not in leave_out}


async def contacts(user: ApiDevice) -> list[dict[str, Any]]:
    response = await user.get("/v1/connections")
    assert response.status_code == 200, response.text
    found: list[dict[str, Any]] = response.json()["contacts"]
    return found


async def received_from(user: ApiDevice, sender: str) -> list[str]:
    """The bodies of the messages ``user`` sees from ``sender``, in order."""
    return [
        user.text(e["message"])
        for e in await user.sync()
        if e["message"]["from"] == sender and e["message"]["to"] == user.address
    ]


async def deadline(check: Callable[[], Awaitable[bool]], what: str) -> None:
    """Poll ``check`` until it is true, failing after DEADLINE_SECONDS."""
    loop = asyncio.get_running_loop()
    end = loop.time() + DEADLINE_SECONDS
    while not await check():
        if loop.time() > end:
            pytest.fail(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


async def wait_status(user: ApiDevice, message_id: str, status: str) -> None:
    async def reached() -> bool:
        response = await user.get(f"/v1/messages/{message_id}")
        assert response.status_code == 200, response.text
        current = response.json()["status"]
        assert current in (status, "accepted"), current
        return bool(current == status)

    await deadline(reached, f"message {message_id} to become {status}")


async def status_of(user: ApiDevice, message_id: str) -> str:
    response = await user.get(f"/v1/messages/{message_id}")
    assert response.status_code == 200, response.text
    return str(response.json()["status"])


async def wait_attempt_settled(node: FederatedNode, message_id: str, attempts: int) -> None:
    """Until the outbox recorded ``attempts`` failed attempts and released the message."""

    async def settled() -> bool:
        rows = (await dump(node))["openmsg_outbox"]
        row = next((r for r in rows if r["message_id"] == message_id), None)
        assert row is not None, "the message left the outbox"
        return row["attempts"] == attempts and row["lease_until"] is None

    await deadline(settled, f"attempt {attempts} of message {message_id} to settle")


async def kick(node: FederatedNode) -> None:
    """Make the outbox look for due messages now, on the node's own loop."""

    async def wake() -> None:
        node.node.outbox.kick()

    await node.call(wake())


async def set_switches(node: FederatedNode, change: Coroutine[Any, Any, object]) -> None:
    await node.call(change)
    node.clock.advance(GATE_REFRESH)


async def peer_connects(peer: V1Peer, alice: ApiDevice, *, allow_replies: bool = True) -> Link:
    """The peer redeems a code alice issued (a handshake the peer starts)."""
    code = await alice.issue_code()
    answer = v1_answer(await peer.start_handshake(alice.address, code, allow_replies=allow_replies))
    assert answer.get("success") is True, answer
    return peer.link(peer.address, alice.address)


async def alice_connects(peer: V1Peer, alice: ApiDevice, *, allow_replies: bool) -> Link:
    """Alice redeems a code the peer issued (a handshake alpha starts)."""
    code = peer.issue_code()
    response = await alice.post(
        "/v1/connections",
        {"address": peer.address, "pass_code": code, "allow_replies": allow_replies},
    )
    assert response.status_code == 201, response.text
    return peer.link(peer.address, alice.address)


async def deliver(peer: V1Peer, body: dict[str, Any], domain: str = "alpha.test") -> httpx.Response:
    return await peer.post(domain, "message-receive", json=body)


def other_codes(*avoid: str, count: int = 100) -> list[str]:
    """``count`` well-formed pass codes, none of them one of ``avoid``."""
    start = int(avoid[0])
    spelled = (
        f"{(start + n) % CODE_SPACE:0{CODE_DIGITS}d}" for n in range(1, count + 1 + len(avoid))
    )
    return [code for code in spelled if code not in avoid][:count]


# --- 1, 2, 3: a handshake the v1 peer starts --------------------------------------------


async def test_a_v1_peer_connects_with_a_code_alice_issued(peer: V1Peer, alice: ApiDevice) -> None:
    code = await alice.issue_code()
    body = {
        "receiving_openmsg_address_id": alice.address.split("*")[0],
        "pass_code": code,
        "sending_openmsg_address": peer.address,
        "sending_openmsg_address_name": "Vee One",
        "sending_allow_replies": True,
        "openmsg_version": 1.0,
    }
    answer = v1_answer(await peer.post_auth(alice.address, body))

    # Before answering, alpha asked v1peer.test to vouch, exactly as v1 does.
    [confirm] = peer.received(AUTH_CONFIRM)
    assert confirm.method == "POST"
    assert confirm.headers["content-type"].startswith("application/json")
    assert confirm.json == {
        "receiving_openmsg_address": alice.address,
        "passcode_hash": passcode_hash(code, peer.address, alice.address),
    }
    assert confirm.answer == {"success": True}

    assert set(answer) == {
        "success",
        "auth_code",
        "ident_code",
        "message_crypt_key",
        "receiving_openmsg_address_name",
    }
    assert answer["success"] is True
    for name in ("auth_code", "ident_code", "message_crypt_key"):
        assert HEX64.fullmatch(answer[name]), (name, answer[name])
    assert len({answer["auth_code"], answer["ident_code"], answer["message_crypt_key"]}) == 3
    assert answer["receiving_openmsg_address_name"] == "Alice"

    [contact] = await contacts(alice)
    assert contact["address"] == peer.address
    assert contact["display_name"] == "Vee One"
    assert contact["accepts_messages"] is True
    assert contact["peer_accepts_messages"] is True


async def test_a_v1_peer_that_connects_again_stays_connected(
    peer: V1Peer, alice: ApiDevice
) -> None:
    first = await peer_connects(peer, alice)
    code = await alice.issue_code()
    answer = v1_answer(await peer.start_handshake(alice.address, code))
    assert answer.get("success") is True, answer

    # The peer's messages still reach alice, and alice's reach the peer.
    link = peer.link(peer.address, alice.address)
    response = await deliver(peer, peer.message(link, "still there?"))
    assert v1_answer(response) == ACCEPTED
    sent = await alice.send(peer.address, "yes")
    await peer.wait_for(MESSAGE_RECEIVE)
    await wait_status(alice, sent.json()["id"], "delivered")
    assert await received_from(alice, peer.address) == ["still there?"]
    # Why: a v1 receiver keeps the ident_code of an existing connection
    # (auth/index.php) and a v1 initiator refuses an answer that changes it
    # (initiate-handshake.php, "Cant replace ident_code"), keeping its old codes.
    assert answer["ident_code"] == first.ident_code
    assert peer.handshake_errors == []


async def test_alice_connecting_again_with_replies_allowed_lets_the_peer_answer(
    peer: V1Peer, alice: ApiDevice
) -> None:
    await alice_connects(peer, alice, allow_replies=False)
    again = await alice.post(
        "/v1/connections",
        {"address": peer.address, "pass_code": peer.issue_code(), "allow_replies": True},
    )
    assert again.status_code in (200, 201), again.text
    [first, second] = peer.received(AUTH)
    assert (first.json["sending_allow_replies"], second.json["sending_allow_replies"]) == (
        False,
        True,
    )
    link = peer.link(peer.address, alice.address)
    assert link.other_accepts_messages is True  # the peer was told it may answer now

    response = await deliver(peer, peer.message(link, "thanks for letting me answer"))
    assert v1_answer(response) == ACCEPTED
    assert await received_from(alice, peer.address) == ["thanks for letting me answer"]
    [contact] = await contacts(alice)
    assert contact["accepts_messages"] is True


@pytest.mark.parametrize("failure", ["impostor-unknown-to-peer", "peer-answers-404", "unreachable"])
async def test_a_handshake_the_claimed_domain_does_not_vouch_for_is_refused_and_spares_the_code(
    peer: V1Peer, alice: ApiDevice, alpha: FederatedNode, failure: str
) -> None:
    code = await alice.issue_code()
    before = await dump(alpha, "pass_code_budgets")
    if failure == "peer-answers-404":
        peer.auth_confirm_mode = "404"
    if failure == "unreachable":
        await peer.stop()
    # The request claims to come from the peer's user, but v1peer.test never
    # started this handshake (or cannot say so).
    body = peer.auth_request(alice.address, code)
    v1_error(await peer.post_auth(alice.address, body, note_pending=False))

    asked = peer.received(AUTH_CONFIRM)
    assert len(asked) == (0 if failure == "unreachable" else 1)
    assert await contacts(alice) == []
    assert await dump(alpha, "pass_code_budgets") == before

    # The real peer, with the same code: the failed callback did not burn it.
    peer.auth_confirm_mode = "check"
    if failure == "unreachable":
        await peer.start()
    answer = v1_answer(await peer.start_handshake(alice.address, code))
    assert answer.get("success") is True, answer
    assert [c["address"] for c in await contacts(alice)] == [peer.address]


@pytest.mark.parametrize("case", ["wrong", "expired", "reused", "no-such-address"])
async def test_a_bad_pass_code_is_refused_before_any_callback_and_stores_nothing(
    peer: V1Peer, alice: ApiDevice, alpha: FederatedNode, case: str
) -> None:
    code = await alice.issue_code()
    sender = peer.address
    presented = code
    receiver = alice.address
    if case == "wrong":
        presented = other_codes(code)[0]
    if case == "expired":
        alpha.clock.advance(timedelta(seconds=CODE_TTL_SECONDS + 1))
    if case == "reused":
        first = v1_answer(await peer.start_handshake(alice.address, code))
        assert first.get("success") is True
        sender = f"2000002*{PEER_DOMAIN}"  # another user of the peer, with the used code
    if case == "no-such-address":
        number = alice.address.split("*")[0]
        receiver = f"{(int(number) + 1) % 10 ** len(number):0{len(number)}d}*alpha.test"
    contacts_before = await contacts(alice)
    callbacks_before = len(peer.received(AUTH_CONFIRM))
    before = await dump(alpha, "pass_code_budgets")

    # The peer's node did start this handshake: only the code is at fault.
    v1_error(await peer.start_handshake(receiver, presented, sender=sender))

    assert len(peer.received(AUTH_CONFIRM)) == callbacks_before  # no callback
    assert await dump(alpha, "pass_code_budgets") == before
    assert await contacts(alice) == contacts_before
    assert [c["address"] for c in contacts_before] == ([peer.address] if case == "reused" else [])
    assert await alice.sync() == []


# --- 4: guessing ------------------------------------------------------------------------


def attackers(count: int) -> list[str]:
    """Addresses on ``count`` different domains, real test names first."""
    domains = ["gamma.test", "delta.test", *(f"d{i}.test" for i in range(1, count))]
    return [f"{900001 + i}*{domain}" for i, domain in enumerate(domains[:count])]


async def test_guesses_from_many_domains_exhaust_an_open_code(
    peer: V1Peer, alice: ApiDevice
) -> None:
    code = await alice.issue_code()
    live_codes = 1
    wrong = other_codes(code)
    for i, attacker in enumerate(attackers(GUESS_BUDGET // live_codes)):
        v1_error(await peer.start_handshake(alice.address, wrong[i], sender=attacker))
    assert peer.received(AUTH_CONFIRM) == []  # wrong codes are refused before any callback

    # The pooled budget is spent: the code is withdrawn, even the right one fails.
    v1_error(await peer.start_handshake(alice.address, code))
    assert peer.received(AUTH_CONFIRM) == []
    assert await contacts(alice) == []
    listed = (await alice.get("/v1/codes")).json()["codes"]
    assert [c["state"] for c in listed] == ["withdrawn"]


async def test_a_code_bound_to_the_peer_survives_attackers_and_works_for_the_peer(
    peer: V1Peer, alice: ApiDevice
) -> None:
    bound = await alice.issue_code(for_address=peer.address)
    open_code = await alice.issue_code()
    wrong = other_codes(bound, open_code)
    for i, attacker in enumerate(attackers(GUESS_BUDGET + 2)):
        v1_error(await peer.start_handshake(alice.address, wrong[i], sender=attacker))
    # Even an attacker who learned the bound code's digits cannot use it.
    v1_error(await peer.start_handshake(alice.address, bound, sender=f"900999*{PEER_DOMAIN}"))
    assert peer.received(AUTH_CONFIRM) == []

    answer = v1_answer(await peer.start_handshake(alice.address, bound))
    assert answer.get("success") is True, answer
    assert len(peer.received(AUTH_CONFIRM)) == 1
    assert [c["address"] for c in await contacts(alice)] == [peer.address]
    states = {c["for"]: c["state"] for c in (await alice.get("/v1/codes")).json()["codes"]}
    assert states == {peer.address: "used", None: "withdrawn"}


# --- 5: messages from a v1 peer -----------------------------------------------------------


@pytest.mark.parametrize("flavour", ["as-documented", "as-the-php-reference-sends"])
async def test_a_message_from_a_v1_peer_reaches_alice(
    peer: V1Peer, alice: ApiDevice, flavour: str
) -> None:
    link = await peer_connects(peer, alice)
    text = "Hello from v1 \u00e9\u20ac\U0001f600"
    key = bytes.fromhex(link.message_crypt_key)
    nonce = secrets.token_bytes(NONCE_BYTES)
    ciphertext = SecretBox(key).encrypt(text.encode("utf-8"), nonce).ciphertext
    package = b64url(nonce + ciphertext)
    salt = secrets.token_hex(16)
    timestamp = peer.now()
    body: dict[str, Any] = {
        "receiving_openmsg_address_id": alice.address.split("*")[0],
        "sending_openmsg_address_name": "Vee One",
        "ident_code": link.ident_code,
        "message_package": package,
        "message_hash": message_hash(package, link.auth_code, salt, timestamp),
        "message_salt": salt,
        "message_timestamp": timestamp,
        "openmsg_version": 1.0,
    }
    if flavour == "as-the-php-reference-sends":
        # send-message.php: an undefined name (null), the version as PHP encodes
        # it, and verified_account "for future versions".
        body["sending_openmsg_address_name"] = None
        body["openmsg_version"] = 1
        body["verified_account"] = {
            "verified_account_signature": None,
            "verified_account_name": None,
            "verified_account_expires": None,
        }
    peer.outbox.add((body["message_hash"], b64url(nonce)))

    answer = v1_answer(await deliver(peer, body))

    assert answer == ACCEPTED
    [confirm] = peer.received(MESSAGE_CONFIRM)
    assert confirm.method == "POST"
    assert confirm.headers["content-type"].startswith("application/json")
    assert confirm.json == {"message_hash": body["message_hash"], "message_nonce": b64url(nonce)}
    assert await received_from(alice, peer.address) == [text]
    [contact] = await contacts(alice)
    assert contact["display_name"] == "Vee One"


async def test_a_message_of_the_longest_v1_text_is_accepted(peer: V1Peer, alice: ApiDevice) -> None:
    link = await peer_connects(peer, alice)
    longest = "\U0001f600" * 2000  # the reference's VARCHAR(2000), 4 UTF-8 bytes each
    assert v1_answer(await deliver(peer, peer.message(link, longest))) == ACCEPTED
    assert await received_from(alice, peer.address) == [longest]


async def test_alice_cannot_send_to_a_peer_that_takes_no_replies(
    peer: V1Peer, alice: ApiDevice, alpha: FederatedNode
) -> None:
    link = await peer_connects(peer, alice, allow_replies=False)
    [contact] = await contacts(alice)
    assert contact["peer_accepts_messages"] is False
    refused = await alice.send(peer.address, "hello?")
    assert refused.status_code == 403, refused.text
    assert (await dump(alpha))["openmsg_outbox"] == []
    assert peer.received(MESSAGE_RECEIVE) == []
    # The peer may still write to alice.
    assert v1_answer(await deliver(peer, peer.message(link, "news"))) == ACCEPTED


async def test_a_name_sent_with_a_message_renames_the_contact(
    peer: V1Peer, alice: ApiDevice
) -> None:
    link = await peer_connects(peer, alice)
    body = peer.message(link, "I changed my name")
    body["sending_openmsg_address_name"] = "Vee Renamed"
    assert v1_answer(await deliver(peer, body)) == ACCEPTED
    [contact] = await contacts(alice)
    assert contact["display_name"] == "Vee Renamed"


# --- 6: every refusal of message-receive/ --------------------------------------------------


class Unchanged:
    """What alice and alpha's database show before a refused request."""

    def __init__(self, alpha: FederatedNode, alice: ApiDevice) -> None:
        self.alpha = alpha
        self.alice = alice

    async def __aenter__(self) -> Unchanged:
        self.sync = await self.alice.sync()
        self.rows = await dump(self.alpha)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if exc[0] is None:
            after = await dump(self.alpha)
            assert len(after["messages"]) == len(self.rows["messages"])
            assert after == self.rows
            assert await self.alice.sync() == self.sync


@pytest.mark.parametrize("case", ["unknown-ident", "ident-of-another-address"])
async def test_an_unknown_ident_code_is_refused(
    peer: V1Peer, alice: ApiDevice, alpha: FederatedNode, alpha_http: httpx.AsyncClient, case: str
) -> None:
    link = await peer_connects(peer, alice)
    body = peer.message(link, "who am I")
    if case == "unknown-ident":
        body["ident_code"] = secrets.token_hex(32)
    else:
        bob = await register(alpha_http, "Bob")
        body["receiving_openmsg_address_id"] = bob.address.split("*")[0]
    async with Unchanged(alpha, alice):
        v1_error(await deliver(peer, body), "SM_E001")
    assert peer.received(MESSAGE_CONFIRM) == []


async def test_a_message_to_an_address_that_takes_no_replies_is_refused(
    peer: V1Peer, alice: ApiDevice, alpha: FederatedNode
) -> None:
    link = await alice_connects(peer, alice, allow_replies=False)
    assert link.other_accepts_messages is False
    async with Unchanged(alpha, alice):
        v1_error(await deliver(peer, peer.message(link, "may I answer?")), "SM_E002")
    assert peer.received(MESSAGE_CONFIRM) == []


async def test_a_message_the_sending_domain_does_not_confirm_is_refused(
    peer: V1Peer, alice: ApiDevice, alpha: FederatedNode
) -> None:
    link = await peer_connects(peer, alice)
    body = peer.message(link, "forged", remember=False)  # not in v1peer.test's outbox
    async with Unchanged(alpha, alice):
        v1_error(await deliver(peer, body), "SM_E003")
    [confirm] = peer.received(MESSAGE_CONFIRM)
    assert confirm.json == {
        "message_hash": body["message_hash"],
        "message_nonce": nonce_of(body["message_package"]),
    }
    assert confirm.answer["response_code"] == "SM_E003"


async def test_a_message_with_a_wrong_hash_is_refused(
    peer: V1Peer, alice: ApiDevice, alpha: FederatedNode
) -> None:
    link = await peer_connects(peer, alice)
    body = peer.message(link, "bad hash", auth_code=secrets.token_hex(32))
    async with Unchanged(alpha, alice):
        v1_error(await deliver(peer, body), "SM_E004")
    assert peer.received(MESSAGE_CONFIRM) == []


@pytest.mark.parametrize("offset", [-61, 61], ids=["61s-old", "61s-ahead"])
async def test_a_message_outside_the_60_second_window_is_refused(
    peer: V1Peer, alice: ApiDevice, alpha: FederatedNode, offset: int
) -> None:
    link = await peer_connects(peer, alice)
    body = peer.message(link, "too late or too early", timestamp=peer.now() + offset)
    async with Unchanged(alpha, alice):
        v1_error(await deliver(peer, body), "SM_E005")
    assert peer.received(MESSAGE_CONFIRM) == []
    # One second closer is the edge of the window, and inside it.
    closer = offset - 1 if offset > 0 else offset + 1
    edge = peer.message(link, "just in time", timestamp=peer.now() + closer)
    assert v1_answer(await deliver(peer, edge)) == ACCEPTED
    assert await received_from(alice, peer.address) == ["just in time"]


async def test_a_tampered_package_with_a_matching_hash_is_refused(
    peer: V1Peer, alice: ApiDevice, alpha: FederatedNode
) -> None:
    link = await peer_connects(peer, alice)
    raw = bytearray(b64url_decode(seal("original", link.key, secrets.token_bytes(NONCE_BYTES))))
    raw[-1] ^= 0x01  # one bit of the ciphertext
    body = peer.message(link, "", package=b64url(bytes(raw)))  # hash recomputed over it
    async with Unchanged(alpha, alice):
        v1_error(await deliver(peer, body), "SM_E006")
    assert len(peer.received(MESSAGE_CONFIRM)) == 1  # confirmed, then failed to open


@pytest.mark.parametrize(
    "replay", ["the-same-request", "same-package-fresh-hash", "other-text-same-nonce"]
)
async def test_a_reused_nonce_is_refused_and_stored_once(
    peer: V1Peer, alice: ApiDevice, alpha: FederatedNode, replay: str
) -> None:
    link = await peer_connects(peer, alice)
    nonce = secrets.token_bytes(NONCE_BYTES)
    first = peer.message(link, "only once", nonce=nonce)
    assert v1_answer(await deliver(peer, first)) == ACCEPTED
    if replay == "the-same-request":
        again = first
    elif replay == "same-package-fresh-hash":
        alpha.clock.advance(timedelta(seconds=1))
        again = peer.message(link, "", package=first["message_package"])
        assert again["message_hash"] != first["message_hash"]
    else:
        again = peer.message(link, "something else", nonce=nonce)
        assert again["message_package"] != first["message_package"]
    async with Unchanged(alpha, alice):
        v1_error(await deliver(peer, again), "SM_E007")
    assert await received_from(alice, peer.address) == ["only once"]


async def test_maintenance_refuses_messages_for_now(
    peer: V1Peer, alice: ApiDevice, alpha: FederatedNode
) -> None:
    link = await peer_connects(peer, alice)
    await set_switches(alpha, alpha.node.services.admin.set_maintenance(True))
    async with Unchanged(alpha, alice):
        v1_error(await deliver(peer, peer.message(link, "during maintenance")), "SM_E008")
    assert peer.received(MESSAGE_CONFIRM) == []

    # Nor does a new handshake start.
    code = await alice.issue_code()
    v1_error(await peer.start_handshake(alice.address, code, sender=f"2000002*{PEER_DOMAIN}"))
    assert len(peer.received(AUTH_CONFIRM)) == 1  # the first handshake's only

    await set_switches(alpha, alpha.node.services.admin.set_maintenance(False))
    assert v1_answer(await deliver(peer, peer.message(link, "after maintenance"))) == ACCEPTED
    assert await received_from(alice, peer.address) == ["after maintenance"]


async def test_a_blocked_domain_is_refused_for_good(
    peer: V1Peer, alice: ApiDevice, alpha: FederatedNode
) -> None:
    link = await peer_connects(peer, alice)
    await set_switches(alpha, alpha.node.services.admin.block(Domain(PEER_DOMAIN)))
    code = await alice.issue_code()
    async with Unchanged(alpha, alice):
        v1_error(await deliver(peer, peer.message(link, "blocked")), "SM_E009")
        refused = await peer.start_handshake(alice.address, code, sender=f"2000002*{PEER_DOMAIN}")
        v1_error(refused, "SM_E009")
    assert peer.received(MESSAGE_CONFIRM) == []
    assert len(peer.received(AUTH_CONFIRM)) == 1  # the first handshake's only


MALFORMED: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "not-json": lambda body: {"content": b'{"receiving_openmsg_address_id": "1", '},
    "a-json-array": lambda body: {"json": [body]},
    "missing-ident_code": lambda body: {
        "json": {k: v for k, v in body.items() if k != "ident_code"}
    },
    "missing-message_hash": lambda body: {
        "json": {k: v for k, v in body.items() if k != "message_hash"}
    },
    "address-id-as-number": lambda body: {
        "json": {**body, "receiving_openmsg_address_id": int(body["receiving_openmsg_address_id"])}
    },
    "timestamp-as-float": lambda body: {
        "json": {**body, "message_timestamp": body["message_timestamp"] + 0.5}
    },
    "ident_code-as-number": lambda body: {"json": {**body, "ident_code": 12345}},
    "package-not-base64url": lambda body: {
        "json": {**body, "message_package": body["message_package"][:-4] + "+/+/"}
    },
}


@pytest.mark.parametrize("malformed", [*MALFORMED, "GET"])
async def test_a_malformed_request_is_refused_as_missing_data(
    peer: V1Peer, alice: ApiDevice, alpha: FederatedNode, malformed: str
) -> None:
    link = await peer_connects(peer, alice)
    body = peer.message(link, "well formed?")
    async with Unchanged(alpha, alice):
        if malformed == "GET":
            response = await peer.http.get(f"{alpha.url}{MESSAGE_RECEIVE}")
        else:
            response = await deliver_raw(peer, alpha, **MALFORMED[malformed](body))
        v1_error(response, "SM_E000")
    assert peer.received(MESSAGE_CONFIRM) == []


async def deliver_raw(peer: V1Peer, node: FederatedNode, **kw: Any) -> httpx.Response:
    if "content" in kw:
        kw.setdefault("headers", {"Content-Type": "application/json"})
    return await peer.http.post(f"{node.url}{MESSAGE_RECEIVE}", **kw)


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
async def test_a_body_over_the_size_limit_is_refused_unparsed(
    peer: V1Peer, alice: ApiDevice, alpha: FederatedNode, framing: str
) -> None:
    link = await peer_connects(peer, alice)
    # A valid message, padded with JSON whitespace: parsed, it would be accepted.
    text = json.dumps(peer.message(link, "padded"))
    payload = (text + " " * (MAX_OPENMSG_BODY_BYTES + 1 - len(text))).encode()
    assert len(payload) > MAX_OPENMSG_BODY_BYTES

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(payload), 4096):
            yield payload[start : start + 4096]

    content: Any = payload if framing == "content-length" else chunks()
    async with Unchanged(alpha, alice):
        response = await deliver_raw(peer, alpha, content=content)
        v1_error(response, "SM_E008")
    assert peer.received(MESSAGE_CONFIRM) == []


async def test_the_per_address_rate_limit_refuses_for_now(
    rate_limited_alpha: FederatedNode, v1peer: V1Peer, test_ca: CertificateAuthority
) -> None:
    node = rate_limited_alpha
    v1peer.clock = node.clock.now
    allowed = limits.parse(ADDRESS_RATE).amount
    async with client_of(node, test_ca) as http:
        alice = await register(http, "Alice")
        link = await peer_connects(v1peer, alice)
        codes: list[str] = []
        for i in range(allowed + 1):
            before = len(await received_from(alice, v1peer.address))
            response = await deliver(v1peer, v1peer.message(link, f"message {i}"))
            if v1_answer(response).get("success"):
                assert response.json() == ACCEPTED
                codes.append("SM_S888")
            else:
                codes.append(v1_error(response, "SM_E008")["response_code"])
                assert len(await received_from(alice, v1peer.address)) == before
        accepted = codes.count("SM_S888")
        assert codes == ["SM_S888"] * accepted + ["SM_E008"] * (len(codes) - accepted), codes
        assert 0 < accepted < len(codes), codes
        assert await received_from(alice, v1peer.address) == [
            f"message {i}" for i in range(accepted)
        ]
        # Refused before the sending domain was asked to confirm.
        assert len(v1peer.received(MESSAGE_CONFIRM)) == accepted


# --- 7: what our node sends --------------------------------------------------------------


@pytest.mark.parametrize("handshake", ["peer-started", "alice-started"])
async def test_alice_s_message_reaches_the_peer_in_v1_form(
    peer: V1Peer, alice: ApiDevice, alpha: FederatedNode, handshake: str
) -> None:
    if handshake == "peer-started":
        link = await peer_connects(peer, alice)
    else:
        link = await alice_connects(peer, alice, allow_replies=True)
    text = "Hi from alpha \u00e9\u20ac\U0001f600"
    sent = await alice.send(peer.address, text)
    assert sent.status_code == 201, sent.text
    message_id = sent.json()["id"]

    [request] = await peer.wait_for(MESSAGE_RECEIVE)
    assert request.method == "POST"
    assert request.headers["content-type"].startswith("application/json")
    body = request.json
    assert isinstance(body, dict)
    assert V1_MESSAGE_FIELDS <= set(body) <= V1_MESSAGE_FIELDS | OPTIONAL_MESSAGE_FIELDS, body
    assert body["receiving_openmsg_address_id"] == peer.number
    assert body["ident_code"] == link.ident_code
    opened, nonce = open_package(body["message_package"], link.key)
    assert opened == text
    assert len(nonce) == NONCE_BYTES
    assert HEX32.fullmatch(body["message_salt"])
    timestamp = body["message_timestamp"]
    assert type(timestamp) is int
    assert abs(timestamp - int(alpha.clock.now().timestamp())) <= 60
    assert body["message_hash"] == message_hash(
        body["message_package"], link.auth_code, body["message_salt"], timestamp
    )
    assert body["openmsg_version"] == 1 and type(body["openmsg_version"]) is not bool
    assert body.get("sending_openmsg_address_name") in (None, "Alice")

    # The peer, as a v1 receiver, asked alpha to confirm and was told yes.
    [confirm] = [c for c in peer.calls if c.url.endswith(MESSAGE_CONFIRM)]
    assert confirm.url == f"{alpha.url}{MESSAGE_CONFIRM}"
    assert (confirm.status, confirm.answer) == (200, {"success": True})
    assert request.answer == ACCEPTED
    await wait_status(alice, message_id, "delivered")
    assert [(m.sender, m.text) for m in peer.inbox] == [(alice.address, text)]


@pytest.mark.parametrize("allow_replies", [True, False])
async def test_alice_connecting_out_sends_a_v1_auth_request(
    peer: V1Peer, alice: ApiDevice, alpha: FederatedNode, allow_replies: bool
) -> None:
    code = peer.issue_code()
    response = await alice.post(
        "/v1/connections",
        {"address": peer.address, "pass_code": code, "allow_replies": allow_replies},
    )
    assert response.status_code == 201, response.text
    assert response.json()["display_name"] == peer.name

    [request] = peer.received(AUTH)
    assert request.method == "POST"
    assert request.headers["content-type"].startswith("application/json")
    assert set(request.json) == V1_AUTH_FIELDS
    assert request.json == {
        "receiving_openmsg_address_id": peer.number,
        "pass_code": code,
        "sending_openmsg_address": alice.address,
        "sending_openmsg_address_name": "Alice",
        "sending_allow_replies": allow_replies,
        "openmsg_version": 1,
    }
    assert type(request.json["sending_allow_replies"]) is bool
    assert type(request.json["openmsg_version"]) in (int, float)

    # The peer's callback found the handshake alpha noted ...
    [confirm] = [c for c in peer.calls if c.url.endswith(AUTH_CONFIRM)]
    proof = passcode_hash(code, alice.address, peer.address)
    assert confirm.body == {"receiving_openmsg_address": peer.address, "passcode_hash": proof}
    assert (confirm.status, confirm.answer) == (200, {"success": True})
    # ... which is gone now that the handshake is over.
    again = await peer.post("alpha.test", "auth-confirm", json=confirm.body)
    assert v1_error(again)["response_code"] == "SM_E000"

    link = peer.link(peer.address, alice.address)
    assert link.other_accepts_messages is allow_replies
    [contact] = await contacts(alice)
    assert (contact["address"], contact["accepts_messages"]) == (peer.address, allow_replies)


async def test_message_confirm_vouches_only_for_messages_being_sent(
    peer: V1Peer, alice: ApiDevice
) -> None:
    await peer_connects(peer, alice)
    nonce = b64url(secrets.token_bytes(NONCE_BYTES))
    answer = await peer.post(
        "alpha.test",
        "message-confirm",
        json={"message_hash": secrets.token_hex(32), "message_nonce": nonce},
    )
    v1_error(answer, "SM_E003")


# --- 8, 9: retries and giving up -----------------------------------------------------------


@pytest.mark.parametrize("fault", ["drop-after-store", "500-after-store", "SM_E008"])
async def test_a_retry_resends_the_same_package_with_a_fresh_hash(
    peer: V1Peer, alice: ApiDevice, alpha: FederatedNode, fault: Any
) -> None:
    await peer_connects(peer, alice)
    peer.receive_faults.append(fault)
    sent = await alice.send(peer.address, "Are you there?")
    assert sent.status_code == 201, sent.text
    message_id = sent.json()["id"]

    [first] = await peer.wait_for(MESSAGE_RECEIVE)
    await wait_attempt_settled(alpha, message_id, attempts=1)
    assert await status_of(alice, message_id) == "accepted"

    alpha.clock.advance(timedelta(seconds=90))
    await kick(alpha)
    first, second = await peer.wait_for(MESSAGE_RECEIVE, 2)

    assert second.json["message_package"] == first.json["message_package"]
    assert nonce_of(second.json["message_package"]) == nonce_of(first.json["message_package"])
    assert second.json["message_salt"] != first.json["message_salt"]
    assert second.json["message_timestamp"] == int(alpha.clock.now().timestamp())
    assert second.json["message_timestamp"] != first.json["message_timestamp"]
    assert second.json["message_hash"] != first.json["message_hash"]
    # A receiver that kept the first copy says so; one that refused it takes it now.
    if fault == "SM_E008":
        assert second.answer == ACCEPTED
    else:
        assert second.answer["response_code"] == "SM_E007"
    await wait_status(alice, message_id, "delivered")
    assert [m.text for m in peer.inbox] == ["Are you there?"]


async def test_a_permanent_refusal_fails_the_message(
    peer: V1Peer, alice: ApiDevice, alpha: FederatedNode
) -> None:
    await peer_connects(peer, alice)
    peer.receive_faults.append("SM_E001")
    sent = await alice.send(peer.address, "Anyone?")
    message_id = sent.json()["id"]
    await peer.wait_for(MESSAGE_RECEIVE)
    await wait_status(alice, message_id, "failed")
    assert (await dump(alpha))["openmsg_outbox"] == []
    assert len(peer.received(MESSAGE_RECEIVE)) == 1
    assert peer.inbox == []


async def test_an_unreachable_peer_fails_the_message_at_the_give_up_time(
    quickly_giving_up_alpha: FederatedNode, v1peer: V1Peer, test_ca: CertificateAuthority
) -> None:
    node = quickly_giving_up_alpha
    v1peer.clock = node.clock.now
    async with client_of(node, test_ca) as http:
        alice = await register(http, "Alice")
        await peer_connects(v1peer, alice)
        await v1peer.stop()
        sent = await alice.send(v1peer.address, "Hello?")
        assert sent.status_code == 201, sent.text
        message_id = sent.json()["id"]
        await wait_attempt_settled(node, message_id, attempts=1)
        assert await status_of(alice, message_id) == "accepted"

        node.clock.advance(timedelta(seconds=GIVE_UP_SECONDS + 1))
        await kick(node)
        await wait_status(alice, message_id, "failed")
        assert (await dump(node))["openmsg_outbox"] == []
