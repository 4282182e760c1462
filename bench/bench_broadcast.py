"""Live dashboard: delivery latency from a published event to its receipt in the browsers.

    .venv/bin/python bench/bench_broadcast.py [--clients 100 1000] [--events 30] [--rates 2 10]

Each run starts a real daphne (``project.asgi``) on a private Redis and a migrated SQLite file,
connects N WebSocket clients (the ``websockets`` library, in client processes of their own),
publishes events with ``realtime.publish.publish_event`` from this process and records, for
every client and event, the time from the publish call to the frame's arrival.

Servers compared, each at every client count:
- ``memory``: the embedded default, in-memory layer; events are published inside the server
  process (through ``POST /bench/publish`` of ``inject_app`` below).
- ``pubsub`` and ``core``: channels_redis's two layers, published from this process.
- ``baseline``: a plain ``websockets`` server subscribed to the same Redis (pub/sub) that
  broadcasts the same frames with ``websockets.broadcast``: no auth, no acks, no retry.
- ``daphne-floor``: a bare ASGI app on daphne writing the same frames to every socket in turn
  (``floor_app``): what daphne itself costs, with nothing of ours.
- ``<server>+stuck``: the same with 10% of the clients never reading.

Also: the server's CPU time per frame written (from /proc, while the events go out); server
memory (RSS) idle, with the clients connected and after they left; and what each
Redis layer does when Redis restarts (time until events flow again, resync, lost events).
Prints tables and writes bench/results/broadcast.json. Targets at 1,000 clients on Redis:
p99 at most 100 ms and at most 1.5x the baseline; with 10% stuck, healthy p99 within 20%.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import multiprocessing
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from multiprocessing.connection import Connection
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script from anywhere: the project's packages import

import websockets  # noqa: E402

from bench.proc_stats import cpu_seconds  # noqa: E402
from tests.realtime import servers  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "broadcast.json"
WORKERS = 2
CONNECT_CONCURRENCY = 50
ACK_EVERY = 50
BASELINE_CHANNEL = "bench-baseline"
TARGET_P99_MS = 100.0
TARGET_RATIO = 1.5
TARGET_STUCK_RATIO = 1.2
STUCK_SHARE = 0.1


# --- inside the memory server: an injection point ----------------------------------------------

_app = None


async def inject_app(scope, receive, send):
    """``project.asgi.application`` plus ``POST /bench/publish``, which publishes its JSON body
    in the server process: the in-memory layer reaches no other process."""
    global _app
    if _app is None:
        from project.asgi import application

        _app = application
    if scope["type"] != "http" or scope["path"] != "/bench/publish":
        return await _app(scope, receive, send)
    from realtime.publish import publish_event

    await publish_event("bench.tick", json.loads(await _read_body(receive)))
    await _no_content(send)


# --- daphne's floor: the same frames through daphne, no channels, no retry ---------------------

_floor_sends: list = []


async def floor_app(scope, receive, send):
    """A bare ASGI app on daphne: keeps every socket's ``send``; ``POST /bench/publish`` writes
    the frame to each in turn. What daphne itself costs per frame, with nothing of ours."""
    from realtime.protocol import encode_event, frame_text

    if scope["type"] == "websocket":
        await receive()  # websocket.connect
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.send", "text": frame_text(1, encode_event("snapshot", {}))})
        _floor_sends.append(send)
        try:
            while (await receive())["type"] != "websocket.disconnect":
                pass
        finally:
            _floor_sends.remove(send)
        return
    body = await _read_body(receive)
    text = encode_event("bench.tick", json.loads(body))
    for seq, client_send in enumerate(list(_floor_sends), start=2):
        await client_send({"type": "websocket.send", "text": frame_text(seq, text)})
    await _no_content(send)


async def _read_body(receive) -> bytes:
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            return body


async def _no_content(send) -> None:
    await send({"type": "http.response.start", "status": 204, "headers": []})
    await send({"type": "http.response.body", "body": b""})


# --- the baseline server ------------------------------------------------------------------------


async def baseline_server(port: int, redis_url: str) -> None:
    """A plain websockets server: each Redis message is broadcast to every connection."""
    import redis.asyncio

    from realtime.protocol import encode_event, frame_text

    connections = set()
    hello = frame_text(1, encode_event("snapshot", {}))

    async def handler(connection) -> None:
        connections.add(connection)
        try:
            await connection.send(hello)
            async for _ in connection:  # acks, read and ignored
                pass
        finally:
            connections.discard(connection)

    client = redis.asyncio.Redis.from_url(redis_url)
    async with (
        websockets.serve(handler, servers.HOST, port, compression=None, ping_interval=None),
        client.pubsub() as pubsub,
    ):
        await pubsub.subscribe(BASELINE_CHANNEL)
        seq = 1
        async for message in pubsub.listen():
            if message["type"] == "message":
                seq += 1
                websockets.broadcast(connections, frame_text(seq, message["data"].decode()))


# --- client processes ---------------------------------------------------------------------------


def client_worker(port: int, cookie: str, clients: int, stuck: int, events: int, pipe) -> None:
    asyncio.run(_client_worker(port, cookie, clients, stuck, events, pipe))


async def _client_worker(port, cookie, clients, stuck, events, pipe: Connection) -> None:
    limit = asyncio.Semaphore(CONNECT_CONCURRENCY)

    async def open_one():
        async with limit:
            socket = await servers.ws_connect(port, cookie, ping_interval=None)
            await socket.recv()  # the snapshot
            return socket

    sockets = await asyncio.gather(*(open_one() for _ in range(clients)))
    pipe.send("ready")
    latencies: list[tuple[int, float]] = []
    missing = 0

    async def read(socket) -> None:
        nonlocal missing
        got = acked = 0
        try:
            async with asyncio.timeout(events / 2 + 30):
                while got < events:
                    text = await socket.recv()
                    now = time.time()
                    frame = json.loads(text)
                    if frame["type"] == "bench.tick" and frame["data"]["i"] >= 0:
                        latencies.append((frame["data"]["i"], (now - frame["data"]["t"]) * 1000))
                        got += 1
                    if frame["seq"] - acked >= ACK_EVERY:
                        acked = frame["seq"]
                        await socket.send(json.dumps({"type": "ack", "seq": acked}))
        except (TimeoutError, websockets.ConnectionClosed):
            missing += events - got

    await asyncio.gather(*(read(s) for s in sockets[stuck:]))
    pipe.send({"latencies": latencies, "missing": missing})
    pipe.recv()  # keep every socket open until the parent has measured memory
    await asyncio.gather(*(s.close() for s in sockets), return_exceptions=True)
    pipe.send("closed")


class Clients:
    """``count`` clients spread over client processes, ``stuck`` of them never reading."""

    def __init__(self, port: int, cookie: str, count: int, stuck: int, events: int) -> None:
        context = multiprocessing.get_context("spawn")
        self.pipes, self.processes = [], []
        for i in range(WORKERS):
            share, stuck_share = _split(count, i), _split(stuck, i)
            parent, child = context.Pipe()
            args = (port, cookie, share, stuck_share, events, child)
            process = context.Process(target=client_worker, args=args, daemon=True)
            process.start()
            self.pipes.append(parent)
            self.processes.append(process)

    def wait(self, timeout: float = 120) -> list:
        replies = []
        for pipe in self.pipes:
            if not pipe.poll(timeout):
                raise TimeoutError("a client process did not answer")
            replies.append(pipe.recv())
        return replies

    def close(self) -> None:
        for pipe in self.pipes:
            pipe.send("close")
        self.wait()
        for process in self.processes:
            process.join(timeout=10)


def _split(total: int, index: int) -> int:
    return total // WORKERS + (1 if index < total % WORKERS else 0)


# --- publishers ---------------------------------------------------------------------------------


async def publish_all(publish, events: int, rate: float) -> None:
    """``events`` events at ``rate`` per second, each carrying its publish time, after one
    uncounted warm-up event (first connections to Redis, first frames)."""
    await publish({"i": -1, "t": time.time()})
    await asyncio.sleep(1.0)
    # This process holds all of Django: a full garbage collection here takes tens of ms, and
    # would be measured as delivery latency. Objects alive now are never garbage: skip them.
    gc.freeze()
    started = time.monotonic()
    for i in range(events):
        await asyncio.sleep(max(0.0, started + i / rate - time.monotonic()))
        await publish({"i": i, "t": time.time()})


@contextlib.contextmanager
def layer_publisher(redis_url: str, kind: str) -> Iterator:
    """``publish_event`` as ``runchecks`` calls it, on the ``kind`` layer of ``redis_url``.

    The layer is configured once for all the publisher's events, as in a real process: one
    layer object, one connection (configured per call it would connect for every event).
    """
    from django.test import override_settings

    from project.config import channel_layers
    from realtime.publish import publish_event

    async def publish(data: dict) -> None:
        await publish_event("bench.tick", data)

    with override_settings(CHANNEL_LAYERS=channel_layers(redis_url, kind)):
        yield publish


@contextlib.contextmanager
def memory_publisher(port: int) -> Iterator:
    """Events published inside the server, through ``POST /bench/publish``."""
    import http.client

    connection = http.client.HTTPConnection(servers.HOST, port, timeout=10)

    async def publish(data: dict) -> None:
        connection.request("POST", "/bench/publish", json.dumps(data).encode())
        connection.getresponse().read()

    try:
        yield publish
    finally:
        connection.close()


@contextlib.contextmanager
def baseline_publisher(redis_url: str) -> Iterator:
    """The same event bodies, on the Redis channel the baseline server listens to."""
    import redis

    from realtime.protocol import encode_event

    client = redis.Redis.from_url(redis_url)

    async def publish(data: dict) -> None:
        client.publish(BASELINE_CHANNEL, encode_event("bench.tick", data))

    try:
        yield publish
    finally:
        client.close()


# --- one run ------------------------------------------------------------------------------------


class Bench:
    def __init__(self, workdir: Path, redis_url: str, events: int, rate: float) -> None:
        self.workdir, self.redis_url = workdir, redis_url
        self.events, self.rate = events, rate
        self.env = prepare_database(workdir)
        self.cookie = servers.staff_session(self.env)

    def server_env(self, kind: str, redis_url: str | None = None) -> dict[str, str]:
        env = dict(self.env) | {"LOG_LEVEL": "WARNING"}
        if kind in ("core", "pubsub"):
            env |= {"REDIS_URL": redis_url or self.redis_url, "CHANNEL_LAYER_KIND": kind}
        return env

    def run(self, kind: str, clients: int, stuck: int = 0) -> dict:
        log = self.workdir / f"{kind}-{clients}.log"
        if kind == "baseline":
            port = servers.free_port()
            args = [sys.executable, __file__, "--baseline-server", str(port), self.redis_url]
            with (
                servers.process(args, self.env, port, log) as pid,
                baseline_publisher(self.redis_url) as publish,
            ):
                return self.measure(port, pid, publish, clients, stuck)
        app = "floor_app" if kind.endswith("daphne-floor") else "inject_app"
        server, _, layer = kind.rpartition(":")
        env = self.server_env(layer)
        with run_server(server or "daphne", env, log, f"bench.bench_broadcast:{app}") as (
            port,
            pid,
        ):
            in_server = layer in ("memory", "daphne-floor")
            publisher = (
                memory_publisher(port) if in_server else layer_publisher(env["REDIS_URL"], layer)
            )
            with publisher as publish:
                return self.measure(port, pid, publish, clients, stuck)

    def measure(self, port: int, pid: int, publish, clients: int, stuck: int) -> dict:
        idle = servers.rss_kib(pid)
        crowd = Clients(port, self.cookie, clients, stuck, self.events)
        crowd.wait()
        connected = servers.rss_kib(pid)
        cpu_started = cpu_seconds(pid)
        asyncio.run(publish_all(publish, self.events, self.rate))
        replies = crowd.wait(timeout=self.events / self.rate + 60)
        # Every client's socket is written to, stuck or not; +1: the warm-up event.
        frames = (self.events + 1) * clients
        cpu_per_frame = (cpu_seconds(pid) - cpu_started) / frames
        crowd.close()
        time.sleep(3)  # daphne reaps finished connections once a second
        pairs = [pair for r in replies for pair in r["latencies"]]
        latencies = sorted(ms for _, ms in pairs)
        worst: dict[int, float] = {}
        for i, ms in pairs:
            worst[i] = max(ms, worst.get(i, 0.0))
        return {
            "clients": clients,
            "stuck": stuck,
            "events": self.events,
            "received": len(latencies),
            "missing": sum(r["missing"] for r in replies),
            "p50_ms": round(_percentile(latencies, 50), 2),
            "p99_ms": round(_percentile(latencies, 99), 2),
            "max_ms": round(latencies[-1], 2) if latencies else None,
            # Everything the server process spent while the events went out, per frame written.
            "server_cpu_us_per_frame": round(cpu_per_frame * 1e6, 1),
            # Which events were slowest (their last receipt): stalls show up as outliers here.
            "slowest_events": sorted(
                ({"event": i, "ms": round(ms, 1)} for i, ms in worst.items()),
                key=lambda e: -e["ms"],
            )[:3],
            "rss_idle_mib": round(idle / 1024, 1),
            "rss_connected_mib": round(connected / 1024, 1),
            "rss_after_mib": round(servers.rss_kib(pid) / 1024, 1),
        }


@contextlib.contextmanager
def run_server(server: str, env: dict[str, str], log: Path, app: str) -> Iterator:
    """daphne, or ``uvicorn`` (websockets protocol) when asked for and importable: uvicorn is
    not a dependency of the project, only a point of comparison for the ASGI server's cost."""
    if server == "daphne":
        with servers.daphne(env, log, app=app) as running:
            yield running
        return
    port = servers.free_port()
    args = [sys.executable, "-m", "uvicorn", "--host", servers.HOST, "--port", str(port)]
    args += ["--ws", "websockets", "--lifespan", "off", "--log-level", "warning", app]
    with servers.process(args, env, port, log) as pid:
        yield port, pid


