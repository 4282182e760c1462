"""Live dashboard at scale: coalesced frames to many browsers, and the snapshot of many checks.

    .venv/bin/python bench/bench_dashboard.py [--clients 100 500] [--seconds 20] [--pairs 3]
        [--snapshot-checks 1000 10000] [--profile DIR]

Fan-out: a real daphne (``project.asgi``) on a migrated SQLite file and a private Redis
(channels_redis's pub/sub layer, the default), N WebSocket clients of the ``websockets`` library
in two client processes (staff session, acking as the page does: every 5 s at one frame a
second). A publisher in this process plays the runner of 1,000 checks at 10 s: every second one
``check.results`` event of 100 results through ``realtime.publish.publish_event``, each result
stamped with its announce time. Measured over ``--seconds`` after a warm-up: ``updates`` frames
per client per second, p50/p99 from announce to receipt of every result in every client,
daphne's CPU (share of one core, and per frame written).

Floor: the same clients on a bare ASGI app under daphne (``floor_app``) that writes frames of
the same size at the same rate to every socket: what daphne itself costs per frame. Target:
ours at most 1.3x the floor's CPU per frame; 500 clients on one process under half a core
with p99 under 1.5 s.

Pairs: the machine is shared and one run varies by about 20 %, more than the gap measured, so
ours and the floor run ``--pairs`` times each, interleaved, the order alternating (ours first,
then the floor first), and the ratio is given per pair and as the median of the pairs. The
load average (``uptime``) is recorded before and after each run.

``--profile DIR``: py-spy records daphne during each run of ours (collapsed stacks, one file a
run, ``DIR/ours-<clients>-<pair>.txt``). py-spy pauses the process for each sample, so these
runs measure the profile, not the ratio: run them apart.

Snapshot: N checks with 30 results each in a fresh SQLite file; the time to build the snapshot
frames (``build_snapshot(...).bodies()``, in a child process), their count and sizes, and the
time from connect to the last ``snapshot.part`` for one client over a real daphne.

Prints tables and writes bench/results/dashboard.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from array import array
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script from anywhere: the project's packages import

from bench.bench_broadcast import _percentile, prepare_database  # noqa: E402
from bench.proc_stats import cpu_seconds  # noqa: E402
from tests.realtime import servers  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "dashboard.json"
WORKERS = 2
CONNECT_CONCURRENCY = 50
CHECKS = 1000
INTERVAL = 10.0
#: Results announced per second: 1,000 checks at 10 s, one runner flush a second.
PER_FLUSH = int(CHECKS / INTERVAL)
WARMUP = 3.0
#: The page acks 5 s after its last ack (or every 20 frames): at a frame a second, every 5 s.
ACK_AFTER_S = 5.0
HEAD = re.compile(r'\{"v":\d+,"seq":(?P<seq>\d+),"type":"(?P<type>[^"]+)"')
ANNOUNCED = re.compile(r'"announced":([0-9.]+)')
TARGET_RATIO = 1.3
TARGET_P99_S = 1.5
TARGET_CPU = 0.5


def fake_result(i: int, announced: float) -> dict:
    """One ``check.results`` entry shaped like the runner's (check summary, result, uptime)."""
    now = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(announced))
    return {
        "check": {
            "name": f"service {i:04d}",
            "kind": "http",
            "status": "up",
            "since": now,
            "flapping": False,
            "critical": False,
            "tags": ["bench", "web"],
            "latency_ms": 12.34,
            "last_checked_at": now,
            "error_category": "",
            "error_message": "",
            "stale": False,
            "stale_after_s": 45.0,
        },
        "result": {
            "checked_at": now,
            "ok": True,
            "latency_ms": 12.34,
            "http_status": 200,
            "error_category": "",
            "error_message": "",
            "tls_days_left": None,
            "announced": announced,
        },
        "uptime_24h": 0.9993,
    }


# --- daphne's floor: frames of the same size and rate, nothing of ours -------------------------

_floor_sends: list = []
_floor_ticker: asyncio.Task | None = None


