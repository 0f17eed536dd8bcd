"""Groups in the SDK: create, invite, join, leave, remove, roles, send and read.

Mixed into :class:`openmessenger.client.Client`. Group messages are end to end:
each send fetches the group's current participants, and ``EndToEnd.encrypt_for_group``
shares the group's Megolm session with the trusted devices of the joined ones
only, so a participant who left or was removed gets no key to what follows
(docs/encryption.md, "Groups"). Membership changes arrive as ``group.member``
messages written by the node (``metadata`` says what happened).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import quote

import httpx

from openmessenger.client import transport
from openmessenger.client.errors import InvalidArgumentError, ServerUnreachableError
from openmessenger.client.models import Message
from openmessenger.core.envelope import MAX_BODY_CHARS
from openmessenger.core.groups import MEMBER_EVENT_MEDIA_TYPE
from openmessenger.core.ids import Address
from openmessenger.protocol import client_api as wire
from openmessenger.protocol import groups_api

if TYPE_CHECKING:
    from openmessenger.client.e2e import EndToEnd

Role = Literal["owner", "admin", "member"]
GROUP_EVENT = MEMBER_EVENT_MEDIA_TYPE
"""The media type of membership events in a group's history."""
_PAGE_SIZE = 100
_SEND_ATTEMPTS = 3
_RETRY_DELAYS_SECONDS = (0.2, 1.0)


@dataclass(frozen=True, slots=True)
class GroupMember:
    address: str
    role: Role
    kind: Literal["human", "system"]
    """``system``: an app's managed account (a bot); ``app_id`` names the app."""
    app_id: str | None
    state: Literal["invited", "joined"]
    invited_by: str | None
    joined_at: datetime | None


@dataclass(frozen=True, slots=True)
class Group:
    id: str
    """The group's conversation id: ``Message.recipient`` of its messages."""
    name: str
    mode: str
    created_by: str
    created_at: datetime
    last_seq: int
    role: Role
    """This account's role."""
    state: Literal["invited", "joined"]
    """This account's state: ``invited`` until it joins."""
    members: tuple[GroupMember, ...]

    @classmethod
    def from_wire(cls, group: groups_api.GroupOut) -> Group:
        return cls(
            id=group.id,
            name=group.name,
            mode=group.mode,
            created_by=group.created_by,
            created_at=group.created_at,
            last_seq=group.last_seq,
            role=group.role,
            state=group.state,
            members=tuple(
                GroupMember(
                    address=m.address,
                    role=m.role,
                    kind=m.kind,
                    app_id=m.app_id,
                    state=m.state,
                    invited_by=m.invited_by,
                    joined_at=m.joined_at,
                )
                for m in group.members
            ),
        )

    def joined(self) -> list[str]:
        return [m.address for m in self.members if m.state == "joined"]


def is_group_message(message: Message) -> bool:
    """A message of a group (its ``recipient`` is the group's id, not an address)."""
    return str(message.recipient) == str(message.conversation_id)