def _percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    return statistics.quantiles(values, n=100, method="inclusive")[p - 1] if p < 100 else values[-1]


def prepare_database(workdir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env |= {"DATABASE_URL": f"sqlite:///{workdir / 'db.sqlite3'}", "PYTHONUNBUFFERED": "1"}
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"],
        cwd=ROOT,
        env=env,
        check=True,
        timeout=120,
    )
    return env


# --- Redis restart ------------------------------------------------------------------------------


def restart_behaviour(bench: Bench, kind: str) -> dict:
    """Publish at 10/s while a private Redis is stopped for 2 s and started again."""
    port = servers.free_port()
    redis_log = bench.workdir / f"redis-restart-{kind}.log"
    log = bench.workdir / f"restart-{kind}.log"
    redis_url = f"redis://{servers.HOST}:{port}/0"
    outcome: dict = {}
    with servers.redis_server(redis_log, port=port):
        with servers.daphne(bench.server_env(kind, redis_url), log) as (ws_port, _):
            outcome = asyncio.run(_restart(bench, kind, redis_url, ws_port, redis_log, port))
    errors = [line for line in log.read_text().splitlines() if "ERROR" in line]
    outcome["server_error_lines"] = len(errors)
    return outcome


async def _restart(bench, kind, redis_url, ws_port, redis_log, port) -> dict:
    with layer_publisher(redis_url, kind) as publish:
        outcome = await _publish_through_restart(bench, publish, ws_port, redis_log, port)
    return {"layer": kind, **outcome}


