"""A stand-in Openmsg v1 node for interoperability tests.

``V1Peer`` is a real HTTPS server on v1peer.test:443 (127.0.0.4 inside
scripts/netns-run's namespace) that behaves like a node running the reference
PHP implementation, ``Openmsg-io/version_1.0``: it serves the four
``/openmsg/`` endpoints, keeps the tables a v1 node keeps (pass codes, pending
handshakes, connections, outbox, inbox), calls the other side back where v1
says so, and records every request it receives and every callback it makes.

Every wire value is built here by hand from the v1 rules (plain dicts,
hashlib, PyNaCl's SecretBox, base64), never with openmessenger's protocol
module, so the tests check our node against v1 and not against itself.
Where the reference has gaps, the peer does what the v1 guide says: it
refuses a reused nonce (SM_E007).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import secrets
import ssl
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import httpx
from aiohttp import web
from nacl.exceptions import CryptoError
from nacl.secret import SecretBox

from tests.support.federation import netns_hosts
from tests.support.tls import CertificateAuthority

PEER_DOMAIN = "v1peer.test"
NONCE_BYTES = 24  # SODIUM_CRYPTO_SECRETBOX_NONCEBYTES
HANDSHAKE_SECONDS = 60  # openmsg_handshakes rows live this long (auth-confirm/index.php)
MESSAGE_SECONDS = 60  # $message_hash_expiry_seconds (message-receive/index.php)
PASS_CODE_SECONDS = 3600  # $oneHour (auth/index.php)

# The reference's table of answer codes (setup/send-message.php).
ERROR_CODES = {
    "SM_E000": "message_data_missing",
    "SM_E001": "ident_code_invalid",
    "SM_E002": "message_rejected_byuser",
    "SM_E003": "message_unknown",
    "SM_E004": "message_hash_invalid",
    "SM_E005": "message_expired",
    "SM_E006": "message_decryption_error",
    "SM_E007": "message_nonce_error",
    "SM_E008": "message_rejected_temp",
    "SM_E009": "message_rejected_perm",
}

AuthConfirmMode = Literal["check", "404"]
MessageConfirmMode = Literal["check", "refuse"]
ReceiveFault = Literal["drop-after-store", "500-after-store", "SM_E001", "SM_E008"]


# --- v1 wire values, by hand -------------------------------------------------------


def b64url(data: bytes) -> str:
    """sodium_bin2base64(..., SODIUM_BASE64_VARIANT_URLSAFE_NO_PADDING)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sha256_hex(text: str) -> str:
    """PHP's hash("sha256", ...)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def passcode_hash(pass_code: str, initiator: str, receiver: str) -> str:
    return sha256_hex(pass_code + initiator + receiver)


def message_hash(package: str, auth_code: str, salt: str, timestamp: int) -> str:
    return sha256_hex(package + auth_code + salt + str(timestamp))


def seal(text: str, key: bytes, nonce: bytes) -> str:
    """message_package: base64url_nopad(nonce || sodium_crypto_secretbox(text, nonce, key))."""
    ciphertext = SecretBox(key).encrypt(text.encode("utf-8"), nonce).ciphertext
    return b64url(nonce + ciphertext)


def open_package(package: str, key: bytes) -> tuple[str, bytes]:
    """(text, nonce); CryptoError when the key is wrong or the package altered."""
    raw = b64url_decode(package)
    nonce, ciphertext = raw[:NONCE_BYTES], raw[NONCE_BYTES:]
    return SecretBox(key).decrypt(ciphertext, nonce).decode("utf-8"), nonce


def nonce_of(package: str) -> str:
    """message_nonce as the receiver sends it to message-confirm/."""
    return b64url(b64url_decode(package)[:NONCE_BYTES])


def domain_of(address: str) -> str:
    return address.split("*", 1)[1]


def number_of(address: str) -> str:
    return address.split("*", 1)[0]


def _php_truthy(value: object) -> bool:
    return value not in (None, False, 0, "", "0", [], {})


# --- what the peer keeps and records --------------------------------------------------


@dataclass
class Link:
    """One row of the reference's ``openmsg_user_connections``."""

    self_address: str
    self_name: str
    other_address: str
    other_name: str
    other_accepts_messages: bool
    auth_code: str
    ident_code: str
    message_crypt_key: str  # 64 hex
    nonces: set[str] = field(default_factory=set)  # received on this link

    @property
    def key(self) -> bytes:
        return bytes.fromhex(self.message_crypt_key)


