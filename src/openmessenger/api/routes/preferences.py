"""Preferences at account, contact, device and conversation level
(core/preferences.py has the rules)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response, status

from openmessenger.api.deps import CurrentDevice, Services
from openmessenger.core.preferences import Effective
from openmessenger.protocol.client_api import API_PREFIX
from openmessenger.protocol.preferences_api import (
    PreferenceContextOut,
    PreferenceIn,
    PreferenceOut,
    PreferencesOut,
)

router = APIRouter(prefix=API_PREFIX, tags=["preferences"])

ContactQuery = Annotated[str | None, Query(max_length=300, description="a contact's address")]
ConversationQuery = Annotated[str | None, Query(max_length=64, description="a conversation id")]


def _out(found: Effective) -> PreferenceOut:
    return PreferenceOut(name=found.name.value, value=found.value, level=found.level)


@router.get("/preferences", response_model=PreferencesOut)
async def preferences(
    caller: CurrentDevice,
    services: Services,
    contact: ContactQuery = None,
    conversation: ConversationQuery = None,
    name: Annotated[str | None, Query(max_length=64)] = None,
) -> PreferencesOut:
    """The effective value of every preference (or ``name``) for the calling device,
    in the context of one ``contact`` or one ``conversation``, with the level each
    came from (conversation > contact > device > account > default)."""
    found = await services.preferences.effective(
        caller, contact=contact, conversation=conversation, name=name
    )
    context = PreferenceContextOut(
        device_id=found.context.device_id,
        contact=found.context.contact,
        conversation=found.context.conversation,
    )
    return PreferencesOut(context=context, preferences=[_out(e) for e in found.preferences])


@router.put("/preferences", response_model=PreferenceOut)
async def set_preference(
    body: PreferenceIn, caller: CurrentDevice, services: Services
) -> PreferenceOut:
    """Set one preference at one level (``device``: the calling device). Answers the
    value stored at that level."""
    stored = await services.preferences.set(
        caller,
        body.name,
        body.value,
        level=body.level,
        contact=body.contact,
        conversation=body.conversation,
    )
    return _out(stored)


@router.delete("/preferences", status_code=status.HTTP_204_NO_CONTENT)
async def clear_preference(
    caller: CurrentDevice,
    services: Services,
    name: Annotated[str, Query(max_length=64)],
    level: Annotated[str, Query(max_length=16)],
    contact: ContactQuery = None,
    conversation: ConversationQuery = None,
) -> Response:
    """Unset one preference at one level: the next wider level applies again."""
    await services.preferences.clear(
        caller, name, level=level, contact=contact, conversation=conversation
    )
    return Response(status_code=status.HTTP_204_NO_CONTENT)