async def floor_app(scope, receive, send):
    """A bare ASGI app: accepts every socket and, once a second, writes each one a frame like
    an ``updates`` frame of ``PER_FLUSH`` results (made here, stamped with the time)."""
    global _floor_ticker
    if scope["type"] != "websocket":
        await send({"type": "http.response.start", "status": 404, "headers": []})
        await send({"type": "http.response.body", "body": b""})
        return
    await receive()  # websocket.connect
    await send({"type": "websocket.accept"})
    await send({"type": "websocket.send", "text": '{"v":2,"seq":1,"type":"snapshot","data":{}}'})
    _floor_sends.append(send)
    if _floor_ticker is None:
        _floor_ticker = asyncio.ensure_future(_floor_tick())
    try:
        while (await receive())["type"] != "websocket.disconnect":
            pass  # acks, read and ignored
    finally:
        _floor_sends.remove(send)


async def _floor_tick() -> None:
    """Django is not set up in this server: the frame is made by hand, like ours."""
    seq = 1
    while True:
        await asyncio.sleep(1.0 - time.time() % 1.0)
        results = [fake_result(i, time.time()) for i in range(PER_FLUSH)]
        data = json.dumps({"results": results, "statuses": []}, separators=(",", ":"))
        at = datetime.now(UTC).isoformat()
        seq += 1
        text = f'{{"v":2,"seq":{seq},"type":"updates","at":"{at}","data":{data}}}'
        for client_send in list(_floor_sends):
            await client_send({"type": "websocket.send", "text": text})


# --- client processes ---------------------------------------------------------------------------


def client_worker(port: int, cookie: str, clients: int, seconds: float, pipe) -> None:
    asyncio.run(_client_worker(port, cookie, clients, seconds, pipe))


async def _client_worker(port: int, cookie: str, clients: int, seconds: float, pipe) -> None:
    limit = asyncio.Semaphore(CONNECT_CONCURRENCY)

    async def open_one():
        async with limit:
            socket = await servers.ws_connect(port, cookie, ping_interval=None, max_size=None)
            snapshot = json.loads(await socket.recv())
            for _ in range(snapshot["data"].get("parts") or 0):
                await socket.recv()
            return socket

    sockets = await asyncio.gather(*(open_one() for _ in range(clients)))
    pipe.send("ready")
    start_at = pipe.recv()  # the parent says when to start counting (time.time())
    stop_at = start_at + seconds
    latencies = array("d")
    frames = closed = 0

    async def read(socket) -> None:
        nonlocal frames, closed
        acked_at = 0.0
        try:
            while time.time() < stop_at:
                async with asyncio.timeout(max(0.1, stop_at - time.time() + 2)):
                    text = await socket.recv()
                now = time.time()
                # The clients share two CPUs with daphne: no full parse of every frame, only
                # its head and the announce times (the frames are built the same either way).
                head = HEAD.match(text)
                if now - acked_at >= ACK_AFTER_S:  # as the page does (static/dashboard.js)
                    acked_at = now
                    await socket.send(json.dumps({"type": "ack", "seq": int(head["seq"])}))
                if head["type"] != "updates" or now < start_at:
                    continue
                frames += 1
                for stamp in ANNOUNCED.findall(text):
                    latencies.append(now - float(stamp))
        except TimeoutError:
            pass
        except Exception:
            closed += 1

    await asyncio.gather(*(read(s) for s in sockets))
    pipe.send({"frames": frames, "latencies": latencies.tobytes(), "closed": closed})
    await asyncio.gather(*(s.close() for s in sockets), return_exceptions=True)


class Clients:
    """``count`` clients over ``WORKERS`` processes."""

    def __init__(self, port: int, cookie: str, count: int, seconds: float) -> None:
        context = multiprocessing.get_context("spawn")
        self.pipes, self.processes = [], []
        for i in range(WORKERS):
            share = count // WORKERS + (1 if i < count % WORKERS else 0)
            parent, child = context.Pipe()
            args = (port, cookie, share, seconds, child)
            process = context.Process(target=client_worker, args=args, daemon=True)
            process.start()
            self.pipes.append(parent)
            self.processes.append(process)

    def replies(self, timeout: float) -> list:
        replies = []
        for pipe in self.pipes:
            if not pipe.poll(timeout):
                raise TimeoutError("a client process did not answer")
            replies.append(pipe.recv())
        return replies

    def start(self, at: float) -> None:
        for pipe in self.pipes:
            pipe.send(at)

    def join(self) -> None:
        for process in self.processes:
            process.join(timeout=20)


