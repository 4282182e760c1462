"""Benchmark: history figures from the rollups against the same figures from raw results, the
admin's results list, and what each costs on disk.

Builds a private database (PostgreSQL: ``ch_bench_history_<pid>``, dropped at the end; SQLite:
a file in a temporary directory), migrates it, makes CHECKS checks with DAYS of results every
INTERVAL seconds in SQL (``generate_series`` on PostgreSQL, a recursive CTE on SQLite; 0.2 %
failures), then builds the rollups the way the data migration does (``rollups.rebuild``,
``INSERT ... SELECT ... GROUP BY``) and times:

1. the summary of every check (``history.summary_figures``: uptime 24 h / 7 d / 30 d / 90 d
   and p50/p95/p99 over 24 h), and ``summary.health_summary()`` whole (what /health/ serves);
   target under 200 ms;
2. one check's page data (``check_page.page_data``, 24 h and 30 d ranges); target under 100 ms;
3. the same figures straight from raw results (uptime by conditional counts; on PostgreSQL
   the p95 with ``percentile_cont``; SQLite has no percentile function, so its raw column is
   uptime only), for the ratio;
4. the admin's results list (``/admin/connections_app/checkresult/``) unfiltered and with
   each filter, through Django's test client; target under 1 s; beside it, what the list's
   old date hierarchy and category filter ran (``DISTINCT`` over the table, a full count);
5. the size on disk per check-month, raw results and rollups.

Medians of REPEAT warm runs. Prints a table, writes bench/results/history_<vendor>.json and
exits with status 1 when a target is missed.

Run (figures in docs/BENCHMARKS.md):
  .venv/bin/python bench/bench_history.py --vendor postgresql --checks 1000 --days 30 --interval 60
  .venv/bin/python bench/bench_history.py --vendor sqlite --checks 1000 --days 7 --interval 60
PostgreSQL is TEST_DATABASE_URL's server (default postgres://postgres@127.0.0.1:5432/test).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
os.environ.update(DEBUG="false", SECRET_KEY="bench-only", LOG_LEVEL="WARNING")
POSTGRES_URL = os.environ.get("TEST_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/test")
SUMMARY_TARGET_MS = 200.0
PAGE_TARGET_MS = 100.0
LIST_TARGET_MS = 1000.0
#: Checks per INSERT statement while generating results: progress, and no giant transaction.
CHUNK = 50


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--vendor", choices=["postgresql", "sqlite"], default="postgresql")
    parser.add_argument("--checks", type=int, default=1000)
    parser.add_argument("--days", type=float, default=30)
    parser.add_argument("--interval", type=int, default=60, help="seconds between results")
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--keep", action="store_true", help="keep the database (debugging)")
    return parser.parse_args()


# ---- the private database -----------------------------------------------------------------


def create_database(vendor: str) -> tuple[str, callable]:
    """A private database's URL, and what drops it."""
    if vendor == "sqlite":
        folder = tempfile.mkdtemp(prefix="ch-bench-history-", dir=ROOT / "bench")
        return f"sqlite:///{folder}/bench.sqlite3", lambda: shutil.rmtree(folder)
    import psycopg

    name = f"ch_bench_history_{os.getpid()}"
    with psycopg.connect(POSTGRES_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')

    def drop() -> None:
        from django.db import connections

        connections.close_all()
        with psycopg.connect(POSTGRES_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    return urlsplit(POSTGRES_URL)._replace(path=f"/{name}").geturl(), drop


# ---- data -----------------------------------------------------------------------------------


def make_checks(count: int) -> list[int]:
    from connections_app.models import HealthCheck

    HealthCheck.objects.bulk_create(
        HealthCheck(
            name=f"check {n:05d}",
            kind="tcp",
            target=f"127.0.0.1:{1024 + n}",
            interval=60,
            timeout=5,
            tags="bench",
        )  # fmt: skip
        for n in range(count)
    )
    return list(HealthCheck.objects.order_by("pk").values_list("pk", flat=True))


def fill_results(vendor: str, ids: list[int], start: datetime, end: datetime, step: int) -> None:
    """Results every ``step`` s from ``start`` to ``end`` for each check, made by the database:
    latency 20-120 ms (1 % up to 2 s), 0.2 % failures (timeouts, no latency)."""
    from django.db import connection, transaction

    steps = int((end - start).total_seconds() // step)
    columns = ("health_check_id, checked_at, ok, latency_ms, http_status, error_category, "
               "error_message, tls_days_left, ping_body")  # fmt: skip
    for first in range(0, len(ids), CHUNK):
        chunk = ids[first : first + CHUNK]
        placeholders = ", ".join(["%s"] * len(chunk))
        if vendor == "postgresql":
            sql = f"""
                INSERT INTO connections_app_checkresult ({columns})
                SELECT c, %s::timestamptz + make_interval(secs => n * %s), r >= 0.002,
                       CASE WHEN r >= 0.002 THEN 20 + 100 * random()
                            + CASE WHEN r > 0.99 THEN 2000 * random() ELSE 0 END END,
                       NULL, CASE WHEN r < 0.002 THEN 'timeout' ELSE '' END,
                       CASE WHEN r < 0.002 THEN 'no answer within 5 s' ELSE '' END, NULL, ''
                FROM unnest(ARRAY[{placeholders}]::bigint[]) AS c,
                     generate_series(0, %s) AS n, LATERAL (SELECT random() + 0 * n AS r) x
            """
            params = [start, step, *chunk, steps]
        else:
            sql = f"""
                WITH RECURSIVE s(n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM s WHERE n < %s),
                c(id) AS (SELECT id FROM connections_app_healthcheck WHERE id IN ({placeholders})),
                g AS (SELECT c.id AS id, s.n AS n, abs(random()) % 100000 AS r FROM c, s)
                INSERT INTO connections_app_checkresult ({columns})
                SELECT id, strftime('%%Y-%%m-%%d %%H:%%M:%%S', %s + n * %s, 'unixepoch'),
                       r >= 200,
                       CASE WHEN r >= 200 THEN 20 + (r % 1000) / 10.0
                            + CASE WHEN r > 99000 THEN (r % 2000) ELSE 0 END END,
                       NULL, CASE WHEN r < 200 THEN 'timeout' ELSE '' END,
                       CASE WHEN r < 200 THEN 'no answer within 5 s' ELSE '' END, NULL, ''
                FROM g
            """
            params = [steps, *chunk, int(start.timestamp()), step]
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(sql, params)
        done = min(first + CHUNK, len(ids))
        print(f"  results: {done}/{len(ids)} checks", end="\r", flush=True)
    print()


def analyze(vendor: str) -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")


def table_bytes(vendor: str, table: str) -> int:
    from django.db import connection

    with connection.cursor() as cursor:
        if vendor == "postgresql":
            cursor.execute("SELECT pg_total_relation_size(%s)", [table])
            return cursor.fetchone()[0]
        # The table and its indexes (dbstat: pages of every b-tree named after the table).
        cursor.execute(
            "SELECT sum(pgsize) FROM dbstat WHERE name = %s OR name IN "
            "(SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = %s)",
            [table, table],
        )
        return cursor.fetchone()[0] or 0


# ---- timing -------------------------------------------------------------------------------


def median_ms(func, repeat: int) -> float:
    func()  # warm: the first run pays for plans and cold pages
    times = []
    for _ in range(repeat):
        began = time.perf_counter()
        func()
        times.append((time.perf_counter() - began) * 1000)
    return round(statistics.median(times), 1)


def raw_summary(vendor: str, now: datetime, check_id: int | None = None) -> list:
    """Uptime over 24 h / 7 d / 30 d and (PostgreSQL) p95 over 24 h, from raw results."""
    from django.db import connection

    where = "WHERE checked_at >= %s" + (" AND health_check_id = %s" if check_id else "")
    starts = [now - timedelta(hours=24), now - timedelta(days=7), now - timedelta(days=30)]
    counts = ", ".join(
        "SUM(CASE WHEN checked_at >= %s THEN 1 ELSE 0 END), "
        "SUM(CASE WHEN checked_at >= %s AND ok THEN 1 ELSE 0 END)"
        for _ in starts
    )
    p95 = ""
    params: list = []
    for start in starts:
        params += [start, start]
    if vendor == "postgresql":
        p95 = (", percentile_cont(0.95) WITHIN GROUP (ORDER BY latency_ms) "
               "FILTER (WHERE ok AND checked_at >= %s)")  # fmt: skip
        params.append(starts[0])
    params.append(starts[2])
    if check_id:
        params.append(check_id)
    sql = (f"SELECT health_check_id, {counts}{p95} FROM connections_app_checkresult {where} "
           "GROUP BY health_check_id")  # fmt: skip
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def raw_page(vendor: str, now: datetime, check_id: int, days: int) -> None:
    """One check's page figures from raw results: the summary's figures, hourly series over
    ``days`` and daily counts over 90 days."""
    from django.db import connection

    raw_summary(vendor, now, check_id)
    hour = "date_trunc('hour', checked_at)" if vendor == "postgresql" else (
        "strftime('%%Y-%%m-%%d %%H', checked_at)")  # fmt: skip
    day = "date_trunc('day', checked_at)" if vendor == "postgresql" else "date(checked_at)"
    pct = (", percentile_cont(0.5) WITHIN GROUP (ORDER BY latency_ms), "
           "percentile_cont(0.95) WITHIN GROUP (ORDER BY latency_ms)"
           if vendor == "postgresql" else "")  # fmt: skip
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {hour}, count(*), avg(latency_ms), max(latency_ms){pct} "
            "FROM connections_app_checkresult WHERE health_check_id = %s AND checked_at >= %s "
            "GROUP BY 1 ORDER BY 1",
            [check_id, now - timedelta(days=days)],
        )
        cursor.fetchall()
        cursor.execute(
            f"SELECT {day}, count(*), sum(CASE WHEN ok THEN 0 ELSE 1 END) "
            "FROM connections_app_checkresult WHERE health_check_id = %s AND checked_at >= %s "
            "GROUP BY 1",
            [check_id, now - timedelta(days=90)],
        )
        cursor.fetchall()


def write_costs(ids: list[int], now: datetime) -> dict[str, float]:
    """Microseconds per result: storing batches of 200 (``store_outcomes``, rollups and commit
    included), and the rollup upserts alone (``rollups.add`` on the same kind of rows, inside
    a transaction, its commit not counted)."""
    from django.db import transaction

    from connections_app import rollups
    from connections_app.models import CheckResult, HealthCheck
    from connections_app.probes import ProbeResult
    from connections_app.results import Outcome, store_outcomes

    checks = list(HealthCheck.objects.filter(pk__in=ids[:200]))
    rounds, store_s, add_s = 10, [], []
    for n in range(rounds):
        at = now + timedelta(seconds=n + 1)
        batch = [Outcome(c, ProbeResult.success(20.0 + n), checked_at=at) for c in checks]
        began = time.perf_counter()
        store_outcomes(batch)
        store_s.append(time.perf_counter() - began)
        rows = [CheckResult(health_check_id=c.pk, checked_at=at + timedelta(hours=1), ok=True,
                            latency_ms=30.0) for c in checks]  # fmt: skip
        with transaction.atomic():
            began = time.perf_counter()
            rollups.add(rows)
            add_s.append(time.perf_counter() - began)  # the statements, not the commit
    per = len(checks)
    return {
        "store_outcomes": round(statistics.median(store_s) / per * 1e6, 1),
        "rollups_add": round(statistics.median(add_s) / per * 1e6, 1),
    }


def old_list_queries(vendor: str) -> None:
    """What the results list ran before: the date hierarchy's years, the category filter's
    choices, and a full count."""
    from connections_app.models import CheckResult

    list(CheckResult.objects.dates("checked_at", "year"))
    list(CheckResult.objects.order_by().values_list("error_category", flat=True).distinct())
    CheckResult.objects.count()


def admin_list(client, query: str) -> None:
    answer = client.get(f"/admin/connections_app/checkresult/{query}", HTTP_HOST="127.0.0.1")
    assert answer.status_code == 200, answer.status_code


# ---- main ---------------------------------------------------------------------------------


def main() -> int:
    args = parse()
    url, drop = create_database(args.vendor)
    os.environ["DATABASE_URL"] = url
    import django

    django.setup()
    from django.contrib.auth.models import User
    from django.core.management import call_command
    from django.test import Client

    from connections_app import check_page, history, rollups
    from connections_app.models import HealthCheck
    from connections_app.summary import health_summary

    figures: dict = {"vendor": args.vendor, "checks": args.checks, "days": args.days,
                     "interval_s": args.interval, "machine": platform.platform(),
                     "cpus": os.cpu_count(), "at": datetime.now(UTC).isoformat()}  # fmt: skip
    try:
        call_command("migrate", verbosity=0)
        now = datetime.now(UTC).replace(microsecond=0)
        ids = make_checks(args.checks)
        began = time.perf_counter()
        fill_results(args.vendor, ids, now - timedelta(days=args.days), now, args.interval)
        figures["fill_s"] = round(time.perf_counter() - began, 1)
        began = time.perf_counter()
        rollups.rebuild()
        figures["rebuild_s"] = round(time.perf_counter() - began, 1)
        analyze(args.vendor)
        raw_rows = _count("connections_app_checkresult")
        rollup_rows = _count("connections_app_resultrollup")
        figures |= {"raw_rows": raw_rows, "rollup_rows": rollup_rows}
        months = args.checks * args.days / 30
        raw_bytes = table_bytes(args.vendor, "connections_app_checkresult")
        rollup_bytes = table_bytes(args.vendor, "connections_app_resultrollup")
        figures["size"] = {
            "raw_bytes": raw_bytes,
            "rollup_bytes": rollup_bytes,
            "raw_mib_per_check_month": round(raw_bytes / months / 2**20, 2),
            "rollup_kib_per_check_month": round(rollup_bytes / months / 2**10, 1),
            "raw_bytes_per_row": round(raw_bytes / max(raw_rows, 1)),
        }
        print(f"{raw_rows:,} raw rows in {figures['fill_s']} s; {rollup_rows:,} rollup rows "
              f"in {figures['rebuild_s']} s")  # fmt: skip

        one = ids[len(ids) // 2]
        check = HealthCheck.objects.get(pk=one)
        r = args.repeat
        timings = {
            "summary_figures_all": median_ms(lambda: history.summary_figures(None), r),
            "health_summary_all": median_ms(health_summary, r),
            "summary_raw_all": median_ms(lambda: raw_summary(args.vendor, now), max(1, r // 3)),
            "page_data_24h": median_ms(lambda: check_page.page_data(check, "24h"), r),
            "page_data_30d": median_ms(lambda: check_page.page_data(check, "30d"), r),
            "page_raw_24h": median_ms(lambda: raw_page(args.vendor, now, one, 1), r),
            "page_raw_30d": median_ms(lambda: raw_page(args.vendor, now, one, 30), r),
        }
        User.objects.create_superuser("bench", "b@x.io", "bench-password-long-1")
        client = Client()
        client.login(username="bench", password="bench-password-long-1")
        lists = {
            "": "unfiltered",
            "?checked=24h": "last 24 h",
            "?ok__exact=0": "failures",
            "?category=timeout": "category timeout",
            f"?health_check__id__exact={one}": "one check",
            f"?checked=1h&ok__exact=0&health_check__id__exact={one}": "one check, failures, 1 h",
        }
        for query, words in lists.items():
            timings[f"admin_list: {words}"] = median_ms(lambda q=query: admin_list(client, q), 3)
        timings["admin_list before: DISTINCT x2 + COUNT"] = median_ms(
            lambda: old_list_queries(args.vendor), 1
        )
        figures["ms"] = timings
        figures["write_us_per_result"] = write_costs(ids, now)
    finally:
        if not args.keep:
            drop()
    return report(figures)


def _count(table: str) -> int:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(f"SELECT count(*) FROM {table}")
        return cursor.fetchone()[0]


def report(figures: dict) -> int:
    ms = figures["ms"]
    targets = {"summary_figures_all": SUMMARY_TARGET_MS, "health_summary_all": SUMMARY_TARGET_MS,
               "page_data_24h": PAGE_TARGET_MS, "page_data_30d": PAGE_TARGET_MS}  # fmt: skip
    missed = []
    print(f"\n{figures['vendor']}: {figures['checks']} checks, {figures['days']} days every "
          f"{figures['interval_s']} s = {figures['raw_rows']:,} results")  # fmt: skip
    print(f"{'measure':48} {'ms':>10}  target")
    for name, value in ms.items():
        target = targets.get(name) or (LIST_TARGET_MS if name.startswith("admin_list:") else None)
        verdict = ""
        if target is not None:
            verdict = f"< {target:g} {'ok' if value < target else 'MISSED'}"
            if value >= target:
                missed.append(name)
        print(f"{name:48} {value:>10.1f}  {verdict}")
    ratio = {
        "summary": round(ms["summary_raw_all"] / max(ms["summary_figures_all"], 0.1), 1),
        "page_24h": round(ms["page_raw_24h"] / max(ms["page_data_24h"], 0.1), 1),
        "page_30d": round(ms["page_raw_30d"] / max(ms["page_data_30d"], 0.1), 1),
    }
    figures["raw_over_rollups"] = ratio
    write = figures["write_us_per_result"]
    print(f"storing a result: {write['store_outcomes']} us, of which the rollup upserts about "
          f"{write['rollups_add']} us")  # fmt: skip
    print(f"raw / rollups: {ratio}")
    size = figures["size"]
    print(f"size per check-month: raw {size['raw_mib_per_check_month']} MiB "
          f"({size['raw_bytes_per_row']} B a row), rollups "
          f"{size['rollup_kib_per_check_month']} KiB")  # fmt: skip
    figures["missed"] = missed
    out = ROOT / "bench" / "results" / f"history_{figures['vendor']}.json"
    out.write_text(json.dumps(figures, indent=2) + "\n")
    print(f"written {out.relative_to(ROOT)}")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
