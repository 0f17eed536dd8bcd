"""Plans and policies: your account's policy, and a conversation's policy with
your stricter-only override (docs/conversations.md, "Policies")."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from openmessenger.api.deps import CurrentDevice, Services
from openmessenger.protocol.client_api import API_PREFIX
from openmessenger.protocol.policies_api import (
    AccountPolicyOut,
    ConversationPolicyOut,
    PolicyOut,
    PolicyOverrideIn,
    PolicyOverrideOut,
)
from openmessenger.services.policies import ConversationPolicy

router = APIRouter(prefix=API_PREFIX, tags=["policies"])

ConversationPath = Annotated[str, Path(max_length=64)]


def _conversation(view: ConversationPolicy) -> ConversationPolicyOut:
    return ConversationPolicyOut(
        conversation_id=view.conversation_id,
        policy=PolicyOut.of(view.policy),
        plans=PolicyOut.of(view.base),
        override=PolicyOverrideOut.of(view.override),
    )


@router.get("/account/policy", response_model=AccountPolicyOut)
async def account_policy(caller: CurrentDevice, services: Services) -> AccountPolicyOut:
    """Your account's plan and the limits it gives."""
    found = await services.policies.account_policy(caller)
    return AccountPolicyOut(
        address=found.account.address, plan=found.plan.value, policy=PolicyOut.of(found.policy)
    )


@router.get("/conversations/{conversation_id}/policy", response_model=ConversationPolicyOut)
async def conversation_policy(
    conversation_id: ConversationPath, caller: CurrentDevice, services: Services
) -> ConversationPolicyOut:
    """The policy in force in a conversation you take part in, and your override."""
    return _conversation(await services.policies.conversation_policy(caller, conversation_id))


@router.put("/conversations/{conversation_id}/policy", response_model=ConversationPolicyOut)
async def set_conversation_policy(
    conversation_id: ConversationPath,
    body: PolicyOverrideIn,
    caller: CurrentDevice,
    services: Services,
) -> ConversationPolicyOut:
    """Replace your override of the conversation's limits: any subset, each at most
    what the plans give (else 422 ``policy_not_stricter`` naming the field)."""
    view = await services.policies.set_override(caller, conversation_id, body.to_override())
    return _conversation(view)


@router.delete("/conversations/{conversation_id}/policy", response_model=ConversationPolicyOut)
async def clear_conversation_policy(
    conversation_id: ConversationPath, caller: CurrentDevice, services: Services
) -> ConversationPolicyOut:
    """Remove your override (another participant's stays in force)."""
    return _conversation(await services.policies.clear_override(caller, conversation_id))
