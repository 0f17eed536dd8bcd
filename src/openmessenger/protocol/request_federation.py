"""Contact requests across our nodes: the ``requests`` capability of our Openmsg
extension. Two signed requests (services/signed_requests.py), never sent to an
Openmsg v1 peer:

- ``request-send/`` sender's node -> target's node: one of its addresses asks an
  address there to connect, with the note, its display name and whether its
  account is registered (verified), as the sending node vouches. The answer is
  ``{"ok": true}`` whatever the target's node did with it: stored or dropped,
  the sending node cannot tell (nor, through it, the sender).
- ``request-accept/`` target's node -> sender's node: the target accepted; here
  is a one-time pass code bound to the sender. The sender's node redeems it
  with the ordinary Openmsg handshake (``auth/``) only when its address really
  has a request out to the target; ``{"ok": true, "connected": bool}``.

A request whose signature, origin or shape does not verify gets an Openmsg
error body. docs/openmsg.md describes the wire shapes.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from openmessenger.core.contact_requests import MAX_NOTE_CHARS
from openmessenger.core.ids import MAX_DISPLAY_NAME_LENGTH
from openmessenger.core.passcodes import CODE_DIGITS

REQUESTS = "requests"
REQUEST_SEND_PATH = "/openmsg/x-openmessenger/request-send/"
REQUEST_ACCEPT_PATH = "/openmsg/x-openmessenger/request-accept/"

_Address = Field(min_length=3, max_length=300)


class _Wire(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class RequestSendRequest(_Wire):
    sender: str = _Address
    """An address of the signing node."""
    sender_name: str | None = Field(default=None, max_length=MAX_DISPLAY_NAME_LENGTH)
    sender_verified: bool
    """The sender's account is registered (verified), as its node vouches."""
    to: str = _Address
    """An address of the receiving node."""
    note: str | None = Field(default=None, max_length=MAX_NOTE_CHARS)


class RequestAcceptRequest(_Wire):
    target: str = _Address
    """Who accepted: an address of the signing node."""
    sender: str = _Address
    """Whose request it was: an address of the receiving node."""
    pass_code: str = Field(pattern=rf"^[0-9]{{{CODE_DIGITS}}}$")
    """One use, bound to ``sender``, issued by ``target``."""


class RequestSendAnswer(BaseModel):
    """The one answer to every ``request-send/`` that verifies."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    ok: Literal[True] = True


class RequestAcceptAnswer(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    ok: Literal[True] = True
    connected: bool
    """True once the handshake made the connection on both nodes."""
