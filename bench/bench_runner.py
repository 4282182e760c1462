"""Benchmark: how many checks one ``runchecks`` worker keeps up with, against a raw aiohttp loop.

Each run: a fresh database (an SQLite file, or a private PostgreSQL database), N HTTP checks at
an interval (default 10 s) spread over loopback targets on several ports ("hosts") answering in
1 to 20 ms, ``manage.py runchecks`` in a child process. After a warm-up, for ``--window``
seconds:

- stored/s: results stored with their time inside the window, per second, against the demand
  (N / interval);
- lag p50 / p99: the runner's own scheduling lag (a probe's start minus its due time), as it
  writes it to its ``Runner`` row every 5 s (the median of the p50s, the largest p99);
- CPU: the worker's CPU time over the window (Linux /proc), per second and per stored result;
- peak RSS of the worker.

The raw loop is one aiohttp session making requests to the same targets, at most 20 at once,
in this process, measured just before each configuration's worker runs (a shared machine's
speed drifts over minutes): saturated (each request followed by the next at once), and at the
configuration's own rate (evenly spaced, started on the runner's 0.1 s ticks). "CPU per result
/ CPU per raw request" is what our design costs over the bare HTTP work: ``cpu_vs_raw`` against
the saturated loop (the issue's target), ``cpu_vs_raw_same_rate`` against the loop doing the
same demand (a loop at 100 requests/s spends more per request than one at 1,700: more turns
of the event loop per request).

Other scenarios: ``--raw-rates 100 500``: only the bare loop, at each rate started one by one
and on ticks of 0.05, 0.1 and 0.25 s, and saturated (what starting on ticks is worth).
``--blackhole``: 100 healthy checks at 2 s, alone and beside 25 checks of a
target that accepts and never answers (timeout 300 s): the healthy checks' lag in both runs.
``--baseline DIR``: every worker run also with the code of another checkout (``DIR``, e.g.
a worktree of main), the two runs of each configuration back to back in the same minutes, and
the ratios ours / baseline of CPU per result and of lag (a shared machine's load moves both).
``--workers 2`` (PostgreSQL): the same checks with one worker and with two side by side, the
ratio of stored/s; then one of the two is killed (SIGKILL) and the bench measures how long until
every check has a result newer than the kill.

Prints a table, writes its scenario's keys into bench/results/runner.json.

Run:  .venv/bin/python bench/bench_runner.py --db sqlite --db postgres --checks 1000 --checks 5000
      .venv/bin/python bench/bench_runner.py --db sqlite --checks 10000 --baseline ../before-cpu
      .venv/bin/python bench/bench_runner.py --raw-rates 100 500 1000
      .venv/bin/python bench/bench_runner.py --blackhole
      .venv/bin/python bench/bench_runner.py --workers 2 --db postgres --checks 5000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import random
import resource
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script from anywhere: bench.proc_stats imports

from bench.proc_stats import cpu_seconds  # noqa: E402
from connections_app.ticks import START_TICK  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "runner.json"
PG_URL = os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/test")
RAW_CONCURRENCY = 20
#: Seconds each raw loop runs beside a configuration.
RAW_WINDOW = 10.0


# -- the targets (a child process) -----------------------------------------------------------


def serve_targets(ports: list[int]) -> None:
    """/ok answers 200 after 1 to 20 ms; /stall accepts and never answers."""
    from aiohttp import web

    async def ok(request):
        await asyncio.sleep(random.uniform(0.001, 0.020))
        return web.Response(text="ok")

    async def stall(request):
        await asyncio.sleep(3600)
        return web.Response()

    async def main() -> None:
        app = web.Application()
        app.add_routes([web.get("/ok", ok), web.get("/stall", stall)])
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        for port in ports:
            await web.TCPSite(runner, "127.0.0.1", port, backlog=4096).start()
        await asyncio.Event().wait()

    asyncio.run(main())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def targets(hosts: int):
    ports = [free_port() for _ in range(hosts)]
    args = [sys.executable, __file__, "--serve", *map(str, ports)]
    child = subprocess.Popen(args, cwd=ROOT)
    try:
        deadline = time.monotonic() + 20
        while not _listening(ports[-1]):
            if time.monotonic() > deadline:
                raise RuntimeError("the targets did not start")
            time.sleep(0.1)
        yield [f"http://127.0.0.1:{port}" for port in ports]
    finally:
        child.terminate()
        child.wait(30)


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


# -- databases -------------------------------------------------------------------------------


@contextmanager
def database(kind: str):
    """(DATABASE_URL, a DB-API connect function) of a fresh database, removed afterwards."""
    if kind == "sqlite":
        with tempfile.TemporaryDirectory(prefix="bench-runner-") as folder:
            path = f"{folder}/db.sqlite3"
            yield f"sqlite:///{path}", lambda: sqlite3.connect(path, timeout=30)
        return
    import psycopg

    name = f"bench_runner_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = urlsplit(PG_URL)._replace(path=f"/{name}").geturl()
    try:
        yield url, lambda: psycopg.connect(url, autocommit=True)
    finally:
        with psycopg.connect(PG_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def child_env(url: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    return env | {"DATABASE_URL": url, "SECRET_KEY": "bench-only", "LOG_LEVEL": "ERROR",
                  "FLAP_CHANGES": "1000000"}  # fmt: skip


def manage(env: dict, *args: str, stdin: str | None = None, root: Path = ROOT) -> None:
    subprocess.run([sys.executable, "manage.py", *args], cwd=root, env=env, input=stdin,
                   text=True, check=True, capture_output=True, timeout=900)  # fmt: skip


MAKE_CHECKS = """
import json, sys
from connections_app.models import HealthCheck
HealthCheck.objects.all().delete()
for spec in json.loads(sys.stdin.read()):
    targets = spec["targets"]
    HealthCheck.objects.bulk_create(
        [HealthCheck(name=f"{spec['prefix']}{n:05}", kind="http", target=targets[n % len(targets)],
                     interval=spec["interval"], timeout=spec["timeout"])
         for n in range(spec["count"])],
        batch_size=1000,
    )
