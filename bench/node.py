"""The system under test: ``openmessenger serve`` as its own process, and the
devices the scenarios use (registered and connected over the real API)."""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil

from openmessenger.crypto.device_identity import DeviceIdentity
from openmessenger.protocol.client_api import signed_challenge_bytes

_LISTENING = re.compile(r"^listening on (https?://\S+)")


@dataclass
class NodeUnderTest:
    data_dir: Path
    database_url: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    url: str = ""
    process: subprocess.Popen[str] | None = None
    _ready: threading.Event = field(default_factory=threading.Event)

    def start(self) -> NodeUnderTest:
        command = [
            str(Path(sys.executable).parent / "openmessenger"),
            "serve",
            "--port",
            "0",
            "--data-dir",
            str(self.data_dir),
        ]
        if self.database_url:
            command += ["--database-url", self.database_url]
        env = {
            **os.environ,
            "OPENMESSENGER_NODE_SECRET": secrets.token_hex(32),
            "OPENMESSENGER_LOG_LEVEL": "warning",
            **self.env,
        }
        self.process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
        )
        threading.Thread(target=self._drain, daemon=True).start()
        if not self._ready.wait(60) or not self.url:
            raise RuntimeError("the node did not start")
        return self

    def _drain(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        for line in self.process.stdout:
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


async def lone_device(url: str) -> BenchDevice:
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        return await _register(http)
