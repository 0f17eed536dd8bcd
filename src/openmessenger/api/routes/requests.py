"""Two-way contact requests (off unless the owner turns them on), and blocks."""

from __future__ import annotations

from fastapi import APIRouter, Response, status

from openmessenger.api import render
from openmessenger.api.deps import CurrentDevice, PersonDevice, Services
from openmessenger.protocol.client_api import API_PREFIX, ContactOut
from openmessenger.protocol.preferences_api import (
    BlockList,
    BlockOut,
    ContactRequestIn,
    ContactRequestList,
    ContactRequestOut,
    ContactRequestSentOut,
)

router = APIRouter(prefix=API_PREFIX, tags=["contact requests and blocks"])


@router.post(
    "/requests", status_code=status.HTTP_202_ACCEPTED, response_model=ContactRequestSentOut
)
async def send_request(
    body: ContactRequestIn, caller: CurrentDevice, services: Services
) -> ContactRequestSentOut:
    """Ask an address to connect, on this node or on another of our nodes. The
    answer is the same whether the request reached its owner or was dropped
    (requests off, unknown address, blocked, declined before, ...). 409
    ``requests_remote_unsupported`` for an address on an Openmsg v1 node, 502
    ``peer_unavailable`` when its node cannot be reached; 429 past the hourly
    limit."""
    await services.contact_requests.send(caller, body.to, body.note)
    return ContactRequestSentOut()


@router.get("/requests", response_model=ContactRequestList)
async def incoming_requests(caller: CurrentDevice, services: Services) -> ContactRequestList:
    """Requests waiting for your answer (from this node and our others), oldest first."""
    found = await services.contact_requests.incoming(caller)
    return ContactRequestList(
        requests=[
            ContactRequestOut(
                id=request.id,
                sender=request.sender_address,
                sender_display_name=request.sender_name,
                sender_verified=request.sender_verified,
                note=request.note,
                created_at=request.created_at,
            )
            for request in found
        ]
    )


@router.post("/requests/{request_id}/accept", response_model=ContactOut)
async def accept_request(request_id: str, caller: PersonDevice, services: Services) -> ContactOut:
    """Connect with the sender, as a pass code would: the new contact. A sender on
    another node is connected through its node (502 ``peer_unavailable`` when it
    cannot be reached: the request stays, to accept later)."""
    contact = await services.contact_requests.accept(caller, request_id)
    encryption = await services.keys.encryption_of([contact.address])
    return render.contact(contact, encryption[contact.address])


@router.post("/requests/{request_id}/decline", status_code=status.HTTP_204_NO_CONTENT)
async def decline_request(request_id: str, caller: PersonDevice, services: Services) -> Response:
    """The sender is told nothing; its later requests to you are dropped."""
    await services.contact_requests.decline(caller, request_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/blocks", response_model=BlockList)
async def blocks(caller: CurrentDevice, services: Services) -> BlockList:
    found = await services.blocks.blocks(caller)
    return BlockList(blocks=[BlockOut(address=b.address, blocked_at=b.blocked_at) for b in found])


@router.post(
    "/contacts/{address}/block",
    status_code=status.HTTP_201_CREATED,
    response_model=BlockOut,
    responses={200: {"model": BlockOut, "description": "Blocked already"}},
)
async def block(
    address: str, caller: CurrentDevice, services: Services, response: Response
) -> BlockOut:
    """Refuse the address's messages (as a stranger's) and drop its requests."""
    found, created = await services.blocks.block(caller, address)
    if not created:
        response.status_code = status.HTTP_200_OK
    return BlockOut(address=found.address, blocked_at=found.blocked_at)


@router.delete("/contacts/{address}/block", status_code=status.HTTP_204_NO_CONTENT)
async def unblock(address: str, caller: PersonDevice, services: Services) -> Response:
    await services.blocks.unblock(caller, address)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
