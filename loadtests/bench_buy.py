"""Buy-path benchmark: server CPU per buy against a no-op round trip, the 10,000-buyer spike, and
memory per connected viewer. Results are recorded in docs/performance.md.

It starts ``liveroom serve`` (embedded Redis) as a child process on a free port
(``loadtests/_launcher.py``; the server gets the settings below, not the shell's ``LIVEROOM_*``)
and measures the server from outside, the way an operator would: CPU from ``/proc/<pid>/stat``
(utime + stime of the server process and its worker processes; the embedded redis-server and the
orders hand-off consumer are reported apart), RSS from ``/proc/<pid>/statm``
(``loadtests/_procstats.py``). Clients speak only the public protocol (the lean Socket.IO
client).

CPU per operation: ``--clients`` connected buyers, all in the sale's room, send ``--rate``
operations per second in total (an open schedule: each operation leaves at its planned time
whatever happened to earlier ones), ``--ops`` per phase. A ``ping`` phase (the no-op round trip,
same framework path, no domain work) and a ``buy`` phase alternate ``--rounds`` times after a
warm-up, so both see the same client load and the same machine noise; medians are reported.

``--replica``: instead of the above, the cost of a replica and of WAIT. Three servers run side by
side, each with a Redis primary of its own started here (AOF, fsync always, as the embedded
one): ``alone`` (no replica), ``replica`` (a replica, ``LIVEROOM_REDIS_WAIT_REPLICA=off``) and
``wait`` (a replica, each buy batch confirmed by it with WAIT). Their buy phases alternate
``--rounds`` times (the order rotating), so all three see the same machine noise; the server's
CPU per buy and the buy latency are reported per set-up (medians), with the primary's and the
replica's CPU apart.

Usage:
  python -m loadtests.bench_buy [--clients 200] [--rate 1500] [--ops 4500] [--rounds 3]
      [--workers 1] [--idle-clients 2000] [--spike-buyers 10000] [--spike-stock 1000]
      [--spike-processes 4] [--skip-spike] [--skip-memory] [--profile-dir DIR] [--json PATH]
  python -m loadtests.bench_buy --replica [--clients 200] [--rate 1500] [--ops 4500]
      [--rounds 3] [--json PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from . import _procstats as procstats
from ._api import ServerApi
from ._client import LeanSocket
from ._launcher import LOAD_TEST_ENV, ServerProcess, free_port
from ._procstats import ProcessInfo
from ._worker import raise_open_file_limit

__all__ = ["main"]

SECRET = "bench-secret-0123456789abcdef0123456789"
HANDOFF = "lr-handoff"  # the orders hand-off consumer's process name


# -- the server, seen from /proc ---------------------------------------------------------------


def server_environment() -> dict[str, str]:
    """The bench's server settings: the load-test exemptions, and the per-connection limits
    lifted, because the CPU phases send many buys per connection on purpose and every buy must
    reach the inventory."""
    return {
        "LIVEROOM_SECRET": SECRET,
        "LIVEROOM_LOG_LEVEL": "warning",
        "LIVEROOM_BUY_RATE_PER_S": "100000",
        "LIVEROOM_BUY_BURST": "100000",
        "LIVEROOM_EVENT_RATE_PER_S": "100000",
        "LIVEROOM_EVENT_BURST": "100000",
        "LIVEROOM_USER_EVENT_RATE_PER_S": "0",
        **LOAD_TEST_ENV,
    }


@dataclass
class RedisProcess:
    """A ``redis-server`` of the bench's own (``--replica``): a primary, or a replica of one."""

    data_dir: Path
    replica_of: int | None = None
    port: int = 0
    process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        self.port = free_port()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        args = ["--bind", "127.0.0.1", "--port", str(self.port), "--dir", str(self.data_dir),
                "--save", "", "--appendonly", "yes", "--appendfsync", "always",
                "--repl-diskless-sync-delay", "0", "--logfile", "redis.log"]
        if self.replica_of is not None:
            args += ["--replicaof", "127.0.0.1", str(self.replica_of)]
        self.process = await asyncio.create_subprocess_exec(
            shutil.which("redis-server") or "redis-server", *args,
            stdout=asyncio.subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if await self._replication_ready():
                return
            await asyncio.sleep(0.1)
        raise RuntimeError(f"redis-server on {self.port} did not get ready within 30 s")

    async def _replication_ready(self) -> bool:
        """Answering, and a replica in sync with its primary."""
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        except OSError:
            return False
        try:
            writer.write(b"INFO replication\r\n")
            await writer.drain()
            header = await asyncio.wait_for(reader.readline(), 2)
            if not header.startswith(b"$"):
                return False  # -LOADING
            body = await reader.readexactly(int(header[1:]) + 2)
        except (OSError, TimeoutError, asyncio.IncompleteReadError):
            return False
        finally:
            writer.close()
        return self.replica_of is None or b"master_link_status:up" in body

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def cpu_s(self) -> float:
        return _cpu_s([self.process.pid]) if self.process is not None else 0.0

    async def stop(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.terminate()
            await self.process.wait()


@dataclass
class BenchServer:
    """The launched server's processes, told apart by name: those answering clients (the
    supervisor and its workers), the embedded redis-server and the orders hand-off consumer."""

    process: ServerProcess
    workers: int

    @property
    def url(self) -> str:
        return self.process.url

    def _everyone(self) -> list[ProcessInfo]:
        me = procstats.info(self.process.pid)
        return ([] if me is None else [me]) + self.process.children()

    def server_pids(self) -> list[int]:
        return [p.pid for p in self._everyone() if "redis" not in p.name and p.name != HANDOFF]

    def handoff_pids(self) -> list[int]:
        return [p.pid for p in self._everyone() if p.name == HANDOFF]

    def redis_pids(self) -> list[int]:
        return [p.pid for p in self._everyone() if "redis" in p.name]

    def server_cpu_s(self) -> float:
        return _cpu_s(self.server_pids())

    def redis_cpu_s(self) -> float:
        return _cpu_s(self.redis_pids())

    def handoff_cpu_s(self) -> float:
        return _cpu_s(self.handoff_pids())

    def server_rss(self) -> int:
        return sum(procstats.rss_bytes(pid) or 0 for pid in self.server_pids())


def _cpu_s(pids: Sequence[int]) -> float:
    return sum(procstats.cpu_seconds(pid) or 0.0 for pid in pids)


# -- clients -----------------------------------------------------------------------------------


@dataclass
class Crowd:
    api: ServerApi
    session: aiohttp.ClientSession
    url: str
    room: str
    # An admin's token: mints the crowd's buyer accounts (buying needs one).
    admin: str
    sockets: list[LeanSocket] = field(default_factory=list)
    pushes: Counter[str] = field(default_factory=Counter)

    def _on_push(self, event: str, _data: Any) -> None:
        self.pushes[event] += 1

    async def _one(self, token: str, gate: asyncio.Semaphore, join: bool) -> LeanSocket:
        async with gate:
            sock = LeanSocket(self.session, self.url, token, on_push=self._on_push)
            await sock.connect()
            if join:
                answer = await sock.call("join", {"room": self.room})
                if not answer.get("ok"):
                    raise RuntimeError(f"join refused: {answer}")
            return sock

    async def grow(self, count: int, *, join: bool = True) -> list[LeanSocket]:
        gate = asyncio.Semaphore(100)
        start = len(self.sockets)
        accounts = await self.api.mint_buyers(self.admin, count, f"bench{self.room[-6:]}n{start}")
        added = await asyncio.gather(*(self._one(token, gate, join) for token, _ in accounts))
        self.sockets.extend(added)
        return list(added)

    async def close(self, sockets: Sequence[LeanSocket] | None = None) -> None:
        chosen = list(self.sockets if sockets is None else sockets)
        gate = asyncio.Semaphore(200)

        async def close_one(sock: LeanSocket) -> None:
            async with gate:
                await sock.close()

        await asyncio.gather(*(close_one(s) for s in chosen))
        gone = set(map(id, chosen))
        self.sockets = [s for s in self.sockets if id(s) not in gone]


# -- one measured phase ------------------------------------------------------------------------


@dataclass
class PhaseResult:
    op: str
    ops: int
    wall_s: float
    server_cpu_s: float
    redis_cpu_s: float
    handoff_cpu_s: float
    answers: dict[str, int]
    latency_ms_p50: float
    latency_ms_p99: float
    pushes: dict[str, int]

    @property
    def us_per_op(self) -> float:
        return 1e6 * self.server_cpu_s / self.ops

    @property
    def redis_us_per_op(self) -> float:
        return 1e6 * self.redis_cpu_s / self.ops

    @property
    def handoff_us_per_op(self) -> float:
        return 1e6 * self.handoff_cpu_s / self.ops


def _percentile(sorted_values: Sequence[float], fraction: float) -> float:
    if not sorted_values:
        return float("nan")
    return sorted_values[min(len(sorted_values) - 1, int(fraction * len(sorted_values)))]


MakePayload = Callable[[int], Any]
Classify = Callable[[Any], str]


async def run_phase(server: BenchServer, crowd: Crowd, op: str, payload: MakePayload,
                    classify: Classify, ops: int, rate: float) -> PhaseResult:
    """Send ``ops`` operations at ``rate`` per second, round-robin over the crowd, and measure
    the server's CPU from the first send to the last answer."""
    loop = asyncio.get_running_loop()
    answers: Counter[str] = Counter()
    latencies: list[float] = []
    pending: list[asyncio.Task[None]] = []
    sockets = crowd.sockets

    # uvloop's loop.time() ticks in whole milliseconds: latencies use perf_counter.
    async def one(sock: LeanSocket, index: int, intended: float) -> None:
        try:
            answer = await sock.call(op, payload(index), timeout=30)
        except (TimeoutError, ConnectionError) as exc:
            answers[type(exc).__name__] += 1
        else:
            answers[classify(answer)] += 1
        latencies.append(1000.0 * (time.perf_counter() - intended))

    pushes_before = Counter(crowd.pushes)
    cpu0, redis0, handoff0 = server.server_cpu_s(), server.redis_cpu_s(), server.handoff_cpu_s()
    start = time.perf_counter()
    for index in range(ops):
        intended = start + index / rate
        delay = intended - time.perf_counter()
        if delay > 0.0005:
            await asyncio.sleep(delay)
        pending.append(loop.create_task(one(sockets[index % len(sockets)], index, intended)))
    await asyncio.gather(*pending)
    wall = time.perf_counter() - start
    cpu1, redis1, handoff1 = server.server_cpu_s(), server.redis_cpu_s(), server.handoff_cpu_s()
    latencies.sort()
    return PhaseResult(op=op, ops=ops, wall_s=wall, server_cpu_s=cpu1 - cpu0,
                       redis_cpu_s=redis1 - redis0, handoff_cpu_s=handoff1 - handoff0,
                       answers=dict(answers),
                       latency_ms_p50=_percentile(latencies, 0.5),
                       latency_ms_p99=_percentile(latencies, 0.99),
                       pushes=dict(crowd.pushes - pushes_before))


def _ping_status(answer: Any) -> str:
    return "ok" if isinstance(answer, dict) and answer.get("ok") else f"refused:{answer}"


def _buy_status(answer: Any) -> str:
    return str(answer.get("status", "?")) if isinstance(answer, dict) else "?"


# -- the scenarios -----------------------------------------------------------------------------


@dataclass(frozen=True)
class BenchConfig:
    clients: int = 200
    rate: float = 1500.0
    ops: int = 4500
    rounds: int = 3
    workers: int = 1
    idle_clients: int = 2000
    spike_buyers: int = 10_000
    spike_stock: int = 1000
    spike_window_ms: float = 1000.0
    spike_processes: int = 4
    skip_spike: bool = False
    skip_memory: bool = False
    skip_cpu: bool = False
    profile_dir: Path | None = None
    profile_s: float = 8.0
    json_path: Path | None = None
    replica: bool = False


async def _make_sale(api: ServerApi, anchor: str, room: str, stock: int, limit: int,
                     starts_in_s: int = 0) -> str:
    product = await api.create_product(anchor, "Bench item", 9900)
    sale = await api.create_sale(anchor, room, {
        "product_id": product["id"], "stock": stock, "price_cents": 4900,
        "per_user_limit": limit, "starts_in_s": starts_in_s, "duration_s": 3600,
        "hold_s": 3600})
    return str(sale["id"])


async def measure_memory(server: BenchServer, crowd: Crowd, count: int) -> dict[str, Any]:
    """RSS growth of the server per connected viewer (connected, and joined to the room)."""
    await crowd.grow(50)  # warm every code path before the baseline
    await asyncio.sleep(1.0)
    base = server.server_rss()
    connected = await crowd.grow(count, join=False)
    await asyncio.sleep(1.0)
    after_connect = server.server_rss()
    for sock in connected:
        await sock.call("join", {"room": crowd.room})
    await asyncio.sleep(1.0)
    after_join = server.server_rss()
    await crowd.close()
    return {"viewers": count, "rss_base_mb": base / 2**20,
            "kb_per_connection": (after_connect - base) / count / 1024,
            "kb_per_joined_viewer": (after_join - base) / count / 1024}


async def measure_cpu(server: BenchServer, crowd: Crowd, anchor: str,
                      config: BenchConfig) -> dict[str, Any]:
    per_client = (config.rounds + 1) * config.ops // config.clients + 10
    sale = await _make_sale(crowd.api, anchor, crowd.room,
                            stock=(config.rounds + 2) * config.ops + 100,
                            limit=min(10_000, per_client))
    await crowd.grow(config.clients)
    serial = itertools.count()

    def buy_payload(_index: int) -> dict[str, Any]:
        return {"sale": sale, "qty": 1, "request_id": f"r{next(serial)}"}

    def ping_payload(_index: int) -> dict[str, Any]:
        return {}

    phases: dict[str, list[PhaseResult]] = {"ping": [], "buy": []}
    # Warm-up: imports, caches, connection pools, script registration; not counted.
    warm = max(200, config.ops // 4)
    await run_phase(server, crowd, "ping", ping_payload, _ping_status, warm, config.rate)
    await run_phase(server, crowd, "buy", buy_payload, _buy_status, warm, config.rate)
    idle_cpu0 = server.server_cpu_s()
    await asyncio.sleep(2.0)
    idle_us_per_s = 1e6 * (server.server_cpu_s() - idle_cpu0) / 2.0
    for round_index in range(config.rounds):
        order = ("ping", "buy") if round_index % 2 == 0 else ("buy", "ping")
        for op in order:
            if op == "ping":
                result = await run_phase(server, crowd, "ping", ping_payload, _ping_status,
                                         config.ops, config.rate)
            else:
                result = await run_phase(server, crowd, "buy", buy_payload, _buy_status,
                                         config.ops, config.rate)
            phases[op].append(result)
            _say(f"  round {round_index + 1} {op:4s}: {result.us_per_op:7.1f} us server CPU/op "
                 f"(redis {result.redis_us_per_op:5.1f}, orders hand-off "
                 f"{result.handoff_us_per_op:5.1f}), p50 {result.latency_ms_p50:.1f} ms "
                 f"p99 {result.latency_ms_p99:.1f} ms, answers {result.answers}, "
                 f"pushes {result.pushes}")
    ping = statistics.median(r.us_per_op for r in phases["ping"])
    buy = statistics.median(r.us_per_op for r in phases["buy"])
    profiles: dict[str, Any] = {}
    if config.profile_dir is not None:
        profile_ops = int(config.rate * (config.profile_s + 2))
        for op in ("buy", "ping"):
            make, classify = (buy_payload, _buy_status) if op == "buy" else (ping_payload,
                                                                           _ping_status)
            profiles[op] = await _profiled_phase(server, crowd, op, make, classify,
                                                 profile_ops, config)
    return {
        "clients": config.clients, "rate_per_s": config.rate, "ops_per_phase": config.ops,
        "rounds": config.rounds, "sale": sale,
        "idle_server_cpu_us_per_s": idle_us_per_s,
        "ping_us_per_op_median": ping, "buy_us_per_op_median": buy, "buy_over_ping": buy / ping,
        "redis_us_per_buy_median": statistics.median(r.redis_us_per_op for r in phases["buy"]),
        "handoff_us_per_buy_median": statistics.median(
            r.handoff_us_per_op for r in phases["buy"]),
        "phases": {op: [vars(r) | {"us_per_op": r.us_per_op} for r in results]
                   for op, results in phases.items()},
        "profiles": profiles,
    }


async def _profiled_phase(server: BenchServer, crowd: Crowd, op: str, payload: MakePayload,
                          classify: Classify, ops: int, config: BenchConfig) -> dict[str, Any]:
    """Run a phase with py-spy sampling the (first) server process; keep the flame graph and
    the raw collapsed stacks, and summarise the top frames."""
    assert config.profile_dir is not None
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    config.profile_dir.mkdir(parents=True, exist_ok=True)
    pid = server.server_pids()[-1] if server.workers > 1 else server.server_pids()[0]
    raw = config.profile_dir / f"{op}.txt"
    svg = config.profile_dir / f"{op}.svg"
    jobs = [
        await asyncio.create_subprocess_exec(
            spy, "record", "--pid", str(pid), "--rate", "250", "--duration",
            str(int(config.profile_s)), "--nonblocking", "--format", fmt, "-o", str(path),
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
        for fmt, path in (("raw", raw), ("flamegraph", svg))
    ]
    await asyncio.sleep(0.5)
    result = await run_phase(server, crowd, op, payload, classify, ops, config.rate)
    for job in jobs:
        await job.wait()
    return {"pid": pid, "flamegraph": str(svg), "collapsed": str(raw),
            "us_per_op_while_sampled": result.us_per_op, "top": top_frames(raw)}


def top_frames(collapsed: Path, limit: int = 25) -> dict[str, list[tuple[str, float]]]:
    """Self and inclusive shares of the samples, per frame, from py-spy's raw output."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    with contextlib.suppress(OSError), open(collapsed) as fh:
        for line in fh:
            stack, _, count_text = line.rstrip("\n").rpartition(" ")
            if not stack or not count_text.isdigit():
                continue
            count = int(count_text)
            frames = stack.split(";")
            total += count
            own[frames[-1]] += count
            for frame in set(frames):
                inclusive[frame] += count
    if not total:
        return {"self": [], "inclusive": []}
    return {
        "self": [(f, round(100 * c / total, 1)) for f, c in own.most_common(limit)],
        "inclusive": [(f, round(100 * c / total, 1)) for f, c in inclusive.most_common(limit)],
    }


async def measure_spike(server: BenchServer, anchor: str, config: BenchConfig,
                        out_dir: Path) -> dict[str, Any]:
    """The spike command: ``spike_buyers`` buyers, ``spike_stock`` units, one buy each, all
    within ``spike_window_ms``; plus the server's CPU and peak RSS while it runs."""
    report_path = out_dir / "spike.json"
    command = [sys.executable, "-m", "loadtests", "spike", "--url", server.url,
               "--admin-token", anchor, "--buyers", str(config.spike_buyers),
               "--stock", str(config.spike_stock), "--per-user-limit", "1", "--attempts", "1",
               "--profile", "spike", "--jitter-ms", str(config.spike_window_ms),
               "--processes", str(config.spike_processes), "--timeout", "30",
               "--json", str(report_path), "--quiet"]
    cpu0 = server.server_cpu_s()
    peak_rss = 0
    job = await asyncio.create_subprocess_exec(*command, stdout=asyncio.subprocess.PIPE)
    while job.returncode is None:
        peak_rss = max(peak_rss, server.server_rss())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(job.wait(), 0.25)
    stdout = (await job.stdout.read()).decode() if job.stdout else ""
    report: dict[str, Any] = json.loads(report_path.read_text())
    latency = report["latency_ms"]
    return {
        "command": " ".join(command[1:]).replace(anchor, "$TOKEN"),
        "exit_status": job.returncode,
        "buyers": report["buyers"], "connected": report["connected"],
        "stock": report["stock"], "reserved": report["reserved"],
        "server": report["server"], "statuses": report["statuses"], "errors": report["errors"],
        "audit_passed": report["audit"]["passed"],
        "latency_ms": {k: latency[k] for k in ("p50", "p90", "p99", "max")},
        "send_lag_ms_p99": report["send_lag_ms"]["p99"],
        "connect_ms_p99": report["connect_ms"]["p99"],
        "pushes_received": report.get("pushes_received"),
        "server_cpu_s_whole_run": server.server_cpu_s() - cpu0,
        "server_peak_rss_mb": peak_rss / 2**20,
        "generator": report["generator"],
        "text": stdout,
    }


@dataclass
class ReplicaSetup:
    """One server of ``--replica`` with its primary (and replica), and its crowd and sale."""

    name: str
    wait: str  # LIVEROOM_REDIS_WAIT_REPLICA
    primary: RedisProcess
    replica: RedisProcess | None
    server: BenchServer | None = None
    crowd: Crowd | None = None
    sale: str = ""
    results: list[PhaseResult] = field(default_factory=list)
    redis_us: list[float] = field(default_factory=list)
    replica_us: list[float] = field(default_factory=list)

    async def start(self, config: BenchConfig, work: Path) -> BenchServer:
        await self.primary.start()
        if self.replica is not None:
            self.replica.replica_of = self.primary.port
            await self.replica.start()
        launched = ServerProcess(
            work / self.name / "data", args=["--workers", str(config.workers)],
            env={**server_environment(), "LIVEROOM_REDIS_URL": self.primary.url,
                 "LIVEROOM_REDIS_WAIT_REPLICA": self.wait})
        self.server = BenchServer(launched, config.workers)
        await launched.start()
        return self.server

    async def stop(self) -> None:
        if self.crowd is not None:
            await self.crowd.close()
        if self.server is not None:
            await self.server.process.stop()
        for redis in (self.replica, self.primary):
            if redis is not None:
                await redis.stop()


async def measure_replica(config: BenchConfig, session: aiohttp.ClientSession,
                          work: Path) -> dict[str, Any]:
    """Buy phases alternating between three set-ups: no replica, a replica without WAIT, a
    replica with WAIT per batch (see the module's docstring)."""
    setups = [
        ReplicaSetup(name, wait, RedisProcess(work / name / "primary"),
                     RedisProcess(work / name / "replica") if with_replica else None)
        for name, with_replica, wait in (("alone", False, "on"), ("replica", True, "off"),
                                         ("wait", True, "on"))
    ]
    try:
        for setup in setups:
            server = await setup.start(config, work)
            anchor = await server.process.token("admin", "Bench")
            api = ServerApi(session, server.url)
            room = (await api.create_room(anchor, "Bench room"))["id"]
            setup.crowd = Crowd(api=api, session=session, url=server.url, room=room,
                                admin=anchor)
            per_client = (config.rounds + 1) * config.ops // config.clients + 10
            setup.sale = await _make_sale(api, anchor, room,
                                          stock=(config.rounds + 2) * config.ops + 100,
                                          limit=min(10_000, per_client))
            await setup.crowd.grow(config.clients)
        serial = itertools.count()

        async def phase(setup: ReplicaSetup, ops: int) -> PhaseResult:
            assert setup.crowd is not None
            primary0 = setup.primary.cpu_s()
            replica0 = setup.replica.cpu_s() if setup.replica else 0.0
            assert setup.server is not None
            result = await run_phase(
                setup.server, setup.crowd, "buy",
                lambda _i: {"sale": setup.sale, "qty": 1, "request_id": f"r{next(serial)}"},
                _buy_status, ops, config.rate)
            setup.redis_us.append(1e6 * (setup.primary.cpu_s() - primary0) / ops)
            if setup.replica is not None:
                setup.replica_us.append(1e6 * (setup.replica.cpu_s() - replica0) / ops)
            return result

        warm = max(200, config.ops // 4)
        for setup in setups:
            await phase(setup, warm)
            setup.redis_us.clear()
            setup.replica_us.clear()
        for round_index in range(config.rounds):
            shift = round_index % len(setups)
            for setup in setups[shift:] + setups[:shift]:
                result = await phase(setup, config.ops)
                setup.results.append(result)
                _say(f"  round {round_index + 1} {setup.name:7s}: {result.us_per_op:7.1f} us "
                     f"server CPU/buy, primary {setup.redis_us[-1]:5.1f} us, replica "
                     f"{setup.replica_us[-1] if setup.replica_us else 0.0:5.1f} us, "
                     f"p50 {result.latency_ms_p50:.1f} ms p99 {result.latency_ms_p99:.1f} ms, "
                     f"answers {result.answers}")
        summary: dict[str, Any] = {"clients": config.clients, "rate_per_s": config.rate,
                                   "ops_per_phase": config.ops, "rounds": config.rounds}
        for setup in setups:
            summary[setup.name] = {
                "server_us_per_buy_median": statistics.median(r.us_per_op
                                                              for r in setup.results),
                "primary_us_per_buy_median": statistics.median(setup.redis_us),
                "replica_us_per_buy_median": (statistics.median(setup.replica_us)
                                              if setup.replica_us else None),
                "latency_ms_p50_median": statistics.median(r.latency_ms_p50
                                                           for r in setup.results),
                "latency_ms_p99_median": statistics.median(r.latency_ms_p99
                                                           for r in setup.results),
                "answers": [r.answers for r in setup.results],
            }
        alone = summary["alone"]["server_us_per_buy_median"]
        for name in ("replica", "wait"):
            summary[name]["server_cpu_over_alone"] = (
                summary[name]["server_us_per_buy_median"] / alone)
        return summary
    finally:
        for setup in setups:
            await setup.stop()


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


async def run_bench(config: BenchConfig) -> dict[str, Any]:
    raise_open_file_limit()
    work = Path(tempfile.mkdtemp(prefix="liveroom-bench-"))
    launched = ServerProcess(work / "data", args=["--workers", str(config.workers)],
                             env=server_environment())
    server = BenchServer(launched, config.workers)
    results: dict[str, Any] = {"workers": config.workers, "cpus": os.cpu_count(),
                               "python": sys.version.split()[0]}
    if config.replica:
        _say(f"replica: {config.clients} clients per server, {config.rate:.0f} buys/s, "
             f"{config.ops} buys per phase, {config.rounds} rounds of alone/replica/wait")
        try:
            async with aiohttp.ClientSession(
                    connector=aiohttp.TCPConnector(limit=0, force_close=False)) as session:
                results["replica"] = await measure_replica(config, session, work)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        return results
    await launched.start()
    try:
        anchor = await launched.token("admin", "Bench")
        async with aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0, force_close=False)) as session:
            api = ServerApi(session, server.url)
            room = (await api.create_room(anchor, "Bench room"))["id"]
            crowd = Crowd(api=api, session=session, url=server.url, room=room, admin=anchor)
            if not config.skip_memory:
                _say(f"memory: connecting {config.idle_clients} idle viewers")
                results["memory"] = await measure_memory(server, crowd, config.idle_clients)
                _say(f"  {results['memory']}")
            if not config.skip_cpu:
                _say(f"cpu: {config.clients} clients, {config.rate:.0f} ops/s, "
                     f"{config.ops} ops per phase, {config.rounds} rounds")
                results["cpu"] = await measure_cpu(server, crowd, anchor, config)
                cpu = results["cpu"]
                _say(f"  ping {cpu['ping_us_per_op_median']:.1f} us/op, buy "
                     f"{cpu['buy_us_per_op_median']:.1f} us/op, buy/ping "
                     f"{cpu['buy_over_ping']:.3f}")
                await crowd.close()
        if not config.skip_spike:
            _say(f"spike: {config.spike_buyers} buyers, {config.spike_stock} units")
            results["spike"] = await measure_spike(server, anchor, config, work)
            spike = results["spike"]
            _say(f"  latency {spike['latency_ms']}, reserved {spike['reserved']}, "
                 f"audit {'PASSED' if spike['audit_passed'] else 'FAILED'}, errors "
                 f"{spike['errors']}, server peak RSS {spike['server_peak_rss_mb']:.0f} MB")
    finally:
        await launched.stop()
        shutil.rmtree(work, ignore_errors=True)
    return results


def _parse(argv: Sequence[str]) -> BenchConfig:
    p = argparse.ArgumentParser(prog="python -m loadtests.bench_buy", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clients", type=int, default=200)
    p.add_argument("--rate", type=float, default=1500.0, help="operations per second, in all")
    p.add_argument("--ops", type=int, default=4500, help="operations per measured phase")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--workers", type=int, default=1, help="liveroom serve --workers")
    p.add_argument("--idle-clients", type=int, default=2000)
    p.add_argument("--spike-buyers", type=int, default=10_000)
    p.add_argument("--spike-stock", type=int, default=1000)
    p.add_argument("--spike-window-ms", type=float, default=1000.0)
    p.add_argument("--spike-processes", type=int, default=4,
                   help="generator processes (with 2, their own send lag dominated the spike)")
    p.add_argument("--skip-spike", action="store_true")
    p.add_argument("--skip-memory", action="store_true")
    p.add_argument("--skip-cpu", action="store_true")
    p.add_argument("--profile-dir", type=Path, default=None,
                   help="also sample the server with py-spy during a buy and a ping phase")
    p.add_argument("--profile-s", type=float, default=8.0)
    p.add_argument("--json", type=Path, default=None, dest="json_path")
    p.add_argument("--replica", action="store_true",
                   help="measure the cost of a replica and of WAIT per batch instead")
    a = p.parse_args(list(argv))
    return BenchConfig(
        clients=a.clients, rate=a.rate, ops=a.ops, rounds=a.rounds, workers=a.workers,
        idle_clients=a.idle_clients, spike_buyers=a.spike_buyers, spike_stock=a.spike_stock,
        spike_window_ms=a.spike_window_ms, spike_processes=a.spike_processes,
        skip_spike=a.skip_spike, skip_memory=a.skip_memory, skip_cpu=a.skip_cpu,
        profile_dir=a.profile_dir, profile_s=a.profile_s, json_path=a.json_path,
        replica=a.replica)


def main(argv: Sequence[str] | None = None) -> int:
    import uvloop

    config = _parse(sys.argv[1:] if argv is None else argv)
    results = uvloop.run(run_bench(config))
    text = json.dumps(results, indent=1, default=str)
    if config.json_path is not None:
        config.json_path.write_text(text)
    print(text)
    spike = results.get("spike")
    return 0 if spike is None or spike["audit_passed"] else 1


if __name__ == "__main__":
    sys.exit(main())

