"""Receipts, edits and deletions for everyone: the pure rules (docs/conversations.md).

An **edit** is a new end-to-end body appended to the conversation as a message
of the reserved media type ``message.edit`` whose ``replaces`` names the message
it replaces; only the original's sender may append one, in the same
conversation. A **deletion** erases the body and metadata of a message and of
all its edits (a tombstone keeps id, seq, sender and ``deleted_at``) and appends
a node-authored ``message.delete`` event naming it, so every device learns it
in order. The node gives these media types meaning, so a client can never send
them as ordinary messages (``message.*`` is reserved).

A **receipt** says that a reader's account got (``delivered``) or read (``read``)
a message; it goes to the message's sender account only, on a feed of its own.
"""

from __future__ import annotations

import enum
import hashlib
import json
from dataclasses import dataclass
from datetime import datetime

from openmessenger.core.envelope import Encryption, Message
from openmessenger.core.errors import Conflict, Forbidden, InvalidInput, NotFound
from openmessenger.core.ids import AccountId, Address, ConversationId, MessageId

RESERVED_PREFIX = "message."
EDIT_MEDIA_TYPE = "message.edit"
DELETE_MEDIA_TYPE = "message.delete"
"""The event that tells every device a message was deleted (metadata ``deletes``)."""
TOMBSTONE_MEDIA_TYPE = "message.deleted"
"""What is left of a deleted message (and of its edits): no body, no metadata."""
DELETED_NOTICE = "This message was deleted."
"""The body of a ``message.delete`` event: fixed text, never a user's content, so a
client that knows nothing of deletions shows something sensible."""

NOT_SENDER = "not_message_sender"
MESSAGE_NOT_FOUND = "message_not_found"
MESSAGE_DELETED = "message_deleted"
NOT_REVISABLE = "message_not_revisable"
REMOTE_UNSUPPORTED = "revision_remote_unsupported"

MAX_RECEIPT_IDS = 100


def check_not_reserved(media_type: str, *, field: str = "media_type") -> None:
    """Ordinary sends may not use ``message.*``: the node gives those meaning."""
    if media_type.lower().startswith(RESERVED_PREFIX):
        raise InvalidInput(field, f"{RESERVED_PREFIX}* media types are reserved to the node")


def no_message() -> NotFound:
    return NotFound("No such message.", code=MESSAGE_NOT_FOUND)


def is_content(message: Message) -> bool:
    """A message a person wrote (not an edit, a deletion, a tombstone or a
    node-authored event): the only kind that can be edited, deleted or receipted.
    A message from another node has no ``sender_device`` (not ours to name); the
    node's own events all have reserved media types."""
    return not message.media_type.startswith((RESERVED_PREFIX, "group."))


def check_revisable(message: Message, sender: Address) -> None:
    """``sender`` may edit or delete ``message``: it sent it, and it is content
    still there. The caller has already checked that ``sender`` can see it."""
    if message.deleted_at is not None:
        raise Conflict("The message was deleted.", code=MESSAGE_DELETED)
    if not is_content(message):
        raise Conflict("Only a message someone wrote can be changed.", code=NOT_REVISABLE)
    if message.sender != sender:
        raise Forbidden("Only the sender may change a message.", code=NOT_SENDER)


def bound_replaces(media_type: str, replaces: str | None) -> str | None:
    """What an end-to-end plaintext must name as ``replaces`` for a message of this
    envelope: the replaced id for an edit, nothing for anything else."""
    return replaces if media_type == EDIT_MEDIA_TYPE else None


REMOTE_REPLACES = "remote_replaces"
"""In the metadata of an edit that came from another node: the replaced message's
id on the sender's node, which the edit's plaintext names (the receiving node
stores the message under an id of its own)."""