# --- one fan-out run ----------------------------------------------------------------------------


async def publish_for(seconds: float) -> int:
    """Announce like the runner: every second one ``check.results`` of ``PER_FLUSH``."""
    from realtime.publish import publish_event

    sent = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        await asyncio.sleep(1.0 - time.time() % 1.0)
        now = time.time()
        results = [fake_result(i, now) for i in range(PER_FLUSH)]
        await publish_event("check.results", {"results": results, "changes": []})
        sent += 1
    return sent


def load_average() -> str:
    """What ``uptime`` says of the load: the 1, 5 and 15 minute averages."""
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def fan_out(
    kind: str, clients: int, seconds: float, env: dict, cookie: str, workdir, profile=None
) -> dict:
    app = "bench.bench_dashboard:floor_app" if kind == "floor" else "project.asgi:application"
    log = workdir / f"{kind}-{clients}.log"
    load_before = load_average()
    with servers.daphne(env, log, app=app) as (port, pid):
        crowd = Clients(port, cookie, clients, seconds)
        crowd.replies(timeout=300)  # every client connected, snapshot read
        start_at = time.time() + WARMUP
        crowd.start(start_at)
        publishing = kind != "floor"
        if publishing:
            asyncio.run(publish_for(WARMUP))
        else:
            time.sleep(WARMUP)
        spy = record_profile(pid, seconds, profile) if profile else None
        cpu_started = cpu_seconds(pid)
        if publishing:
            asyncio.run(publish_for(seconds))
        else:
            time.sleep(seconds)
        cpu = cpu_seconds(pid) - cpu_started
        if spy is not None:
            spy.wait(timeout=seconds + 60)
        replies = crowd.replies(timeout=seconds + 60)
        crowd.join()
    latencies = array("d")
    for reply in replies:
        latencies.frombytes(reply["latencies"])
    ordered = sorted(latencies)
    frames = sum(r["frames"] for r in replies)
    return {
        "server": kind,
        "clients": clients,
        "seconds": seconds,
        "frames_per_client_per_s": round(frames / clients / seconds, 2),
        "results_received": len(ordered),
        "p50_s": round(_percentile(ordered, 50), 3) if ordered else None,
        "p99_s": round(_percentile(ordered, 99), 3) if ordered else None,
        "max_s": round(ordered[-1], 3) if ordered else None,
        "closed": sum(r["closed"] for r in replies),
        "daphne_cpu_share": round(cpu / seconds, 3),
        "daphne_cpu_us_per_frame": round(cpu / frames * 1e6, 1) if frames else None,
        "load_before": load_before,
        "load_after": load_average(),
        "profiled": profile is not None,
    }


def record_profile(pid: int, seconds: float, path: Path) -> subprocess.Popen:
    """py-spy recording ``pid`` for ``seconds`` into ``path`` (collapsed stacks)."""
    spy = Path(sys.executable).parent / "py-spy"
    args = [str(spy), "record", "--pid", str(pid), "--duration", str(int(seconds))]
    args += ["--format", "raw", "--output", str(path), "--rate", "200"]
    return subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


# --- snapshot -----------------------------------------------------------------------------------

_SEED = """
import json, sys
from datetime import timedelta
from django.utils import timezone
from connections_app.models import CheckResult, HealthCheck
count = int(sys.argv[1])
now = timezone.now()
checks = HealthCheck.objects.bulk_create(
    (HealthCheck(name=f"service {n:05d}", target=f"127.0.0.1:{1 + n % 60000}", kind="tcp",
                 enabled=False, status="down" if n % 50 == 0 else "up", tags="bench")
     for n in range(count)), batch_size=1000)
for start in range(0, count, 500):
    CheckResult.objects.bulk_create(
        (CheckResult(health_check=c, checked_at=now - timedelta(seconds=10 * i),
                     ok=i % 7 != 0, latency_ms=1.5 + i)
         for c in checks[start:start + 500] for i in range(30)), batch_size=5000)
"""

