"""JSON shapes of receipts, edits and deletions (docs/api.md, "Receipts, edits and
deletions"); shared by the node and the SDK."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import Field

from openmessenger.core.envelope import CLIENT_TXN_ID_PATTERN
from openmessenger.core.revisions import MAX_RECEIPT_IDS
from openmessenger.protocol.client_api import Request, Response
from openmessenger.protocol.e2e import MAX_ENCRYPTED_BODY_CHARS

ReceiptKindStr = Literal["delivered", "read"]


class EditIn(Request):
    body: str = Field(
        min_length=1,
        max_length=MAX_ENCRYPTED_BODY_CHARS,
        description="The new text as an om.megolm.v1 body whose plaintext names the "
        "replaced message (docs/encryption.md)",
    )
    encryption: Literal["end-to-end"] = "end-to-end"
    client_txn_id: str | None = Field(
        default=None,
        pattern=CLIENT_TXN_ID_PATTERN,
        description="Idempotency key: the same one twice stores one edit",
    )


class ReceiptsIn(Request):
    kind: ReceiptKindStr
    message_ids: list[Annotated[str, Field(min_length=1, max_length=64)]] = Field(
        min_length=1, max_length=MAX_RECEIPT_IDS
    )


class ReceiptOut(Response):
    type: Literal["receipt"] = "receipt"
    id: int = Field(description="Its place on the sender account's receipt feed")
    message_id: str
    conversation_id: str
    reader: str = Field(description="The address whose device got or read the message")
    kind: ReceiptKindStr
    at: datetime


class ReceiptList(Response):
    receipts: list[ReceiptOut]


class ReceiptFeedOut(Response):
    receipts: list[ReceiptOut]
    next_since: int = Field(description="Pass as ?since= next time")
    has_more: bool