def accepted_replaces(
    media_type: str,
    replaces: str | None,
    metadata: object = None,
    *,
    sender: str = "",
    reader: str = "",
) -> frozenset[str | None]:
    """What an end-to-end plaintext may name as ``replaces``: :func:`bound_replaces`,
    and for an edit that ``sender`` wrote on another node than ``reader``'s also the
    id its sender's node gave the replaced message (``REMOTE_REPLACES``: that the
    two name one message is the reader's node's word, as message ids are). Between
    addresses of one node the binding stays exact."""
    bound = bound_replaces(media_type, replaces)
    same_node = sender.rpartition("*")[2].lower() == reader.rpartition("*")[2].lower()
    if bound is None or same_node or not isinstance(metadata, dict):
        return frozenset({bound})
    remote = metadata.get(REMOTE_REPLACES)
    return frozenset({bound, remote}) if isinstance(remote, str) and remote else frozenset({bound})


def remote_reader_id(address: str) -> AccountId:
    """The reader account id a receipt from another node's address is kept under
    (at most 32 characters, never an id of a local account)."""
    return AccountId("~" + hashlib.sha256(address.encode()).hexdigest()[:31])


def key_shares_only(body: str) -> str:
    """What a tombstone keeps of an om.megolm.v1 body: its key shares (Olm-wrapped
    session keys for named devices, no content), so a device that had not yet
    read them can open the *other* messages of that Megolm session; the
    ciphertext goes. Anything else: nothing."""
    try:
        parsed = json.loads(body)
    except ValueError:
        return ""
    if not isinstance(parsed, dict) or parsed.get("alg") != "om.megolm.v1":
        return ""
    if not parsed.get("key_shares"):
        return ""
    kept = {k: parsed.get(k) for k in ("alg", "sender_key", "session_id", "key_shares")}
    return json.dumps(kept, separators=(",", ":"))


def edit_metadata(replaces: MessageId) -> dict[str, str]:
    return {"replaces": replaces}


def delete_metadata(deletes: MessageId) -> dict[str, str]:
    return {"deletes": deletes}


class ReceiptKind(enum.StrEnum):
    DELIVERED = "delivered"
    READ = "read"


def parse_kind(value: object, *, field: str = "kind") -> ReceiptKind:
    try:
        return ReceiptKind(str(value))
    except ValueError:
        raise InvalidInput(field, "must be delivered or read") from None


def check_receipt_ids(ids: list[str], *, field: str = "message_ids") -> list[MessageId]:
    if not 1 <= len(ids) <= MAX_RECEIPT_IDS:
        raise InvalidInput(field, f"must name 1 to {MAX_RECEIPT_IDS} messages")
    for index, value in enumerate(ids):
        if not value or len(value) > 64:
            raise InvalidInput(f"{field}[{index}]", "is not a message id")
    return [MessageId(i) for i in dict.fromkeys(ids)]


def receivable(message: Message, reader: Address) -> bool:
    """A receipt from ``reader`` for ``message`` means something: the message is
    content someone else wrote, still there."""
    return is_content(message) and message.deleted_at is None and message.sender != reader


@dataclass(frozen=True, slots=True)
class Receipt:
    """``reader`` got (or read) ``message_id`` at ``at``. ``id`` is its place on the
    sender account's receipt feed (strictly increasing)."""

    id: int
    message_id: MessageId
    conversation_id: ConversationId
    sender_account: AccountId
    reader: Address
    kind: ReceiptKind
    at: datetime


@dataclass(frozen=True, slots=True)
class RevisionAppend:
    """One edit or deletion event to append to a 1:1 conversation (the group path
    is ``MessageRepository.append_group``): to the streams of every device of
    ``receivers`` but the sending one."""

    message_id: MessageId
    conversation_id: ConversationId
    sender: Address
    sender_device: str
    recipient: Address
    body: str
    encryption: Encryption
    media_type: str
    metadata: dict[str, str]
    replaces: MessageId
    client_txn_id: str | None
    sent_at: datetime
    receivers: tuple[AccountId, ...]


@dataclass(frozen=True, slots=True)
class RemoteReference:
    """How another of our nodes names a 1:1 message: the addresses as the
    connection spells them and the nonce its Openmsg package carried."""

    sender: Address
    recipient: Address
    nonce: str


@dataclass(frozen=True, slots=True)
class OutboundRevision:
    """An edit, deletion or receipt waiting for another node (services/message_federation.py)."""

    id: int
    domain: str
    message_id: MessageId
    item: str
    """The JSON of the wire item (an edit without its body)."""
    give_up_at: datetime
