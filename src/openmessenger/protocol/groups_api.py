"""JSON shapes of the group endpoints (``/v1/groups``), shared by node and SDK.

docs/api.md lists the endpoints; docs/conversations.md explains groups."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from openmessenger.core.envelope import CLIENT_TXN_ID_PATTERN
from openmessenger.core.groups import DEFAULT_MAX_PARTICIPANTS, MAX_NAME_CHARS
from openmessenger.protocol.client_api import AddressStr, Request, Response
from openmessenger.protocol.e2e import MAX_ENCRYPTED_BODY_CHARS

RoleStr = Literal["owner", "admin", "member"]


class GroupCreateIn(Request):
    name: str = Field(min_length=1, max_length=MAX_NAME_CHARS)
    members: list[AddressStr] = Field(
        default_factory=list,
        max_length=DEFAULT_MAX_PARTICIPANTS,
        description="Addresses to invite: each one a contact of yours (on one of our nodes)",
    )


class GroupInviteIn(Request):
    address: AddressStr


class GroupRoleIn(Request):
    role: RoleStr


class GroupSendIn(Request):
    body: str = Field(
        min_length=1,
        max_length=MAX_ENCRYPTED_BODY_CHARS,
        description="An om.megolm.v1 body as JSON text (groups are end to end only)",
    )
    encryption: Literal["end-to-end"] = "end-to-end"
    client_txn_id: str | None = Field(
        default=None,
        pattern=CLIENT_TXN_ID_PATTERN,
        description="Idempotency key: printable ASCII, no spaces, at most 128 characters",
    )


class GroupMemberOut(Response):
    address: str
    role: RoleStr
    kind: Literal["human", "system"] = Field(
        description="system: an app's managed account (its device is the app's backend)"
    )
    app_id: str | None = Field(default=None, description="the app of a system participant")
    state: Literal["invited", "joined"]
    invited_by: str | None = None
    joined_at: datetime | None = None


class GroupOut(Response):
    id: str = Field(description="The group's conversation id; a group message's `to`")
    name: str
    mode: Literal["history", "ephemeral"]
    created_by: str
    created_at: datetime
    last_seq: int
    role: RoleStr = Field(description="Your role")
    state: Literal["invited", "joined"] = Field(description="Yours: invited until you join")
    members: list[GroupMemberOut]


class GroupList(Response):
    groups: list[GroupOut]
