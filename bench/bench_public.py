"""Benchmark: what a scrape of /metrics and a visit of /status/ cost, on a private database.

Data, made in SQL: ``--checks`` checks (every ``--public-every``-th of them public), each with
a stored state, and for each public check ``--days`` days of results every ``--step`` seconds
(about 1 % failures), which the status page groups by day (raw results: the rollups of
``connections_app.history`` will replace them). Then, in this process:

- ``/metrics``: the whole text (``connections_app.metrics.render``), with the token;
- ``/status/``, not cached: the page built and rendered (the cache cleared before each visit);
- ``/status/``, cached: a second visit within the 5 s window (no query);
- a badge (uptime over 30 days), not cached.

Each: one warm-up, then ``--reps`` timed rounds; the median and the worst are printed, and
written to bench/results/public.json. No target: the figures are for docs/BENCHMARKS.md.

Run:  .venv/bin/python bench/bench_public.py            (SQLite file in a temporary folder)
      .venv/bin/python bench/bench_public.py --database-url postgres://postgres@127.0.0.1:5432/bench_public
(the PostgreSQL database is created if missing, and emptied first: use a private one).
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
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TOKEN = "bench-metrics-token-0123456789"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default="")
    parser.add_argument("--checks", type=int, default=1000)
    parser.add_argument("--public-every", type=int, default=50)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--step", type=int, default=300, help="seconds between results")
    parser.add_argument("--reps", type=int, default=20)
    args = parser.parse_args()

    folder = tempfile.mkdtemp(prefix="bench-public-")
    url = args.database_url or f"sqlite:///{folder}/bench.sqlite3"
    os.environ |= {"DATABASE_URL": url, "METRICS_TOKEN": TOKEN, "LOG_LEVEL": "WARNING"}
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
    if url.startswith("postgres"):
        _create_postgres(url)
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    rows = _make_data(args)
    figures = _measure(args.reps)
    _report(args, url, rows, figures)
    return 0


def _create_postgres(url: str) -> None:
    from urllib.parse import urlsplit

    import psycopg

    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    admin = url.replace(f"/{name}", "/postgres")
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}"')
        connection.execute(f'CREATE DATABASE "{name}"')


def _make_data(args) -> int:
    from django.db import connection
    from django.utils import timezone

    from connections_app import rollups
    from connections_app.models import CheckResult, HealthCheck

    HealthCheck.objects.all().delete()
    now = timezone.now()
    HealthCheck.objects.bulk_create(
        HealthCheck(
            name=f"check {n:05d}",
            kind="http",
            target=f"https://user:secret@svc{n}.example/health",
            public=n % args.public_every == 0,
            public_name=f"Service {n}" if n % args.public_every == 0 else "",
            status="down" if n % 97 == 0 else "up",
            health="down" if n % 97 == 0 else "up",
            last_checked_at=now,
            last_latency_ms=12.5,
            next_due_at=now,
            badge_token=f"token-{n:05d}-{'x' * 20}",
        )
        for n in range(args.checks)
    )
    count = args.days * 86400 // args.step
    table = CheckResult._meta.db_table
    checks = HealthCheck._meta.db_table
    columns = (
        "health_check_id, checked_at, ok, latency_ms, error_category, error_message, ping_body"
    )
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                f"INSERT INTO {table} ({columns}) SELECT c.id, %s - make_interval(secs => "
                f"n * %s), random() > 0.01, 10.0, '', '', '' FROM {checks} c, "
                "generate_series(0, %s - 1) n WHERE c.public",
                [now, args.step, count],
            )
            cursor.execute(f"ANALYZE {table}")
        else:
            stamp = now.strftime("%Y-%m-%d %H:%M:%S")
            cursor.execute(
                f"WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < %s) "
                f"INSERT INTO {table} ({columns}) SELECT c.id, "
                f"strftime('%%Y-%%m-%%d %%H:%%M:%%f', %s, '-' || (n.i * %s) || ' seconds'), "
                f"abs(random()) %% 100 != 0, 10.0, '', '', '' FROM n, {checks} c "
                "WHERE c.public",
                [count - 1, stamp, args.step],
            )
            cursor.execute("ANALYZE")
    # The status page and the badges read the rollups, which a runner writes with its results.
    rollups.rebuild()
    return CheckResult.objects.count()


def _timed(function, reps: int) -> dict:
    function()  # warm-up
    times = []
    for _ in range(reps):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return {"median_ms": statistics.median(times) * 1000, "max_ms": max(times) * 1000}


def _measure(reps: int) -> dict:
    from django.core.cache import cache
    from django.test import Client
    from django.test.utils import setup_test_environment

    setup_test_environment()  # the test client's host is allowed
    prometheus = Client(HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    anyone = Client()

    def ok(response):
        assert response.status_code == 200, response.status_code
        return response

    def uncached_status():
        cache.clear()
        ok(anyone.get("/status/"))

    def uncached_badge():
        cache.clear()
        ok(anyone.get(f"/badge/token-00000-{'x' * 20}/uptime.svg"))

    figures = {"/metrics": _timed(lambda: ok(prometheus.get("/metrics")), reps)}
    figures["/status/, not cached"] = _timed(uncached_status, reps)
    ok(anyone.get("/status/"))
    figures["/status/, cached"] = _timed(lambda: ok(anyone.get("/status/")), reps)
    figures["uptime badge, not cached"] = _timed(uncached_badge, reps)
    figures["/metrics bytes"] = len(prometheus.get("/metrics").content)
    return figures


def _report(args, url: str, rows: int, figures: dict) -> None:
    from django.db import connection

    database = "PostgreSQL" if connection.vendor == "postgresql" else "SQLite"
    public = len(range(0, args.checks, args.public_every))
    print(
        f"{database}: {args.checks} checks, {public} public, {rows:,} results "
        f"({args.days} days every {args.step} s for each public check)"
    )
    print("| read | median ms | worst ms |\n| --- | ---: | ---: |")
    for name, figure in figures.items():
        if isinstance(figure, dict):
            print(f"| {name} | {figure['median_ms']:.1f} | {figure['max_ms']:.1f} |")
    print(f"/metrics is {figures['/metrics bytes']:,} bytes")
    out = ROOT / "bench" / "results" / "public.json"
    out.parent.mkdir(exist_ok=True)
    previous = json.loads(out.read_text()) if out.exists() else {}
    previous[database] = {
        "checks": args.checks,
        "public": public,
        "results": rows,
        "days": args.days,
        "step": args.step,
        "reps": args.reps,
        "figures": figures,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
    }
    out.write_text(json.dumps(previous, indent=2) + "\n")


if __name__ == "__main__":
    sys.exit(main())
