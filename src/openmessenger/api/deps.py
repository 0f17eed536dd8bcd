"""Request dependencies: the services, and the calling device (tokens are never logged)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Request
from starlette.requests import HTTPConnection
from starlette.types import Scope

from openmessenger.core.apps import API_KEY_PREFIX, AppCaller
from openmessenger.core.envelope import CLIENT_TXN_ID_PATTERN
from openmessenger.core.errors import Forbidden, InvalidInput, NotFound, Unauthenticated
from openmessenger.core.records import AuthenticatedDevice
from openmessenger.protocol.apps_api import ACCOUNT_HEADER
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


def _header(scope: Scope, wanted: bytes) -> str | None:
    for name, value in scope["headers"]:
        if name == wanted:
            return str(value.decode("latin-1")).strip()
    return None


_ACCOUNT_HEADER = ACCOUNT_HEADER.lower().encode()


async def authenticate(services: NodeServices, scope: Scope) -> AuthenticatedDevice:
    """The calling device: a device token, or an app's API key with the
    ``Openmessenger-Account`` header naming the managed account it acts for."""
    token = bearer_token(scope)
    if token is None:
        raise Unauthenticated("An 'Authorization: Bearer <token>' header is required.")
    if token.startswith(API_KEY_PREFIX):
        app = await services.apps.authenticate_key(token)
        account_id = _header(scope, _ACCOUNT_HEADER)
        if not account_id:
            raise InvalidInput(
                ACCOUNT_HEADER, "names the account an API key acts for; it is required here"
            )
        caller = await services.managed.acting_device(app, account_id)
    else:
        caller = await services.devices.authenticate(token)
    await services.limits.check(caller)
    return caller


async def _current_app(request: Request) -> AppCaller:
    token = bearer_token(request.scope)
    if token is None or not token.startswith(API_KEY_PREFIX):
        raise Unauthenticated("An app API key is required: 'Authorization: Bearer omk_...'.")
    services = services_of(request)
    caller = await services.apps.authenticate_key(token)
    # The app named in the path must be the key's own (another app's users stay private).
    app_in_path = request.path_params.get("app")
    if app_in_path is not None and app_in_path != caller.app.id:
        raise NotFound("No such app.", code="app_not_found")
    await services.limits.check_app(caller)
    return caller


CurrentApp = Annotated[AppCaller, Depends(_current_app)]


async def _current_device(request: Request) -> AuthenticatedDevice:
    return await authenticate(services_of(request), request.scope)


CurrentDevice = Annotated[AuthenticatedDevice, Depends(_current_device)]


async def _person_device(request: Request) -> AuthenticatedDevice:
    caller = await authenticate(services_of(request), request.scope)
    if caller.device.app_id is not None:
        raise Forbidden(
            "Only the person's own devices may do this, not an app acting for them.",
            code="not_for_apps",
        )
    return caller


PersonDevice = Annotated[AuthenticatedDevice, Depends(_person_device)]
"""A device that is not an app's: for what only the person decides (which apps
reach them, registering, deleting or exporting the account, revoking devices)."""


async def _services(request: Request) -> NodeServices:
    return services_of(request)


Services = Annotated[NodeServices, Depends(_services)]


IdempotencyKey = Annotated[
    str | None, Header(pattern=CLIENT_TXN_ID_PATTERN, alias="Idempotency-Key")
]
"""The ``Idempotency-Key`` header of a write, the same as ``client_txn_id`` in its body."""


def client_txn_id(in_body: str | None, header: str | None) -> str | None:
    """A write's idempotency key, from its body or its header (which must agree)."""
    if in_body and header and in_body != header:
        raise InvalidInput("client_txn_id", "differs from the Idempotency-Key header")
    return in_body or header