_MEASURE = """
import json, time
from realtime.limits import limits
from realtime.protocol import EVERY
from realtime.snapshot import build_snapshot
started = time.perf_counter()
bodies = build_snapshot(EVERY, limits()).bodies()
took = time.perf_counter() - started
sizes = [len(b.encode()) for b in bodies]
print(json.dumps({"build_s": round(took, 3), "frames": len(bodies),
                  "first_frame_bytes": sizes[0], "largest_frame_bytes": max(sizes),
                  "total_bytes": sum(sizes)}))
"""


def django_script(env: dict, code: str, *args: str) -> str:
    setup = "import django; django.setup()\n"
    done = subprocess.run(
        [sys.executable, "-c", setup + code, *args],
        cwd=ROOT,
        env=env | {"DJANGO_SETTINGS_MODULE": "project.settings"},
        capture_output=True,
        text=True,
        timeout=900,
        check=True,
    )
    return done.stdout


def snapshot_figures(count: int, base_env: dict, workdir: Path) -> dict:
    here = workdir / f"snapshot-{count}"
    here.mkdir()
    env = prepare_database(here) | {"LOG_LEVEL": "WARNING"}
    env |= {"REDIS_URL": base_env["REDIS_URL"], "CHANNEL_LAYER_KIND": "pubsub"}
    django_script(env, _SEED, str(count))
    figures = json.loads(django_script(env, _MEASURE).strip().splitlines()[-1])
    cookie = servers.staff_session(env)
    with servers.daphne(env, here / "daphne.log") as (port, _pid):
        figures["over_daphne_s"] = round(asyncio.run(_load_once(port, cookie)), 3)
    return {"checks": count, "results_each": 30, **figures}


async def _load_once(port: int, cookie: str) -> float:
    """Connect to the last ``snapshot.part``: what a browser waits for all checks."""
    started = time.perf_counter()
    socket = await servers.ws_connect(port, cookie, max_size=None)
    snapshot = json.loads(await socket.recv())
    for _ in range(snapshot["data"]["parts"]):
        await socket.recv()
    took = time.perf_counter() - started
    await socket.close()
    return took


# --- main ---------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, nargs="+", default=[100, 500])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--snapshot-checks", type=int, nargs="*", default=[1000, 10000])
    parser.add_argument("--servers", nargs="+", default=["ours", "floor"])
    parser.add_argument("--pairs", type=int, default=3, help="runs of each server, interleaved")
    parser.add_argument("--profile", type=Path, help="py-spy each run of ours into this folder")
    args = parser.parse_args()
    os.environ.setdefault("SECRET_KEY", "bench-only-secret-key-never-used-in-production")
    workdir = Path(tempfile.mkdtemp(prefix="bench-dashboard-"))
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
        env = prepare_database(workdir)
        env |= {"REDIS_URL": redis_url, "CHANNEL_LAYER_KIND": "pubsub", "LOG_LEVEL": "WARNING"}
        cookie = servers.staff_session(env)
        # This process publishes as a runner would: the same Redis, the same layer.
        os.environ |= {k: env[k] for k in ("DATABASE_URL", "REDIS_URL", "CHANNEL_LAYER_KIND")}
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
        import django

        django.setup()
        runs = []
        for clients in args.clients:
            for pair in range(args.pairs):
                # Alternate which goes first: a load that grows or fades over the pair
                # favours neither.
                order = args.servers if pair % 2 == 0 else args.servers[::-1]
                for kind in order:
                    profile = None
                    if args.profile and kind == "ours":
                        args.profile.mkdir(parents=True, exist_ok=True)
                        profile = args.profile / f"ours-{clients}-{pair + 1}.txt"
                    run = fan_out(kind, clients, args.seconds, env, cookie, workdir, profile)
                    runs.append({"pair": pair + 1, **run})
                    print(_row(runs[-1]), flush=True)
        snapshots = [snapshot_figures(n, env, workdir) for n in args.snapshot_checks]
        for figures in snapshots:
            print(figures, flush=True)
    return {
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
        "uptime": subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip(),
        "checks": CHECKS,
        "interval_s": INTERVAL,
        "results_per_s": PER_FLUSH,
        "runs": runs,
        "snapshots": snapshots,
        "verdict": verdict(runs),
    }


