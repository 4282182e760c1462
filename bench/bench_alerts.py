"""Benchmark: 1,000 checks go DOWN at once (a shared dependency fails) with a webhook channel
whose receiver answers in 50 ms; how long until all 1,000 alerts are at the receiver, and how
late the check runner schedules its probes meanwhile, side by side with the same run without a
channel.

Each run: a fresh SQLite file (the embedded default), 1,000 HTTP checks (the default interval,
30 s; one failure makes DOWN) on one loopback dependency, ``manage.py runchecks`` in a child
process; a receiver in another child process (aiohttp: the dependency, and the webhook that
answers after 50 ms and counts deliveries by Idempotency-Key). Once every check has a result,
the dependency answers 503. Then, for ``--window`` seconds:

- delivered: the time from the failure until the receiver holds 1,000 distinct keys (and the
  time from the last check's change to DOWN, when every alert existed, to the last delivery);
- scheduling lag: for each pair of consecutive results of a check inside the window, the gap
  beyond its interval (mean, p95, max), read from the stored results;
- the runner's CPU time over the window (Linux /proc), and its alert sender's (a child
  process of the runner since the sender left its interpreter): what the alerts cost each.

Runs come in ``--pairs`` pairs, without and with the channel, the order swapped each pair; per
pair the lag with alerts over the lag without (mean and p95). Targets: every alert at the
receiver within 30 s of its check's change to DOWN (the checks themselves notice the failure
over one interval: the time from the failure is shown too); the median of the pairs' mean-lag
ratios within 1.10. First, the sender alone delivers 1,000 queued alerts with no check running:
its own rate, its time in the database, its CPU time.
Prints a table, writes bench/results/alerts.json, exits 1 when a target is missed.

Run:  .venv/bin/python bench/bench_alerts.py  (about 25 min; --checks 200 --pairs 1 for a
quick look)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script from anywhere: bench.proc_stats imports

from bench.proc_stats import children_cpu_seconds, cpu_seconds  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "alerts.json"
INTERVAL = 30.0  # a check's default
RECEIVER_DELAY = 0.05
DELIVERY_TARGET_S = 30.0
LAG_TARGET = 1.10


# -- the receiver (a child process) ----------------------------------------------------------


def serve_receiver(port: int) -> None:
    """The dependency (``/dep``: 200, or 503 after ``/fail``) and the webhook (``/hook``)."""
    from aiohttp import web

    state = {"status": 200, "keys": {}, "requests": 0}

    async def dep(request):
        return web.Response(status=state["status"])

    async def fail(request):
        state["status"] = 503
        return web.json_response({"at": time.time()})

    async def hook(request):
        await request.read()
        await asyncio.sleep(RECEIVER_DELAY)
        state["requests"] += 1
        key = request.headers.get("Idempotency-Key")
        state["keys"].setdefault(key, []).append(time.time())
        return web.json_response({"ok": True})

    async def stats(request):
        times = [t for seen in state["keys"].values() for t in seen]
        return web.json_response({
            "keys": len(state["keys"]),
            "requests": state["requests"],
            "repeats": sum(len(seen) - 1 for seen in state["keys"].values()),
            "first": min(times, default=None),
            "last": max(times, default=None),
        })  # fmt: skip

    async def keys(request):
        return web.json_response({key: min(seen) for key, seen in state["keys"].items()})

    app = web.Application()
    app.add_routes([web.get("/dep", dep), web.post("/fail", fail), web.post("/hook", hook),
                    web.get("/stats", stats), web.get("/keys", keys)])  # fmt: skip
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


# -- the sender alone (a child process on its own SQLite file) -------------------------------


def sender_alone(count: int, base: str) -> None:
    """Deliver ``count`` queued alerts with no check running: the sender's own rate, and how
    much of its time went to its database calls. Prints one JSON line."""
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
    django.setup()
    from django.core.management import call_command

    from connections_app.alerts.models import Alert, NotificationChannel
    from connections_app.alerts.sender import AlertSender, connection_config
    from connections_app.connection_manager import ConnectionManager

    call_command("migrate", verbosity=0)
    channel = NotificationChannel.objects.create(name="ops", target=f"{base}/hook")
    Alert.objects.bulk_create(Alert(channel=channel, kind="test") for _ in range(count))
    import resource

    spent = {"db_s": 0.0, "db_calls": 0}
    in_db = AlertSender._in_db

    async def timed(self, func, *args):
        started = time.perf_counter()
        try:
            return await in_db(self, func, *args)
        finally:
            spent["db_s"] += time.perf_counter() - started
            spent["db_calls"] += 1

    AlertSender._in_db = timed

    async def deliver_all() -> float:
        async with ConnectionManager(connection_config()) as manager:
            stop = asyncio.Event()
            started = time.perf_counter()
            running = asyncio.ensure_future(AlertSender(manager).run_forever(stop))
            for _ in range(6000):  # bounded: 10 minutes at most
                if (await asyncio.to_thread(call, f"{base}/stats"))["keys"] >= count:
                    break
                await asyncio.sleep(0.1)
            elapsed = time.perf_counter() - started
            stop.set()
            await running
            return elapsed

    cpu = resource.getrusage(resource.RUSAGE_SELF)
    cpu_before = cpu.ru_utime + cpu.ru_stime
    elapsed = asyncio.run(deliver_all())
    cpu = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({"alerts": count, "seconds": round(elapsed, 2),
                      "db_s": round(spent["db_s"], 2), "db_calls": spent["db_calls"],
                      "cpu_s": round(cpu.ru_utime + cpu.ru_stime - cpu_before, 2)}))  # fmt: skip


def alone_run(count: int) -> dict:
    port = free_port()
    receiver = subprocess.Popen([sys.executable, __file__, "--serve", str(port)], cwd=ROOT)
    base = f"http://127.0.0.1:{port}"
    try:
        assert wait_for(lambda: _answers(base), 20), "the receiver did not start"
        with tempfile.TemporaryDirectory(prefix="bench-alerts-") as folder:
            env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
            env |= {"DATABASE_URL": f"sqlite:///{folder}/db.sqlite3", "SECRET_KEY": "bench-only",
                    "LOG_LEVEL": "ERROR"}  # fmt: skip
            done = subprocess.run(
                [sys.executable, __file__, "--alone", str(count), "--base", base], cwd=ROOT,
                env=env, capture_output=True, text=True, check=True, timeout=600,
            )  # fmt: skip
        return json.loads(done.stdout.strip().splitlines()[-1])
    finally:
        receiver.send_signal(signal.SIGTERM)
        receiver.wait(30)


# -- one run ---------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def call(url: str, method: str = "GET") -> dict:
    request = urllib.request.Request(url, method=method)
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.loads(response.read())


def manage(env: dict, *args: str, stdin: str | None = None) -> None:
    subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, input=stdin,
                   text=True, check=True, capture_output=True, timeout=300)  # fmt: skip


def wait_for(condition, timeout: float, step: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(step)
    return False


def one_run(checks: int, with_alerts: bool, window: float) -> dict:
    port = free_port()
    receiver = subprocess.Popen([sys.executable, __file__, "--serve", str(port)], cwd=ROOT)
    base = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory(prefix="bench-alerts-") as folder:
        db = Path(folder) / "db.sqlite3"
        env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
        env |= {"DATABASE_URL": f"sqlite:///{db}", "SECRET_KEY": "bench-only",
                "LOG_LEVEL": "ERROR", "FLAP_CHANGES": "100000"}  # fmt: skip
        runner = None
        try:
            assert wait_for(lambda: _answers(base), 20), "the receiver did not start"
            manage(env, "migrate", "--noinput", "-v", "0")
            rows = [{"name": f"c{n:04}", "target": f"{base}/dep", "interval": INTERVAL,
                     "timeout": 2, "failures_before_down": 1} for n in range(checks)]  # fmt: skip
            manage(env, "importchecks", "-", stdin=json.dumps(rows))
            if with_alerts:
                code = ("from connections_app.alerts.models import NotificationChannel\n"
                        f"NotificationChannel.objects.create(name='ops', target='{base}/hook', "
                        "all_checks=True)\n")  # fmt: skip
                manage(env, "shell", "-c", code)
            runner = subprocess.Popen([sys.executable, "manage.py", "runchecks"], cwd=ROOT,
                                      env=env, stderr=subprocess.DEVNULL)  # fmt: skip
            counted = "select count(*) from connections_app_healthcheck where name like 'c%' and "
            assert wait_for(lambda: _scalar(db, counted + "status = 'up'") == checks, 60), (
                "the checks did not all come UP"
            )
            cpu_before = cpu_seconds(runner.pid)
            sender_before = children_cpu_seconds(runner.pid)
            failed_at = call(f"{base}/fail", "POST")["at"]
            all_down = wait_for(lambda: _scalar(db, counted + "status = 'down'") == checks, 60)
            delivered = arrived = None
            if with_alerts:
                if wait_for(lambda: call(f"{base}/stats")["keys"] >= checks, 120):
                    delivered, arrived = call(f"{base}/stats"), call(f"{base}/keys")
            rest = failed_at + window - time.time()
            if rest > 0:
                time.sleep(rest)
            cpu = cpu_seconds(runner.pid) - cpu_before
            sender_cpu = children_cpu_seconds(runner.pid) - sender_before
        finally:
            if runner is not None:
                runner.send_signal(signal.SIGTERM)
                runner.wait(60)
            receiver.send_signal(signal.SIGTERM)
            receiver.wait(30)
        last_down = _last_down(db)
        return {
            "alerts": with_alerts,
            "checks": checks,
            "all_down": all_down,
            "down_spread_s": round(last_down - failed_at, 2),
            "delivered_s": round(delivered["last"] - failed_at, 2) if delivered else None,
            "after_last_down_s": round(delivered["last"] - last_down, 2) if delivered else None,
            "repeats": delivered["repeats"] if delivered else None,
            "runner_cpu_s": round(cpu, 2),
            "sender_cpu_s": round(sender_cpu, 2),
            "load": round(os.getloadavg()[0], 2),
            **_lag(db, failed_at, failed_at + window),
            **(_outbox(db) if with_alerts else {}),
            **(_waits(db, arrived) if arrived else {}),
        }


def _answers(base: str) -> bool:
    try:
        call(f"{base}/stats")
        return True
    except OSError:
        return False


def _scalar(db: Path, query: str):
    with sqlite3.connect(db, timeout=10) as connection:
        return connection.execute(query).fetchone()[0]


def _timestamp(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


def _last_down(db: Path) -> float:
    query = "select max(at) from connections_app_statechange where to_status = 'down'"
    return _timestamp(_scalar(db, query))


def _waits(db: Path, arrived: dict[str, float]) -> dict:
    """How long each alert took from its check's change to the receiver."""
    with sqlite3.connect(db, timeout=10) as connection:
        rows = connection.execute(
            "select a.id, c.at from connections_app_alert a "
            "join connections_app_statechange c on c.id = a.state_change_id"
        ).fetchall()
    waits = sorted(arrived[str(pk)] - _timestamp(at) for pk, at in rows if str(pk) in arrived)
    return {
        "wait_median_s": round(statistics.median(waits), 2),
        "wait_max_s": round(waits[-1], 2),
    }


