"""The CLI between two nodes: the same commands as on one node, and
``send --wait``, whose exit status says whether the other node took the message."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from tests.integration.federation.test_two_nodes import outbox_attempted
from tests.support.federation import FederatedNode
from tests.support.process import openmessenger_command
from tests.support.tls import CertificateAuthority


class Cli:
    def __init__(self, home: Path, ca: CertificateAuthority) -> None:
        # SSL_CERT_FILE: the CLI trusts the test CA the way a user's system store would.
        self.env = {
            **os.environ,
            "OPENMESSENGER_HOME": str(home),
            "SSL_CERT_FILE": str(ca.ca_bundle),
        }

    async def start(
        self, node: FederatedNode, profile: str, *args: str
    ) -> asyncio.subprocess.Process:
        return await asyncio.create_subprocess_exec(
            *openmessenger_command(),
            *args,
            "--server",
            node.url,
            "--profile",
            profile,
            "--json",
            env=self.env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )

    async def finish(self, process: asyncio.subprocess.Process) -> tuple[int, dict[str, Any], str]:
        out, err = await asyncio.wait_for(process.communicate(), 60)
        assert process.returncode is not None
        lines = out.decode().splitlines()
        return process.returncode, json.loads(lines[0]) if lines else {}, err.decode()

    async def __call__(self, node: FederatedNode, profile: str, *args: str) -> dict[str, Any]:
        code, printed, err = await self.finish(await self.start(node, profile, *args))
        assert code == 0, err
        return printed


async def test_send_wait_exits_zero_once_delivered_and_one_when_the_node_gives_up(
    federation_node_factory: Callable[..., FederatedNode],
    test_ca: CertificateAuthority,
    tmp_path: Path,
) -> None:
    alpha = federation_node_factory("alpha.test", federation_give_up_seconds=30)
    beta = federation_node_factory("beta.test")
    cli = Cli(tmp_path / "home", test_ca)
    await cli(alpha, "alice", "name", "Alice")
    alice = (await cli(alpha, "alice", "whoami"))["address"]
    code = (await cli(alpha, "alice", "code"))["pass_code"]
    bob_contact = await cli(beta, "bob", "connect", alice, code)
    assert (bob_contact["address"], bob_contact["display_name"]) == (alice, "Alice")
    bob = (await cli(beta, "bob", "whoami"))["address"]

    delivered = await cli(beta, "bob", "send", alice, "hi Alice", "--wait")
    assert delivered["status"] == "delivered"
    arrived = await cli(alpha, "alice", "sync")
    assert (arrived["from"], arrived["text"]) == (bob, "hi Alice")

    await asyncio.to_thread(beta.stop)
    waiting = await cli.start(alpha, "alice", "send", bob, "anyone?", "--wait")
    await alpha.call(outbox_attempted(alpha))
    assert waiting.returncode is None  # still waiting for an outcome
    alpha.clock.advance(timedelta(seconds=31))
    alpha.node.outbox.kick()
    code_, printed, err = await cli.finish(waiting)
    assert code_ == 1
    assert printed["status"] == "failed"
    assert "not delivered" in err
