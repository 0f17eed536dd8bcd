"""What one 1:1 send costs inside one node process, without network or load
generators: a node on SQLite in a temporary directory, two connected devices,
N plain-text sends one after another through the ASGI app.

    python -m bench.send_path [--sends 1500] [--without-policy]

``--without-policy`` drops the conversation policy check (size and rate) from the
send path, to see what it costs. Limits are lifted, as in ``bench/node.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import tempfile
import time
from pathlib import Path

import httpx
from tests.support.api import connected_pair

from openmessenger.core.policies import Plan
from openmessenger.settings import Settings
from openmessenger.wiring import build_node

WARM_UP = 50


async def measure(sends: int, *, without_policy: bool) -> float:
    """Microseconds per send."""
    settings = Settings.model_validate(
        {
            "data_dir": Path(tempfile.mkdtemp(prefix="om-send-path-")),
            "node_secret": secrets.token_hex(32),
            "log_level": "warning",
            "device_rate_limit": "1000000/second",
            "account_rate_limit": "1000000/second",
            "plans": {plan.value: {"message_rate": "1000000/second"} for plan in Plan},
        }
    )
    node = await build_node(settings)
    try:
        if without_policy:
            node.services.messaging.policies = None
        transport = httpx.ASGITransport(app=node.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://node") as http:
            alice, bob = await connected_pair(http)
            for i in range(WARM_UP):
                await alice.send(bob.address, f"warm-up {i}")
            started = time.perf_counter()
            for i in range(sends):
                response = await alice.send(bob.address, f"message {i}")
                assert response.status_code == 201, response.text
            return (time.perf_counter() - started) / sends * 1e6
    finally:
        await node.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sends", type=int, default=1500)
    parser.add_argument("--without-policy", action="store_true")
    args = parser.parse_args()
    per_send = asyncio.run(measure(args.sends, without_policy=args.without_policy))
    policy = "without the policy check" if args.without_policy else "as shipped"
    print(f"{per_send:.0f} µs per send ({args.sends} sends, {policy})")


if __name__ == "__main__":
    main()