async def _publish_through_restart(bench, publish, ws_port, redis_log, port) -> dict:
    sockets = [await servers.ws_connect(ws_port, bench.cookie) for _ in range(5)]
    for socket in sockets:
        await socket.recv()
    frames: list[tuple[float, dict]] = []

    async def read(socket) -> None:
        while True:
            frame = json.loads(await socket.recv())
            frames.append((time.monotonic(), frame))

    readers = [asyncio.ensure_future(read(s)) for s in sockets]
    sent = 0

    async def publish_for(seconds: float) -> None:
        nonlocal sent
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            await publish({"i": sent, "t": time.time()})
            sent += 1
            await asyncio.sleep(0.1)

    await publish_for(1.0)
    stop = ["redis-cli", "-p", str(port), "shutdown", "nosave"]
    await asyncio.to_thread(subprocess.run, stop, timeout=10)
    await publish_for(2.0)
    with servers.redis_server(redis_log, port=port):
        restarted = time.monotonic()
        await publish_for(15.0)
        for task in readers:
            task.cancel()
        await asyncio.gather(*readers, return_exceptions=True)
        for socket in sockets:
            await socket.close()
    after = [(t, f) for t, f in frames if t >= restarted]
    ticks = [t for t, f in after if f["type"] == "bench.tick"]
    got = {f["data"]["i"] for _, f in frames if f["type"] == "bench.tick"}
    return {
        "events_published": sent,
        "events_lost_per_client": sent - len(got),
        "recovery_s": round(min(ticks) - restarted, 2) if ticks else None,
        "resync_snapshots": sum(1 for _, f in after if f["type"] == "snapshot"),
    }


