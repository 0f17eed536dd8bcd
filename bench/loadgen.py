"""Load-generator worker, run as its own process by ``bench.run``:

    python -m bench.loadgen send|listen|idle < config.json

It prints ``ready`` once set up (listeners and idle holders after every
WebSocket is open), waits for a ``go`` line on stdin where the runner must
synchronise several workers, writes its result as JSON to the config's
``result_path`` and prints ``done``.
Timestamps are ``time.monotonic_ns()``, one clock for every process of the
machine, so a listener can measure send -> arrival across processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import uvloop

PAD = "x" * 160


def _line(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


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
    latencies: list[float] = []
    errors = 0
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as http:
        _line("ready")
        await _wait_for_go()
        started = time.monotonic()
        deadline = started + duration

        async def one(sender: dict[str, str]) -> None:
            nonlocal errors
            body = orjson.dumps({"t": time.monotonic_ns(), "pad": PAD}).decode()
            headers = {"Authorization": f"Bearer {sender['token']}"}
            t0 = time.perf_counter()
            try:
                async with http.post(
                    url, json={"to": sender["to"], "body": body}, headers=headers
                ) as r:
                    await r.read()
                    if r.status != 201:
                        errors += 1
                        return
            except aiohttp.ClientError:
                errors += 1
                return
            latencies.append((time.perf_counter() - t0) * 1000)

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
                task = asyncio.create_task(one(senders[i % len(senders)]))
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
    url = config["url"].replace("http://", "ws://") + "/v1/stream"
    timeout = float(config["timeout_s"])
    expect = 1 << 62  # until the runner says how many were sent
    latencies: list[float] = []
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
                sent = orjson.loads(event["message"]["body"])["t"]
                latencies.append((now - sent) / 1e6)
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

    async with aiohttp.ClientSession() as http:
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
        "positions": positions,
    }


async def idle(config: dict[str, Any]) -> dict[str, Any]:
    """Open ``count`` streams and hold them until stdin closes."""
    url = config["url"].replace("http://", "ws://") + "/v1/stream"
    headers = {"Authorization": f"Bearer {config['token']}"}
    connector = aiohttp.TCPConnector(limit=0)
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
    result = uvloop.run(MODES[mode](config))
    # Results (every latency) can be large: a file, not the pipe, carries them.
    Path(config["result_path"]).write_text(json.dumps(result))
    _line("done")


if __name__ == "__main__":
    main()
