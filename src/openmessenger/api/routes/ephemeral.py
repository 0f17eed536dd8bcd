"""Ephemeral (disappearing) messages: send one, and take what waits for this device."""

from __future__ import annotations

from fastapi import APIRouter, Response, status

from openmessenger.api.deps import CurrentDevice, IdempotencyKey, Services, client_txn_id
from openmessenger.api.ephemeral import event_out, sent_out
from openmessenger.protocol.client_api import API_PREFIX
from openmessenger.protocol.ephemeral import EphemeralPollOut, EphemeralSendIn, EphemeralSentOut

router = APIRouter(prefix=API_PREFIX, tags=["ephemeral"])


@router.post(
    "/ephemeral",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=EphemeralSentOut,
    responses={200: {"model": EphemeralSentOut, "description": "A retry: the same message"}},
)
async def send(
    body: EphemeralSendIn,
    caller: CurrentDevice,
    services: Services,
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> EphemeralSentOut:
    """Relay a disappearing message to one device of a connected address on this
    node or on another of our nodes (passed on at once, answered once that node
    held or refused it), from memory only. Undelivered after the hold (at most
    120 s), it is dropped and the sending device gets an ``ephemeral.expired``
    event."""
    sent = await services.ephemeral.send(
        caller,
        body.to,
        body.device,
        body.body,
        body.lifespan_seconds,
        client_txn_id(body.client_txn_id, idempotency_key),
    )
    if not sent.created:
        response.status_code = status.HTTP_200_OK
    return sent_out(sent.message)


@router.get("/ephemeral", response_model=EphemeralPollOut)
async def take(caller: CurrentDevice, services: Services) -> EphemeralPollOut:
    """What waits for this device (messages to it, expiry notices about its own),
    oldest first. The node forgets each one as it answers: ask again and they are
    gone. A device holding ``/v1/stream?ephemeral=1`` gets them there instead."""
    events = await services.ephemeral.poll(caller)
    return EphemeralPollOut(events=[event_out(e) for e in events])