def verdict(runs: list[dict]) -> dict:
    """Per number of clients: each pair's ratio of CPU per frame (ours over the floor), their
    median against the target, and p99 and CPU share of ours (the worst of its runs)."""
    out = {}
    for clients in sorted({r["clients"] for r in runs}):
        mine = [r for r in runs if r["clients"] == clients]
        ours = [r for r in mine if r["server"] == "ours"]
        if not ours:
            continue
        p99s = [r["p99_s"] for r in ours]
        entry = {
            "p99_ok": None not in p99s and max(p99s) < TARGET_P99_S,
            "cpu_ok": max(r["daphne_cpu_share"] for r in ours) < TARGET_CPU,
        }
        ratios = pair_ratios(mine)
        if ratios:
            median = statistics.median(ratios)
            entry |= {
                "cpu_per_frame_vs_floor_pairs": [round(r, 2) for r in ratios],
                "cpu_per_frame_vs_floor": round(median, 2),
                "ratio_ok": median <= TARGET_RATIO,
            }
        out[str(clients)] = entry
    return out


def pair_ratios(runs: list[dict]) -> list[float]:
    """Ours over the floor in CPU per frame, one ratio per pair that has both."""
    ratios = []
    for pair in sorted({r["pair"] for r in runs}):
        cost = {r["server"]: r["daphne_cpu_us_per_frame"] for r in runs if r["pair"] == pair}
        if cost.get("ours") and cost.get("floor"):
            ratios.append(cost["ours"] / cost["floor"])
    return ratios


def _row(run: dict) -> str:
    return (
        f"pair {run['pair']} {run['server']:>6} {run['clients']:>4} clients: "
        f"{run['frames_per_client_per_s']:>5} frames/client/s, "
        f"p50 {run['p50_s']} s, p99 {run['p99_s']} s, max {run['max_s']} s, "
        f"daphne {run['daphne_cpu_share'] * 100:.0f}% of a core, "
        f"{run['daphne_cpu_us_per_frame']} us/frame, closed {run['closed']}, "
        f"load {run['load_before']} -> {run['load_after']}"
    )


def print_report(report: dict) -> None:
    print(f"\nfan-out (1,000 checks at 10 s: 100 results/s); {report['uptime']}")
    print(
        "| pair | server | clients | frames/client/s | p50 s | p99 s | daphne CPU | us/frame "
        "| load before -> after |"
    )
    print("| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    for r in report["runs"]:
        print(
            f"| {r['pair']} | {r['server']} | {r['clients']} | {r['frames_per_client_per_s']} "
            f"| {r['p50_s']} | {r['p99_s']} | {r['daphne_cpu_share'] * 100:.1f}% | "
            f"{r['daphne_cpu_us_per_frame']} | {r['load_before']} -> {r['load_after']} |"
        )
    print("\nCPU per frame, ours over the floor")
    print("| clients | per pair | median | target met |")
    print("| ---: | --- | ---: | --- |")
    for clients, v in report["verdict"].items():
        if "cpu_per_frame_vs_floor" in v:
            pairs = ", ".join(f"{r:.2f}" for r in v["cpu_per_frame_vs_floor_pairs"])
            print(f"| {clients} | {pairs} | {v['cpu_per_frame_vs_floor']} | {v['ratio_ok']} |")
    if not report["snapshots"]:
        print("\nverdict:", json.dumps(report["verdict"]))
        return
    print("\nsnapshot (30 results per check)")
    print("| checks | build s | frames | first frame | largest frame | total | over daphne s |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for s in report["snapshots"]:
        print(
            f"| {s['checks']} | {s['build_s']} | {s['frames']} | {s['first_frame_bytes']} | "
            f"{s['largest_frame_bytes']} | {s['total_bytes']} | {s['over_daphne_s']} |"
        )
    print("\nverdict:", json.dumps(report["verdict"]))


if __name__ == "__main__":
    main()
