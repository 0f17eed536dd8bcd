"""Receipts, edits and deletions for everyone: the SDK side (docs/sdk.md).

* ``edit(message_id, text)`` encrypts the new text for the same conversation,
  with the replaced id inside the plaintext (client/e2e.py checks it on opening:
  a node cannot re-target an edit); ``apply_revisions`` folds a conversation's
  edits and deletions into the latest version of each message.
* ``delete_for_everyone(message_id)``: the node erases the message; every device
  gets a ``message.delete`` event. The SDK keeps no message text on disk, so
  nothing local needs erasing; the Megolm replay index (message id and index
  only, no content) stays, so a deleted message's ciphertext can never be
  replayed under another envelope.
* Receipts: ``sync()`` and ``listen()`` acknowledge ``delivered`` for what they
  hand over, ``mark_read`` says ``read``; neither is sent while the account's
  ``send_receipts`` preference is off. ``receipts(message_id)``,
  ``sync_receipts()`` and ``listen_receipts()`` give the sender's devices the
  receipts of their messages.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncGenerator, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING
from urllib.parse import quote

import httpx
from websockets.asyncio.client import ClientConnection

from openmessenger.client import transport
from openmessenger.client.crypto_store import CryptoStore
from openmessenger.client.errors import ApiError, InvalidArgumentError, ServerUnreachableError
from openmessenger.client.models import Message
from openmessenger.core.envelope import MAX_BODY_CHARS
from openmessenger.core.ids import Address, MessageId
from openmessenger.core.revisions import (
    DELETE_MEDIA_TYPE,
    EDIT_MEDIA_TYPE,
    MAX_RECEIPT_IDS,
    TOMBSTONE_MEDIA_TYPE,
)
from openmessenger.protocol import client_api as wire
from openmessenger.protocol import groups_api
from openmessenger.protocol import revisions_api as receipts_wire

if TYPE_CHECKING:
    from openmessenger.client.e2e import EndToEnd

RECEIPTS_CURSOR_SETTING = "receipts_since"
PREFERENCE_CACHE_SECONDS = 10.0
_EDIT_ATTEMPTS = 3


@dataclass(frozen=True, slots=True)
class Receipt:
    """``reader`` got (``delivered``) or read (``read``) ``message_id`` at ``at``."""

    id: int
    message_id: MessageId
    conversation_id: str
    reader: Address
    kind: str
    at: datetime

    @classmethod
    def from_wire(cls, r: receipts_wire.ReceiptOut) -> Receipt:
        return cls(
            r.id, MessageId(r.message_id), r.conversation_id, Address(r.reader), r.kind, r.at
        )


def apply_revisions(messages: Sequence[Message]) -> list[Message]:
    """A conversation as people read it: each message with the text of its latest
    edit that opened and came from its sender (and that edit's time as
    ``edited_at``), edits and deletion events folded in, deleted messages gone.
    Give it the whole conversation (``history``) or a run of messages in order."""
    out: dict[str, Message] = {}
    edited: set[str] = set()
    tried: set[str] = set()
    for message in messages:
        if message.media_type == EDIT_MEDIA_TYPE and message.replaces is not None:
            original = out.get(message.replaces)
            tried.add(message.replaces)
            if original is not None and message.error is None and message.sender == original.sender:
                out[message.replaces] = replace(
                    original, text=message.text, edited_at=message.sent_at
                )
                edited.add(message.replaces)
        elif message.media_type == DELETE_MEDIA_TYPE and message.replaces is not None:
            out.pop(message.replaces, None)
        elif message.media_type != TOMBSTONE_MEDIA_TYPE:
            out[message.id] = message
    for message_id in tried - edited:
        # Its edits here did not open (or came from someone else): the node's
        # edited_at notwithstanding, the text shown is the original's.
        if message_id in out:
            out[message_id] = replace(out[message_id], edited_at=None)
    return list(out.values())


def _is_group(message: wire.MessageOut) -> bool:
    return message.recipient == message.conversation_id


def _acknowledgeable(message: Message, me: Address | None) -> bool:
    """Someone else's message (from this node or another: a message from another
    node names no sending device), not an edit, deletion or node event."""
    return (
        message.error is None
        and message.sender != me
        and not message.media_type.startswith(("message.", "group."))
    )


class Revisions:
    """The receipt, edit and deletion methods of ``Client``."""

    _receipts_preference: tuple[float, bool] | None = None
    """(when asked, ``send_receipts``); forgotten when this client changes it."""

    if TYPE_CHECKING:  # provided by Client
        server_url: str
        _timeout: float
        _crypto_store: CryptoStore | None

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

        async def _session_token(self) -> str: ...

        async def _reauthenticate(self, *, stale_token: str) -> str: ...

        async def end_to_end(self) -> EndToEnd: ...

        async def _open(self, message: wire.MessageOut, position: int | None = None) -> Message: ...

    # -- edits and deletions ------------------------------------------------------------

    async def edit(self, message_id: str, text: str, client_txn_id: str | None = None) -> Message:
        """Replace the text of a message this account sent (1:1 or group). Every
        device of every participant gets the edit; ``history`` shows the latest text.
        In a group hosted on another node that cannot be reached now, the edit comes
        back ``accepted`` with ``seq`` 0: kept and forwarded, it arrives later."""
        if not text or len(text) > MAX_BODY_CHARS:
            raise InvalidArgumentError("text", f"must be 1 to {MAX_BODY_CHARS} characters")
        txn_id = client_txn_id or uuid.uuid4().hex
        path = f"/messages/{quote(message_id, safe='')}"
        original = transport.parse_response(wire.MessageOut, await self._call("GET", path))
        engine = await self.end_to_end()
        if _is_group(original):
            group = transport.parse_response(
                groups_api.GroupOut,
                await self._call("GET", f"/groups/{quote(original.conversation_id, safe='')}"),
            )
            joined = [Address(m.address) for m in group.members if m.state == "joined"]
            encrypted = await engine.encrypt_for_group(
                original.conversation_id, joined, text, replaces=original.id
            )
        else:
            encrypted = await engine.encrypt(
                Address(original.recipient), text, replaces=original.id
            )
        body = transport.request_body(
            receipts_wire.EditIn,
            {"body": encrypted, "encryption": "end-to-end", "client_txn_id": txn_id},
        )
        for attempt in range(_EDIT_ATTEMPTS):
            try:
                response = await self._call("POST", f"{path}/edits", body=body)
                break
            except ServerUnreachableError:
                if attempt == _EDIT_ATTEMPTS - 1:
                    raise
                await asyncio.sleep(0.5 * 2**attempt)
        await engine.back_up()
        return Message.from_wire(transport.parse_response(wire.MessageOut, response), text=text)

    async def delete_for_everyone(self, message_id: str) -> Message:
        """Delete a message this account sent, for everyone: the node erases it and
        its edits and tells every device. Returns what is left (``deleted_at``). In a
        group hosted on another node that cannot be reached now: the message as it
        still stands (no ``deleted_at``); the deletion is forwarded and arrives later."""
        response = await self._call("DELETE", f"/messages/{quote(message_id, safe='')}")
        return Message.from_wire(transport.parse_response(wire.MessageOut, response))

    # -- receipts -----------------------------------------------------------------------

    async def sends_receipts(self, conversation_id: str | None = None) -> bool:
        """This account's ``send_receipts`` preference here (default true)."""
        params = {"conversation": conversation_id} if conversation_id else {}
        response = await self._call("GET", "/preferences", params=params)
        for item in response.json().get("preferences", []):
            if item.get("name") == "send_receipts":
                return item.get("value") is not False
        return True

    async def mark_read(self, *message_ids: str) -> list[Receipt]:
        """Tell the senders these messages were read (nothing while
        ``send_receipts`` is off)."""
        return await self._acknowledge("read", message_ids)

    async def mark_delivered(self, *message_ids: str) -> list[Receipt]:
        return await self._acknowledge("delivered", message_ids)

    async def receipts(self, message_id: str) -> list[Receipt]:
        """Who got and who read a message this account sent."""
        response = await self._call("GET", f"/messages/{quote(message_id, safe='')}/receipts")
        found = transport.parse_response(receipts_wire.ReceiptList, response).receipts
        return [Receipt.from_wire(r) for r in found]

    async def sync_receipts(self) -> list[Receipt]:
        """Receipts of this account's messages that arrived since the saved receipt
        cursor, oldest first; the cursor moves past them."""
        since = await self._receipts_cursor()
        found: list[Receipt] = []
        while True:
            page = transport.parse_response(
                receipts_wire.ReceiptFeedOut,
                await self._call("GET", "/receipts", params={"since": since, "limit": 500}),
            )
            found.extend(Receipt.from_wire(r) for r in page.receipts if r.id > since)
            if page.next_since <= since:
                break
            since = page.next_since
            if not page.has_more:
                break
        self._save_receipts_cursor(since)
        return found

    async def listen_receipts(self) -> AsyncGenerator[Receipt]:
        """Receipts as they arrive (first any not yet synced), saving the cursor
        as each is handed over."""
        since = await self._receipts_cursor()
        token = await self._session_token()

        def open_(token: str) -> contextlib.AbstractAsyncContextManager[ClientConnection]:
            # From the cursor as it is at each (re)connection.
            url = transport.socket_url(self.server_url, "/receipts/stream", {"since": since})
            return transport.open_socket(
                self.server_url, url, token, open_timeout_seconds=self._timeout
            )

        frames = transport.reconnecting_frames(open_, token, self._reauthenticate)
        try:
            async for frame in frames:
                r = receipts_wire.ReceiptOut.model_validate_json(frame)
                if r.id <= since:
                    continue
                since = r.id
                try:
                    yield Receipt.from_wire(r)
                finally:
                    self._save_receipts_cursor(since)
        finally:
            await frames.aclose()

    # -- inside -------------------------------------------------------------------------

    async def _acknowledge(self, kind: str, message_ids: Iterable[str]) -> list[Receipt]:
        ids = list(dict.fromkeys(message_ids))
        if not ids or not await self._sends_receipts_cached():
            return []
        added: list[Receipt] = []
        for start in range(0, len(ids), MAX_RECEIPT_IDS):
            body = transport.request_body(
                receipts_wire.ReceiptsIn,
                {"kind": kind, "message_ids": ids[start : start + MAX_RECEIPT_IDS]},
            )
            page = transport.parse_response(
                receipts_wire.ReceiptList, await self._call("POST", "/receipts", body=body)
            )
            added.extend(Receipt.from_wire(r) for r in page.receipts)
        return added

    async def _sends_receipts_cached(self) -> bool:
        """``sends_receipts()``, asked at most every few seconds (``listen`` acknowledges
        message by message). The node enforces the preference itself, so a value
        cached a moment too long lets nothing through."""
        cached = self._receipts_preference
        now = time.monotonic()
        if cached is not None and now - cached[0] < PREFERENCE_CACHE_SECONDS:
            return cached[1]
        sends = await self.sends_receipts()
        self._receipts_preference = (now, sends)
        return sends

    async def _acknowledge_delivered(self, messages: Sequence[Message]) -> None:
        """Best effort, after ``sync``/``listen`` handed messages over: a failure
        here never costs the caller a message."""
        ids = [m.id for m in messages if _acknowledgeable(m, self.address)]
        if not ids:
            return
        with contextlib.suppress(ApiError, ServerUnreachableError):
            await self._acknowledge("delivered", ids)

    async def _receipts_cursor(self) -> int:
        await self.end_to_end()
        store = self._crypto_store
        assert store is not None
        with store.transaction():
            value = store.setting(RECEIPTS_CURSOR_SETTING)
        return int(value) if value and value.isdigit() else 0

    def _save_receipts_cursor(self, since: int) -> None:
        store = self._crypto_store
        assert store is not None
        with store.transaction():
            store.set_setting(RECEIPTS_CURSOR_SETTING, str(since))
