"""JSON shapes of the operator API (``/v1/admin/``), for ``openmessenger admin --url``.

Apps, keys and media types use the shapes of apps_api.py; these are the rest.
Public contract like client_api.py: add fields, never rename.
"""

from __future__ import annotations

from pydantic import Field

from openmessenger.protocol.apps_api import AppCreateIn, AppOut
from openmessenger.protocol.client_api import AddressStr, Request, Response

ADMIN_PREFIX = "/admin"
"""Under ``/v1``."""


class MaintenanceIn(Request):
    on: bool = Field(description="true: other nodes' messages and handshakes get SM_E008")


class MaintenanceOut(Response):
    on: bool


class DomainList(Response):
    domains: list[str] = Field(description="the blocked domains, sorted")


class DomainBlockOut(Response):
    domain: str = Field(description="the domain as the node folded it (lower case, no dot)")
    blocked: bool = Field(description="whether it is blocked now")
    changed: bool = Field(description="false when it already was (or was not) blocked")


class AdminAppCreateIn(AppCreateIn):
    owner: AddressStr = Field(description="the address of a registered account of this node")


class AdminAppOut(AppOut):
    owner: str = Field(description="the owning account's address")


class AdminAppList(Response):
    apps: list[AdminAppOut]
