"""Preferences, contact requests and blocks in the SDK: a mixin of
:class:`openmessenger.client.Client`, whose session these methods use.

    await client.set_preference("accept_requests", "verified")
    await client.set_preference("mute", True, contact="4821937*chat.example.org")
    prefs = await client.preferences(contact="4821937*chat.example.org")
    prefs["mute"].value, prefs["mute"].level        # True, "contact"
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import httpx

from openmessenger.client import transport
from openmessenger.client.errors import InvalidArgumentError
from openmessenger.client.models import Contact
from openmessenger.protocol import client_api as wire
from openmessenger.protocol import preferences_api as prefs_wire


@dataclass(frozen=True, slots=True)
class Preference:
    name: str
    value: Any
    level: str
    """Where the value comes from: conversation, contact, device, account or default."""


@dataclass(frozen=True, slots=True)
class ContactRequest:
    id: str
    sender: str
    sender_display_name: str | None
    sender_verified: bool
    note: str | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Block:
    address: str
    blocked_at: datetime


def _level(contact: str | None, conversation: str | None, device: bool) -> dict[str, Any]:
    given = sum((contact is not None, conversation is not None, device))
    if given > 1:
        raise InvalidArgumentError("level", "give one of contact, conversation and device")
    if contact is not None:
        return {"level": "contact", "contact": contact}
    if conversation is not None:
        return {"level": "conversation", "conversation": conversation}
    return {"level": "device" if device else "account"}


class Preferences:
    """The preference, request and block methods of ``Client``."""

    _receipts_preference: tuple[float, bool] | None = None
    """Revisions' cache of ``send_receipts``: a change made here applies at once."""

    if TYPE_CHECKING:  # provided by Client

        async def _call(
            self,
            method: str,
            path: str,
            *,
            body: wire.Request | None = None,
            params: Mapping[str, str | int] | None = None,
        ) -> httpx.Response: ...

    # -- preferences ---------------------------------------------------------------

    async def preferences(
        self, *, contact: str | None = None, conversation: str | None = None
    ) -> dict[str, Preference]:
        """Every preference's effective value for this device, in the context of one
        contact or conversation, with the level it came from."""
        params = {
            k: v for k, v in (("contact", contact), ("conversation", conversation)) if v is not None
        }
        answer = transport.parse_response(
            prefs_wire.PreferencesOut, await self._call("GET", "/preferences", params=params)
        )
        return {p.name: Preference(p.name, p.value, p.level) for p in answer.preferences}

    async def set_preference(
        self,
        name: str,
        value: Any,
        *,
        contact: str | None = None,
        conversation: str | None = None,
        device: bool = False,
    ) -> Preference:
        """Set ``name`` for the account (the default), one contact, one conversation
        or this ``device``; answers what was stored at that level."""
        body = transport.request_body(
            prefs_wire.PreferenceIn,
            {"name": name, "value": value, **_level(contact, conversation, device)},
        )
        answer = transport.parse_response(
            prefs_wire.PreferenceOut, await self._call("PUT", "/preferences", body=body)
        )
        self._receipts_preference = None
        return Preference(answer.name, answer.value, answer.level)

    async def clear_preference(
        self,
        name: str,
        *,
        contact: str | None = None,
        conversation: str | None = None,
        device: bool = False,
    ) -> None:
        """Unset ``name`` at that level: the next wider one applies again."""
        params = {"name": name, **_level(contact, conversation, device)}
        await self._call("DELETE", "/preferences", params=params)
        self._receipts_preference = None

    # -- contact requests ----------------------------------------------------------

    async def request_contact(self, address: str, note: str | None = None) -> None:
        """Ask ``address`` (on this node or another of ours) to connect. Returns the
        same whether the request reached its owner or not: the owner's answer is a
        new contact."""
        body = transport.request_body(prefs_wire.ContactRequestIn, {"to": address, "note": note})
        await self._call("POST", "/requests", body=body)

    async def contact_requests(self) -> list[ContactRequest]:
        """Requests waiting for this account's answer, oldest first."""
        answer = transport.parse_response(
            prefs_wire.ContactRequestList, await self._call("GET", "/requests")
        )
        return [
            ContactRequest(
                r.id, r.sender, r.sender_display_name, r.sender_verified, r.note, r.created_at
            )
            for r in answer.requests
        ]

    async def accept_request(self, request_id: str) -> Contact:
        """Connect with the request's sender (as a pass code would)."""
        response = await self._call("POST", f"/requests/{quote(request_id, safe='')}/accept")
        return Contact.from_wire(transport.parse_response(wire.ContactOut, response))

    async def decline_request(self, request_id: str) -> None:
        """The sender is told nothing; its later requests are dropped."""
        await self._call("POST", f"/requests/{quote(request_id, safe='')}/decline")

    # -- blocks --------------------------------------------------------------------

    async def block(self, address: str) -> Block:
        """Refuse the address's messages and drop its requests (any address)."""
        response = await self._call("POST", f"/contacts/{quote(address, safe='')}/block")
        answer = transport.parse_response(prefs_wire.BlockOut, response)
        return Block(answer.address, answer.blocked_at)

    async def unblock(self, address: str) -> None:
        await self._call("DELETE", f"/contacts/{quote(address, safe='')}/block")

    async def blocks(self) -> list[Block]:
        answer = transport.parse_response(prefs_wire.BlockList, await self._call("GET", "/blocks"))
        return [Block(b.address, b.blocked_at) for b in answer.blocks]
