"""Metrics and request logs. Logs carry method, path, status and duration:
never headers, query strings, bodies, tokens or pass codes."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("openmessenger.http")


@dataclass(frozen=True)
class Metrics:
    registry: CollectorRegistry
    requests: Counter
    request_seconds: Histogram
    stream_connections: Gauge
    openmsg_answers: Counter

    @classmethod
    def create(cls) -> Metrics:
        registry = CollectorRegistry()
        return cls(
            registry=registry,
            requests=Counter(
                "openmessenger_http_requests",
                "HTTP requests by route and status",
                ["method", "route", "status"],
                registry=registry,
            ),
            request_seconds=Histogram(
                "openmessenger_http_request_seconds",
                "HTTP request duration",
                ["method", "route"],
                registry=registry,
            ),
            stream_connections=Gauge(
                "openmessenger_stream_connections",
                "Open /v1/stream WebSockets",
                registry=registry,
            ),
            openmsg_answers=Counter(
                "openmessenger_openmsg_answers",
                "Answers of the /openmsg/ endpoints to other nodes, by endpoint and code",
                ["endpoint", "code"],
                registry=registry,
            ),
        )


class JsonLogFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        entry.update(getattr(record, "fields", {}))
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def configure_logging(level: str) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(JsonLogFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # These log SQL parameters (message bodies, token HMACs) at DEBUG: they stay
    # at WARNING whatever the node's level.
    for noisy in ("alembic", "sqlalchemy.engine", "asyncpg", "httpcore", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


class RequestMetricsMiddleware:
    """Counts and times every HTTP request by its route template (not its raw path)."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self._app = app
        self._metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        started = time.perf_counter()
        method = scope["method"]
        status = 500
        counted = False

        def route() -> str:
            # Known once routing has run: the template, never the raw path.
            return str(getattr(scope.get("route"), "path", "unmatched"))

        def count() -> None:
            # Counted as the answer starts, so a client that has its answer
            # always finds its request in /metrics.
            nonlocal counted
            if not counted:
                counted = True
                self._metrics.requests.labels(method, route(), str(status)).inc()

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                count()
            await send(message)

        try:
            await self._app(scope, receive, send_wrapper)
        finally:
            count()
            elapsed = time.perf_counter() - started
            self._metrics.request_seconds.labels(method, route()).observe(elapsed)
            log.info(
                "request",
                extra={
                    "fields": {
                        "method": method,
                        "route": route(),
                        "status": status,
                        "ms": round(elapsed * 1000, 2),
                    }
                },
            )
