"""Plans and policies from a device: the account's plan and limits, and a
conversation's policy with this account's stricter-only override. Mixed into
:class:`openmessenger.client.Client`, whose session these methods use
(docs/sdk.md, docs/conversations.md "Policies")."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import quote

import httpx

from openmessenger.client import transport
from openmessenger.protocol import client_api as wire
from openmessenger.protocol import policies_api


@dataclass(frozen=True, slots=True)
class Limits:
    retention_seconds: int | None
    """How long the node keeps history; None: forever."""
    max_participants: int
    max_message_bytes: int
    """Of a message's body as sent (ciphertext when end to end), in UTF-8 bytes."""
    message_rate: str
    """Per participant and conversation, e.g. "60/minute"."""

    @classmethod
    def from_wire(cls, out: policies_api.PolicyOut) -> Limits:
        return cls(
            out.retention_seconds, out.max_participants, out.max_message_bytes, out.message_rate
        )


@dataclass(frozen=True, slots=True)
class AccountPolicy:
    address: str
    plan: str
    """free, subscription or usage."""
    limits: Limits


@dataclass(frozen=True, slots=True)
class PolicyOverride:
    """This account's own override; None: that limit is not overridden by it."""

    retention_seconds: int | None = None
    max_participants: int | None = None
    max_message_bytes: int | None = None
    message_rate: str | None = None


@dataclass(frozen=True, slots=True)
class ConversationPolicy:
    conversation_id: str
    limits: Limits
    """In force: the plans' limits with every participant's override laid on them."""
    plans: Limits
    """What the participants' plans alone give."""
    override: PolicyOverride


def _conversation(response: httpx.Response) -> ConversationPolicy:
    out = transport.parse_response(policies_api.ConversationPolicyOut, response)
    mine = out.override
    return ConversationPolicy(
        out.conversation_id,
        Limits.from_wire(out.policy),
        Limits.from_wire(out.plans),
        PolicyOverride(
            mine.retention_seconds,
            mine.max_participants,
            mine.max_message_bytes,
            mine.message_rate,
        ),
    )


class ConversationPolicies:
    """The policy methods of ``Client``."""

    if TYPE_CHECKING:  # provided by Client

        async def _call(
            self,
            method: str,
            path: str,
            *,
            body: wire.Request | None = None,
            params: Mapping[str, str | int] | None = None,
        ) -> httpx.Response: ...

    async def policy(self) -> AccountPolicy:
        """Your account's plan and the limits it gives (``GET /v1/account/policy``)."""
        out = transport.parse_response(
            policies_api.AccountPolicyOut, await self._call("GET", "/account/policy")
        )
        return AccountPolicy(out.address, out.plan, Limits.from_wire(out.policy))

    async def conversation_policy(self, conversation_id: str) -> ConversationPolicy:
        """The limits in force in a conversation you take part in (a contact's
        ``conversation_id``, or a group's)."""
        return _conversation(await self._call("GET", _path(conversation_id)))

    async def set_conversation_policy(
        self,
        conversation_id: str,
        *,
        retention_seconds: int | None = None,
        max_participants: int | None = None,
        max_message_bytes: int | None = None,
        message_rate: str | None = None,
    ) -> ConversationPolicy:
        """Replace your override with these limits (those left None are not
        overridden by you). Each must be at most what the plans give: a looser one
        raises ApiError ``policy_not_stricter`` naming the field."""
        body = transport.request_body(
            policies_api.PolicyOverrideIn,
            {
                "retention_seconds": retention_seconds,
                "max_participants": max_participants,
                "max_message_bytes": max_message_bytes,
                "message_rate": message_rate,
            },
        )
        return _conversation(await self._call("PUT", _path(conversation_id), body=body))

    async def clear_conversation_policy(self, conversation_id: str) -> ConversationPolicy:
        """Remove your override (another participant's stays in force)."""
        return _conversation(await self._call("DELETE", _path(conversation_id)))


def _path(conversation_id: str) -> str:
    return f"/conversations/{quote(conversation_id, safe='')}/policy"
