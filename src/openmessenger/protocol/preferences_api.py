"""JSON shapes of ``/v1/preferences``, ``/v1/requests`` and blocks, shared by the
node and the SDK (docs/api.md). Values are checked by ``core/preferences.py``
so that a bad one is refused naming ``value``, whatever its JSON type."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import Field

from openmessenger.core.contact_requests import MAX_NOTE_CHARS
from openmessenger.protocol.client_api import AddressStr, Request, Response

LevelName = Literal["account", "contact", "device", "conversation"]


class PreferenceIn(Request):
    name: str = Field(max_length=64, examples=["mute"])
    value: Any = Field(
        description="accept_requests: off|verified|anyone; accept_apps: [app ids] or null; "
        'mute, send_receipts: true|false; disappearing_timer: seconds or "off"'
    )
    level: str = Field(
        max_length=16, examples=["contact"], description="account, contact, device or conversation"
    )
    contact: AddressStr | None = Field(default=None, description="with level contact")
    conversation: str | None = Field(
        default=None, max_length=64, description="with level conversation"
    )


class PreferenceOut(Response):
    name: str
    value: Any
    level: str = Field(
        description="where the value comes from: conversation, contact, device, account or default"
    )


class PreferenceContextOut(Response):
    device_id: str
    contact: str | None = None
    conversation: str | None = None


class PreferencesOut(Response):
    context: PreferenceContextOut
    preferences: list[PreferenceOut]


class ContactRequestIn(Request):
    to: AddressStr
    note: str | None = Field(default=None, max_length=MAX_NOTE_CHARS)


class ContactRequestSentOut(Response):
    status: Literal["sent"] = "sent"


class ContactRequestOut(Response):
    id: str
    sender: str
    sender_display_name: str | None = None
    sender_verified: bool = Field(description="the sender's account is registered (verified)")
    note: str | None = None
    created_at: datetime


class ContactRequestList(Response):
    requests: list[ContactRequestOut]


class BlockOut(Response):
    address: str
    blocked_at: datetime


class BlockList(Response):
    blocks: list[BlockOut]
