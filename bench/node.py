"""The system under test: ``openmessenger serve`` as its own process, and the
devices the scenarios use (registered and connected over the real API).

The node listens on a free port of 127.0.0.1 by default; the federation scenario
gives each node its own address, port 443, a domain and TLS (``args``) and the
URL clients reach it by (``public_url``, e.g. ``https://alpha.test``)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import ssl
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil

from openmessenger.core.policies import Plan
from openmessenger.crypto.device_identity import DeviceIdentity
from openmessenger.protocol.client_api import signed_challenge_bytes

_LISTENING = re.compile(r"^listening on (https?://\S+)")


@dataclass
class NodeUnderTest:
    data_dir: Path
    database_url: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    args: list[str] = field(default_factory=list)
    """More ``serve`` options (``--host``, ``--port``, ``--domain``, TLS files ...)."""
    public_url: str | None = None
    """The base URL clients use; by default the one the node prints."""
    url: str = ""
    process: subprocess.Popen[str] | None = None
    output: list[str] = field(default_factory=list)
    _ready: threading.Event = field(default_factory=threading.Event)

    def start(self) -> NodeUnderTest:
        command = [
            str(Path(sys.executable).parent / "openmessenger"),
            "serve",
            "--data-dir",
            str(self.data_dir),
            *(self.args or ["--port", "0"]),
        ]
        if self.database_url:
            command += ["--database-url", self.database_url]
        env = {
            **os.environ,
            "OPENMESSENGER_NODE_SECRET": secrets.token_hex(32),
            "OPENMESSENGER_LOG_LEVEL": "warning",
            # Capacity is what is measured: the per-device, per-account and per-key
            # request limits (a policy, not a capacity) are lifted.
            "OPENMESSENGER_DEVICE_RATE_LIMIT": "1000000/second",
            "OPENMESSENGER_ACCOUNT_RATE_LIMIT": "1000000/second",
            "OPENMESSENGER_APP_KEY_RATE_LIMIT": "1000000/second",
            # Likewise each plan's message rate per participant and conversation.
            "OPENMESSENGER_PLANS": json.dumps(
                {plan.value: {"message_rate": "1000000/second"} for plan in Plan}
            ),
            **self.env,
        }
        self.process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
        )
        threading.Thread(target=self._drain, daemon=True).start()
        if not self._ready.wait(60) or not self.url:
            raise RuntimeError(f"the node did not start: {' '.join(self.output[-20:])}")
        if self.public_url:
            self.url = self.public_url
        return self

    def _drain(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        for line in self.process.stdout:
            self.output.append(line)
            del self.output[:-200]
            found = _LISTENING.search(line)
            if found:
                self.url = found.group(1)
                self._ready.set()
        self._ready.set()

    @property
    def ps(self) -> psutil.Process:
        assert self.process is not None
        return psutil.Process(self.process.pid)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                # Over TLS, uvicorn may wait on a peer's close_notify: do not hang on it.
                self.process.kill()
                self.process.wait(30)


@dataclass(frozen=True)
class BenchDevice:
    address: str
    token: str


async def _register(http: httpx.AsyncClient) -> BenchDevice:
    identity = DeviceIdentity.create()
    challenge = (await http.post("/v1/auth/challenge")).json()
    signed = signed_challenge_bytes(challenge["challenge"], challenge["domain"])
    body = {
        "ed25519_key": identity.ed25519_key,
        "curve25519_key": identity.curve25519_key,
        "challenge": challenge["challenge"],
        "signature": identity.sign(signed),
    }
    answer = (await http.post("/v1/devices", json=body)).raise_for_status().json()
    return BenchDevice(answer["address"], answer["access_token"])


async def connected_pairs(url: str, count: int) -> list[tuple[BenchDevice, BenchDevice]]:
    """``count`` (sender, recipient) pairs, each connected with a pass code."""
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:

        async def pair() -> tuple[BenchDevice, BenchDevice]:
            sender, recipient = await _register(http), await _register(http)
            auth = {"Authorization": f"Bearer {recipient.token}"}
            code = (await http.post("/v1/codes", json={}, headers=auth)).json()["pass_code"]
            connect = {"address": recipient.address, "pass_code": code}
            headers = {"Authorization": f"Bearer {sender.token}"}
            (await http.post("/v1/connections", json=connect, headers=headers)).raise_for_status()
            return sender, recipient

        return list(await asyncio.gather(*(pair() for _ in range(count))))


async def federated_pairs(
    sender_url: str,
    recipient_url: str,
    count: int,
    verify: ssl.SSLContext,
    concurrency: int = 8,
) -> list[tuple[BenchDevice, BenchDevice]]:
    """``count`` (sender, recipient) pairs across two nodes: each recipient issues a
    pass code on its node, each sender redeems it on the other (Openmsg ``auth/``
    and ``auth-confirm/`` between the nodes)."""
    gate = asyncio.Semaphore(concurrency)
    async with (
        httpx.AsyncClient(base_url=sender_url, timeout=60, verify=verify) as on_sender,
        httpx.AsyncClient(base_url=recipient_url, timeout=60, verify=verify) as on_recipient,
    ):

        async def pair() -> tuple[BenchDevice, BenchDevice]:
            async with gate:
                recipient = await _register(on_recipient)
                auth = {"Authorization": f"Bearer {recipient.token}"}
                answer = await on_recipient.post("/v1/codes", json={}, headers=auth)
                code = answer.raise_for_status().json()["pass_code"]
                sender = await _register(on_sender)
                connect = {"address": recipient.address, "pass_code": code}
                headers = {"Authorization": f"Bearer {sender.token}"}
                made = await on_sender.post("/v1/connections", json=connect, headers=headers)
                if made.status_code != 201:
                    raise RuntimeError(f"connecting across nodes failed: {made.text}")
                return sender, recipient

        return list(await asyncio.gather(*(pair() for _ in range(count))))


async def lone_device(url: str) -> BenchDevice:
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        return await _register(http)
