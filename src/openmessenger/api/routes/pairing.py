"""Pass codes and connections."""

from __future__ import annotations

from fastapi import APIRouter, Response, status

from openmessenger.api import render
from openmessenger.api.deps import CurrentDevice, Services
from openmessenger.protocol.client_api import (
    API_PREFIX,
    ConnectIn,
    ContactList,
    ContactOut,
    IssueCodeIn,
    PassCodeList,
    PassCodeOut,
)

router = APIRouter(prefix=API_PREFIX, tags=["pass codes and connections"])


@router.post("/codes", status_code=status.HTTP_201_CREATED, response_model=PassCodeOut)
async def issue_code(body: IssueCodeIn, caller: CurrentDevice, services: Services) -> PassCodeOut:
    """Issue a one-time pass code, optionally bound to the one address expected to use it."""
    issued = await services.pairing.issue(caller, body.for_address)
    return PassCodeOut(
        id=issued.record.id,
        pass_code=issued.pass_code,
        expires_at=issued.record.expires_at,
        for_address=issued.record.bound_to,
    )


@router.get("/codes", response_model=PassCodeList)
async def list_codes(caller: CurrentDevice, services: Services) -> PassCodeList:
    """Live, used, withdrawn and expired codes, newest first (the digits are not kept)."""
    codes = await services.pairing.list_codes(caller)
    return PassCodeList(codes=[render.pass_code(c, services.clock) for c in codes])


@router.delete("/codes/{code_id}", status_code=status.HTTP_204_NO_CONTENT)
async def withdraw_code(code_id: str, caller: CurrentDevice, services: Services) -> Response:
    await services.pairing.withdraw(caller, code_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/connections",
    status_code=status.HTTP_201_CREATED,
    response_model=ContactOut,
    responses={200: {"model": ContactOut, "description": "Already connected"}},
)
async def connect(
    body: ConnectIn, caller: CurrentDevice, services: Services, response: Response
) -> ContactOut:
    """Connect with an address using a pass code it issued. Any failure is one generic refusal."""
    result = await services.pairing.connect(
        caller, body.address, body.pass_code, body.allow_replies
    )
    if not result.created:
        response.status_code = status.HTTP_200_OK
    encryption = await services.keys.encryption_of([result.contact.address])
    return render.contact(result.contact, encryption[result.contact.address])


@router.get("/connections", response_model=ContactList)
async def contacts(caller: CurrentDevice, services: Services) -> ContactList:
    found = await services.pairing.contacts(caller)
    encryption = await services.keys.encryption_of(c.address for c in found)
    return ContactList(contacts=[render.contact(c, encryption[c.address]) for c in found])