# --- main ---------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--events", type=int, default=30)
    parser.add_argument(
        "--rates", type=float, nargs="+", default=[2.0, 10.0], help="events per second"
    )
    parser.add_argument("--memory-rounds", type=int, default=3)
    parser.add_argument(
        "--servers",
        nargs="+",
        default=["baseline", "daphne-floor", "memory", "core", "pubsub"],
        help="baseline, daphne-floor, memory, core, pubsub; 'uvicorn:<layer>' runs the app under "
        "uvicorn when it is importable",
    )
    parser.add_argument("--no-restart", action="store_true", help="skip the Redis restarts")
    parser.add_argument("--baseline-server", nargs=2, metavar=("PORT", "REDIS_URL"))
    args = parser.parse_args()
    if args.baseline_server:
        asyncio.run(baseline_server(int(args.baseline_server[0]), args.baseline_server[1]))
        return

    # DEBUG is off by default, so settings need a key; child processes inherit it.
    os.environ.setdefault("SECRET_KEY", "bench-only-secret-key-never-used-in-production")
    workdir = Path(tempfile.mkdtemp(prefix="bench-broadcast-"))
    try:
        report = run_all(args, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print_report(report)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2))
    print(f"\nwritten to {RESULTS.relative_to(ROOT)}")


def run_all(args, workdir: Path) -> dict:
    with servers.redis_server(workdir / "redis.log") as redis_url:
        os.environ |= {"DATABASE_URL": f"sqlite:///{workdir / 'db.sqlite3'}"}
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
        import django

        bench = Bench(workdir, redis_url, args.events, args.rates[0])
        django.setup()
        runs = []
        for rate in args.rates:
            bench.rate = rate
            for clients in args.clients:
                for kind, stuck in plan(args.servers, clients):
                    label = f"{kind}+stuck" if stuck else kind
                    runs.append({"server": label, "rate": rate, **bench.run(kind, clients, stuck)})
                    print(_row(runs[-1]), flush=True)
        memory = memory_rounds(bench, "pubsub", max(args.clients), args.memory_rounds)
        restarts = []
        if not args.no_restart:
            restarts = [restart_behaviour(bench, k) for k in ("core", "pubsub")]
    return {
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
        "events": args.events,
        "runs": runs,
        "memory_rounds": memory,
        "redis_restart": restarts,
        "verdict": {
            f"{rate:g}/s": verdict([r for r in runs if r["rate"] == rate]) for rate in args.rates
        },
    }


