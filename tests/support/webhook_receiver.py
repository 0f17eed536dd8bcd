"""A real HTTP server on 127.0.0.1 (a free port) that stands in for an app's
webhook endpoint: it records every request in a thread-safe queue and answers
with the status the test sets. Waiting for a call is ``await receiver.next()``
(a blocking ``queue.get`` with a timeout, in a thread), never a sleep."""

from __future__ import annotations

import asyncio
import queue
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from aiohttp import web


@dataclass(frozen=True)
class ReceivedCall:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def header(self, name: str) -> str | None:
        wanted = name.lower()
        return next((v for k, v in self.headers.items() if k.lower() == wanted), None)


class WebhookReceiver:
    def __init__(self) -> None:
        self.calls: queue.Queue[ReceivedCall] = queue.Queue()
        self.status = 200
        self.url = ""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._stopped: asyncio.Event | None = None

    def webhook_url(self, path: str = "/hooks/openmessenger") -> str:
        return self.url + path

    async def next(self, timeout: float = 15.0) -> ReceivedCall:
        """The next call the server got (waiting up to ``timeout`` seconds for it)."""
        try:
            return await asyncio.to_thread(self.calls.get, True, timeout)
        except queue.Empty:
            raise AssertionError(f"no webhook call within {timeout} s") from None

    def nothing_queued(self) -> bool:
        return self.calls.empty()

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.calls.put(ReceivedCall(request.method, request.path_qs, dict(request.headers), body))
        return web.Response(status=self.status, text="ok")

    def _run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopped = asyncio.Event()
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))  # a free port, known before the site starts
        host, port = sock.getsockname()[:2]
        await web.SockSite(self._runner, sock).start()
        self.url = f"http://{host}:{port}"
        self._ready.set()
        await self._stopped.wait()
        await self._runner.cleanup()

    def start(self) -> WebhookReceiver:
        self._thread = threading.Thread(target=self._run, name="webhook-receiver", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout=30):
            raise RuntimeError("the webhook receiver did not start")
        return self

    def stop(self) -> None:
        if self._loop is not None and self._stopped is not None:
            self._loop.call_soon_threadsafe(self._stopped.set)
        if self._thread is not None:
            self._thread.join(timeout=30)


@contextmanager
def webhook_receiver() -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver().start()
    try:
        yield receiver
    finally:
        receiver.stop()
