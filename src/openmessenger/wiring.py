"""The composition root: reads settings once and builds every adapter and service."""

from __future__ import annotations

import asyncio
import logging
import socket
from dataclasses import dataclass
from datetime import UTC, datetime

import uvicorn
from starlette.types import ASGIApp

from openmessenger.api.app import create_app
from openmessenger.api.observability import configure_logging
from openmessenger.bus.memory import MemoryBus
from openmessenger.core.ids import Domain
from openmessenger.crypto.keys import NodeSecrets
from openmessenger.services.accounts import AccountService
from openmessenger.services.devices import DeviceService
from openmessenger.services.messaging import MessagingService
from openmessenger.services.node import NodeServices
from openmessenger.services.pairing import PairingService
from openmessenger.services.ports import Clock
from openmessenger.settings import Settings
from openmessenger.storage.database import Database, connect_and_migrate, is_sqlite, normalise_url
from openmessenger.storage.group_commit import GroupCommitMessageLog

log = logging.getLogger("openmessenger")


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


@dataclass
class Node:
    settings: Settings
    database: Database
    services: NodeServices
    app: ASGIApp

    async def close(self) -> None:
        await self.database.dispose()


async def build_node(settings: Settings, *, clock: Clock | None = None) -> Node:
    url = settings.effective_database_url()
    if is_sqlite(url):
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    database = await connect_and_migrate(url, sqlite_synchronous=settings.sqlite_synchronous)
    uow = database.uow
    secrets = NodeSecrets(settings.load_node_secret())
    clock = clock or SystemClock()
    bus = MemoryBus()
    domain = Domain(settings.domain)
    services = NodeServices(
        domain=domain,
        clock=clock,
        devices=DeviceService(uow, clock, secrets, domain),
        accounts=AccountService(uow),
        pairing=PairingService(uow, clock, secrets),
        messaging=MessagingService(uow, GroupCommitMessageLog(uow), bus, clock, secrets),
    )
    app = create_app(services, max_request_bytes=settings.max_request_bytes)
    return Node(settings=settings, database=database, services=services, app=app)


def uvicorn_config(app: ASGIApp, settings: Settings) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        ws="wsproto",  # about half the memory per idle WebSocket of the default
        lifespan="off",
        access_log=False,  # our own request log never prints query strings or headers
        log_config=None,
        server_header=False,
    )


class _AnnouncingServer(uvicorn.Server):
    """Says where it listens on stdout, whatever the log level (port 0 picks one)."""

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            for server in self.servers:
                for sock in server.sockets:
                    host, port = sock.getsockname()[:2]
                    print(f"listening on http://{host}:{port}", flush=True)


async def serve(settings: Settings) -> None:
    configure_logging(settings.log_level)
    node = await build_node(settings)
    server = _AnnouncingServer(uvicorn_config(node.app, settings))
    log.info(
        "node starting",
        extra={
            "fields": {
                "domain": settings.domain,
                "listen": f"http://{settings.host}:{settings.port}",
                "database": normalise_url(settings.effective_database_url()).render_as_string(),
            }
        },
    )
    try:
        await server.serve()
    finally:
        await node.close()


def run(settings: Settings) -> None:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop ships with uvicorn[standard]
        asyncio.run(serve(settings))
        return
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(serve(settings))