def layer_of(kind: str) -> str:
    """``uvicorn:pubsub`` -> ``pubsub``."""
    return kind.rpartition(":")[2]


def plan(kinds: list[str], clients: int) -> list[tuple[str, int]]:
    """Every server clean, then every Redis one with 10% of its clients stuck."""
    stuck = int(clients * STUCK_SHARE)
    redis = [k for k in kinds if layer_of(k) in ("core", "pubsub")]
    return [(k, 0) for k in kinds] + [(k, stuck) for k in redis]


def memory_rounds(bench: Bench, kind: str, clients: int, rounds: int) -> list[dict]:
    """RSS of one server while ``clients`` connect and leave, ``rounds`` times: memory that
    is not given back to the system must at least be reused, round after round."""
    figures = []
    log = bench.workdir / "memory.log"
    with servers.daphne(bench.server_env(kind), log) as (port, pid):
        idle = servers.rss_kib(pid)
        for _ in range(rounds):
            crowd = Clients(port, bench.cookie, clients, 0, 0)
            crowd.wait()
            connected = servers.rss_kib(pid)
            crowd.wait()
            crowd.close()
            time.sleep(3)  # daphne reaps finished connections once a second
            after = servers.rss_kib(pid)
            figures.append(
                {
                    "layer": kind,
                    "clients": clients,
                    "rss_idle_mib": round(idle / 1024, 1),
                    "rss_connected_mib": round(connected / 1024, 1),
                    "rss_after_mib": round(after / 1024, 1),
                }
            )
            print("memory round:", figures[-1], flush=True)
    return figures


