"""AiohttpTransport against real HTTPS servers on loopback, directly and through
a real SOCKS5 proxy (pproxy). The servers count TCP connections at accept time,
before TLS, so "no connection at all" is observable, not inferred."""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import orjson
import pytest
import trustme
from aiohttp import web

from openmessenger.federation.client import AiohttpTransport
from openmessenger.services.ports import PeerUnreachable
from tests.support.proxy import Socks, running_socks_proxy

AGENT = "openmessenger-test/1"
# Generous for loopback, small enough that a wrong path fails the test quickly.
TIMEOUT = 5.0


# --- The peer: a tiny HTTPS app that records what reached it ------------------


@dataclass(frozen=True)
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    connection: object  # the server-side transport; identity = one TCP connection


@dataclass
class Peer:
    port: int = 0
    accepted: int = 0  # TCP connections accepted (counted before the TLS handshake)
    requests: list[Seen] = field(default_factory=list)
    release: asyncio.Event = field(default_factory=asyncio.Event)

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"https://{host}:{self.port}{path}"

    def paths(self) -> list[str]:
        return [seen.path for seen in self.requests]


def _peer_app(peer: Peer) -> web.Application:
    @web.middleware
    async def record(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        peer.requests.append(
            Seen(
                method=request.method,
                path=request.path,
                headers=dict(request.headers),
                body=await request.read(),
                connection=request.transport,
            )
        )
        return await handler(request)

    async def echo(request: web.Request) -> web.Response:
        raw = await request.read()
        return web.json_response(
            {
                "method": request.method,
                "json": orjson.loads(raw) if raw else None,
                "headers": dict(request.headers),
            }
        )

    async def redirect(request: web.Request) -> web.Response:
        raise web.HTTPFound("/target")

    async def target(request: web.Request) -> web.Response:
        return web.json_response({"target": True})

    async def text(request: web.Request) -> web.Response:
        return web.Response(text="<html>not JSON</html>", content_type="text/html")

    async def blob(request: web.Request) -> web.StreamResponse:
        # A JSON string of exactly `size` bytes, with or without Content-Length.
        size = int(request.query["size"])
        payload = b'"' + b"a" * (size - 2) + b'"'
        if request.query.get("chunked") != "1":
            return web.Response(body=payload, content_type="application/json")
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        for start in range(0, size, 1000):
            await response.write(payload[start : start + 1000])
        await response.write_eof()
        return response

    async def hang(request: web.Request) -> web.Response:
        await peer.release.wait()  # set at teardown, so the server can stop
        return web.json_response({})

    app = web.Application(middlewares=[record])
    app.router.add_route("*", "/echo", echo)
    app.router.add_route("*", "/redirect", redirect)
    app.router.add_route("*", "/target", target)
    app.router.add_get("/text", text)
    app.router.add_get("/blob", blob)
    app.router.add_get("/hang", hang)
    return app


@asynccontextmanager
async def serve_peer(ca: trustme.CA, *names: str) -> AsyncIterator[Peer]:
    """Serve the peer app over TLS on a free loopback port, certified for ``names``."""
    peer = Peer()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(*names).configure_cert(server_ctx)
    runner = web.AppRunner(_peer_app(peer), access_log=None)
    await runner.setup()
    handler_factory = runner.server
    assert handler_factory is not None

    def accept() -> asyncio.Protocol:
        # asyncio calls the factory per accepted socket, before the TLS handshake.
        peer.accepted += 1
        return handler_factory()

    server = await asyncio.get_running_loop().create_server(accept, "127.0.0.1", 0, ssl=server_ctx)
    peer.port = server.sockets[0].getsockname()[1]
    try:
        yield peer
    finally:
        peer.release.set()
        server.close()
        await runner.cleanup()
        await server.wait_closed()


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def ca_file(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ca") / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return path


@pytest.fixture(autouse=True)
def _no_ambient_trust(monkeypatch: pytest.MonkeyPatch) -> None:
    # The test CA must be trusted only where a test says so.
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)


@pytest.fixture
async def peer(ca: trustme.CA) -> AsyncIterator[Peer]:
    async with serve_peer(ca, "localhost", "127.0.0.1") as running:
        yield running


MakeTransport = Callable[..., AiohttpTransport]


@pytest.fixture
async def make_transport() -> AsyncIterator[MakeTransport]:
    made: list[AiohttpTransport] = []

    def make(**overrides: object) -> AiohttpTransport:
        options: dict[str, object] = {
            "ca_file": None,
            "proxy": None,
            "timeout_seconds": TIMEOUT,
            "user_agent": AGENT,
        }
        options.update(overrides)
        transport = AiohttpTransport(**options)  # type: ignore[arg-type]
        made.append(transport)
        return transport

    yield make
    for transport in made:
        await transport.close()


def free_port() -> int:
    """A loopback port with nothing listening on it (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# --- Direct HTTPS -------------------------------------------------------------


async def test_post_reaches_peer_and_returns_its_json(
    peer: Peer, ca_file: Path, make_transport: MakeTransport
) -> None:
    transport = make_transport(ca_file=ca_file)
    body = {"pass_code": "123456", "nested": {"n": [1, 2.5, None, True]}, "text": "héllo"}

    reply = await transport.post_json(peer.url("/echo"), body, headers={"X-Extra": "yes"})

    assert reply.status == 200
    assert isinstance(reply.body, dict)
    assert reply.body["method"] == "POST"
    assert reply.body["json"] == body
    [seen] = peer.requests
    assert orjson.loads(seen.body) == body
    assert seen.body == orjson.dumps(body)  # the exact bytes we encoded
    assert seen.headers["Content-Type"] == "application/json"
    assert seen.headers["User-Agent"] == AGENT
    assert seen.headers["X-Extra"] == "yes"


async def test_content_type_cannot_be_overridden_by_caller(
    peer: Peer, ca_file: Path, make_transport: MakeTransport
) -> None:
    transport = make_transport(ca_file=ca_file)
    await transport.post_json(peer.url("/echo"), {}, headers={"content-type": "text/plain"})
    [seen] = peer.requests
    assert seen.headers["Content-Type"] == "application/json"


async def test_get_json_by_name_resolved_locally(
    peer: Peer, ca_file: Path, make_transport: MakeTransport
) -> None:
    transport = make_transport(ca_file=ca_file)
    reply = await transport.get_json(peer.url("/echo", host="localhost"))
    assert reply.status == 200
    assert isinstance(reply.body, dict)
    assert reply.body["method"] == "GET"
    assert peer.paths() == ["/echo"]


async def test_untrusted_certificate_is_refused_before_any_request(
    peer: Peer, make_transport: MakeTransport
) -> None:
    transport = make_transport()  # system store only; the test CA is not in it
    with pytest.raises(PeerUnreachable, match=r"^TLS") as caught:
        await transport.post_json(peer.url("/echo"), {"a": 1})
    assert type(caught.value) is PeerUnreachable
    assert peer.accepted >= 1  # it did connect ...
    assert peer.requests == []  # ... but nothing was handled


async def test_ssl_cert_file_is_honoured(
    peer: Peer, ca_file: Path, make_transport: MakeTransport, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(ca_file))
    transport = make_transport()  # read at construction, so made after setenv
    reply = await transport.post_json(peer.url("/echo", host="localhost"), {"a": 1})
    assert reply.status == 200


async def test_hostname_is_verified(
    ca: trustme.CA, ca_file: Path, make_transport: MakeTransport
) -> None:
    async with serve_peer(ca, "other.example") as wrong_name:
        transport = make_transport(ca_file=ca_file)
        with pytest.raises(PeerUnreachable, match=r"^TLS"):
            await transport.get_json(wrong_name.url("/echo"))
        assert wrong_name.requests == []


async def test_redirect_is_returned_not_followed(
    peer: Peer, ca_file: Path, make_transport: MakeTransport
) -> None:
    transport = make_transport(ca_file=ca_file)
    reply = await transport.post_json(peer.url("/redirect"), {"a": 1})
    assert reply.status == 302
    assert reply.body is None  # aiohttp's "302: Found" text
    assert peer.paths() == ["/redirect"]  # /target never requested


async def test_non_json_answer_gives_none(
    peer: Peer, ca_file: Path, make_transport: MakeTransport
) -> None:
    transport = make_transport(ca_file=ca_file)
    reply = await transport.get_json(peer.url("/text"))
    assert reply.status == 200
    assert reply.body is None


@pytest.mark.parametrize("chunked", ["0", "1"])
async def test_answer_size_cap(
    peer: Peer, ca_file: Path, make_transport: MakeTransport, chunked: str
) -> None:
    cap = 4096
    transport = make_transport(ca_file=ca_file, max_answer_bytes=cap)

    at_cap = await transport.get_json(peer.url(f"/blob?size={cap}&chunked={chunked}"))
    assert at_cap.status == 200
    assert at_cap.body == "a" * (cap - 2)

    over = await transport.get_json(peer.url(f"/blob?size={cap + 1}&chunked={chunked}"))
    assert over.status == 200
    assert over.body is None

    # The transport stays usable after dropping an oversize answer.
    again = await transport.get_json(peer.url("/echo"))
    assert again.status == 200


async def test_default_cap_refuses_large_answer(
    peer: Peer, ca_file: Path, make_transport: MakeTransport
) -> None:
    transport = make_transport(ca_file=ca_file)
    reply = await transport.get_json(peer.url(f"/blob?size={64 * 1024 + 1}&chunked=1"))
    assert reply.body is None


async def test_closed_port_is_unreachable(ca_file: Path, make_transport: MakeTransport) -> None:
    transport = make_transport(ca_file=ca_file)
    with pytest.raises(PeerUnreachable, match=r"^connection") as caught:
        await transport.post_json(f"https://127.0.0.1:{free_port()}/echo", {"a": 1})
    assert type(caught.value) is PeerUnreachable


async def test_silent_peer_times_out(
    peer: Peer, ca_file: Path, make_transport: MakeTransport
) -> None:
    transport = make_transport(ca_file=ca_file, timeout_seconds=0.3)
    with pytest.raises(PeerUnreachable, match=r"^no answer within 0\.3 s"):
        await transport.get_json(peer.url("/hang"))


async def test_malformed_domain_is_unreachable(make_transport: MakeTransport) -> None:
    transport = make_transport()
    with pytest.raises(PeerUnreachable):
        await transport.get_json("https://exa mple..com:99999/openmsg/")


async def test_keep_alive_reuses_one_connection(
    peer: Peer, ca_file: Path, make_transport: MakeTransport
) -> None:
    transport = make_transport(ca_file=ca_file)
    for i in range(20):
        reply = await transport.post_json(peer.url("/echo"), {"i": i})
        assert reply.status == 200
    assert len(peer.requests) == 20
    assert len({id(seen.connection) for seen in peer.requests}) == 1
    assert peer.accepted == 1


async def test_concurrent_requests_share_a_bounded_pool(
    peer: Peer, ca_file: Path, make_transport: MakeTransport
) -> None:
    transport = make_transport(ca_file=ca_file, max_connections=4)
    replies = await asyncio.gather(
        *(transport.post_json(peer.url("/echo"), {"i": i}) for i in range(50))
    )
    assert [reply.body["json"] for reply in replies] == [{"i": i} for i in range(50)]  # type: ignore[index]
    assert len(peer.requests) == 50
    assert 1 <= peer.accepted <= 4


async def test_closed_transport_refuses(
    peer: Peer, ca_file: Path, make_transport: MakeTransport
) -> None:
    transport = make_transport(ca_file=ca_file)
    await transport.get_json(peer.url("/echo"))
    await transport.close()
    await transport.close()  # idempotent
    with pytest.raises(PeerUnreachable, match="closed"):
        await transport.get_json(peer.url("/echo"))


def test_bad_proxy_url_fails_at_construction() -> None:
    with pytest.raises(ValueError, match="scheme"):
        AiohttpTransport(
            ca_file=None, proxy="ftp://127.0.0.1:1", timeout_seconds=1, user_agent=AGENT
        )


# --- Through a SOCKS5 proxy ----------------------------------------------------


@pytest.fixture(scope="module")
def socks_proxy() -> Iterator[Socks]:
    with running_socks_proxy() as proxy:
        yield proxy


async def test_post_through_socks5_resolves_names_at_the_proxy(
    peer: Peer, ca_file: Path, make_transport: MakeTransport, socks_proxy: Socks
) -> None:
    transport = make_transport(ca_file=ca_file, proxy=socks_proxy.url)

    reply = await transport.post_json(peer.url("/echo", host="localhost"), {"via": "socks"})

    assert reply.status == 200
    assert isinstance(reply.body, dict)
    assert reply.body["json"] == {"via": "socks"}
    # The proxy received the name, not an address: the lookup happened there.
    socks_proxy.log.wait_for(rf"socks5 127\.0\.0\.1:\d+ -> localhost:{peer.port}$")
    assert peer.accepted == 1


async def test_proxy_keeps_connections_alive(
    peer: Peer, ca_file: Path, make_transport: MakeTransport, socks_proxy: Socks
) -> None:
    transport = make_transport(ca_file=ca_file, proxy=socks_proxy.url)
    for i in range(5):
        assert (await transport.post_json(peer.url("/echo"), {"i": i})).status == 200
    assert peer.accepted == 1


async def test_proxy_down_never_falls_back_to_direct(
    peer: Peer, ca_file: Path, make_transport: MakeTransport
) -> None:
    transport = make_transport(ca_file=ca_file, proxy=f"socks5h://127.0.0.1:{free_port()}")
    for url in (peer.url("/echo"), peer.url("/echo", host="localhost")):
        with pytest.raises(PeerUnreachable, match=r"^proxy") as caught:
            await transport.post_json(url, {"a": 1})
        assert type(caught.value) is PeerUnreachable
    assert peer.accepted == 0  # not even a TCP connection reached the peer
    assert peer.requests == []


async def test_proxy_with_untrusted_peer_is_unreachable(
    peer: Peer, make_transport: MakeTransport, socks_proxy: Socks
) -> None:
    # TLS runs end to end through the tunnel, so verification still applies.
    transport = make_transport(proxy=socks_proxy.url)
    with pytest.raises(PeerUnreachable, match=r"^TLS"):
        await transport.get_json(peer.url("/echo"))
    assert peer.requests == []
