"""JSON shapes of plans and policies: ``GET /v1/account/policy``,
``GET|PUT|DELETE /v1/conversations/{conversation_id}/policy`` and the operator's
``/v1/admin/accounts/{address}``. Public contract: add fields, never rename."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, StrictInt

from openmessenger.core.policies import (
    MAX_MESSAGE_BYTES,
    MAX_PARTICIPANTS,
    MAX_RETENTION_SECONDS,
    MessageRate,
    Policy,
    PolicyOverride,
    parse_rate,
)
from openmessenger.protocol.client_api import Request, Response

RATE_EXAMPLE = "60/minute"


class PolicyOut(Response):
    retention_seconds: int | None = Field(
        description="how long history is kept; null: forever", examples=[2_592_000]
    )
    max_participants: int
    max_message_bytes: int = Field(description="of a message's body as sent, in UTF-8 bytes")
    message_rate: str = Field(
        description="messages per participant and conversation", examples=[RATE_EXAMPLE]
    )

    @classmethod
    def of(cls, policy: Policy) -> PolicyOut:
        return cls(
            retention_seconds=policy.retention_seconds,
            max_participants=policy.max_participants,
            max_message_bytes=policy.max_message_bytes,
            message_rate=str(policy.message_rate),
        )


class AccountPolicyOut(Response):
    """``GET /v1/account/policy``: your plan and the limits it gives."""

    address: str
    plan: str = Field(examples=["free"])
    policy: PolicyOut


class PolicyOverrideIn(Request):
    """A participant's override: any subset of the limits, each only ever stricter
    than what the plans give. It replaces the caller's previous override; a
    limit left out (or null) is not overridden by the caller."""

    retention_seconds: Annotated[StrictInt, Field(ge=1, le=MAX_RETENTION_SECONDS)] | None = None
    max_participants: Annotated[StrictInt, Field(ge=2, le=MAX_PARTICIPANTS)] | None = None
    max_message_bytes: Annotated[StrictInt, Field(ge=1, le=MAX_MESSAGE_BYTES)] | None = None
    message_rate: Annotated[str, Field(max_length=40, examples=["10/minute"])] | None = None

    def to_override(self) -> PolicyOverride:
        rate = parse_rate(self.message_rate) if self.message_rate is not None else None
        return PolicyOverride(
            retention_seconds=self.retention_seconds,
            max_participants=self.max_participants,
            max_message_bytes=self.max_message_bytes,
            message_rate=rate,
        )


class PolicyOverrideOut(Response):
    """The caller's own override; null: that limit is not overridden by the caller."""

    retention_seconds: int | None
    max_participants: int | None
    max_message_bytes: int | None
    message_rate: str | None

    @classmethod
    def of(cls, override: PolicyOverride) -> PolicyOverrideOut:
        rate: MessageRate | None = override.message_rate
        return cls(
            retention_seconds=override.retention_seconds,
            max_participants=override.max_participants,
            max_message_bytes=override.max_message_bytes,
            message_rate=str(rate) if rate is not None else None,
        )


class ConversationPolicyOut(Response):
    conversation_id: str
    policy: PolicyOut = Field(description="in force: the plans with every override laid on them")
    plans: PolicyOut = Field(description="what the participants' plans alone give")
    override: PolicyOverrideOut = Field(description="your own override")


class AdminAccountOut(Response):
    """``/v1/admin/accounts/{address}``: an account of the node and its plan."""

    address: str
    kind: str = Field(examples=["anonymous", "registered", "managed"])
    plan: str
    policy: PolicyOut


class AdminPlanIn(Request):
    plan: str = Field(max_length=32, examples=["subscription"])
