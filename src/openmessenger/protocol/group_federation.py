"""Groups across our nodes: the ``groups`` capability of our Openmsg extension.

A group is hosted by its creator's node, which holds its membership and assigns
every seq; a member's node keeps a replica for its own accounts. Three signed
requests (services/signed_requests.py), never sent to an Openmsg v1 peer:

- ``group-deliver/`` host -> member node: the group, its whole membership as the
  host knows it now, and the next messages of the group's log (in seq order)
  for that node's accounts, each naming which of them it is for (``to``).
- ``group-act/`` member node -> host: one of its accounts joins, declines,
  leaves, or (as an admin or owner) invites, removes or changes a role; the
  answer is the group and its membership after the change.
- ``group-send/`` member node -> host: one of its accounts sends an end-to-end
  body; the host orders it (idempotent by ``sender_device`` + ``client_txn_id``)
  and answers with its id and seq.
- ``group-revise/`` member node -> host: one of its accounts edits (a new
  end-to-end body) or deletes for everyone a message of the group it sent; the
  host checks it as for its own participants, appends the edit or deletion to
  the group's log (idempotent by ``sender_device`` + ``client_txn_id``) and
  answers with its id and seq, as for ``group-send/``.

Answers are HTTP 200 JSON: ``{"ok": true, ...}``, or ``{"ok": false, "status",
"code", "message"}`` carrying the host's refusal as the client API would render
it; a request whose signature does not verify gets an Openmsg error body.
docs/openmsg.md describes the wire shapes.
"""

from __future__ import annotations

from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from openmessenger.core.envelope import CLIENT_TXN_ID_PATTERN
from openmessenger.core.groups import MAX_NAME_CHARS
from openmessenger.protocol.e2e import MAX_ENCRYPTED_BODY_CHARS

GROUPS = "groups"
GROUP_DELIVER_PATH = "/openmsg/x-openmessenger/group-deliver/"
GROUP_ACT_PATH = "/openmsg/x-openmessenger/group-act/"
GROUP_SEND_PATH = "/openmsg/x-openmessenger/group-send/"
GROUP_REVISE_PATH = "/openmsg/x-openmessenger/group-revise/"
MAX_GROUP_BODY_BYTES = 2 * 1024 * 1024
"""The largest signed groups request a node reads."""
MAX_DELIVER_MESSAGES = 64
MAX_DELIVER_BODY_CHARS = 768 * 1024
"""A delivery carries at most this many body characters (at least one message)."""
MAX_MEMBERS = 4096

_Address = Field(min_length=3, max_length=300)
_Id = Field(min_length=1, max_length=32)


class _Wire(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class WireGroup(_Wire):
    id: str = _Id
    name: str = Field(min_length=1, max_length=MAX_NAME_CHARS)
    mode: Literal["history"] = "history"
    created_by: str = _Address
    created_at: AwareDatetime


class WireMember(_Wire):
    address: str = _Address
    role: Literal["owner", "admin", "member"]
    kind: Literal["human", "system"]
    app_id: str | None = Field(default=None, max_length=32)
    state: Literal["invited", "joined", "declined", "left", "removed"]
    invited_by: str | None = Field(default=None, max_length=300)
    invited_seq: int | None = Field(default=None, ge=0)
    joined_seq: int | None = Field(default=None, ge=0)
    left_seq: int | None = Field(default=None, ge=0)
    joined_at: AwareDatetime | None = None


class WireGroupMessage(_Wire):
    id: str = _Id
    seq: int = Field(ge=1)
    sender: str = _Address
    sender_device: str = Field(max_length=32)
    body: str = Field(min_length=1, max_length=MAX_ENCRYPTED_BODY_CHARS)
    sent_at: AwareDatetime
    encryption: Literal["end-to-end", "transport-encrypted"]
    media_type: str = Field(min_length=1, max_length=200)
    metadata: str | None = Field(default=None, max_length=4096)
    to: list[str] = Field(min_length=1, max_length=MAX_MEMBERS)
    """The receiving node's addresses this message is for."""


class GroupDeliverRequest(_Wire):
    group: WireGroup
    members: list[WireMember] = Field(min_length=1, max_length=MAX_MEMBERS)
    messages: list[WireGroupMessage] = Field(min_length=1, max_length=MAX_DELIVER_MESSAGES)


class GroupActRequest(_Wire):
    group_id: str = _Id
    actor: str = _Address
    action: Literal["join", "decline", "leave", "invite", "remove", "role"]
    address: str | None = Field(default=None, min_length=3, max_length=300)
    """Whom ``invite``, ``remove`` and ``role`` are about."""
    role: Literal["owner", "admin", "member"] | None = None
    """``role``: the new role."""


class GroupSendRequest(_Wire):
    group_id: str = _Id
    sender: str = _Address
    sender_device: str = Field(min_length=1, max_length=32)
    body: str = Field(min_length=1, max_length=MAX_ENCRYPTED_BODY_CHARS)
    client_txn_id: str = Field(pattern=CLIENT_TXN_ID_PATTERN)
    sent_at: AwareDatetime


class GroupReviseRequest(_Wire):
    group_id: str = _Id
    sender: str = _Address
    sender_device: str = Field(min_length=1, max_length=32)
    revision: Literal["edit", "delete"]
    replaces: str = _Id
    """The group's message (its id, the same on every node) the sender edits or deletes."""
    body: str | None = Field(default=None, min_length=1, max_length=MAX_ENCRYPTED_BODY_CHARS)
    """``edit``: the new end-to-end body; ``delete``: absent."""
    client_txn_id: str = Field(pattern=CLIENT_TXN_ID_PATTERN)
    sent_at: AwareDatetime


class GroupActAnswer(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    ok: Literal[True] = True
    group: WireGroup
    members: list[WireMember] = Field(max_length=MAX_MEMBERS)


class SentOut(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    id: str = _Id
    seq: int = Field(ge=1)
    sent_at: AwareDatetime
    created: bool


class GroupSendAnswer(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    ok: Literal[True] = True
    message: SentOut


class GroupDeliverAnswer(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    ok: Literal[True] = True
    accepted: bool
    """False: nothing was stored (an invitation from a stranger is dropped, silently
    for its addressee); the host stops sending those messages all the same."""
