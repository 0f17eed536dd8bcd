"""Request dependencies: the services, and the calling device (tokens are never logged)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from starlette.requests import HTTPConnection
from starlette.types import Scope

from openmessenger.core.errors import Unauthenticated
from openmessenger.core.records import AuthenticatedDevice
from openmessenger.services.node import NodeServices


def services_of(connection: HTTPConnection) -> NodeServices:
    services: NodeServices = connection.app.state.services
    return services


def bearer_token(scope: Scope) -> str | None:
    """The token of an ``Authorization: Bearer`` header, straight from an ASGI scope."""
    for name, value in scope["headers"]:
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            token = token.strip()
            return token if scheme.lower() == "bearer" and token else None
    return None


async def authenticate(services: NodeServices, scope: Scope) -> AuthenticatedDevice:
    token = bearer_token(scope)
    if token is None:
        raise Unauthenticated("An 'Authorization: Bearer <token>' header is required.")
    return await services.devices.authenticate(token)


async def _current_device(request: Request) -> AuthenticatedDevice:
    return await authenticate(services_of(request), request.scope)


CurrentDevice = Annotated[AuthenticatedDevice, Depends(_current_device)]


async def _services(request: Request) -> NodeServices:
    return services_of(request)


Services = Annotated[NodeServices, Depends(_services)]
