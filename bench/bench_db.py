"""Benchmark: our database backends against Django's own, and recovery from a killed session.

1. Overhead: 20,000 simple ORM queries (``HealthCheck.objects.get(pk=...)``) through our
   backend and 20,000 through Django's own, on the same database in one run, on SQLite (one
   file, the same PRAGMAs for both) and on PostgreSQL (a private database). The queries run in
   1,000 interleaved rounds of 20 per side, the side that goes first alternating, so that
   drift on a shared machine hits both sides alike. Target: our time over Django's at most 1.03.
2. Recovery (PostgreSQL): ``pg_terminate_backend`` on our connection's session, then the next
   ORM query; the time from the terminate call to the query's answer, and separately the time
   of one connect. Target: recovery under 50 ms plus one connect (medians). Django's own
   backend is shown too: it raises on that query and on every one after it.

Prints a table, writes bench/results/db.json and exits with status 1 when a target is missed.

Run:  .venv/bin/python bench/bench_db.py  (about 1 min; --queries 2000 for a quick look)
PostgreSQL is TEST_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/test); where it is
unreachable its rows are skipped.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script from anywhere: the project's packages import
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
# Production-like cursors: without DEBUG neither side keeps a log of its queries.
os.environ.update(DEBUG="false", SECRET_KEY="bench-only", LOG_LEVEL="WARNING")

import django  # noqa: E402

django.setup()

import psycopg  # noqa: E402
from django.db import DEFAULT_DB_ALIAS, OperationalError, connections  # noqa: E402
from psycopg import sql  # noqa: E402

from connections_app.db import counters  # noqa: E402
from connections_app.models import CheckResult, ErrorStat, HealthCheck  # noqa: E402
from project.config import database_config  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "db.json"
POSTGRES_URL = os.environ.get("TEST_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/test")
DJANGO_ENGINES = {
    "sqlite": "django.db.backends.sqlite3",
    "postgresql": "django.db.backends.postgresql",
}
MAX_OVERHEAD = 1.03
RECOVERY_BUDGET_MS = 50.0


@contextmanager
def aliases(ours: dict, vendor: str) -> Iterator[tuple[str, str]]:
    """Two aliases on one database: ``ours`` and the same settings on Django's own ENGINE."""
    theirs = {**ours, "ENGINE": DJANGO_ENGINES[vendor]}
    names = (f"ours_{vendor}", f"django_{vendor}")
    configured = connections.configure_settings(
        {DEFAULT_DB_ALIAS: {}, names[0]: ours, names[1]: theirs}
    )
    for name in names:
        connections.settings[name] = configured[name]
    try:
        yield names
    finally:
        for name in names:
            connections[name].close()
            del connections[name]
            del connections.settings[name]


def create_tables(alias: str) -> int:
    with connections[alias].schema_editor() as editor:
        for model in (HealthCheck, CheckResult, ErrorStat):
            editor.create_model(model)
    return HealthCheck.objects.using(alias).create(name="bench", target="127.0.0.1:9").pk


def timed_queries(alias: str, pk: int, count: int) -> float:
    manager = HealthCheck.objects.db_manager(alias)
    started = time.perf_counter()
    for _ in range(count):
        manager.get(pk=pk)
    return time.perf_counter() - started


def overhead(ours: str, theirs: str, pk: int, queries: int, rounds: int) -> dict:
    per_round = queries // rounds
    for alias in (ours, theirs):
        timed_queries(alias, pk, min(500, per_round))  # connect and warm the caches first
    seconds = {ours: 0.0, theirs: 0.0}
    ratios = []
    for n in range(rounds):
        order = (ours, theirs) if n % 2 == 0 else (theirs, ours)
        spent = {alias: timed_queries(alias, pk, per_round) for alias in order}
        for alias, value in spent.items():
            seconds[alias] += value
        ratios.append(spent[ours] / spent[theirs])
    return {
        "queries_per_side": per_round * rounds,
        "rounds": rounds,
        "ours_s": round(seconds[ours], 3),
        "django_s": round(seconds[theirs], 3),
        "ours_us_per_query": round(seconds[ours] / (per_round * rounds) * 1e6, 1),
        "django_us_per_query": round(seconds[theirs] / (per_round * rounds) * 1e6, 1),
        "ratio": round(seconds[ours] / seconds[theirs], 4),
        "median_round_ratio": round(statistics.median(ratios), 4),
    }


def sqlite_overhead(queries: int, rounds: int) -> dict:
    with tempfile.TemporaryDirectory() as folder:
        config = database_config(f"sqlite:///{folder}/bench.sqlite3", Path(folder))
        with aliases(config, "sqlite") as (ours, theirs):
            pk = create_tables(ours)
            return overhead(ours, theirs, pk, queries, rounds)


@contextmanager
def private_postgres() -> Iterator[str]:
    name = sql.Identifier(f"ch_bench_{os.getpid()}")
    with psycopg.connect(POSTGRES_URL, autocommit=True) as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(name))
        admin.execute(sql.SQL("CREATE DATABASE {}").format(name))
    try:
        yield urlsplit(POSTGRES_URL)._replace(path=f"/{name.as_string()[1:-1]}").geturl()
    finally:
        with psycopg.connect(POSTGRES_URL, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(name))


def backend_pid(alias: str) -> int:
    with connections[alias].cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return cursor.fetchone()[0]