@dataclass(frozen=True)
class Inbound:
    """One row of ``openmsg_messages_inbox``."""

    self_address: str
    sender: str
    text: str
    message_hash: str
    nonce: str


@dataclass
class Recorded:
    """A request the peer received, and what it answered (None: no answer)."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    json: Any
    answer_status: int | None = None
    answer: Any = None


@dataclass(frozen=True)
class Call:
    """A callback the peer made (auth-confirm/ or message-confirm/ on the other node)."""

    url: str
    body: dict[str, Any]
    status: int | None  # None: nothing answered
    answer: Any


class V1Peer:
    """A v1 node on v1peer.test whose users are ``users`` (number -> name).

    ``clock`` is the peer's ``time()``; point it at the node under test's
    clock so that both sides agree on "now" when a test moves time.
    """

    def __init__(
        self,
        ca: CertificateAuthority,
        *,
        users: Mapping[str, str] | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.ca = ca
        self.users = dict(users or {"1000001": "Vee One", "2000002": "Vee Two"})
        self.clock: Callable[[], datetime] = clock or (lambda: datetime.now(UTC))
        self.host = netns_hosts()[PEER_DOMAIN]
        # Behaviour, set per test.
        self.auth_confirm_mode: AuthConfirmMode = "check"
        self.message_confirm_mode: MessageConfirmMode = "check"
        self.receive_faults: deque[ReceiveFault] = deque()
        # The reference's tables.
        self.pass_codes: dict[tuple[str, str], int] = {}  # (self address, code) -> issued at
        self.handshakes: dict[tuple[str, str], int] = {}  # (receiver, passcode_hash) -> at
        self.links: dict[tuple[str, str], Link] = {}  # (self, other) -> link
        self.outbox: set[tuple[str, str]] = set()  # (message_hash, message_nonce)
        self.inbox: list[Inbound] = []
        self.handshake_errors: list[str] = []  # what initiate-handshake.php would print
        # What happened.
        self.requests: list[Recorded] = []
        self.calls: list[Call] = []
        self._changed = asyncio.Condition()
        self._runner: web.AppRunner | None = None
        self.http = httpx.AsyncClient(verify=ca.client_context(), timeout=15)

    # --- addresses and time ---------------------------------------------------------

    @property
    def number(self) -> str:
        return next(iter(self.users))

    @property
    def address(self) -> str:
        """The peer's first user."""
        return f"{self.number}*{PEER_DOMAIN}"

    @property
    def name(self) -> str:
        return self.users[self.number]

    def now(self) -> int:
        return int(self.clock().timestamp())

    # --- the server -------------------------------------------------------------------

    async def start(self) -> V1Peer:
        assert self._runner is None, "already serving"
        app = web.Application()
        app.router.add_route("*", "/openmsg/auth/", self._auth)
        app.router.add_route("*", "/openmsg/auth-confirm/", self._auth_confirm)
        app.router.add_route("*", "/openmsg/message-receive/", self._message_receive)
        app.router.add_route("*", "/openmsg/message-confirm/", self._message_confirm)
        files = self.ca.server_files(PEER_DOMAIN, self.host)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(files.cert, files.key)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=2)
        await runner.setup()
        await web.TCPSite(runner, self.host, 443, ssl_context=context).start()
        self._runner = runner
        return self

    async def stop(self) -> None:
        """Stop serving: from now on v1peer.test refuses connections."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def close(self) -> None:
        await self.stop()
        await self.http.aclose()

    # --- what a test reads --------------------------------------------------------------

    def received(self, path: str) -> list[Recorded]:
        return [r for r in self.requests if r.path == path]

    async def wait_for(self, path: str, count: int = 1, timeout: float = 15) -> list[Recorded]:
        """The first ``count`` requests to ``path`` once they have been answered."""

        def arrived() -> bool:
            done = [r for r in self.received(path) if r.answer_status is not None]
            return len(done) >= count

        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(arrived), timeout)
        return self.received(path)[:count]

    def link(self, self_address: str, other_address: str) -> Link:
        return self.links[(self_address, other_address)]

    def issue_code(self, number: str | None = None) -> str:
        """A pass code of one of the peer's users (setup/request-pass-code.php)."""
        address = f"{number or self.number}*{PEER_DOMAIN}"
        code = f"{secrets.randbelow(10**6):06d}"
        self.pass_codes[(address, code)] = self.now()
        return code

    # --- the peer as a client (initiate-handshake.php, send-message.php) ------------------

    def auth_request(
        self,
        receiver: str,
        pass_code: str,
        *,
        sender: str | None = None,
        name: str | None = None,
        allow_replies: bool = True,
    ) -> dict[str, Any]:
        sender = sender or self.address
        return {
            "receiving_openmsg_address_id": number_of(receiver),
            "pass_code": pass_code,
            "sending_openmsg_address": sender,
            "sending_openmsg_address_name": name or self.users.get(number_of(sender), "Guest"),
            "sending_allow_replies": allow_replies,
            "openmsg_version": 1.0,
        }

    async def start_handshake(
        self,
        receiver: str,
        pass_code: str,
        *,
        sender: str | None = None,
        name: str | None = None,
        allow_replies: bool = True,
        note_pending: bool = True,
    ) -> httpx.Response:
        body = self.auth_request(
            receiver, pass_code, sender=sender, name=name, allow_replies=allow_replies
        )
        return await self.post_auth(receiver, body, note_pending=note_pending)

    async def post_auth(
        self, receiver: str, body: dict[str, Any], *, note_pending: bool = True
    ) -> httpx.Response:
        """POST ``body`` to the receiver's auth/, having noted the pending handshake
        that its auth-confirm/ callback will ask about (``note_pending=False``: an
        impostor that claims the sender's address but is not its node)."""
        sender = str(body["sending_openmsg_address"])
        if note_pending:
            proof = passcode_hash(str(body["pass_code"]), sender, receiver)
            self.handshakes[(receiver, proof)] = self.now()
        response = await self.http.post(f"https://{domain_of(receiver)}/openmsg/auth/", json=body)
        answer = _json_or_none(response.content)
        if response.status_code == 200 and isinstance(answer, dict) and answer.get("success"):
            known = self.links.get((sender, receiver))
            if known is not None and known.ident_code != answer.get("ident_code"):
                # initiate-handshake.php: "Cant replace ident_code"; the old
                # connection stays as it was.
                self.handshake_errors.append("Cant replace ident_code")
                return response
            self.links[(sender, receiver)] = Link(
                self_address=sender,
                self_name=str(body["sending_openmsg_address_name"]),
                other_address=receiver,
                other_name=str(answer["receiving_openmsg_address_name"]),
                other_accepts_messages=True,
                auth_code=str(answer["auth_code"]),
                ident_code=str(answer["ident_code"]),
                message_crypt_key=str(answer["message_crypt_key"]),
            )
        return response

    def message(
        self,
        link: Link,
        text: str,
        *,
        nonce: bytes | None = None,
        package: str | None = None,
        salt: str | None = None,
        timestamp: int | None = None,
        auth_code: str | None = None,
        remember: bool = True,
    ) -> dict[str, Any]:
        """A message-receive/ body; ``remember`` puts it in the outbox, so that
        this peer's message-confirm/ vouches for it."""
        if package is None:
            package = seal(text, link.key, nonce or secrets.token_bytes(NONCE_BYTES))
        salt = salt or secrets.token_hex(16)
        timestamp = self.now() if timestamp is None else timestamp
        digest = message_hash(package, auth_code or link.auth_code, salt, timestamp)
        if remember:
            self.outbox.add((digest, nonce_of(package)))
        return {
            "receiving_openmsg_address_id": number_of(link.other_address),
            "sending_openmsg_address_name": link.self_name,
            "ident_code": link.ident_code,
            "message_package": package,
            "message_hash": digest,
            "message_salt": salt,
            "message_timestamp": timestamp,
            "openmsg_version": 1.0,
        }

    async def post(self, domain: str, endpoint: str, **kw: Any) -> httpx.Response:
        return await self.http.post(f"https://{domain}/openmsg/{endpoint}/", **kw)

    # --- the peer as a server -------------------------------------------------------------

    async def _record(self, request: web.Request) -> Recorded:
        body = await request.read()
        recorded = Recorded(
            method=request.method,
            path=request.path,
            headers={k.lower(): v for k, v in request.headers.items()},
            body=body,
            json=_json_or_none(body),
        )
        self.requests.append(recorded)
        return recorded

    async def _answered(self, recorded: Recorded, answer: Any, status: int = 200) -> None:
        recorded.answer_status = status
        recorded.answer = answer
        async with self._changed:
            self._changed.notify_all()

    async def _reply(self, recorded: Recorded, answer: dict[str, Any]) -> web.Response:
        await self._answered(recorded, answer)
        return web.json_response(answer)

    async def _callback(self, url: str, body: dict[str, Any]) -> Call:
        try:
            response = await self.http.post(url, json=body)
        except httpx.HTTPError:
            call = Call(url, body, None, None)
        else:
            call = Call(url, body, response.status_code, _json_or_none(response.content))
        self.calls.append(call)
        return call

    async def _auth_confirm(self, request: web.Request) -> web.StreamResponse:
        """auth-confirm/index.php: vouch for a handshake this node started."""
        recorded = await self._record(request)
        if self.auth_confirm_mode == "404":
            await self._answered(recorded, None, 404)
            return web.Response(status=404, text="Not Found")
        data = recorded.json if isinstance(recorded.json, dict) else {}
        key = (str(data.get("receiving_openmsg_address")), str(data.get("passcode_hash")))
        started = self.handshakes.get(key)
        if started is None:
            answer = {"error": True, "error_message": "unknown pending authorization"}
        elif started < self.now() - HANDSHAKE_SECONDS:
            answer = {"error": True, "error_message": "expired handshake, over 60 seconds old"}
        else:
            del self.handshakes[key]
            answer = {"success": True}
        return await self._reply(recorded, answer)

    async def _message_confirm(self, request: web.Request) -> web.StreamResponse:
        """message-confirm/index.php: vouch for a message in this node's outbox."""
        recorded = await self._record(request)
        data = recorded.json if isinstance(recorded.json, dict) else {}
        digest, nonce = data.get("message_hash"), data.get("message_nonce")
        if not digest or not nonce:
            return await self._reply(recorded, _error("SM_E000"))
        if self.message_confirm_mode == "refuse" or (digest, nonce) not in self.outbox:
            return await self._reply(recorded, _error("SM_E003"))
        return await self._reply(recorded, {"success": True})

    async def _auth(self, request: web.Request) -> web.StreamResponse:
        """auth/index.php: a node asks for a connection with one of our users."""
        recorded = await self._record(request)
        data = recorded.json if isinstance(recorded.json, dict) else {}
        number = str(data.get("receiving_openmsg_address_id") or "")
        pass_code = str(data.get("pass_code") or "")
        other = str(data.get("sending_openmsg_address") or "")
        other_name = str(data.get("sending_openmsg_address_name") or "")
        if not (number and pass_code and other and other_name):
            return await self._reply(recorded, {"error": True, "error_message": "blank"})
        self_address = f"{number}*{PEER_DOMAIN}"
        issued = self.pass_codes.get((self_address, pass_code))
        if issued is None or number not in self.users:
            return await self._reply(
                recorded, {"error": True, "error_message": "pass code not valid"}
            )
        if issued < self.now() - PASS_CODE_SECONDS:
            return await self._reply(
                recorded, {"error": True, "error_message": "expired pass code, over 1 hour old"}
            )
        del self.pass_codes[(self_address, pass_code)]
        if "*" not in other or not number_of(other).isdigit():
            return await self._reply(recorded, {"error": True, "error_message": "bad address"})
        call = await self._callback(
            f"https://{domain_of(other)}/openmsg/auth-confirm/",
            {
                "receiving_openmsg_address": self_address,
                "passcode_hash": passcode_hash(pass_code, other, self_address),
            },
        )
        answer = call.answer if isinstance(call.answer, dict) else {}
        if call.status != 200 or _php_truthy(answer.get("error")) or not answer.get("success"):
            return await self._reply(
                recorded, {"error": True, "error_message": "Error: Unsuccessful from /auth/"}
            )
        known = self.links.get((self_address, other))
        link = Link(
            self_address=self_address,
            self_name=self.users[number],
            other_address=other,
            other_name=other_name,
            other_accepts_messages=_php_truthy(data.get("sending_allow_replies")),
            auth_code=secrets.token_hex(32),
            # "Dont overwrite the ident_code if one already exists."
            ident_code=known.ident_code if known is not None else secrets.token_hex(32),
            message_crypt_key=secrets.token_hex(32),
        )
        self.links[(self_address, other)] = link
        return await self._reply(
            recorded,
            {
                "success": True,
                "auth_code": link.auth_code,
                "ident_code": link.ident_code,
                "message_crypt_key": link.message_crypt_key,
                "receiving_openmsg_address_name": link.self_name,
            },
        )

    async def _message_receive(self, request: web.Request) -> web.StreamResponse:
        """message-receive/index.php, plus the guide's nonce rule (SM_E007)."""
        recorded = await self._record(request)
        fault = self.receive_faults.popleft() if self.receive_faults else None
        if fault is not None and fault.startswith("SM_E"):
            return await self._reply(recorded, _error(fault))
        data = recorded.json if isinstance(recorded.json, dict) else {}
        fields = (
            "receiving_openmsg_address_id",
            "ident_code",
            "message_package",
            "message_hash",
            "message_salt",
            "message_timestamp",
        )
        if not all(data.get(name) for name in fields):
            return await self._reply(recorded, _error("SM_E000"))
        self_address = f"{data['receiving_openmsg_address_id']}*{PEER_DOMAIN}"
        link = next(
            (
                candidate
                for candidate in self.links.values()
                if candidate.self_address == self_address
                and candidate.ident_code == data["ident_code"]
            ),
            None,
        )
        if link is None:
            return await self._reply(recorded, _error("SM_E001"))
        package = str(data["message_package"])
        expected = message_hash(
            package, link.auth_code, str(data["message_salt"]), data["message_timestamp"]
        )
        if expected != data["message_hash"]:
            return await self._reply(recorded, _error("SM_E004"))
        if int(data["message_timestamp"]) + MESSAGE_SECONDS < self.now():
            return await self._reply(recorded, _error("SM_E005"))
        nonce = nonce_of(package)
        call = await self._callback(
            f"https://{domain_of(link.other_address)}/openmsg/message-confirm/",
            {"message_hash": data["message_hash"], "message_nonce": nonce},
        )
        answer = call.answer if isinstance(call.answer, dict) else {}
        if call.status == 404:
            return await self._reply(recorded, _error("SM_E003"))
        if call.status != 200:
            return await self._reply(recorded, _error("SM_E000"))
        if _php_truthy(answer.get("error")):
            return await self._reply(recorded, _error(str(answer.get("response_code"))))
        if not answer.get("success"):
            return await self._reply(recorded, _error("SM_E000"))
        try:
            text, _ = open_package(package, link.key)
        except (CryptoError, UnicodeDecodeError):
            return await self._reply(recorded, _error("SM_E006"))
        if nonce in link.nonces:
            return await self._reply(recorded, _error("SM_E007"))
        link.nonces.add(nonce)
        self.inbox.append(
            Inbound(self_address, link.other_address, text, str(data["message_hash"]), nonce)
        )
        if fault == "drop-after-store":  # stored, but the answer never leaves
            await self._answered(recorded, None, 0)
            assert request.transport is not None
            request.transport.close()
            return web.Response()
        if fault == "500-after-store":  # a fatal error after the INSERT
            await self._answered(recorded, None, 500)
            return web.Response(status=500, text="Internal Server Error")
        return await self._reply(recorded, {"success": True, "response_code": "SM_S888"})


def _error(code: str) -> dict[str, Any]:
    return {
        "error": True,
        "response_code": code,
        "error_code": ERROR_CODES.get(code, "message_data_missing"),
        "error_message": f"{code} from {PEER_DOMAIN}",
    }


def _json_or_none(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return None
