"""Receipts, edits and deletions of 1:1 messages between our nodes: the
``revisions`` capability of our Openmsg extension (docs/openmsg.md).

A message that crossed to another node has an id on each node; what both know
is the Openmsg nonce its package carried. A message is therefore named between
nodes by a **reference**: ``(sender, recipient, nonce)``, the addresses as the
connection spells them and the nonce as ``message-confirm/`` carries it
(strict base64url of 24 bytes).

One signed request (services/signed_requests.py), never sent to an Openmsg v1
peer: ``message-revisions/``, a batch of items in the order they happened on
the sending node:

- ``edit`` (from the sender's node): a new end-to-end body for the message;
  ``id`` is the edit's id on the sending node (the receiver stores it once per
  ``(sender, id)``), ``replaces`` the original's id there (the edit's plaintext
  names it: docs/encryption.md).
- ``delete`` (from the sender's node): the message is deleted for everyone.
- ``receipt`` (from the recipient's node): the recipient got (``delivered``) or
  read (``read``) it at ``at``.
- ``group-receipt`` (from the reader's node, to the sender's node; only to a
  node that also announces ``group-receipts``): a participant of a group read
  or got one of its messages. Group messages keep the host's id on every node,
  so the item names the group and the message by id.

The answer is HTTP 200 JSON ``{"ok": true, "results": [...]}``, one of
``applied`` or ``refused`` per item, in order; ``refused`` never says why.
``later`` (group receipts only) means the message has not reached the sender's
node yet (the host's fan-out to it may trail the reader's node): send the item
again after a while; a ``later`` for any other item is taken as ``refused``. A
request whose signature or origin does not verify gets an Openmsg error body.
"""

from __future__ import annotations

from typing import Annotated, Final, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from openmessenger.protocol.e2e import MAX_ENCRYPTED_BODY_CHARS

REVISIONS = "revisions"
GROUP_RECEIPTS = "group-receipts"
MESSAGE_REVISIONS_PATH = "/openmsg/x-openmessenger/message-revisions/"
MAX_ITEMS = 64
MAX_BATCH_BODY_CHARS = 768 * 1024
"""A request carries at most this many edit body characters (at least one item)."""

APPLIED: Final = "applied"
REFUSED: Final = "refused"
LATER: Final = "later"
Result = Literal["applied", "refused", "later"]

_Address = Field(min_length=3, max_length=300)
_Nonce = Field(min_length=32, max_length=32, pattern=r"^[A-Za-z0-9_-]{32}$")
_Id = Field(min_length=1, max_length=32)


class _Wire(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class _Item(_Wire):
    sender: str = _Address
    """Who sent the message the item is about."""
    recipient: str = _Address
    """Whom it was sent to."""
    nonce: str = _Nonce
    """The nonce of the message's Openmsg package."""


class EditItem(_Item):
    type: Literal["edit"] = "edit"
    id: str = _Id
    replaces: str = _Id
    body: str = Field(min_length=1, max_length=MAX_ENCRYPTED_BODY_CHARS)
    sent_at: AwareDatetime


class DeleteItem(_Item):
    type: Literal["delete"] = "delete"
    sent_at: AwareDatetime


class ReceiptItem(_Item):
    type: Literal["receipt"] = "receipt"
    kind: Literal["delivered", "read"]
    at: AwareDatetime


class GroupReceiptItem(_Wire):
    type: Literal["group-receipt"] = "group-receipt"
    group_id: str = _Id
    message_id: str = _Id
    seq: int = Field(ge=1, le=2**63 - 1)
    """The message's place in the group's one order (the host's)."""
    sender: str = _Address
    """Who sent the message (an address of the node the item goes to)."""
    reader: str = _Address
    """The participant who got or read it (an address of the signing node)."""
    kind: Literal["delivered", "read"]
    at: AwareDatetime


Item = Annotated[
    EditItem | DeleteItem | ReceiptItem | GroupReceiptItem, Field(discriminator="type")
]


class RevisionsRequest(_Wire):
    items: list[Item] = Field(min_length=1, max_length=MAX_ITEMS)


class RevisionsAnswer(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    ok: Literal[True] = True
    results: list[Result] = Field(max_length=MAX_ITEMS)
