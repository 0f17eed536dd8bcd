"""Verification texts through the operator's SMS gateway: a webhook.

The node POSTs ``{"to": "+447700900123", "text": "..."}`` (JSON) to the
configured URL with two headers, so the gateway can tell the node sent it:

- ``X-Openmessenger-Timestamp``: Unix seconds when it was signed;
- ``X-Openmessenger-Signature``: ``sha256=`` and the hex HMAC-SHA256, under the
  shared webhook secret, of ``f"{timestamp}."`` followed by the raw body.

Any answer but 2xx is a failure; redirects are not followed.
"""

from __future__ import annotations

import hashlib
import hmac
import json

import httpx

from openmessenger.services.ports import Clock, DeliveryFailed

SIGNATURE_HEADER = "X-Openmessenger-Signature"
TIMESTAMP_HEADER = "X-Openmessenger-Timestamp"


def webhook_signature(secret: bytes, timestamp: str, body: bytes) -> str:
    """The ``X-Openmessenger-Signature`` value of a request."""
    mac = hmac.new(secret, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"sha256={mac}"


class SmsWebhookSender:
    """The ``SmsSender`` port."""

    def __init__(
        self, *, url: str, secret: str, clock: Clock, timeout_seconds: float = 10.0
    ) -> None:
        self._url = url
        self._secret = secret.encode()
        self._clock = clock
        self._timeout = timeout_seconds

    async def send(self, to: str, text: str) -> None:
        body = json.dumps({"to": to, "text": text}, separators=(",", ":")).encode()
        timestamp = str(int(self._clock.now().timestamp()))
        headers = {
            "Content-Type": "application/json",
            TIMESTAMP_HEADER: timestamp,
            SIGNATURE_HEADER: webhook_signature(self._secret, timestamp, body),
        }
        try:
            # trust_env=False: numbers go only where the operator configured, not
            # through a proxy picked up from the environment.
            async with httpx.AsyncClient(timeout=self._timeout, trust_env=False) as client:
                response = await client.post(self._url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            reason = type(exc).__name__
            raise DeliveryFailed(f"the SMS gateway was not reached ({reason})") from None
        if not response.is_success:
            raise DeliveryFailed(f"the SMS gateway answered HTTP {response.status_code}")