class AccountGroups:
    """The group methods of ``Client``."""

    if TYPE_CHECKING:  # provided by Client

        @property
        def address(self) -> Address | None: ...

        async def _call(
            self,
            method: str,
            path: str,
            *,
            body: wire.Request | None = None,
            params: Mapping[str, str | int] | None = None,
        ) -> httpx.Response: ...

        async def end_to_end(self) -> EndToEnd: ...

        async def _open(self, message: wire.MessageOut, position: int | None = None) -> Message: ...

    async def create_group(self, name: str, members: list[str] | None = None) -> Group:
        """A group you own, with ``members`` (your contacts, on our nodes) invited.
        Raises RefusedError if any of them is not a contact; nothing is made then."""
        body = transport.request_body(
            groups_api.GroupCreateIn, {"name": name, "members": members or []}
        )
        return await self._group_call("POST", "/groups", body=body)

    async def groups(self) -> list[Group]:
        """The groups you joined or are invited to."""
        response = await self._call("GET", "/groups")
        found = transport.parse_response(groups_api.GroupList, response).groups
        return [Group.from_wire(g) for g in found]

    async def group(self, group_id: str) -> Group:
        return await self._group_call("GET", _path(group_id))

    async def invite_to_group(self, group_id: str, address: str) -> Group:
        """Invite a contact (owner and admins). Not a contact: RefusedError."""
        body = transport.request_body(groups_api.GroupInviteIn, {"address": address})
        return await self._group_call("POST", f"{_path(group_id)}/members", body=body)

    async def join_group(self, group_id: str) -> Group:
        """Accept an invitation: the group's messages reach this account from now on."""
        return await self._group_call("POST", f"{_path(group_id)}/join")

    async def decline_group(self, group_id: str) -> None:
        await self._call("POST", f"{_path(group_id)}/decline")

    async def leave_group(self, group_id: str) -> None:
        """Leave: nothing new reaches this account; it keeps what it read."""
        await self._call("POST", f"{_path(group_id)}/leave")

    async def remove_from_group(self, group_id: str, address: str) -> Group:
        return await self._group_call(
            "DELETE", f"{_path(group_id)}/members/{quote(address, safe='')}"
        )

    async def set_group_role(self, group_id: str, address: str, role: Role) -> Group:
        """The owner makes a participant ``admin`` or ``member``, or ``owner`` (hand-over)."""
        body = transport.request_body(groups_api.GroupRoleIn, {"role": role})
        return await self._group_call(
            "PUT", f"{_path(group_id)}/members/{quote(address, safe='')}/role", body=body
        )

    async def send_to_group(
        self, group_id: str, text: str, client_txn_id: str | None = None
    ) -> Message:
        """Encrypt ``text`` to the group's joined participants' trusted devices and
        send it; retried on network failures under one ``client_txn_id``."""
        if not text or len(text) > MAX_BODY_CHARS:
            raise InvalidArgumentError("text", f"must be 1 to {MAX_BODY_CHARS} characters")
        txn_id = client_txn_id or uuid.uuid4().hex
        group = await self.group(group_id)
        engine = await self.end_to_end()
        encrypted = await engine.encrypt_for_group(
            group.id, [Address(a) for a in group.joined()], text
        )
        body = transport.request_body(
            groups_api.GroupSendIn,
            {"body": encrypted, "encryption": "end-to-end", "client_txn_id": txn_id},
        )
        for attempt in range(_SEND_ATTEMPTS):
            try:
                response = await self._call("POST", f"{_path(group_id)}/messages", body=body)
                break
            except ServerUnreachableError:
                if attempt == _SEND_ATTEMPTS - 1:
                    raise
                await asyncio.sleep(_RETRY_DELAYS_SECONDS[attempt])
        await engine.back_up()
        return Message.from_wire(transport.parse_response(wire.MessageOut, response), text=text)

    async def group_history(self, group_id: str) -> list[Message]:
        """The group's messages and membership events you may read, oldest first:
        from when you joined (up to when you left, if you did)."""
        messages: list[Message] = []
        after_seq = 0
        while True:
            params = {"after_seq": after_seq, "limit": _PAGE_SIZE}
            page = transport.parse_response(
                wire.MessageList,
                await self._call("GET", f"{_path(group_id)}/messages", params=params),
            )
            messages.extend([await self._open(m) for m in page.messages])
            if not page.has_more or not page.messages:
                return messages
            after_seq = page.messages[-1].seq

    async def _group_call(
        self, method: str, path: str, *, body: wire.Request | None = None
    ) -> Group:
        response = await self._call(method, path, body=body)
        return Group.from_wire(transport.parse_response(groups_api.GroupOut, response))


def _path(group_id: str) -> str:
    return f"/groups/{quote(group_id, safe='')}"


def group_event(message: Message) -> dict[str, Any] | None:
    """What a membership event says (``event``, ``address``, ``by``, ``role``,
    ``kind``, ``app_id``); None for any other message."""
    return message.metadata if message.media_type == GROUP_EVENT else None
