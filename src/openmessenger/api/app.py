"""The ASGI application: routes under ``/v1/``, health, metrics, OpenAPI."""

from __future__ import annotations

from fastapi import FastAPI
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp

from openmessenger import __version__
from openmessenger.api import errors
from openmessenger.api.fast_send import FastSendMiddleware
from openmessenger.api.limits import BodySizeLimitMiddleware
from openmessenger.api.observability import Metrics, RequestMetricsMiddleware
from openmessenger.api.openmsg import OpenmsgMiddleware
from openmessenger.api.routes import (
    account_data,
    admin,
    apps,
    devices,
    ephemeral,
    groups,
    keys,
    linking,
    messages,
    pairing,
    policies,
    preferences,
    registration,
    requests,
    revisions,
    webhooks,
)
from openmessenger.api.stream import StreamMiddleware
from openmessenger.protocol.client_api import API_PREFIX
from openmessenger.services.node import NodeServices


def create_app(services: NodeServices, *, max_request_bytes: int) -> ASGIApp:
    app = FastAPI(
        title="Open Messenger",
        version=__version__,
        summary="Client API of an Open Messenger node",
        openapi_url=f"{API_PREFIX}/openapi.json",
        docs_url=f"{API_PREFIX}/docs",
        redoc_url=None,
    )
    metrics = Metrics.create()
    app.state.services = services
    app.state.metrics = metrics
    errors.install(app)
    for router in (
        devices.router,
        pairing.router,
        messages.router,
        keys.router,
        linking.router,
        registration.router,
        apps.router,
        account_data.router,
        webhooks.router,
        ephemeral.router,
        policies.router,
        groups.router,
        preferences.router,
        requests.router,
        revisions.router,
    ):
        app.include_router(router)
    # Out of the published schema when the node has no operator token (it has no such API then).
    app.include_router(admin.router, include_in_schema=services.operator.auth.enabled)

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok", "domain": services.domain}

    @app.get("/metrics", include_in_schema=False)
    async def prometheus(_: Request) -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    # Outermost, so that an oversize body is refused before anything reads it.
    hot_paths = StreamMiddleware(
        FastSendMiddleware(app, services), services, metrics.stream_connections
    )
    client_api = BodySizeLimitMiddleware(
        RequestMetricsMiddleware(hot_paths, metrics), max_bytes=max_request_bytes
    )
    # Openmsg answers every request with HTTP 200 and its own size limit.
    return OpenmsgMiddleware(client_api, services.federation, metrics.openmsg_answers)