"""


#: ``--history``: the checks and a history made as bench_status makes its data (results spread
#: over 7 days, 2 % of the checks failing for days), then pointed at this bench's targets; the
#: stored state, the rollups and the closed totals filled from that history, as a runner that
#: had been running would have left them.
MAKE_HISTORY = """
import json, sys
sys.path.insert(0, "bench")
from bench_status import generate
from django.db import connection
from connections_app import closed_totals, rollups, state
from connections_app.models import HealthCheck
spec = json.loads(sys.stdin.read())
HealthCheck.objects.all().delete()
generate(spec["count"], spec["results"])
targets = spec["targets"]
q = connection.ops.quote_name
case = " ".join(f"WHEN {i} THEN %s" for i in range(len(targets)))
with connection.cursor() as cursor:
    cursor.execute(
        f"UPDATE {q(HealthCheck._meta.db_table)} SET {q('kind')} = 'http', {q('enabled')} = %s, "
        f"{q('interval')} = %s, {q('timeout')} = %s, {q('next_due_at')} = NULL, "
        f"{q('target')} = CASE {q('id')} %% {len(targets)} {case} END",
        [True, spec["interval"], spec["timeout"], *targets],
    )
state.rebuild_from_results()
rollups.rebuild()
closed_totals.refresh()
"""


def make_history(env: dict, spec: dict, results: int, root: Path = ROOT) -> None:
    """Migrate, and replace every check by ``spec``'s with ``results`` results of history."""
    manage(env, "migrate", "--noinput", "-v", "0", root=root)
    manage(env, "shell", "-c", MAKE_HISTORY, stdin=json.dumps(spec | {"results": results}),
           root=root)  # fmt: skip


def make_checks(env: dict, groups: list[dict], root: Path = ROOT) -> None:
    """Migrate, and replace every check (the self-checks too) by ``groups`` of HTTP checks."""
    manage(env, "migrate", "--noinput", "-v", "0", root=root)
    manage(env, "shell", "-c", MAKE_CHECKS, stdin=json.dumps(groups), root=root)


def rows(connect, sql: str, params: tuple = ()) -> list[tuple]:
    connection = connect()
    try:
        marker = "?" if isinstance(connection, sqlite3.Connection) else "%s"
        return list(connection.execute(sql.replace("%s", marker), params).fetchall())
    finally:
        connection.close()


def stamp(connect, at: float):
    """``at`` (epoch seconds) as the database compares it: SQLite holds naive UTC text."""
    from datetime import UTC, datetime

    moment = datetime.fromtimestamp(at, UTC)
    connection = connect()
    connection.close()
    if isinstance(connection, sqlite3.Connection):
        return moment.replace(tzinfo=None).isoformat(" ")
    return moment


def stored_between(connect, start: float, end: float, prefix: str = "") -> int:
    sql = ("select count(*) from connections_app_checkresult r join connections_app_healthcheck c "
           "on c.id = r.health_check_id where r.checked_at >= %s and r.checked_at < %s "
           "and c.name like %s")  # fmt: skip
    return rows(connect, sql, (stamp(connect, start), stamp(connect, end), f"{prefix}%"))[0][0]