def _outbox(db: Path) -> dict:
    """How the alerts went: tries per alert, and the errors of the ones that needed more."""
    with sqlite3.connect(db, timeout=10) as connection:
        tries = connection.execute(
            "select attempts, count(*) from connections_app_alert group by attempts"
        ).fetchall()
        errors = connection.execute(
            "select last_error, count(*) from connections_app_alert where last_error != '' "
            "group by last_error order by count(*) desc limit 3"
        ).fetchall()
    return {"tries": dict(tries), "errors": dict(errors)}


def _lag(db: Path, start: float, end: float) -> dict:
    """Each check's consecutive results inside [start, end]: the gap beyond the interval."""
    with sqlite3.connect(db, timeout=10) as connection:
        rows = connection.execute(
            "select health_check_id, checked_at from connections_app_checkresult "
            "order by health_check_id, checked_at"
        ).fetchall()
    lags, last = [], {}
    for check, at in rows:
        at = _timestamp(at)
        if not start <= at <= end:
            continue
        if check in last:
            lags.append(max(0.0, at - last[check] - INTERVAL) * 1000)
        last[check] = at
    lags.sort()
    return {
        "lag_samples": len(lags),
        "lag_mean_ms": round(statistics.fmean(lags), 1) if lags else None,
        "lag_p95_ms": round(lags[int(0.95 * (len(lags) - 1))], 1) if lags else None,
        "lag_max_ms": round(lags[-1], 1) if lags else None,
    }


