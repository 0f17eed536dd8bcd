"""JSON shapes and signing rules of app webhooks (``/v1/apps/{app}/webhook``).

Public contract like client_api.py (docs/apps.md): add fields, never rename.

Each call is a POST of a :class:`WebhookMessageEvent` (JSON) with the headers
``Openmessenger-Delivery: <delivery id>`` and ``Openmessenger-Signature:
t=<unix seconds>,v1=<hex HMAC-SHA256>``, the HMAC being of ``f"{t}."`` followed
by the raw body, keyed with the webhook secret (the whole ``whsec_...`` string,
UTF-8).
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime
from typing import Literal

from pydantic import Field

from openmessenger.protocol.client_api import MessageOut, Request, Response

DELIVERY_HEADER = "Openmessenger-Delivery"
SIGNATURE_HEADER = "Openmessenger-Signature"
SECRET_PREFIX = "whsec_"  # noqa: S105 - the prefix of every secret, not one
MAX_URL_CHARS = 2000
SIGNATURE_TOLERANCE_SECONDS = 300
"""How old a signature a receiver should accept (replay window)."""

DeliveryStateName = Literal["pending", "delivered", "failed"]


class WebhookIn(Request):
    url: str = Field(
        max_length=MAX_URL_CHARS,
        description="https:// (http:// only for a loopback host); no user or password in it",
    )


class WebhookOut(Response):
    url: str
    created_at: datetime


class WebhookCreatedOut(WebhookOut):
    secret: str = Field(description="The signing secret: shown this once; each PUT makes a new one")


class DeliveryOut(Response):
    id: str
    account_id: str
    message_id: str
    state: DeliveryStateName
    attempts: int
    last_status: int | None = Field(description="the HTTP status of the last answer")
    last_error: str | None
    created_at: datetime
    next_attempt_at: datetime | None = Field(description="null once delivered or failed")
    finished_at: datetime | None


class DeliveryList(Response):
    deliveries: list[DeliveryOut]


class WebhookMessageEvent(Response):
    """The body of a webhook call: one message one of the app's users received."""

    type: Literal["message"] = "message"
    delivery_id: str = Field(description="the same at every retry of this call")
    app_id: str
    account_id: str = Field(description="the app's user (managed account) who received it")
    device_id: str = Field(description="the app's device in that account")
    message: MessageOut = Field(
        description="as the app's device reads it (opened when the node holds its keys)"
    )


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """The ``Openmessenger-Signature`` value of a call."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def verify_signature(
    secret: str,
    header: str,
    body: bytes,
    now: int,
    tolerance: int = SIGNATURE_TOLERANCE_SECONDS,
) -> bool:
    """Whether ``header`` signs ``body`` under ``secret``, made within ``tolerance`` of ``now``."""
    fields = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
    try:
        timestamp = int(fields["t"])
    except (KeyError, ValueError):
        return False
    if abs(now - timestamp) > tolerance:
        return False
    expected = signature(secret, timestamp, body).rpartition("v1=")[2]
    return hmac.compare_digest(expected, fields.get("v1", ""))
