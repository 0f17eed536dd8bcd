"""Sending, sync and history."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response, status

from openmessenger.api import render, render_keys
from openmessenger.api.deps import CurrentDevice, IdempotencyKey, Services, client_txn_id
from openmessenger.core.envelope import Encryption
from openmessenger.protocol.client_api import API_PREFIX, MessageList, MessageOut, SendIn, SyncOut
from openmessenger.services.messaging import MAX_PAGE

router = APIRouter(prefix=API_PREFIX, tags=["messages"])


@router.post(
    "/messages",
    status_code=status.HTTP_201_CREATED,
    response_model=MessageOut,
    responses={200: {"model": MessageOut, "description": "A retry: the message sent before"}},
)
async def send(
    body: SendIn,
    caller: CurrentDevice,
    services: Services,
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> MessageOut:
    """Send to a connected address. The same ``client_txn_id`` (or ``Idempotency-Key``) twice
    stores and delivers one message."""
    result = await services.messaging.send(
        caller,
        body.to,
        body.body,
        client_txn_id(body.client_txn_id, idempotency_key),
        Encryption(body.encryption),
        media_type=body.media_type,
        metadata=body.metadata,
        app_signature=body.app_signature,
    )
    if not result.created:
        response.status_code = status.HTTP_200_OK
    return render.message(result.message)


@router.get("/messages/{message_id}", response_model=MessageOut)
async def message(message_id: str, caller: CurrentDevice, services: Services) -> MessageOut:
    """One message your account sent or received; ``status`` follows delivery to
    another node (``accepted``, then ``delivered`` or ``failed``)."""
    return render.message(await services.messaging.message(caller, message_id))


@router.get("/sync", response_model=SyncOut)
async def sync(
    caller: CurrentDevice,
    services: Services,
    since: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
    to_device_since: Annotated[int, Query(ge=0)] = 0,
) -> SyncOut:
    """This device's stream after position ``since``, in order; and up to 100
    to-device messages with an id above ``to_device_since``, oldest first (those
    up to ``to_device_since`` are acknowledged: the node deletes them)."""
    page = await services.messaging.sync(caller, since, limit)
    to_device = await services.keys.to_device_inbox(caller, to_device_since)
    return SyncOut(
        events=[render.stream_event(e) for e in page.events],
        to_device=[render_keys.to_device(m) for m in to_device],
        next_since=page.next_since,
        has_more=page.has_more,
    )


@router.get("/conversations/{conversation_id}/messages", response_model=MessageList)
async def history(
    conversation_id: str,
    caller: CurrentDevice,
    services: Services,
    after_seq: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
) -> MessageList:
    """The stored conversation, oldest first; page on with ``after_seq`` = the last ``seq``."""
    page = await services.messaging.history(caller, conversation_id, after_seq, limit)
    return MessageList(messages=[render.message(m) for m in page.messages], has_more=page.has_more)