# -- the report ------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checks", type=int, default=1000)
    parser.add_argument(
        "--window", type=float, default=70.0, help="seconds measured after the failure"
    )
    parser.add_argument(
        "--pairs", type=int, default=6,
        help="pairs of runs, without and with alerts; the order swaps from pair to pair",
    )  # fmt: skip
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--alone", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--base", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve_receiver(args.serve)
        return 0
    if args.alone:
        sender_alone(args.alone, args.base)
        return 0
    alone = alone_run(args.checks)
    print(f"sender alone: {json.dumps(alone)}")
    # Interleaved, the order swapped each pair (none first, then alerts first, ...): drift and
    # the other work on a shared machine hit both sides alike, and so does going first.
    runs = []
    for pair in range(args.pairs):
        for alerts in (False, True) if pair % 2 == 0 else (True, False):
            run = one_run(args.checks, alerts, args.window)
            runs.append(run | {"pair": pair + 1})
            print(f"pair {pair + 1}, {'webhook' if alerts else 'none'}: {json.dumps(run)}",
                  flush=True)  # fmt: skip
    header = ("pair", "channel", "all DOWN after s", "all delivered after s",
              "after last DOWN s", "wait median s", "wait max s", "repeats", "lag mean ms",
              "lag p95 ms", "lag max ms", "samples", "runner CPU s", "sender CPU s",
              "load")  # fmt: skip
    print(" | ".join(header))
    for run in runs:
        print(" | ".join(str(v) for v in (
            run["pair"], "webhook" if run["alerts"] else "none", run["down_spread_s"],
            run["delivered_s"], run["after_last_down_s"], run.get("wait_median_s"),
            run.get("wait_max_s"), run["repeats"], run["lag_mean_ms"],
            run["lag_p95_ms"], run["lag_max_ms"], run["lag_samples"], run["runner_cpu_s"],
            run["sender_cpu_s"], run["load"],
        )))  # fmt: skip
    summary = _summary(runs)
    print(json.dumps(summary))
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps({
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
                   f"Python {platform.python_version()}, load {os.getloadavg()[0]:.2f}",
        "interval_s": INTERVAL,
        "receiver_delay_s": RECEIVER_DELAY,
        "runs": runs,
        "sender_alone": alone,
        "summary": summary,
    }, indent=2) + "\n")  # fmt: skip
    return 0 if summary["delivered_met"] and summary["lag_met"] else 1


