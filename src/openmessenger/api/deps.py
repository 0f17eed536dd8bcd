"""Request dependencies: the services, and the calling device (tokens are never logged)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from starlette.requests import HTTPConnection

from openmessenger.core.errors import Unauthenticated
from openmessenger.core.records import AuthenticatedDevice
from openmessenger.services.node import NodeServices


def services_of(connection: HTTPConnection) -> NodeServices:
    services: NodeServices = connection.app.state.services
    return services


def bearer_token(connection: HTTPConnection) -> str | None:
    scheme, _, token = connection.headers.get("authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


async def authenticate(connection: HTTPConnection) -> AuthenticatedDevice:
    token = bearer_token(connection)
    if token is None:
        raise Unauthenticated("An 'Authorization: Bearer <token>' header is required.")
    return await services_of(connection).devices.authenticate(token)


async def _current_device(request: Request) -> AuthenticatedDevice:
    return await authenticate(request)


CurrentDevice = Annotated[AuthenticatedDevice, Depends(_current_device)]


async def _services(request: Request) -> NodeServices:
    return services_of(request)


Services = Annotated[NodeServices, Depends(_services)]
