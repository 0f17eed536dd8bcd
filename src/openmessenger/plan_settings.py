"""The ``plans`` setting: each plan's default limits (docs/operations.md, "Plans").

In TOML, one table per plan, any subset of its limits (the rest keep their
defaults)::

    [plans.free]
    retention_days = 30          # or "forever"
    max_participants = 50
    max_message_bytes = 65536
    message_rate = "60/minute"   # per participant and conversation

In the environment, the same as JSON:
``OPENMESSENGER_PLANS='{"free": {"retention_days": 7}}'``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from openmessenger.core.errors import InvalidInput
from openmessenger.core.policies import (
    MAX_MESSAGE_BYTES,
    MAX_PARTICIPANTS,
    MAX_RETENTION_SECONDS,
    Plan,
    Policy,
    parse_rate,
)

DAY_SECONDS = 86_400

DEFAULTS: dict[Plan, Policy] = {
    Plan.FREE: Policy(
        # Forever unless the operator says otherwise: upgrading a node never
        # deletes the history its accounts had (every account starts on free).
        retention_seconds=None,
        max_participants=50,
        max_message_bytes=65_536,
        message_rate=parse_rate("60/minute"),
    ),
    Plan.SUBSCRIPTION: Policy(
        retention_seconds=None,
        max_participants=1000,
        max_message_bytes=MAX_MESSAGE_BYTES,
        message_rate=parse_rate("600/minute"),
    ),
    Plan.USAGE: Policy(
        retention_seconds=365 * DAY_SECONDS,
        max_participants=1000,
        max_message_bytes=MAX_MESSAGE_BYTES,
        message_rate=parse_rate("600/minute"),
    ),
}
"""What each plan gives when the settings say nothing of it."""


class PlanLimits(BaseModel):
    """One plan's limits; a limit left out keeps the plan's default."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    retention_days: float | Literal["forever"] | None = Field(
        default=None,
        description='how long history is kept, in days (fractions allowed), or "forever"',
    )
    max_participants: int | None = Field(default=None, ge=2, le=MAX_PARTICIPANTS)
    max_message_bytes: int | None = Field(default=None, ge=1, le=MAX_MESSAGE_BYTES)
    message_rate: str | None = Field(
        default=None, description='per participant and conversation, e.g. "60/minute"'
    )

    @field_validator("retention_days")
    @classmethod
    def _valid_retention(cls, value: float | str | None) -> float | str | None:
        if isinstance(value, float | int) and not 1 <= value * DAY_SECONDS <= MAX_RETENTION_SECONDS:
            limit = MAX_RETENTION_SECONDS // DAY_SECONDS
            raise ValueError(f'must be from one second to {limit} days, or "forever"')
        return value

    @field_validator("message_rate")
    @classmethod
    def _valid_rate(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                parse_rate(value)
            except InvalidInput as exc:
                raise ValueError(exc.reason) from None
        return value

    def policy(self, default: Policy) -> Policy:
        retention = default.retention_seconds
        if self.retention_days == "forever":
            retention = None
        elif self.retention_days is not None:
            retention = max(1, round(self.retention_days * DAY_SECONDS))
        return Policy(
            retention_seconds=retention,
            max_participants=self.max_participants or default.max_participants,
            max_message_bytes=self.max_message_bytes or default.max_message_bytes,
            message_rate=(
                parse_rate(self.message_rate) if self.message_rate else default.message_rate
            ),
        )


class PlansSetting(BaseModel):
    """The ``plans`` setting: a table per plan."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    free: PlanLimits = PlanLimits()
    subscription: PlanLimits = PlanLimits()
    usage: PlanLimits = PlanLimits()

    def policies(self) -> dict[Plan, Policy]:
        return {plan: getattr(self, plan.value).policy(DEFAULTS[plan]) for plan in Plan}