def _summary(runs: list[dict]) -> dict:
    """Per pair, the lag with alerts over the lag without (mean and p95); the target is judged
    on the median of the pairs' mean ratios: one pair's noise neither hides a real cost nor
    makes one up. The spread of the ratios shows what this machine resolves."""
    with_ = [r for r in runs if r["alerts"]]
    without = [r for r in runs if not r["alerts"]]
    # An alert's wait runs from its check's change to the receiver: the checks themselves
    # notice the failure over one interval, which no sender can shorten.
    waits = [r.get("wait_max_s") for r in with_]
    worst = None if None in waits else max(waits)
    pairs = []
    for quiet, alerts in zip(without, with_, strict=True):
        pairs.append({
            "pair": quiet["pair"],
            "mean_ratio": _ratio(alerts["lag_mean_ms"], quiet["lag_mean_ms"]),
            "p95_ratio": _ratio(alerts["lag_p95_ms"], quiet["lag_p95_ms"]),
            "runner_cpu_s": (quiet["runner_cpu_s"], alerts["runner_cpu_s"]),
            "sender_cpu_s": (quiet["sender_cpu_s"], alerts["sender_cpu_s"]),
        })  # fmt: skip
    means = [p["mean_ratio"] for p in pairs if p["mean_ratio"] is not None]
    p95s = [p["p95_ratio"] for p in pairs if p["p95_ratio"] is not None]
    summary = {
        "wait_max_s": worst,
        "pairs": pairs,
        "median_mean_ratio": round(statistics.median(means), 3) if means else None,
        "median_p95_ratio": round(statistics.median(p95s), 3) if p95s else None,
        "median_runner_cpu_s": {
            side: statistics.median(r["runner_cpu_s"] for r in group)
            for side, group in (("none", without), ("webhook", with_))
        },
        "delivered_met": worst is not None and worst <= DELIVERY_TARGET_S,
    }
    summary["lag_met"] = bool(means) and summary["median_mean_ratio"] <= LAG_TARGET
    print("pair | mean ratio | p95 ratio | runner CPU s none/webhook | sender CPU s none/webhook")
    for p in pairs:
        print(f"{p['pair']} | {p['mean_ratio']} | {p['p95_ratio']} | "
              f"{p['runner_cpu_s'][0]} / {p['runner_cpu_s'][1]} | "
              f"{p['sender_cpu_s'][0]} / {p['sender_cpu_s'][1]}")  # fmt: skip
    print(f"median ratio: mean {summary['median_mean_ratio']}, p95 {summary['median_p95_ratio']}")
    for name, met in (("every alert at the receiver within 30 s of its change",
                       summary["delivered_met"]),
                      ("lag within 10 % (median of the pairs' mean ratios)",
                       summary["lag_met"])):  # fmt: skip
        print(f"target {name}: {'met' if met else 'MISSED'}")
    return summary


def _ratio(with_alerts: float | None, without: float | None) -> float | None:
    if with_alerts is None or not without:
        return None
    return round(with_alerts / without, 3)


if __name__ == "__main__":
    sys.exit(main())
