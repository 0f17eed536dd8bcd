"""``python -m bench.e2e``: what end-to-end encryption costs a device and a sender.

1. crypto    per message, what the SDK does on each side, in one process: the
             sender's store transaction (restore the Megolm session, encrypt,
             write it back) and the receiver's (restore, decrypt, record the
             index against replays, write back). No network.
2. send      real SDK clients against a real node (SQLite): ``--pairs`` senders
             each sending as fast as the node answers for ``--duration`` s, every
             message encrypted on the device (``Client.send``); then every
             recipient syncs and decrypts all of them, which is checked.

Prints one JSON object and writes it to ``bench/results/e2e-<time>.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.node import NodeUnderTest
from openmessenger.client import Client
from openmessenger.client.crypto_store import CryptoStore, InboundRecord, OutboundRecord
from openmessenger.crypto.megolm import InboundGroupSession, OutboundGroupSession
from openmessenger.protocol import e2e

BENCH_DIR = Path(__file__).parent
TEXT = "x" * 160
ALICE, BOB = "4821937012*localhost", "1234567890*localhost"


def crypto_cost(messages: int, directory: Path) -> dict[str, Any]:
    key = b"k" * 32
    for side in ("sender", "receiver"):
        (directory / side).mkdir(parents=True)
    sender, receiver = (
        CryptoStore(directory / "sender", key),
        CryptoStore(directory / "receiver", key),
    )
    outbound = OutboundGroupSession.create()
    with sender.transaction():
        sender.save_outbound("peer", OutboundRecord(outbound, time.time(), 0, frozenset()))
    with receiver.transaction():
        receiver.save_inbound(
            InboundRecord(
                "A" * 43, InboundGroupSession.from_session_key(outbound.session_key), ALICE, BOB
            )
        )
    encrypt_us, decrypt_us = [], []
    for n in range(messages):
        plaintext = e2e.GroupPlaintext(text=TEXT, sender=ALICE, recipient=BOB)
        started = time.perf_counter()
        with sender.transaction():
            record = sender.outbound("peer")
            assert record is not None
            ciphertext = record.session.encrypt(plaintext.model_dump_json(by_alias=True).encode())
            sender.save_outbound(
                "peer",
                OutboundRecord(
                    record.session, record.created_at, record.messages + 1, record.shared_with
                ),
            )
        encrypted = time.perf_counter()
        with receiver.transaction():
            inbound = receiver.inbound("A" * 43, outbound.session_id)
            assert inbound is not None
            opened, index = inbound.session.decrypt(ciphertext)
            receiver.update_inbound(inbound)
            assert receiver.record_index(outbound.session_id, index, f"m{n}")
        done = time.perf_counter()
        assert e2e.GroupPlaintext.model_validate_json(opened).text == TEXT
        encrypt_us.append((encrypted - started) * 1e6)
        decrypt_us.append((done - encrypted) * 1e6)
    sender.close()
    receiver.close()
    return {
        "messages": messages,
        "encrypt_us_p50": statistics.median(encrypt_us),
        "decrypt_us_p50": statistics.median(decrypt_us),
        "encrypt_plus_decrypt_us_p50": statistics.median(
            e + d for e, d in zip(encrypt_us, decrypt_us, strict=True)
        ),
    }


async def send_throughput(pairs: int, duration: float, directory: Path) -> dict[str, Any]:
    node = NodeUnderTest(directory / "node").start()
    clients: list[Client] = []
    try:
        senders, recipients = [], []
        for n in range(pairs):
            sender = Client(node.url, directory / f"s{n}", timeout=60)
            recipient = Client(node.url, directory / f"r{n}", timeout=60)
            clients += [sender, recipient]
            code = await recipient.issue_code()
            await sender.connect((await recipient.whoami()).address, code.pass_code)
            senders.append(sender)
            recipients.append(recipient)
        for sender, recipient in zip(senders, recipients, strict=True):
            await sender.send(recipient.address or "", "warm-up")  # the Olm session and key share
        sent = 0
        deadline = time.monotonic() + duration

        async def loop(sender: Client, to: str) -> None:
            nonlocal sent
            while time.monotonic() < deadline:
                await sender.send(to, TEXT)
                sent += 1

        started = time.monotonic()
        await asyncio.gather(
            *(loop(s, r.address or "") for s, r in zip(senders, recipients, strict=True))
        )
        elapsed = time.monotonic() - started
        read_started = time.monotonic()
        received = [await r.sync() for r in recipients]
        read_elapsed = time.monotonic() - read_started
        opened = sum(1 for batch in received for m in batch if m.text == TEXT)
        return {
            "pairs": pairs,
            "duration_s": elapsed,
            "sent": sent,
            "send_msgs_per_s": sent / elapsed,
            "decrypted": opened,
            "all_decrypted": opened == sent,
            "sync_and_decrypt_msgs_per_s": (sent + pairs) / read_elapsed,
        }
    finally:
        for client in clients:
            await client.aclose()
        node.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.e2e", description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=5000, help="crypto: messages timed")
    parser.add_argument("--pairs", type=int, default=8, help="send: concurrent senders")
    parser.add_argument("--duration", type=float, default=10.0, help="send: seconds")
    parser.add_argument("--smoke", action="store_true", help="tiny run: proves the harness")
    parser.add_argument("--out", type=Path, default=BENCH_DIR / "results")
    given = argv if argv is not None else sys.argv[1:]
    args = parser.parse_args(given)
    if args.smoke:
        args.messages, args.pairs, args.duration = 50, 2, 1.0
    with tempfile.TemporaryDirectory(prefix="om-bench-e2e-") as tmp:
        result = {
            "started_at": datetime.now(UTC).isoformat(),
            "command": " ".join(["python -m bench.e2e", *given]),
            "crypto": crypto_cost(args.messages, Path(tmp) / "crypto"),
            "send": asyncio.run(send_throughput(args.pairs, args.duration, Path(tmp) / "send")),
        }
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    (args.out / f"e2e-{stamp}.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0 if result["send"]["all_decrypted"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
