"""Load-generator worker, run as its own process by ``bench.run``:

    python -m bench.loadgen send|listen|idle < config.json

It prints ``ready`` once set up (listeners and idle holders after every
WebSocket is open), waits for a ``go`` line on stdin where the runner must
synchronise several workers, writes its result as JSON to the config's
``result_path`` and prints ``done``.
Timestamps are ``time.monotonic_ns()``, one clock for every process of the
machine, so a listener can measure send -> arrival across processes (and across
nodes: the federation scenario's sender talks to one node, its listener to another).

Optional config keys: ``ca_file`` (a PEM bundle to trust for https:// and wss://
URLs), ``nice`` (lower this process's CPU priority by that much, so that it takes
what the nodes leave), ``keep_ids`` (send: keep the ids of that many accepted
messages per sender, the last ones, for the runner to check their status),
``connections`` (send: at most that many connections, 0 for no limit; requests
beyond wait for one), ``from_schedule`` (send, open loop: a message's time is
when it was due, not when the generator got round to it, so that a late
generator or a wait for a connection counts in the latency).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import re
import ssl
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import uvloop

PAD = "x" * 160
# The node's part of an end-to-end message: an om.megolm.v1 body as the node sees
# it (it checks the shape, never the cryptography). Its "ciphertext" carries the
# send time for the listener; the devices' own encrypt/decrypt cost is measured
# apart (``--scenario e2e-crypto``).
_SENDER_KEY = "A" * 43
_SESSION_ID = "B" * 43


def e2e_body(t: int) -> str:
    payload = base64.b64encode(orjson.dumps({"t": t, "pad": PAD})).decode().rstrip("=")
    return orjson.dumps(
        {
            "alg": "om.megolm.v1",
            "sender_key": _SENDER_KEY,
            "session_id": _SESSION_ID,
            "ciphertext": payload,
        }
    ).decode()


def sent_time(body: str) -> int:
    payload = orjson.loads(body)["ciphertext"]
    return int(orjson.loads(base64.b64decode(payload + "=" * (-len(payload) % 4)))["t"])


def _line(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def _tls(config: dict[str, Any]) -> ssl.SSLContext | bool:
    """What aiohttp verifies with: the given CA, or its default."""
    ca_file = config.get("ca_file")
    return ssl.create_default_context(cafile=ca_file) if ca_file else True


def _ws_url(url: str) -> str:
    return re.sub(r"^http", "ws", url) + "/v1/stream"


async def _wait_for_go() -> None:
    loop = asyncio.get_running_loop()
    line = await loop.run_in_executor(None, sys.stdin.readline)
    if line.strip() != "go":
        raise SystemExit("expected go")


async def send(config: dict[str, Any]) -> dict[str, Any]:
    """Closed loop (as fast as answers come) or open loop at ``rate`` msgs/s."""
    url = config["url"] + "/v1/messages"
    senders: list[dict[str, str]] = config["senders"]
    duration = float(config["duration_s"])
    rate = config.get("rate")
    keep_ids = int(config.get("keep_ids", 0))
    latencies: list[float] = []
    ids: dict[str, list[str]] = {}
    errors = 0
    from_schedule = bool(config.get("from_schedule"))
    connector = aiohttp.TCPConnector(limit=int(config.get("connections", 0)), ssl=_tls(config))
    async with aiohttp.ClientSession(connector=connector) as http:
        _line("ready")
        await _wait_for_go()
        started = time.monotonic()
        deadline = started + duration

        async def one(sender: dict[str, str], due: float | None = None) -> None:
            nonlocal errors
            t = round(due * 1e9) if due is not None and from_schedule else time.monotonic_ns()
            message = {"to": sender["to"], "body": e2e_body(t), "encryption": "end-to-end"}
            headers = {"Authorization": f"Bearer {sender['token']}"}
            t0 = time.perf_counter()
            try:
                async with http.post(url, json=message, headers=headers) as r:
                    answer = await r.read()
                    if r.status != 201:
                        errors += 1
                        return
            except aiohttp.ClientError:
                errors += 1
                return
            latencies.append((time.perf_counter() - t0) * 1000)
            if keep_ids:
                kept = ids.setdefault(sender["token"], [])
                kept.append(orjson.loads(answer)["id"])
                del kept[:-keep_ids]

        if rate is None:

            async def loop(sender: dict[str, str]) -> None:
                while time.monotonic() < deadline:
                    await one(sender)

            await asyncio.gather(*(loop(s) for s in senders))
        else:
            interval = 1.0 / float(rate)
            pending: set[asyncio.Task[None]] = set()
            i = 0
            while True:
                due = started + i * interval
                if due >= deadline:
                    break
                delay = due - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                task = asyncio.create_task(one(senders[i % len(senders)], due))
                pending.add(task)
                task.add_done_callback(pending.discard)
                i += 1
            if pending:
                await asyncio.gather(*pending)
        elapsed = time.monotonic() - started
    return {
        "sent": len(latencies),
        "errors": errors,
        "elapsed_s": elapsed,
        "latencies_ms": latencies,
        "ids": ids,
    }


async def echo(config: dict[str, Any]) -> dict[str, Any]:
    """Closed-loop POSTs of a ~300-byte JSON body (the ceiling, when wrk is absent)."""
    url = config["url"]
    body = orjson.dumps({"to": "4821937012*localhost", "body": PAD, "meta": {"n": 1}})
    duration = float(config["duration_s"])
    done = 0
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as http:
        _line("ready")
        await _wait_for_go()
        started = time.monotonic()
        deadline = started + duration

        async def loop() -> None:
            nonlocal done
            while time.monotonic() < deadline:
                async with http.post(
                    url, data=body, headers={"content-type": "application/json"}
                ) as r:
                    await r.read()
                done += 1

        await asyncio.gather(*(loop() for _ in range(int(config["concurrency"]))))
        elapsed = time.monotonic() - started
    return {"requests": done, "elapsed_s": elapsed}


async def listen(config: dict[str, Any]) -> dict[str, Any]:
    """Hold one stream per token; count arrivals and their send -> arrival latency."""
    url = _ws_url(config["url"])
    timeout = float(config["timeout_s"])
    expect = 1 << 62  # until the runner says how many were sent
    latencies: list[float] = []
    per_second: dict[int, int] = {}  # arrivals by whole second of the monotonic clock
    done = asyncio.Event()
    first = last = 0.0

    positions: dict[str, int] = dict(config.get("since", {}))

    async def hold(http: aiohttp.ClientSession, token: str, opened: asyncio.Event) -> None:
        nonlocal first, last
        headers = {"Authorization": f"Bearer {token}"}
        stream = f"{url}?since={positions.get(token, 0)}"
        async with http.ws_connect(stream, headers=headers, max_msg_size=0) as ws:
            opened.set()
            async for frame in ws:
                now = time.monotonic_ns()
                event = orjson.loads(frame.data)
                positions[token] = event["position"]
                sent = sent_time(event["message"]["body"])
                latencies.append((now - sent) / 1e6)
                second = now // 1_000_000_000
                per_second[second] = per_second.get(second, 0) + 1
                first = first or now / 1e9
                last = now / 1e9
                if len(latencies) >= expect:
                    done.set()

    async def read_expectation() -> None:
        nonlocal expect
        loop = asyncio.get_running_loop()
        line = await loop.run_in_executor(None, sys.stdin.readline)
        expect = int(line.split()[1])  # "expect N"
        if len(latencies) >= expect:
            done.set()

    connector = aiohttp.TCPConnector(limit=0, ssl=_tls(config))
    async with aiohttp.ClientSession(connector=connector) as http:
        opened = [asyncio.Event() for _ in config["tokens"]]
        holders = [
            asyncio.create_task(hold(http, t, o))
            for t, o in zip(config["tokens"], opened, strict=True)
        ]
        await asyncio.gather(*(o.wait() for o in opened))
        _line("ready")
        await read_expectation()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(done.wait(), timeout)
        for holder in holders:
            holder.cancel()
        await asyncio.gather(*holders, return_exceptions=True)
    return {
        "received": len(latencies),
        "latencies_ms": latencies,
        "first_s": first,
        "last_s": last,
        "per_second": per_second,
        "positions": positions,
    }


async def idle(config: dict[str, Any]) -> dict[str, Any]:
    """Open ``count`` streams and hold them until stdin closes."""
    url = _ws_url(config["url"])
    headers = {"Authorization": f"Bearer {config['token']}"}
    connector = aiohttp.TCPConnector(limit=0, ssl=_tls(config))
    opened = 0
    failed = 0
    async with aiohttp.ClientSession(connector=connector) as http:
        sockets = []
        batch = 200
        for start in range(0, int(config["count"]), batch):
            n = min(batch, int(config["count"]) - start)
            results = await asyncio.gather(
                *(http.ws_connect(url, headers=headers, heartbeat=None) for _ in range(n)),
                return_exceptions=True,
            )
            for result in results:
                if isinstance(result, BaseException):
                    failed += 1
                else:
                    sockets.append(result)
                    opened += 1
        _line("ready")
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, sys.stdin.readline)
        for ws in sockets:
            await ws.close()
    return {"opened": opened, "failed": failed}


MODES = {"send": send, "listen": listen, "idle": idle, "echo": echo}


def main() -> None:
    mode = sys.argv[1]
    config = json.loads(sys.stdin.readline())
    if config.get("nice"):
        os.nice(int(config["nice"]))
    result = uvloop.run(MODES[mode](config))
    # Results (every latency) can be large: a file, not the pipe, carries them.
    Path(config["result_path"]).write_text(json.dumps(result))
    _line("done")


if __name__ == "__main__":
    main()
