"""A real HTTP server standing in for an operator's SMS gateway: aiohttp on
127.0.0.1 in its own thread, collecting every webhook request as it came
(headers and raw body). It checks nothing itself: the tests do."""

from __future__ import annotations

import asyncio
import json
import queue
import socket
import threading
from dataclasses import dataclass
from typing import Any

from aiohttp import web


@dataclass(frozen=True)
class WebhookCall:
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class SmsGateway:
    def __init__(self) -> None:
        self._calls: queue.Queue[WebhookCall] = queue.Queue()
        self.status = 200
        """What the gateway answers (a test sets 500 to make it fail)."""
        self._socket = socket.create_server(("127.0.0.1", 0))
        host, port = self._socket.getsockname()[:2]
        self.url = f"http://{host}:{port}/sms"
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sms-gateway", daemon=True)

    async def _receive(self, request: web.Request) -> web.Response:
        body = await request.read()
        self._calls.put(WebhookCall(dict(request.headers), body))
        return web.json_response({"queued": self.status < 300}, status=self.status)

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        app = web.Application()
        app.router.add_post("/sms", self._receive)
        self._runner = web.AppRunner(app)
        loop.run_until_complete(self._runner.setup())
        loop.run_until_complete(web.SockSite(self._runner, self._socket).start())
        self._ready.set()
        loop.run_forever()
        loop.run_until_complete(self._runner.cleanup())
        loop.close()

    def start(self) -> SmsGateway:
        self._thread.start()
        assert self._ready.wait(timeout=30), "the SMS gateway did not start"
        return self

    def stop(self) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=30)

    def next_call(self, timeout: float = 10) -> WebhookCall:
        """The next webhook request, waiting for it at most ``timeout`` s."""
        return self._calls.get(timeout=timeout)

    def pending(self) -> int:
        return self._calls.qsize()