def verdict(runs: list[dict]) -> dict:
    """The targets at the largest client count, for every Redis run."""
    by = {(r["server"], r["clients"]): r for r in runs}
    top = max(r["clients"] for r in runs)
    base, floor = by.get(("baseline", top)), by.get(("daphne-floor", top))
    result = {}
    for (server, clients), run in by.items():
        if (
            clients != top
            or layer_of(server) not in ("core", "pubsub")
            or server.endswith("+stuck")
        ):
            continue
        entry = {"p99_ms": run["p99_ms"], "p99_ok": run["p99_ms"] <= TARGET_P99_MS}
        if base:
            entry["vs_baseline"] = round(run["p99_ms"] / base["p99_ms"], 2)
            entry["vs_baseline_ok"] = entry["vs_baseline"] <= TARGET_RATIO
        if floor:
            entry["vs_daphne_floor"] = round(run["p99_ms"] / floor["p99_ms"], 2)
        stuck = by.get((f"{server}+stuck", top))
        if stuck:
            entry["stuck_vs_clean"] = round(stuck["p99_ms"] / run["p99_ms"], 2)
            entry["stuck_ok"] = entry["stuck_vs_clean"] <= TARGET_STUCK_RATIO
        result[f"{server}@{top}"] = entry
    return result


def _row(run: dict) -> str:
    return (
        f"{run['server']:<22} {run['rate']:>5g} {run['clients']:>6} {run['received']:>8} "
        f"{run['missing']:>7} "
        f"{run['p50_ms']:>8.1f} {run['p99_ms']:>8.1f} {run['max_ms'] or 0:>8.1f} "
        f"{run['server_cpu_us_per_frame']:>9.1f} "
        f"{run['rss_idle_mib']:>7.1f} {run['rss_connected_mib']:>9.1f} {run['rss_after_mib']:>7.1f}"
    )


def print_report(report: dict) -> None:
    print(
        f"\n{'server':<22} {'ev/s':>5} {'clients':>6} {'received':>8} {'missing':>7} {'p50 ms':>8} "
        f"{'p99 ms':>8} {'max ms':>8} {'CPU us/fr':>9} {'RSS idle':>7} {'connected':>9} "
        f"{'after':>7}"
    )
    for run in report["runs"]:
        print(_row(run))
    for r in report["memory_rounds"]:
        print(
            f"\nmemory, {r['layer']}, {r['clients']} clients: idle {r['rss_idle_mib']} MiB, "
            f"connected {r['rss_connected_mib']} MiB, after they left {r['rss_after_mib']} MiB"
        )
    if report["redis_restart"]:
        print(
            f"\n{'layer':<8} {'published':>9} {'lost':>5} {'recovery s':>10} {'resyncs':>7} "
            f"{'ERROR lines':>11}"
        )
        for r in report["redis_restart"]:
            print(
                f"{r['layer']:<8} {r['events_published']:>9} {r['events_lost_per_client']:>5} "
                f"{r['recovery_s'] if r['recovery_s'] is not None else '-':>10} "
                f"{r['resync_snapshots']:>7} {r['server_error_lines']:>11}"
            )
    print("\nverdict:", json.dumps(report["verdict"], indent=2))


if __name__ == "__main__":
    main()
