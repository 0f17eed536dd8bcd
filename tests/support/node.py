"""A real node for integration tests: uvicorn on a free loopback port, in a
thread with its own event loop, on a real database."""

from __future__ import annotations

import asyncio
import socket
import threading
from dataclasses import dataclass, field

import uvicorn

from openmessenger.settings import Settings
from openmessenger.wiring import Node, build_node, uvicorn_config


@dataclass
class NodeThread:
    settings: Settings
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
        return f"http://{host}:{port}"

    def start(self) -> NodeThread:
        # Bound and listening before the server runs: clients may connect at
        # once, their connections wait in the backlog. No polling needed.
        self._socket = socket.create_server((self.settings.host, 0))
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
            self.node = await build_node(self.settings)
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

    def run_coroutine(self, coro):  # type: ignore[no-untyped-def]
        """Run ``coro`` on the node's own loop (e.g. a service call) and wait for it."""
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=30)

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=30)