def terminate(admin: psycopg.Connection, pid: int) -> None:
    """End session ``pid`` and wait (bounded) until the server has let it go."""
    admin.execute("SELECT pg_terminate_backend(%s)", [pid])
    deadline = time.monotonic() + 10
    while admin.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", [pid]).fetchone():
        if time.monotonic() > deadline:
            raise RuntimeError(f"backend {pid} did not exit within 10 s")
        time.sleep(0.001)


def connect_ms(alias: str, trials: int) -> list[float]:
    connection = connections[alias]
    times = []
    for _ in range(trials):
        connection.close()
        started = time.perf_counter()
        connection.ensure_connection()
        times.append((time.perf_counter() - started) * 1000)
    return times


def recovery(alias: str, pk: int, url: str, trials: int) -> dict:
    manager = HealthCheck.objects.db_manager(alias)
    before = counters.counts(alias)["reconnects"]
    recover, query = [], []
    with psycopg.connect(url, autocommit=True) as admin:
        for _ in range(trials):
            pid = backend_pid(alias)
            started = time.perf_counter()
            terminate(admin, pid)
            asked = time.perf_counter()
            manager.get(pk=pk)
            done = time.perf_counter()
            recover.append((done - started) * 1000)
            query.append((done - asked) * 1000)
    connects = connect_ms(alias, trials)
    return {
        "trials": trials,
        "reconnects_counted": counters.counts(alias)["reconnects"] - before,
        "recovery_ms_median": round(statistics.median(recover), 2),
        "recovery_ms_max": round(max(recover), 2),
        "query_after_kill_ms_median": round(statistics.median(query), 2),
        "connect_ms_median": round(statistics.median(connects), 2),
        "connect_ms_max": round(max(connects), 2),
    }


def django_after_kill(alias: str, pk: int, url: str) -> list[str]:
    """What Django's own backend does on the query after the kill, and the one after that."""
    outcomes = []
    with psycopg.connect(url, autocommit=True) as admin:
        terminate(admin, backend_pid(alias))
    for _ in range(2):
        try:
            HealthCheck.objects.using(alias).get(pk=pk)
            outcomes.append("ok")
        except OperationalError as exc:
            outcomes.append(f"OperationalError: {str(exc).splitlines()[0]}")
    return outcomes


def postgres_part(queries: int, rounds: int, trials: int) -> dict:
    with private_postgres() as url, aliases(database_config(url, ROOT), "postgresql") as names:
        ours, theirs = names
        pk = create_tables(ours)
        return {
            "overhead": overhead(ours, theirs, pk, queries, rounds),
            "recovery": recovery(ours, pk, url, trials),
            "django_after_kill": django_after_kill(theirs, pk, url),
        }


def postgres_reachable() -> bool:
    try:
        psycopg.connect(POSTGRES_URL, connect_timeout=2).close()
    except psycopg.Error:
        return False
    return True


def print_table(report: dict) -> None:
    print(
        f"{'database':<12}{'backend':<10}{'queries':>9}{'seconds':>9}{'us/query':>10}{'ratio':>8}"
    )
    for vendor in ("sqlite", "postgresql"):
        result = report["overhead"].get(vendor)
        if result is None:
            print(f"{vendor:<12}(skipped: {POSTGRES_URL} unreachable)")
            continue
        for side, label in (("django", "Django's"), ("ours", "ours")):
            ratio = f"{result['ratio']:.3f}" if side == "ours" else "1.000"
            print(
                f"{vendor:<12}{label:<10}{result['queries_per_side']:>9,}"
                f"{result[f'{side}_s']:>9.2f}{result[f'{side}_us_per_query']:>10.1f}{ratio:>8}"
            )
    rec = report.get("recovery")
    if rec:
        print(
            f"\nrecovery after pg_terminate_backend ({rec['trials']} trials): median "
            f"{rec['recovery_ms_median']} ms, max {rec['recovery_ms_max']} ms "
            f"(the query itself: median {rec['query_after_kill_ms_median']} ms); one connect: "
            f"median {rec['connect_ms_median']} ms, max {rec['connect_ms_max']} ms; "
            f"reconnects counted: {rec['reconnects_counted']}"
        )
        print(f"Django's own backend, next two queries: {report['django_after_kill']}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=20_000, help="per side and database")
    parser.add_argument("--rounds", type=int, default=1000, help="short rounds cancel drift")
    parser.add_argument("--trials", type=int, default=20, help="recovery measurements")
    args = parser.parse_args()
    report: dict = {"benchmark": "db", "date": datetime.now(UTC).isoformat(timespec="seconds")}
    report |= {"python": platform.python_version(), "platform": platform.platform()}
    report["overhead"] = {"sqlite": sqlite_overhead(args.queries, args.rounds)}
    if postgres_reachable():
        pg = postgres_part(args.queries, args.rounds, args.trials)
        report["overhead"]["postgresql"] = pg["overhead"]
        report |= {"recovery": pg["recovery"], "django_after_kill": pg["django_after_kill"]}
    targets = {
        f"{vendor} overhead at most {MAX_OVERHEAD}": result["ratio"] <= MAX_OVERHEAD
        for vendor, result in report["overhead"].items()
    }
    if "recovery" in report:
        rec = report["recovery"]
        budget = RECOVERY_BUDGET_MS + rec["connect_ms_median"]
        targets[f"recovery under {RECOVERY_BUDGET_MS:g} ms + one connect"] = (
            rec["recovery_ms_median"] < budget and rec["reconnects_counted"] == rec["trials"]
        )
    report["targets"] = targets
    print_table(report)
    print()
    for target, ok in targets.items():
        print(f"{'PASS' if ok else 'FAIL'}  {target}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwrote {RESULTS}")
    return 0 if all(targets.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
