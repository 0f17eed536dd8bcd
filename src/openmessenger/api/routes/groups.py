"""Groups: create, invite, join, decline, leave, remove, roles, send and history."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response, status

from openmessenger.api import render
from openmessenger.api.deps import CurrentDevice, IdempotencyKey, Services, client_txn_id
from openmessenger.core.envelope import DeliveryStatus, Encryption
from openmessenger.core.groups import Member
from openmessenger.protocol.client_api import API_PREFIX, MessageList, MessageOut
from openmessenger.protocol.groups_api import (
    GroupCreateIn,
    GroupInviteIn,
    GroupList,
    GroupMemberOut,
    GroupOut,
    GroupRoleIn,
    GroupSendIn,
)
from openmessenger.services.groups import GroupView
from openmessenger.services.messaging import MAX_PAGE

router = APIRouter(prefix=f"{API_PREFIX}/groups", tags=["groups"])


def _member(m: Member) -> GroupMemberOut:
    return GroupMemberOut(
        address=m.address,
        role=m.role.value,
        kind=m.kind.value,
        app_id=m.app_id,
        state=m.state.value,
        invited_by=m.invited_by,
        joined_at=m.joined_at,
    )


def _group(view: GroupView) -> GroupOut:
    g = view.group
    return GroupOut(
        id=g.id,
        name=g.name,
        mode=g.mode.value,
        created_by=g.created_by,
        created_at=g.created_at,
        last_seq=g.last_seq,
        role=view.me.role.value,
        state=view.me.state.value,
        members=[_member(m) for m in view.members],
    )


@router.post("", status_code=status.HTTP_201_CREATED, response_model=GroupOut)
async def create(body: GroupCreateIn, caller: CurrentDevice, services: Services) -> GroupOut:
    """A new group that you own (mode ``history``), with your contacts in ``members``
    invited. Anyone you are not connected with: ``403 refused``, and nothing is made."""
    return _group(await services.groups.create(caller, body.name, body.members))


@router.get("", response_model=GroupList)
async def list_groups(caller: CurrentDevice, services: Services) -> GroupList:
    """The groups you have joined or are invited to."""
    return GroupList(groups=[_group(v) for v in await services.groups.list_groups(caller)])


@router.get("/{group_id}", response_model=GroupOut)
async def get(group_id: str, caller: CurrentDevice, services: Services) -> GroupOut:
    return _group(await services.groups.get(caller, group_id))


@router.post("/{group_id}/members", response_model=GroupOut)
async def invite(
    group_id: str, body: GroupInviteIn, caller: CurrentDevice, services: Services
) -> GroupOut:
    """Invite a contact (owner and admins). Not a contact: ``403 refused``."""
    return _group(await services.groups.invite(caller, group_id, body.address))


@router.delete("/{group_id}/members/{address}", response_model=GroupOut)
async def remove(
    group_id: str, address: str, caller: CurrentDevice, services: Services
) -> GroupOut:
    """Remove a participant, or withdraw an invitation (owner; admins for members)."""
    return _group(await services.groups.remove(caller, group_id, address))


@router.put("/{group_id}/members/{address}/role", response_model=GroupOut)
async def set_role(
    group_id: str, address: str, body: GroupRoleIn, caller: CurrentDevice, services: Services
) -> GroupOut:
    """The owner makes a participant ``admin`` or ``member``, or hands the group over."""
    return _group(await services.groups.set_role(caller, group_id, address, body.role))


@router.post("/{group_id}/join", response_model=GroupOut)
async def join(group_id: str, caller: CurrentDevice, services: Services) -> GroupOut:
    """Accept an invitation."""
    return _group(await services.groups.join(caller, group_id))


@router.post("/{group_id}/decline", status_code=status.HTTP_204_NO_CONTENT)
async def decline(group_id: str, caller: CurrentDevice, services: Services) -> None:
    await services.groups.decline(caller, group_id)


@router.post("/{group_id}/leave", status_code=status.HTTP_204_NO_CONTENT)
async def leave(group_id: str, caller: CurrentDevice, services: Services) -> None:
    """Leave the group (an invitation is declined)."""
    await services.groups.leave(caller, group_id)


@router.post(
    "/{group_id}/messages",
    status_code=status.HTTP_201_CREATED,
    response_model=MessageOut,
    responses={
        200: {"model": MessageOut, "description": "A retry: the message sent before"},
        202: {
            "model": MessageOut,
            "description": "The group's host node did not answer yet: kept and forwarded "
            "(status accepted, seq 0 until it is ordered)",
        },
    },
)
async def send(
    group_id: str,
    body: GroupSendIn,
    caller: CurrentDevice,
    services: Services,
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> MessageOut:
    """Send an end-to-end body to every joined participant."""
    result = await services.groups.send(
        caller,
        group_id,
        body.body,
        client_txn_id(body.client_txn_id, idempotency_key),
        Encryption(body.encryption),
    )
    if not result.created:
        response.status_code = status.HTTP_200_OK
    elif result.message.status is DeliveryStatus.ACCEPTED:
        # A group hosted on another node that did not answer yet: the message is
        # kept and forwarded; it arrives (with its seq) in the host's order.
        response.status_code = status.HTTP_202_ACCEPTED
    return render.message(result.message)


@router.get("/{group_id}/messages", response_model=MessageList)
async def history(
    group_id: str,
    caller: CurrentDevice,
    services: Services,
    after_seq: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
) -> MessageList:
    """The group's log from when you joined (up to when you left, if you did)."""
    page = await services.groups.history(caller, group_id, after_seq, limit)
    return MessageList(messages=[render.message(m) for m in page.messages], has_more=page.has_more)
