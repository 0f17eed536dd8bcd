"""Receipts, edits and deletions for everyone (docs/api.md)."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Annotated

from fastapi import APIRouter, Query, Response, WebSocket, status
from starlette.websockets import WebSocketDisconnect

from openmessenger.api import render
from openmessenger.api.deps import (
    CurrentDevice,
    IdempotencyKey,
    Services,
    authenticate,
    client_txn_id,
    services_of,
)
from openmessenger.core.envelope import DeliveryStatus, Encryption
from openmessenger.core.errors import DomainError, InvalidInput
from openmessenger.core.revisions import Receipt
from openmessenger.protocol.client_api import API_PREFIX, MessageOut
from openmessenger.protocol.revisions_api import (
    EditIn,
    ReceiptFeedOut,
    ReceiptList,
    ReceiptOut,
    ReceiptsIn,
)
from openmessenger.services.messaging import check_since
from openmessenger.services.revisions import RECEIPT_PAGE

router = APIRouter(prefix=API_PREFIX, tags=["receipts, edits and deletions"])

CLOSE_UNAUTHENTICATED = 4401
CLOSE_BAD_REQUEST = 4400


def receipt(r: Receipt) -> ReceiptOut:
    return ReceiptOut(
        id=r.id,
        message_id=r.message_id,
        conversation_id=r.conversation_id,
        reader=r.reader,
        kind=r.kind.value,
        at=r.at,
    )


@router.post(
    "/messages/{message_id}/edits",
    status_code=status.HTTP_201_CREATED,
    response_model=MessageOut,
    responses={
        200: {"model": MessageOut, "description": "A retry: the edit stored before"},
        202: {
            "model": MessageOut,
            "description": "A group hosted on another node that did not answer yet: the "
            "edit is kept and forwarded (status accepted, seq 0 until it is ordered)",
        },
    },
)
async def edit(
    message_id: str,
    body: EditIn,
    caller: CurrentDevice,
    services: Services,
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> MessageOut:
    """Replace the text of a message your account sent (1:1 or group): the edit is
    a ``message.edit`` message in the same conversation whose ``replaces`` names
    it. Someone else's message: ``403 not_message_sender``; one you cannot see:
    ``404 message_not_found``; a deleted one: ``409 message_deleted``."""
    result = await services.revisions.edit(
        caller,
        message_id,
        body.body,
        client_txn_id(body.client_txn_id, idempotency_key),
        Encryption(body.encryption),
    )
    if not result.created:
        response.status_code = status.HTTP_200_OK
    elif result.message.status is DeliveryStatus.ACCEPTED:
        response.status_code = status.HTTP_202_ACCEPTED  # kept for the group's host
    return render.message(result.message)


@router.delete(
    "/messages/{message_id}",
    response_model=MessageOut,
    responses={
        202: {
            "model": MessageOut,
            "description": "A group hosted on another node that did not answer yet: the "
            "deletion is kept and forwarded; the message as it stands (no deleted_at)",
        },
    },
)
async def delete(
    message_id: str, caller: CurrentDevice, services: Services, response: Response
) -> MessageOut:
    """Delete a message your account sent, for everyone: its body and metadata and
    those of its edits are erased from the node; the tombstone (id, seq, sender,
    ``deleted_at``) is returned, and a ``message.delete`` event reaches every device
    of every participant."""
    found = await services.revisions.delete(caller, message_id)
    if found.deleted_at is None:
        response.status_code = status.HTTP_202_ACCEPTED  # kept for the group's host
    return render.message(found)


@router.post("/receipts", response_model=ReceiptList)
async def acknowledge(body: ReceiptsIn, caller: CurrentDevice, services: Services) -> ReceiptList:
    """Say that your device got (``delivered``) or read (``read``) messages. The
    answer lists the receipts recorded now; messages you cannot see, your own,
    events, receipts given before and anything while your ``send_receipts``
    preference is off are passed over without an error."""
    added = await services.revisions.acknowledge(caller, body.kind, body.message_ids)
    return ReceiptList(receipts=[receipt(r) for r in added])


@router.get("/messages/{message_id}/receipts", response_model=ReceiptList)
async def receipts_of(message_id: str, caller: CurrentDevice, services: Services) -> ReceiptList:
    """Who got and who read a message your account sent, oldest first."""
    found = await services.revisions.receipts_of(caller, message_id)
    return ReceiptList(receipts=[receipt(r) for r in found])


@router.get("/receipts", response_model=ReceiptFeedOut)
async def feed(
    caller: CurrentDevice,
    services: Services,
    since: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=RECEIPT_PAGE)] = 100,
) -> ReceiptFeedOut:
    """Receipts for your account's messages after ``since`` (a receipt ``id``), in order."""
    found, has_more = await services.revisions.feed(caller, since, limit)
    return ReceiptFeedOut(
        receipts=[receipt(r) for r in found],
        next_since=found[-1].id if found else since,
        has_more=has_more,
    )


@router.websocket("/receipts/stream")
async def stream(socket: WebSocket) -> None:
    """The receipt feed live from ``?since=``: one ``ReceiptOut`` JSON frame each,
    the backlog first. Close codes: 4401 no or a bad token, 4400 a bad ``since``."""
    await socket.accept()
    services = services_of(socket)
    raw = socket.query_params.get("since", "0")
    try:
        if not (raw.isascii() and raw.isdigit()):
            raise InvalidInput("since", "must be a whole number, 0 or more")
        since = int(raw)
        check_since(since)
    except InvalidInput as bad:
        await socket.close(CLOSE_BAD_REQUEST, f"since {bad.reason}")
        return
    try:
        caller = await authenticate(services, socket.scope)
    except DomainError:
        await socket.close(CLOSE_UNAUTHENTICATED, "unauthenticated")
        return

    async def forward() -> None:
        receipts = services.revisions.follow(caller.account.id, since)
        try:
            async for r in receipts:
                await socket.send_text(receipt(r).model_dump_json())
        finally:
            await receipts.aclose()

    sender = asyncio.create_task(forward())
    try:
        while True:
            await socket.receive_text()
    except WebSocketDisconnect:
        pass
    finally:
        sender.cancel()
        with contextlib.suppress(asyncio.CancelledError, OSError, RuntimeError, DomainError):
            await sender
