"""Helpers for disappearing-message tests: real Olm bodies between raw API devices,
the ephemeral stream, and a search for a secret in every file, log and row."""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import websockets

from openmessenger.crypto.olm import OlmSession
from openmessenger.protocol.ephemeral import EphemeralBody, EphemeralPlaintext
from tests.support.api import ApiDevice

TIMEOUT = 10


def marker() -> str:
    """A plaintext that cannot turn up anywhere by chance."""
    return f"disappearing {secrets.token_hex(12)}"


@dataclass
class OlmPair:
    """An Olm session from ``sender`` to ``recipient`` (both raw API devices),
    opened with a one-time key of the recipient's, and the recipient's end once
    the first message arrives."""

    sender: ApiDevice
    recipient: ApiDevice
    outbound: OlmSession
    inbound: OlmSession | None = None

    @classmethod
    def open(cls, sender: ApiDevice, recipient: ApiDevice) -> OlmPair:
        recipient.identity.generate_one_time_keys(1)
        (key,) = recipient.identity.unpublished_one_time_keys().values()
        recipient.identity.mark_keys_as_published()
        outbound = sender.identity.create_outbound_session(recipient.identity.curve25519_key, key)
        return cls(sender, recipient, outbound)

    def body(
        self,
        text: str,
        *,
        lifespan: int = 60,
        recipient_device: str | None = None,
    ) -> str:
        plaintext = EphemeralPlaintext(
            text=text,
            sender=self.sender.address,
            sender_device=self.sender.device_id,
            recipient=self.recipient.address,
            recipient_device=recipient_device or self.recipient.device_id,
            lifespan_seconds=lifespan,
        )
        olm = self.outbound.encrypt(plaintext.model_dump_json(by_alias=True).encode())
        return EphemeralBody(
            sender_key=self.sender.identity.curve25519_key, olm=olm
        ).model_dump_json()

    def open_body(self, body: str) -> EphemeralPlaintext:
        """What the recipient reads from ``body`` (it holds the Olm session's other end)."""
        parsed = EphemeralBody.model_validate_json(body)
        if self.inbound is None:
            self.inbound, plaintext = self.recipient.identity.create_inbound_session(
                parsed.sender_key, parsed.olm
            )
        else:
            plaintext = self.inbound.decrypt(parsed.olm)
        return EphemeralPlaintext.model_validate_json(plaintext)


def opaque_body(device: ApiDevice) -> str:
    """A body of the right shape from ``device``: what the node checks, no more."""
    ciphertext = base64.b64encode(secrets.token_bytes(120)).decode().rstrip("=")
    return json.dumps(
        {
            "alg": "om.olm.v1",
            "sender_key": device.identity.curve25519_key,
            "olm": {"type": 1, "body": ciphertext},
        }
    )


async def send_ephemeral(
    sender: ApiDevice,
    to: ApiDevice,
    body: str | None = None,
    *,
    lifespan: int = 60,
    txn: str | None = None,
    device: str | None = None,
) -> httpx.Response:
    return await sender.post(
        "/v1/ephemeral",
        {
            "to": to.address,
            "device": device or to.device_id,
            "body": body or opaque_body(sender),
            "lifespan_seconds": lifespan,
            "client_txn_id": txn,
        },
    )


async def take(device: ApiDevice) -> list[dict[str, Any]]:
    response = await device.get("/v1/ephemeral")
    assert response.status_code == 200, response.text
    events: list[dict[str, Any]] = response.json()["events"]
    return events


async def take_within(device: ApiDevice, seconds: float) -> list[dict[str, Any]]:
    """Poll until something waits for ``device``, for at most ``seconds``."""
    deadline = time.monotonic() + seconds
    while True:
        events = await take(device)
        if events or time.monotonic() >= deadline:
            return events
        await asyncio.sleep(0.05)


def stream_url(http: httpx.AsyncClient, query: str) -> str:
    base = str(http.base_url).replace("http://", "ws://").rstrip("/")
    return f"{base}/v1/stream?{query}"


def stream(device: ApiDevice, query: str = "ephemeral=only") -> Any:
    return websockets.connect(stream_url(device.http, query), additional_headers=device.auth)


async def next_frame(ws: Any, timeout: float = TIMEOUT) -> dict[str, Any]:
    frame: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), timeout))
    return frame


async def until_subscribed(ws: Any, sender: ApiDevice, device: ApiDevice) -> None:
    """Return once ``ws`` (``device``'s stream) is following: a marker sent now
    comes back on it. Replaces any sleep before the interesting part."""
    response = await send_ephemeral(sender, device, txn=f"probe-{secrets.token_hex(4)}")
    assert response.status_code == 202, response.text
    frame = await next_frame(ws)
    assert frame["message"]["id"] == response.json()["id"]


# -- traces ----------------------------------------------------------------------------


def needles(*texts: str) -> list[bytes]:
    """What to look for, as UTF-8 bytes (and as it reads in JSON)."""
    found: list[bytes] = []
    for text in texts:
        found += [text.encode(), json.dumps(text)[1:-1].encode()]
    return found


def files_holding(root: Path, wanted: Iterable[bytes], *, prefix: str = "") -> list[str]:
    """Every file under ``root`` (whose name starts with ``prefix``) holding any of
    ``wanted``, read whole, as bytes."""
    wanted = list(wanted)
    hits = []
    for path in sorted(p for p in root.rglob(f"{prefix}*") if p.is_file()):
        try:
            content = path.read_bytes()
        except (FileNotFoundError, PermissionError):
            continue  # gone meanwhile (a temporary file), or not ours to read
        hits += [f"{path}: {w[:20]!r}" for w in wanted if w in content]
    return hits


def rows_holding(tables: dict[str, list[dict[str, object]]], wanted: Iterable[str]) -> list[str]:
    wanted = list(wanted)
    return [
        f"{table}.{column}"
        for table, rows in tables.items()
        for row in rows
        for column, value in row.items()
        for w in wanted
        if w in str(value)
    ]


Dump = Callable[[], Awaitable[dict[str, list[dict[str, object]]]]]
