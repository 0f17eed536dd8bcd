"""How one of our nodes refuses another's request on our extension when the
refusal is the user's business (``ok: false``): the error its own client API
would have rendered, so that the asking node raises the same error to its client.

A refusal of the request itself (bad signature, unknown origin, malformed body)
is an Openmsg error body instead (protocol/openmsg)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class ExtensionRefusal(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    ok: Literal[False] = False
    status: int = Field(ge=400, le=599)
    code: str = Field(max_length=64)
    message: str = Field(default="", max_length=500)
    field: str | None = Field(default=None, max_length=100)
    retry_after: int | None = Field(default=None, ge=0, le=86_400)