def runner_rows(connect) -> list[tuple]:
    return rows(connect, "select name, lag_p50_ms, lag_p99_ms, seen_at from connections_app_runner")


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def start_runner(env: dict, root: Path = ROOT) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "manage.py", "runchecks", "-v", "0"], cwd=root,
                            env=env, stderr=subprocess.DEVNULL)  # fmt: skip


def stop(child: subprocess.Popen) -> None:
    if child.poll() is None:
        child.send_signal(signal.SIGTERM)
        try:
            child.wait(60)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait(10)


# -- one worker run --------------------------------------------------------------------------


def watch(connect, runners: list[subprocess.Popen], warmup: float, window: float) -> dict:
    """Warm up, then measure ``window`` seconds: results stored, the runners' lag and CPU."""
    time.sleep(warmup)
    cpu_before = [cpu_seconds(r.pid) for r in runners]
    start = time.time()
    p50s, p99s = [], []
    seen: set = set()
    while time.time() < start + window:
        time.sleep(1.0)
        for name, p50, p99, at in runner_rows(connect):
            if (name, at) not in seen and p50 is not None:
                seen.add((name, at))
                p50s.append(p50)
                p99s.append(p99)
    end = time.time()
    cpu = sum(cpu_seconds(r.pid) for r in runners) - sum(cpu_before)
    time.sleep(2)  # the last flush of the window's results
    stored = stored_between(connect, start, end)
    return {
        "stored_per_s": round(stored / (end - start), 1),
        "lag_p50_s": round(statistics.median(p50s) / 1000, 3) if p50s else None,
        "lag_p99_s": round(max(p99s) / 1000, 3) if p99s else None,
        "cpu_cores": round(cpu / (end - start), 3),
        "cpu_ms_per_result": round(cpu * 1000 / stored, 3) if stored else None,
        "rss_mb": round(max(peak_rss_mb(r.pid) for r in runners), 1),
    }


def worker_run(db: str, checks: int, interval: float, hosts: int, warmup: float,
               window: float, root: Path = ROOT, history: int = 0) -> dict:  # fmt: skip
    """One worker of the checkout at ``root`` (its ``manage.py``, its migrations)."""
    with targets(hosts) as bases, database(db) as (url, connect):
        env = child_env(url)
        spec = {"prefix": "c", "count": checks, "interval": interval, "timeout": 5,
                "targets": [f"{base}/ok" for base in bases]}  # fmt: skip
        if history:
            make_history(env, spec, history, root)
        else:
            make_checks(env, [spec], root)
        runner = start_runner(env, root)
        try:
            figures = watch(connect, [runner], warmup, window)
        finally:
            stop(runner)
    return {"code": "ours" if root == ROOT else "baseline", "db": db, "checks": checks,
            "interval": interval, "hosts": hosts, "demand_per_s": round(checks / interval, 1),
            "history_results": history, **figures}  # fmt: skip


def side_by_side(runs: list[dict]) -> list[dict]:
    """Ours against the baseline for each configuration: the ratios ours / baseline."""
    pairs = []
    for ours in (r for r in runs if r["code"] == "ours"):
        base = next(r for r in runs if r["code"] == "baseline"
                    and (r["db"], r["checks"]) == (ours["db"], ours["checks"]))  # fmt: skip
        ratio = {key: round(ours[key] / base[key], 2) if ours[key] and base[key] else None
                 for key in ("stored_per_s", "lag_p50_s", "lag_p99_s", "cpu_cores",
                             "cpu_ms_per_result")}  # fmt: skip
        pairs.append({"db": ours["db"], "checks": ours["checks"], **ratio})
    return pairs


# -- the raw loop ----------------------------------------------------------------------------


