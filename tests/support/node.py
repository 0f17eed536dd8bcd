"""A real node for integration tests: uvicorn on a free loopback port (or the
settings' port when not 0), in a thread with its own event loop, on a real database."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import uvicorn

from openmessenger.services.ports import Clock
from openmessenger.settings import Settings
from openmessenger.wiring import Node, build_node, uvicorn_config

T = TypeVar("T")


@dataclass
class NodeThread:
    settings: Settings
    clock: Clock | None = None
    node: Node | None = None
    _server: uvicorn.Server | None = None
    _thread: threading.Thread | None = None
    _ready: threading.Event = field(default_factory=threading.Event)
    _error: BaseException | None = None
    _socket: socket.socket | None = None
    _loop: asyncio.AbstractEventLoop | None = None

    @property
    def url(self) -> str:
        assert self._socket is not None
        host, port = self._socket.getsockname()[:2]
        return f"{self.settings.scheme}://{host}:{port}"

    def start(self) -> NodeThread:
        # Bound and listening before the server runs: clients may connect at
        # once, their connections wait in the backlog. No polling needed.
        self._socket = socket.create_server((self.settings.host, self.settings.port))
        self._thread = threading.Thread(target=self._run, name="test-node", daemon=True)
        self._thread.start()
        self._ready.wait(timeout=60)
        if self._error is not None:
            raise RuntimeError("the test node failed to start") from self._error
        return self

    def _run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        try:
            self._loop = asyncio.get_running_loop()
            self.node = await build_node(self.settings, clock=self.clock)
            self._server = uvicorn.Server(uvicorn_config(self.node.app, self.settings))
        except BaseException as exc:
            self._error = exc
            self._ready.set()
            raise
        self._ready.set()
        try:
            assert self._socket is not None
            await self._server.serve(sockets=[self._socket])
        finally:
            await self.node.close()

    async def call(self, coro: Coroutine[Any, Any, T]) -> T:
        """Await ``coro`` on the node's own loop (its engine lives there)."""
        assert self._loop is not None
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self._loop))

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=30)


class SettableClock:
    """A clock the test moves by hand (for expiry); starts at the real time."""

    def __init__(self) -> None:
        self._now = datetime.now(UTC)

    def now(self) -> datetime:
        return self._now

    def advance(self, delta: timedelta) -> None:
        self._now += delta


async def dump_database(node: Node) -> dict[str, list[dict[str, object]]]:
    """Every row of every table, as the node stored it."""
    from sqlalchemy import select

    from openmessenger.storage.tables import metadata

    dump: dict[str, list[dict[str, object]]] = {}
    async with node.database.connect() as conn:
        for table in metadata.sorted_tables:
            rows = await conn.execute(select(table))
            dump[table.name] = [dict(r._mapping) for r in rows]
    return dump