def raw_loop(hosts: int, window: float, rate: float | None = None,
             tick: float | None = START_TICK) -> dict:  # fmt: skip
    """The bare HTTP work: one aiohttp session, at most 20 requests at once, for ``window``
    seconds. Saturated (``rate`` None): each of 20 workers asks again at once. At ``rate``
    requests/s, evenly spaced, started on ``tick``s (default the runner's, ``START_TICK``; None:
    each at its own time): the same demand as a worker run."""
    import aiohttp

    async def saturated(session: aiohttp.ClientSession, bases: list[str]) -> int:
        done = 0
        deadline = time.monotonic() + window

        async def worker(n: int) -> None:
            nonlocal done
            while time.monotonic() < deadline:
                await fetch(session, f"{bases[n % len(bases)]}/ok")
                done += 1

        await asyncio.gather(*(worker(n) for n in range(RAW_CONCURRENCY)))
        return done

    async def paced(session: aiohttp.ClientSession, bases: list[str]) -> int:
        loop = asyncio.get_running_loop()
        start, count = loop.time(), int(rate * window)
        requests = []
        for n in range(count):
            when = start + n / rate
            if tick:
                when = math.ceil(when / tick) * tick
            await asyncio.sleep(max(0.0, when - loop.time()))
            requests.append(asyncio.ensure_future(fetch(session, f"{bases[n % len(bases)]}/ok")))
        await asyncio.gather(*requests)
        return count

    async def main(bases: list[str]) -> tuple[int, float]:
        connector = aiohttp.TCPConnector(limit=RAW_CONCURRENCY, limit_per_host=10)
        async with aiohttp.ClientSession(connector=connector) as session:
            started = time.monotonic()
            done = await (saturated if rate is None else paced)(session, bases)
            return done, time.monotonic() - started

    with targets(hosts) as bases:
        before = resource.getrusage(resource.RUSAGE_SELF)
        done, elapsed = asyncio.run(main(bases))
        after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    return {"requests_per_s": round(done / elapsed, 1),
            "cpu_ms_per_request": round(cpu * 1000 / done, 3)}  # fmt: skip


async def fetch(session, url: str) -> None:
    async with session.get(url) as response:
        await response.read()


def raw_beside(hosts: int, rate: float) -> dict:
    """Both raw loops, measured just before a configuration's worker runs: a machine whose
    speed drifts over minutes moves the raw loop with them."""
    saturated, same_rate = raw_loop(hosts, RAW_WINDOW), raw_loop(hosts, RAW_WINDOW, rate)
    return {"raw_ms": saturated["cpu_ms_per_request"],
            "raw_same_rate_ms": same_rate["cpu_ms_per_request"]}  # fmt: skip


# -- blackholed checks -----------------------------------------------------------------------


def blackhole_run(with_blackhole: bool, warmup: float, window: float) -> dict:
    with targets(2) as bases, database("sqlite") as (url, connect):
        env = child_env(url)
        groups = [{"prefix": "healthy", "count": 100, "interval": 2, "timeout": 5,
                   "targets": [f"{bases[0]}/ok"]}]  # fmt: skip
        if with_blackhole:
            groups.append({"prefix": "hole", "count": 25, "interval": 2, "timeout": 300,
                           "targets": [f"{bases[1]}/stall"]})  # fmt: skip
        make_checks(env, groups)
        runner = start_runner(env)
        try:
            figures = watch(connect, [runner], warmup, window)
            healthy = stored_between(connect, time.time() - window - 2, time.time() - 2, "healthy")
        finally:
            stop(runner)
    return {"blackholed": 25 if with_blackhole else 0,
            "healthy_stored_per_s": round(healthy / window, 1), **figures}  # fmt: skip


# -- two workers -----------------------------------------------------------------------------


def two_workers(checks: int, interval: float, hosts: int, warmup: float, window: float) -> dict:
    out = {}
    with targets(hosts) as bases, database("postgres") as (url, connect):
        env = child_env(url)
        spec = {"prefix": "c", "count": checks, "interval": interval, "timeout": 5,
                "targets": [f"{base}/ok" for base in bases]}  # fmt: skip
        for workers in (1, 2):
            make_checks(env, [spec])
            runners = [start_runner(env) for _ in range(workers)]
            try:
                out[workers] = watch(connect, runners, warmup, window)
                if workers == 2:
                    out["takeover_s"] = _kill_and_time_takeover(connect, runners[0], checks)
            finally:
                for runner in runners:
                    stop(runner)
    ratio = out[2]["stored_per_s"] / out[1]["stored_per_s"] if out[1]["stored_per_s"] else None
    return {"checks": checks, "interval": interval, "one": out[1], "two": out[2],
            "ratio": round(ratio, 2) if ratio else None,
            "takeover_s": out["takeover_s"]}  # fmt: skip


def _kill_and_time_takeover(connect, victim: subprocess.Popen, checks: int) -> float | None:
    """SIGKILL one worker; seconds until every check has a result taken after the kill."""
    victim.kill()
    victim.wait(10)
    killed = time.time()
    since = stamp(connect, killed)
    sql = ("select count(distinct health_check_id) from connections_app_checkresult "
           "where checked_at > %s")  # fmt: skip
    for _ in range(600):  # bounded: 2 minutes
        (fresh,) = rows(connect, sql, (since,))[0]
        if fresh >= checks:
            return round(time.time() - killed, 1)
        time.sleep(0.2)
    return None


# -- main ------------------------------------------------------------------------------------


def raw_rates(hosts: int, rates: list[float]) -> list[dict]:
    """The bare loop's CPU per request at fixed rates, started one by one and on ticks."""
    rows = []
    for rate in rates:
        row: dict = {"requests_per_s": rate}
        for tick in (None, 0.05, 0.1, 0.25):
            row[f"tick_{tick or 'none'}_ms"] = raw_loop(hosts, RAW_WINDOW, rate, tick)[
                "cpu_ms_per_request"
            ]
        row["saturated_ms"] = raw_loop(hosts, RAW_WINDOW)["cpu_ms_per_request"]
        rows.append(row)
    return rows


def vs_raw(run: dict, raw: dict) -> dict:
    """CPU per stored result over the raw loop's per request: saturated, and at the same rate."""
    ms = run["cpu_ms_per_result"]
    pairs = (("cpu_vs_raw", "raw_ms"), ("cpu_vs_raw_same_rate", "raw_same_rate_ms"))
    return {name: round(ms / raw[key], 2) if ms else None for name, key in pairs}


def table(title: str, records: list[dict]) -> str:
    if not records:
        return ""
    keys = list(records[0])
    lines = [title, " | ".join(keys), " | ".join("---" for _ in keys)]
    lines += [" | ".join(str(r.get(k)) for k in keys) for r in records]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--serve", nargs="+", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--db", action="append", choices=["sqlite", "postgres"])
    parser.add_argument("--checks", action="append", type=int)
    parser.add_argument("--interval", type=float, default=10.0)
    parser.add_argument("--hosts", type=int, default=4, help="target ports (default 4)")
    parser.add_argument("--warmup", type=float, default=25.0)
    parser.add_argument("--window", type=float, default=30.0)
    parser.add_argument("--blackhole", action="store_true")
    parser.add_argument("--raw-rates", nargs="+", type=float, metavar="RATE",
                        help="only the bare loop at these rates, by tick")  # fmt: skip
    parser.add_argument("--workers", type=int, choices=[1, 2], default=1)
    parser.add_argument("--history", type=int, default=0, metavar="RESULTS",
                        help="start from RESULTS results of history over 7 days, their state, "
                        "rollups and totals (default: an empty database)")  # fmt: skip
    parser.add_argument("--baseline", type=Path, metavar="DIR",
                        help="also run every worker with the code of the checkout DIR")  # fmt: skip
    args = parser.parse_args()
    if args.serve:
        serve_targets(args.serve)
        return 0
    report: dict = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
                    "window_s": args.window, "warmup_s": args.warmup}  # fmt: skip
    if args.raw_rates:
        report["raw_rates"] = raw_rates(args.hosts, args.raw_rates)
        print(table("the bare loop's CPU ms per request, by rate and tick", report["raw_rates"]))
    elif args.blackhole:
        report["blackhole"] = [blackhole_run(b, args.warmup, args.window) for b in (False, True)]
        print(table("healthy checks alone and beside 25 blackholed", report["blackhole"]))
    elif args.workers == 2:
        report["two_workers"] = [
            two_workers(n, args.interval, args.hosts, args.warmup, args.window)
            for n in args.checks or [5000]
        ]
        print(json.dumps(report["two_workers"], indent=2))
    else:
        roots = [ROOT, args.baseline.resolve()] if args.baseline else [ROOT]
        runs = []
        for db in args.db or ["sqlite"]:
            for n in args.checks or [1000]:
                raw = raw_beside(args.hosts, n / args.interval)
                for root in roots:  # back to back: both meet the same load on the machine
                    run = worker_run(db, n, args.interval, args.hosts, args.warmup, args.window,
                                     root, args.history)  # fmt: skip
                    runs.append(run | raw | vs_raw(run, raw))
                roots.reverse()  # and neither always goes first
        report["runs"] = runs
        print(table("worker runs, each against the raw loops measured just before", runs))
        if args.baseline:
            report["ours_vs_baseline"] = side_by_side(runs)
            print(table("ours / baseline", report["ours_vs_baseline"]))
    RESULTS.parent.mkdir(exist_ok=True)
    # Each scenario keeps its own key: the three runs of docs/BENCHMARKS.md share one file.
    earlier = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    RESULTS.write_text(json.dumps(earlier | report, indent=2) + "\n")
    print(f"written to {RESULTS.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
