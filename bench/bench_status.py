"""Benchmark: check status derived from the results on every read, against status stored.

Issue 10. The same data in two checkouts of the repository, side by side in one run:
``--before`` (status derived by correlated subqueries over ``CheckResult``) and ``--after``
(status stored on the ``HealthCheck`` row). For each database, one child process per checkout,
run with that checkout's code (cwd = the checkout; its ``.venv`` when it has one):

1. migrates a fresh private database (``manage.py migrate``);
2. generates the data in SQL: ``--checks`` checks (70 % http, 30 % tcp, interval 60 s, tags on
   four in five; 2 % DOWN, half of them failing for the whole week; 1 % DEGRADED; 1 % paused;
   the rest UP) and ``--results`` results, about results/checks each: the newest 60 one a
   minute apart (the newest within the last minute, so no check is stale), the rest spread
   over the 7 days before, about 1 % scattered failures; inserted oldest first, as a runner
   writes them; PostgreSQL then gets the VACUUM ANALYZE that autovacuum would soon do;
3. where the model has a stored ``status`` field, calls ``connections_app.state
   .rebuild_from_results()`` to fill it from the results (timed);
4. then answers the parent's commands, one JSON line each on stdout: time one read (GET
   ``/health/``, anonymous, which is the full document; the dashboard snapshot,
   ``build_snapshot(EVERY, limits())``; the admin changelist pages of ``ADMIN_PAGES`` as a
   staff user), or store one batch of results through one of the runner's write functions
   (``write_paths``).

Both children are prepared first, then the parent alternates them, measurement by measurement
and the side that goes first alternating, so that the load of a shared machine falls on both
alike (as bench_db.py does). Each read: one warm-up per side, then up to ``--reps`` timed
rounds within ``--budget`` seconds for the slower side; a read still running after ``--cap``
seconds is cut off (its query cancelled) and reported as a lower bound. Writes: one warm-up
batch per side, then ``--writes`` results per side in batches of ``--batch``, one batch per
side per round; each batch for distinct checks, every 50th result a failure.

Prints a table (before, after, ratio) and writes bench/results/status.json. Targets (when both
sides ran): the reads the issue names (``TARGET_READS``: /health/, the dashboard snapshot, the
admin list sorted by status) at least 10x faster after, the write path at most 10 % slower per
result; exits with status 1 when one is missed or when the two sides see different statuses.

Run (full size: 10,000 checks, 1,000,000 results; "before" alone on both databases took about
7 min on 2 shared vCPUs, and each checkout more adds its data generation and its reads;
``--quick``, 1,000 checks and 50,000 results, about 30 s):

    git worktree add --detach ../before main && ln -s "$PWD/.venv" ../before/.venv
    .venv/bin/python bench/bench_status.py --before ../before --after .

``--after`` may be left out (the "before" figures alone). PostgreSQL is ``BENCH_POSTGRES_URL``
(default postgres://postgres@127.0.0.1:5432/postgres), where private databases are created
and dropped again; SQLite files live in a temporary folder.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

HERE = Path(__file__).resolve()
ROOT = HERE.parent.parent
RESULTS = ROOT / "bench" / "results" / "status.json"
POSTGRES_URL = os.environ.get("BENCH_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/postgres")
#: The child's answers: one stdout line each, after this marker (other lines are passed on).
MARKER = "BENCH_STATUS_JSON "
MIN_READ_SPEEDUP = 10.0
MAX_WRITE_SLOWDOWN = 1.10

HEALTH = "GET /health/"
#: Since the stored state, anyone gets counts and staff the per-check detail; before, anyone
#: got the detail. Both sides' staff reads are the same document.
HEALTH_STAFF = "GET /health/ (staff)"
SNAPSHOT = "dashboard snapshot"
#: Sanity figures whose key holds this are recorded, not compared between the sides.
NOT_COMPARED = "(not compared)"
ADMIN_LIST = "/admin/connections_app/healthcheck/"
#: The admin changelist pages timed, by label: their query string, and whether the issue's
#: target (10x) applies. ``{status_column}`` is the changelist index of a column sortable by
#: status (``?o=``). Today's admin has none: there ``o={status_column}`` and
#: ``o=-{status_column}`` become the default page ordered by today's derived status
#: (``derived_status_order``, patched in for the read: what sorting would cost today); any
#: other page that needs the column is skipped. Add a line to time another page.
ADMIN_PAGES = {
    "admin: default page": ("", False),
    "admin: ?status=down": ("status=down", False),
    "admin: sorted by status": ("o={status_column}", True),
    "admin: sorted by status, desc": ("o=-{status_column}", True),
}
#: The reads the issue sets the 10x target for (the others: figures and ratio only).
TARGET_READS = {HEALTH, SNAPSHOT} | {label for label, (_, t) in ADMIN_PAGES.items() if t}

# Data shape (see the docstring).
DENSE = 60  # the newest results of a check, one a minute apart
DAYS = 7
FAILURES_BEFORE_DOWN = 3


# --------------------------------------------------------------------------------------------
# Parent: two children per database, driven in alternation; then the table.
# --------------------------------------------------------------------------------------------


def python_for(checkout: Path) -> str:
    venv = checkout / ".venv" / "bin" / "python"
    return str(venv) if venv.exists() else sys.executable


def git_state(checkout: Path) -> dict:
    def git(*args: str) -> str:
        done = subprocess.run(
            ["git", "-C", str(checkout), *args], capture_output=True, text=True, check=False
        )
        return done.stdout.strip()

    dirty = [line for line in git("status", "--porcelain").splitlines() if line[3:] != ".venv"]
    return {
        "commit": git("rev-parse", "HEAD"),
        "branch": git("rev-parse", "--abbrev-ref", "HEAD"),
        "subject": git("log", "-1", "--format=%s"),
        "dirty": bool(dirty),
    }


@contextmanager
def private_database(vendor: str, side: str) -> Iterator[str]:
    """A DATABASE_URL for a new, empty database, dropped afterwards."""
    if vendor == "sqlite":
        with tempfile.TemporaryDirectory(prefix="bench_status_") as folder:
            yield f"sqlite:///{folder}/bench.sqlite3"
        return
    import psycopg
    from psycopg import sql

    name = sql.Identifier(f"bench_status_{os.getpid()}_{side}")
    drop = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(name)
    with psycopg.connect(POSTGRES_URL, autocommit=True) as admin:
        admin.execute(drop)
        admin.execute(sql.SQL("CREATE DATABASE {}").format(name))
    try:
        yield urlsplit(POSTGRES_URL)._replace(path=f"/{name.as_string()[1:-1]}").geturl()
    finally:
        with psycopg.connect(POSTGRES_URL, autocommit=True) as admin:
            admin.execute(drop)


class Side:
    """One checkout's child process on one database: send a command, get its answer."""

    def __init__(self, name: str, checkout: Path, url: str, args: argparse.Namespace) -> None:
        self.name, self.checkout = name, checkout
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "project.settings",
            "SECRET_KEY": "bench-only",
            "DEBUG": "false",
            "DATABASE_URL": url,
            "ALLOWED_HOSTS": "testserver,localhost,127.0.0.1",
            # Empty, not unset: a .env in the checkout must not bring Redis or a log file in.
            "REDIS_URL": "",
            "LOG_FILE": "",
            "LOG_LEVEL": "WARNING",
        }
        command = [python_for(checkout), str(HERE), "--child"]
        command += ["--checks", str(args.checks), "--results", str(args.results)]
        command += ["--batch", str(args.batch)]
        self.process = subprocess.Popen(
            command, cwd=checkout, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        self.ready = self.answer()  # the data is generated

    def answer(self) -> dict:
        for line in self.process.stdout:
            if line.startswith(MARKER):
                return json.loads(line[len(MARKER) :])
            sys.stderr.write(line)
        raise SystemExit(f"{self.name}: the child ended (exit {self.process.wait()})")

    def ask(self, **command) -> dict:
        self.process.stdin.write(json.dumps(command) + "\n")
        self.process.stdin.flush()
        return self.answer()

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.stdin.close()
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def say(text: str) -> None:
    print(f"  {text}", file=sys.stderr, flush=True)


def in_turn(sides: list[Side], round_number: int) -> list[Side]:
    """The sides in alternating order: the first one goes last in every other round."""
    return sides if round_number % 2 == 0 else sides[::-1]


def read_figures(first: dict, runs: list[dict], cap: float) -> dict:
    figures: dict = {"first_s": first["wall"], "capped": first["capped"], "url": first["url"]}
    if first["capped"] or any(r["capped"] for r in runs):
        return figures | {"capped": True, "reps": 0, "lower_bound_s": cap, "min_s": cap,
                          "median_s": None}  # fmt: skip
    walls = [r["wall"] for r in runs]
    figures |= {
        "reps": len(runs),
        "median_s": statistics.median(walls),
        "min_s": min(walls),
        "times_s": walls,
        "cpu_median_s": statistics.median(r["cpu"] for r in runs),
    }
    servers = [r["server_cpu"] for r in runs if r["server_cpu"] is not None]
    if servers:
        figures["server_cpu_median_s"] = statistics.median(servers)
    return figures


def measure_read(label: str, sides: list[Side], args: argparse.Namespace) -> dict[str, dict]:
    """A warm-up per side, then timed rounds, the sides alternating; figures by side."""
    figures: dict[str, dict] = {}
    active = []
    for side in sides:
        if label in side.ready["skipped"]:
            figures[side.name] = {"skipped": side.ready["skipped"][label]}
            say(f"{side.name} {label}: skipped ({side.ready['skipped'][label]})")
        elif label in side.ready["reads"]:
            active.append(side)
    first = {side.name: side.ask(op="read", label=label, cap=args.cap) for side in active}
    slowest = max((first[s.name]["wall"] for s in active if not first[s.name]["capped"]), default=0)
    reps = args.reps
    if slowest * reps > args.budget:
        reps = max(1, int(args.budget // slowest))
    runs: dict[str, list] = {side.name: [] for side in active}
    timed = [side for side in active if not first[side.name]["capped"]]
    for number in range(reps if timed else 0):
        for side in in_turn(timed, number):
            runs[side.name].append(side.ask(op="read", label=label, cap=args.cap))
    for side in active:
        result = read_figures(first[side.name], runs[side.name], args.cap)
        result["sanity"] = first[side.name].get("sanity", {})
        figures[side.name] = result
        if result["capped"]:
            say(f"{side.name} {label}: cut off at {args.cap:g} s")
        else:
            say(
                f"{side.name} {label}: median {result['median_s'] * 1000:,.1f} ms, min "
                f"{result['min_s'] * 1000:,.1f} ms ({result['reps']} after a warm-up of "
                f"{result['first_s'] * 1000:,.1f} ms)"
            )
    return figures


def measure_write(label: str, sides: list[Side], args: argparse.Namespace) -> dict[str, dict]:
    """A warm-up batch per side, then one batch per side per round, the sides alternating."""
    active = [side for side in sides if label in side.ready["writes"]]
    for side in active:
        side.ask(op="write", label=label)
    batches: dict[str, list[float]] = {side.name: [] for side in active}
    for number in range(max(1, args.writes // args.batch)):
        for side in in_turn(active, number):
            batches[side.name].append(side.ask(op="write", label=label)["wall"])
    figures = {}
    for side in active:
        times = batches[side.name]
        count = len(times) * args.batch
        figures[side.name] = result = {
            "results": count,
            "batch": args.batch,
            "batches": len(times),
            "seconds": sum(times),
            "ms_per_result": sum(times) * 1000 / count,
            "batch_ms_median": statistics.median(times) * 1000,
            "batch_ms_min": min(times) * 1000,
            "batch_ms": [t * 1000 for t in times],
        }
        say(
            f"{side.name} write {label}: {result['ms_per_result']:.3f} ms per result "
            f"({count:,} in batches of {args.batch}; median batch "
            f"{result['batch_ms_median']:.1f} ms)"
        )
    return figures


def run_database(vendor: str, checkouts: dict[str, Path], args: argparse.Namespace) -> dict:
    """Every measurement on one database: {side: report}."""
    with ExitStack() as stack:
        sides = []
        for name, checkout in checkouts.items():
            print(f"\n== {vendor}: {name} ({checkout})", file=sys.stderr, flush=True)
            url = stack.enter_context(private_database(vendor, name))
            side = Side(name, checkout, url, args)
            stack.callback(side.close)
            sides.append(side)
        print(f"\n== {vendor}: measuring", file=sys.stderr, flush=True)
        reports = {
            side.name: {
                "checkout": str(side.checkout),
                "git": git_state(side.checkout),
                "data": side.ready["data"],
                "loadavg_start": os.getloadavg(),
                "reads": {},
                "writes": {},
                "sanity": {},
            }
            for side in sides
        }
        labels = [label for side in sides for label in side.ready["order"]]
        for label in dict.fromkeys(labels):
            for name, figures in measure_read(label, sides, args).items():
                sanity = figures.pop("sanity", {})
                reports[name]["reads"][label] = figures
                reports[name]["sanity"] |= {f"{label}: {k}": v for k, v in sanity.items()}
        labels = [label for side in sides for label in side.ready["writes"]]
        for label in dict.fromkeys(labels):
            for name, figures in measure_write(label, sides, args).items():
                reports[name]["writes"][label] = figures
        for side in sides:
            reports[side.name]["check"] = side.ask(op="finish")
            reports[side.name]["loadavg_end"] = os.getloadavg()
        return reports


def _ms(value: float | None, lower_bound: bool = False) -> str:
    if value is None:
        return "-"
    return f"{'>=' if lower_bound else ''}{value * 1000:,.1f}"


def comparisons(vendor: str, runs: dict) -> list[dict]:
    """One row per measurement: the figures of each side and the ratio."""
    rows = []
    before, after = runs.get("before"), runs.get("after")
    labels = [label for report in runs.values() for label in report["reads"]]
    for label in dict.fromkeys(labels):
        row: dict = {"database": vendor, "measurement": label, "kind": "read"}
        row["before"] = before["reads"].get(label) if before else None
        row["after"] = after["reads"].get(label) if after else None
        b, a = row["before"], row["after"]
        if b and a and not b.get("skipped") and not a.get("skipped"):
            # How many times faster after; a "before" cut off makes it a lower bound.
            b_time = b["lower_bound_s"] if b["capped"] else b["median_s"]
            row["ratio"] = None if a["capped"] else round(b_time / a["median_s"], 2)
            row["ratio_lower_bound"] = b["capped"]
        rows.append(row)
    labels = [label for report in runs.values() for label in report["writes"]]
    for label in dict.fromkeys(labels):
        row = {"database": vendor, "measurement": f"write: {label}", "kind": "write"}
        row["before"] = before["writes"].get(label) if before else None
        row["after"] = after["writes"].get(label) if after else None
        if row["before"] and row["after"]:
            # After over before: above 1 is slower. Also the median over the rounds of the
            # two sides' batches, which a spike of other work on the machine moves less.
            row["ratio"] = round(row["after"]["ms_per_result"] / row["before"]["ms_per_result"], 3)
            pairs = zip(row["after"]["batch_ms"], row["before"]["batch_ms"], strict=True)
            row["median_round_ratio"] = round(statistics.median(a / b for a, b in pairs), 3)
        rows.append(row)
    return rows


def print_table(rows: list[dict], sides: list[str]) -> None:
    head = f"{'database':<11}{'measurement':<32}"
    for side in sides:
        head += f"{side + ' median':>16}{side + ' min':>13}{'n':>4}"
    if len(sides) == 2:
        head += f"{'ratio':>10}"
    print(head)
    for row in rows:
        line = f"{row['database']:<11}{row['measurement']:<32}"
        for side in sides:
            figures = row.get(side)
            if not figures or figures.get("skipped"):
                line += f"{'n/a':>16}{'n/a':>13}{'':>4}"
            elif row["kind"] == "read":
                cut = figures["capped"]
                median = figures["lower_bound_s"] if cut else figures["median_s"]
                line += f"{_ms(median, cut):>16}{_ms(figures['min_s'], cut):>13}"
                line += f"{figures['reps']:>4}"
            else:
                best = figures["batch_ms_min"] / figures["batch"]
                line += f"{figures['ms_per_result']:>16.3f}{best:>13.3f}{figures['batches']:>4}"
        if len(sides) == 2:
            ratio = row.get("ratio")
            mark = ">=" if row.get("ratio_lower_bound") else ""
            line += f"{'-' if ratio is None else f'{mark}{ratio}x':>10}"
        print(line)
    if any("derived" in (row.get("before") or {}).get("url", "") for row in rows):
        print(
            "before, admin sorted by status: today's admin has no such column; the default "
            "page ordered by the derived status (patched in for the read)"
        )
    print(
        "reads: ms per read; writes: ms per result (min: the fastest batch); n: timed reads or "
        "batches" + ("; ratio: reads before/after, writes after/before" if len(sides) == 2 else "")
    )


def sanity_differences(vendor: str, runs: dict) -> list[str]:
    """Before and after must see the same statuses in the same data."""
    if len(runs) < 2:
        return []
    b, a = runs["before"]["sanity"], runs["after"]["sanity"]
    return [
        f"{vendor}: {key}: before {b.get(key)}, after {a.get(key)}"
        for key in sorted(set(b) & set(a))
        if b.get(key) != a.get(key) and NOT_COMPARED not in key
    ]


def parent(args: argparse.Namespace) -> int:
    checkouts = {"before": Path(args.before).resolve()}
    if args.after:
        checkouts["after"] = Path(args.after).resolve()
    vendors = ["sqlite", "postgresql"] if args.db == "both" else [args.db]
    report: dict = {
        "benchmark": "status",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "args": {k: v for k, v in vars(args).items() if k != "child"},
        "runs": {vendor: run_database(vendor, checkouts, args) for vendor in vendors},
    }
    rows = [row for vendor in vendors for row in comparisons(vendor, report["runs"][vendor])]
    report["rows"] = rows
    print()
    for vendor in vendors:
        for name, run in report["runs"][vendor].items():
            data = run["data"]
            rebuild = f", rebuild {data['rebuild_s']:.1f} s" if data["rebuild_s"] else ""
            print(
                f"{vendor} {name}: {data['checks']:,} checks, {data['results']:,} results "
                f"({data['size_mb']:,.0f} MB); migrate {data['migrate_s']:.1f} s, generate "
                f"{data['generate_s']:.1f} s (checks {data['generate_checks_s']:.1f}, results "
                f"{data['generate_results_s']:.1f}, vacuum/checkpoint {data['analyze_s']:.1f})"
                f"{rebuild}; load {run['loadavg_start'][0]:.1f} to {run['loadavg_end'][0]:.1f}"
            )
            health = run["sanity"].get(f"{HEALTH}: statuses")
            print(f"    statuses in /health/: {health}")
    print()
    print_table(rows, list(checkouts))
    for row in rows:
        if "median_round_ratio" in row:
            print(
                f"{row['database']} {row['measurement']}: after/before "
                f"{row['ratio']}, median over the rounds {row['median_round_ratio']}"
            )
    problems = [p for vendor in vendors for p in sanity_differences(vendor, report["runs"][vendor])]
    report["sanity_differences"] = problems
    for problem in problems:
        print(f"DIFFERENT  {problem}")
    targets = {}
    for row in rows if args.after else []:
        if not row.get("before") or not row.get("after") or "ratio" not in row:
            continue
        name = f"{row['database']} {row['measurement']}"
        if row["kind"] == "read":
            if row["measurement"] not in TARGET_READS:
                continue
            ok = row["ratio"] is not None and row["ratio"] >= MIN_READ_SPEEDUP
            targets[f"{name}: at least {MIN_READ_SPEEDUP:g}x faster"] = ok
        else:
            slower = round((MAX_WRITE_SLOWDOWN - 1) * 100)
            targets[f"{name}: at most {slower} % slower"] = row["ratio"] <= MAX_WRITE_SLOWDOWN
    if targets:
        print()
    for target, ok in targets.items():
        print(f"{'PASS' if ok else 'FAIL'}  {target}")
    report["targets"] = targets
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwrote {RESULTS}")
    return 0 if all(targets.values()) and not problems else 1


# --------------------------------------------------------------------------------------------
# Child: runs in the checkout under test (cwd), with its code.
# --------------------------------------------------------------------------------------------


def send(answer: dict) -> None:
    print(MARKER + json.dumps(answer), flush=True)


def child(args: argparse.Namespace) -> int:
    checkout = Path.cwd()
    sys.path.insert(0, str(checkout))
    import django

    django.setup()
    import connections_app

    if Path(connections_app.__file__).resolve().parent.parent != checkout.resolve():
        raise SystemExit(f"connections_app comes from {connections_app.__file__}, not {checkout}")
    # Not an ERROR line for every /health/ answer: 503, the data has critical checks DOWN.
    logging.getLogger("django.request").setLevel(logging.CRITICAL)
    data = prepare(args)
    bench = Bench(args.batch)
    send(
        {
            "data": data,
            "order": bench.labels,
            "reads": list(bench.reads),
            "skipped": bench.skipped,
            "writes": list(bench.writers),
        }
    )
    for line in sys.stdin:
        command = json.loads(line)
        if command["op"] == "read":
            send(bench.read(command["label"], command["cap"]))
        elif command["op"] == "write":
            send(bench.write(command["label"]))
        elif command["op"] == "finish":
            send(bench.finish())
            break
    return 0


# ---- data ----------------------------------------------------------------------------------


def has_stored_status() -> bool:
    from connections_app.models import HealthCheck

    return any(f.name == "status" for f in HealthCheck._meta.concrete_fields)


def prepare(args: argparse.Namespace) -> dict:
    data: dict = {}
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--verbosity", "0", "--no-input"], check=True
    )
    data["migrate_s"] = time.perf_counter() - started
    say(f"migrated in {data['migrate_s']:.1f} s; generating data")
    data |= generate(args.checks, args.results)
    say(
        f"{data['checks']:,} checks, {data['results']:,} results in {data['generate_s']:.1f} s "
        f"({data['size_mb']:.0f} MB)"
    )
    data["stored_status"] = has_stored_status()
    data["rebuild_s"] = None
    if data["stored_status"]:
        try:
            from connections_app import state
        except ImportError:
            state = None
        rebuild = getattr(state, "rebuild_from_results", None)
        if rebuild is None:
            raise SystemExit("HealthCheck.status is stored but there is no rebuild_from_results")
        started = time.perf_counter()
        rebuild()
        data["rebuild_s"] = time.perf_counter() - started
        say(f"rebuild_from_results in {data['rebuild_s']:.1f} s")
    try:
        from connections_app import rollups
    except ImportError:
        rollups = None
    if rollups is not None:
        # The figures beside each check are read from rollups, which a runner writes with its
        # results: built from the generated results, as the data migration does.
        started = time.perf_counter()
        rollups.rebuild()
        data["rollups_s"] = time.perf_counter() - started
        say(f"rollups.rebuild in {data['rollups_s']:.1f} s")
    try:
        from connections_app import closed_totals
    except ImportError:
        closed_totals = None
    if closed_totals is not None:
        # What a runner's housekeeping makes within 30 s of a new hour or a start: the totals
        # of ended periods that every list's figures read (the reads find none without it).
        started = time.perf_counter()
        closed_totals.refresh()
        data["closed_totals_s"] = time.perf_counter() - started
        say(f"closed_totals.refresh in {data['closed_totals_s']:.1f} s")
    return data


def _sql_value(field, connection):
    """A model field's default as the database takes it (for columns the generator does not
    know: the new fields of another checkout)."""
    value = field.get_default() if field.has_default() or not field.null else None
    return field.get_db_prep_save(value, connection)


def _insert(table_model, generated: dict[str, str], source: str, cte: str = "") -> tuple:
    """``INSERT ... SELECT``: the generated expressions, and every other column its default."""
    from django.db import connection

    columns, values, params = [], [], []
    for field in table_model._meta.concrete_fields:
        if field.primary_key:
            continue
        columns.append(connection.ops.quote_name(field.column))
        if field.column in generated:
            values.append(generated[field.column])
        else:
            values.append("%s")
            params.append(_sql_value(field, connection))
    table = connection.ops.quote_name(table_model._meta.db_table)
    sql = f"INSERT INTO {table} ({', '.join(columns)}) {cte} SELECT {', '.join(values)} {source}"
    return sql, params


def generate(n_checks: int, n_results: int) -> dict:
    """The checks and their results, in a few statements (``%%`` is SQL's modulo)."""
    from django.db import connection

    from connections_app.models import CheckResult, HealthCheck

    pg = connection.vendor == "postgresql"
    now = int(time.time())

    def ts(expr: str) -> str:
        if pg:
            return f"to_timestamp(({expr})::double precision)"
        return f"datetime({expr}, 'unixepoch')"

    def series(name: str, last: int) -> tuple[str, str]:
        """(CTE, FROM item) for the integers 0..last in column ``name``."""
        if pg:
            return "", f"generate_series(0, {last}) AS s_{name}({name})"
        cte = (
            f"WITH RECURSIVE s_{name}({name}) AS (SELECT 0 UNION ALL "
            f"SELECT {name} + 1 FROM s_{name} WHERE {name} < {last})"
        )
        return cte, f"s_{name}"

    http = "n %% 10 < 7"
    checks = {
        "name": "'check-' || " + ("lpad(n::text, 5, '0')" if pg else "substr('00000' || n, -5)"),
        "kind": f"CASE WHEN {http} THEN 'http' ELSE 'tcp' END",
        "target": f"CASE WHEN {http} THEN 'https://svc-' || n || '.example.com/health' "
        "ELSE 'db-' || n || '.internal:5432' END",
        "interval": "60.0",
        "timeout": "5.0",
        "failures_before_down": str(FAILURES_BEFORE_DOWN),
        "expected_status_min": "200",
        "expected_status_max": "399",
        "expected_body": "''",
        "enabled": "(n %% 100 <> 3)",
        "critical": "(n %% 4 <> 3)",
        "tags": "CASE n %% 5 WHEN 0 THEN 'api,prod' WHEN 1 THEN 'db,prod' WHEN 2 THEN 'edge' "
        "WHEN 3 THEN '' ELSE 'internal,payments' END",
        "next_due_at": ts(f"{now} + n %% 60"),
        "created_at": ts(f"{now} - {(DAYS + 1) * 86400}"),
        "updated_at": ts(f"{now} - {(DAYS + 1) * 86400}"),
    }
    data: dict = {}
    started = time.perf_counter()
    cte, source = series("n", n_checks - 1)
    if any(f.column == "badge_token" for f in HealthCheck._meta.concrete_fields):
        checks["badge_token"] = "'bench-badge-' || n"  # unique per check (the public page)
    sql, params = _insert(HealthCheck, checks, f"FROM {source}", cte)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
    data["generate_checks_s"] = time.perf_counter() - started

    per_check, extra = divmod(n_results, n_checks)
    dense = min(per_check, DENSE)
    spread = DAYS * 86400 - dense * 60
    spacing = spread // max(1, per_check + 1 - dense)
    # A check's results: j = 0 the newest. The newest within the last minute.
    offset = f"(n %% 60) + CASE WHEN j < {dense} THEN j * 60 ELSE {dense * 60} + (j - {dense - 1}) * {spacing} END"  # noqa: E501
    failed = (
        "(n %% 100 = 0"  # DOWN all week
        " OR (n %% 100 = 1 AND j < 10)"  # DOWN for the last ten results
        " OR (n %% 200 = 2 AND j < 1) OR (n %% 200 = 102 AND j < 2)"  # DEGRADED
        " OR (j >= 10 AND (n * 7 + j * 13) %% 97 = 0))"  # now and then, long ago
    )
    number = "CAST(substr(c.name, 7) AS INTEGER)"
    # Two levels: n first, then what depends on it.
    inner = (
        f"SELECT check_id, kind, n, j, {offset} AS offset_s, {failed} AS failed FROM "
        f"(SELECT c.id AS check_id, c.kind AS kind, {number} AS n, j "
        f"FROM {HealthCheck._meta.db_table} c, SERIES "
        "WHERE substr(c.name, 1, 6) = 'check-') AS numbered "
        f"WHERE j < {per_check} + CASE WHEN n < {extra} THEN 1 ELSE 0 END"
    )
    cte, source = series("j", per_check + (1 if extra else 0) - 1)
    inner = inner.replace("SERIES", source)
    results = {
        "health_check_id": "check_id",
        "checked_at": ts(f"{now} - offset_s"),
        "ok": "NOT failed",
        "latency_ms": "CASE WHEN failed THEN NULL ELSE ((n * 31 + j * 17) %% 250) + 5.5 END",
        "http_status": "CASE WHEN NOT failed AND kind = 'http' THEN 200 ELSE NULL END",
        "error_category": "CASE WHEN NOT failed THEN '' WHEN n %% 2 = 0 THEN 'timeout' "
        "ELSE 'refused' END",
        "error_message": "CASE WHEN NOT failed THEN '' WHEN n %% 2 = 0 "
        "THEN 'TimeoutError: no answer within 5.0 s' "
        "ELSE 'ConnectionRefusedError: [Errno 111] Connection refused' END",
    }
    started = time.perf_counter()
    sql, params = _insert(
        CheckResult, results, f"FROM ({inner}) AS generated ORDER BY offset_s DESC", cte
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
    data["generate_results_s"] = time.perf_counter() - started

    started = time.perf_counter()
    with connection.cursor() as cursor:
        if pg:
            # What autovacuum does soon after a bulk load: statistics and the visibility map.
            for model in (HealthCheck, CheckResult):
                cursor.execute(f"VACUUM ANALYZE {model._meta.db_table}")
        else:
            # SQLite: no ANALYZE (the application never runs it); fold the WAL back in.
            cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    data["analyze_s"] = time.perf_counter() - started
    data["generate_s"] = data["generate_checks_s"] + data["generate_results_s"] + data["analyze_s"]
    data["checks"] = HealthCheck.objects.count()
    data["bench_checks"] = n_checks
    data["results"] = CheckResult.objects.count()
    data["results_per_check"] = per_check
    data["dense_results"] = dense
    data["spread_spacing_s"] = spacing
    if data["results"] != n_results:
        raise SystemExit(f"generated {data['results']} results, not {n_results}")
    with connection.cursor() as cursor:
        if pg:
            cursor.execute("SELECT pg_database_size(current_database())")
            size = cursor.fetchone()[0]
        else:
            name = Path(connection.settings_dict["NAME"])
            size = sum(p.stat().st_size for p in name.parent.glob(name.name + "*"))
    data["size_mb"] = size / 1e6
    return data


# ---- cut-off -------------------------------------------------------------------------------


class Canceller:
    """Stops the running query of the main thread's database connection after ``cap`` seconds.

    The connection open as the read starts, or one made meanwhile (``connection_created``);
    SQLite's ``interrupt()`` and psycopg's ``cancel_safe()`` may be called from another thread.
    """

    def __init__(self) -> None:
        from django.db.backends.signals import connection_created

        self.raw = None
        self.fired = False
        connection_created.connect(self._created, weak=False)

    def _created(self, sender, connection, **kwargs) -> None:
        if threading.current_thread() is threading.main_thread():
            self.raw = connection.connection

    def _fire(self) -> None:
        self.fired = True
        raw = self.raw
        if raw is None:
            return
        if hasattr(raw, "interrupt"):
            raw.interrupt()
        elif hasattr(raw, "cancel_safe"):
            raw.cancel_safe(timeout=10)
        else:
            raw.cancel()

    @contextmanager
    def after(self, cap: float) -> Iterator[None]:
        from django.db import connection

        self.fired = False
        # The open connection (the test client keeps it between requests); a new one made
        # meanwhile replaces it through ``connection_created``.
        self.raw = connection.connection
        timer = threading.Timer(cap, self._fire)
        timer.daemon = True
        timer.start()
        try:
            yield
        finally:
            timer.cancel()


# ---- reads and writes ----------------------------------------------------------------------


def backend_cpu() -> float | None:
    """CPU seconds the PostgreSQL server process of our connection has spent (None: SQLite)."""
    from django.db import connection

    if connection.vendor != "postgresql":
        return None
    try:
        from proc_stats import cpu_seconds  # bench/ of the checkout that holds this script

        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            return cpu_seconds(cursor.fetchone()[0])
    except (ImportError, OSError):
        return None


def status_column(request) -> int | None:
    """The changelist index (``?o=``) of a column sortable by status, or None."""
    from django.contrib import admin

    from connections_app.models import HealthCheck

    model_admin = admin.site._registry[HealthCheck]
    columns = list(model_admin.get_list_display(request))
    if model_admin.get_actions(request):
        columns.insert(0, "action_checkbox")  # as ModelAdmin.get_changelist_instance does
    stored = has_stored_status()
    for index, name in enumerate(columns):
        if name == "status" and stored:
            return index
        attr = name if callable(name) else getattr(model_admin, name, None)
        order = getattr(attr, "admin_order_field", None)
        if order is not None and "status" in str(order):
            return index
    return None


def changelist_rows(content: bytes) -> int | None:
    """The row count the changelist's paginator shows ("123 health checks")."""
    match = re.search(rb"([\d,]+) health checks?\s*</", content)
    return int(match.group(1).replace(b",", b"")) if match else None


def first_row_status(response) -> dict:
    """The status badge of a sorted page's first row (the sides may sort differently)."""
    match = re.search(rb'class="ch-status"[^>]*>([^<]+)<', response.content)
    return {f"first row {NOT_COMPARED}": match.group(1).decode() if match else None}


def derived_status_order(descending: bool):
    """ORDER BY today's derived status (``derive_status`` in SQL over ``with_status()``'s
    annotations), by name: the cost of a changelist sorted by status today."""
    from django.db.models import Case, CharField, F, Value, When

    from connections_app import models

    status = Case(
        When(enabled=False, then=Value(models.PAUSED)),
        When(last_checked_at__isnull=True, then=Value(models.UNKNOWN)),
        When(failures_in_a_row=0, then=Value(models.UP)),
        When(failures_in_a_row__gte=F("failures_before_down"), then=Value(models.DOWN)),
        default=Value(models.DEGRADED),
        output_field=CharField(),
    )
    return status.desc() if descending else status.asc()


def statuses(checks: list[dict]) -> dict[str, int]:
    return dict(sorted(Counter(c["status"] for c in checks).items()))


def health_sanity(response) -> dict:
    body = json.loads(response.content)
    # The counts anyone gets since the stored state, or every check's detail.
    counted = body.get("counts") or statuses(body["checks"])
    return {
        "http_status": response.status_code,
        "statuses": dict(sorted(counted.items())),
        "overall": body["status"],
    }


def snapshot_sanity(snapshot) -> dict:
    if hasattr(snapshot, "first"):  # a snapshot in frames: its checks, already JSON text
        texts = [*snapshot.first, *(text for part in snapshot.parts for text in part)]
        snapshot = {"checks": [json.loads(text) for text in texts]}
    uptimes = [c["uptime_24h"] for c in snapshot["checks"] if c["uptime_24h"] is not None]
    return {
        "statuses": statuses(snapshot["checks"]),
        "recent points": sum(len(c["recent"]) for c in snapshot["checks"]),
        "mean uptime": round(sum(uptimes) / len(uptimes), 6) if uptimes else None,
    }


def write_paths() -> dict[str, Callable[[list], None]]:
    """The checkout's ways to store a batch of outcomes, by label: each stores the batch and
    raises if any was not stored. A new write API gets its branch here.

    Before the stored state (connections_app.monitor): ``write_outcomes`` (insert, read back
    the affected checks with their status) and ``ResultWriter.flush``, the runner's path: that,
    plus the status-change log lines and the events it publishes (to nobody here: the
    in-memory channel layer with no server).
    """
    import asyncio

    from connections_app import monitor

    paths: dict[str, Callable[[list], None]] = {}
    if hasattr(monitor, "write_outcomes"):
        paths["write_outcomes"] = monitor.write_outcomes
    else:
        # The stored state: store the results and move the state in one transaction; nothing
        # is read back. The same step of the runner, under the same label.
        from connections_app.results import store_outcomes

        paths["write_outcomes"] = store_outcomes
    if hasattr(monitor, "ResultWriter"):
        writer = monitor.ResultWriter()
        loop = asyncio.new_event_loop()

        def flush(outcomes: list) -> None:
            for outcome in outcomes:
                writer.add(outcome)
            before = writer.written
            loop.run_until_complete(writer.flush())
            if writer.written - before != len(outcomes) or writer.dropped:
                stored = writer.written - before
                raise RuntimeError(
                    f"ResultWriter stored {stored} of {len(outcomes)}, dropped {writer.dropped}"
                )

        paths["ResultWriter.flush"] = flush
    if not paths:
        raise SystemExit("no write path in connections_app.monitor: add one to write_paths")
    return paths


def make_outcome(check, ok: bool, checked_at):
    """One probe outcome for ``check``, as the runner hands it to the writer."""
    from connections_app.errors import ErrorCategory
    from connections_app.monitor import Outcome
    from connections_app.probes import ProbeResult

    if ok:
        result = ProbeResult.success(1.0)
    else:
        result = ProbeResult.failure(ErrorCategory.TIMEOUT, "TimeoutError: no answer")
    return Outcome(check=check, result=result, checked_at=checked_at)


class Bench:
    """The child's side: what it can read and write, one measurement per command."""

    def __init__(self, batch: int) -> None:
        import random

        from django.contrib import admin
        from django.contrib.auth import get_user_model
        from django.test import Client, RequestFactory
        from django.utils import timezone

        from connections_app.models import CheckResult, HealthCheck
        from realtime.limits import limits
        from realtime.snapshot import build_snapshot

        try:  # what the dashboard watches: every check (a checkout before Watch took None)
            from realtime.protocol import EVERY
        except ImportError:
            EVERY = None

        self.canceller = Canceller()
        user = get_user_model().objects.create_superuser("bench", "bench@example.com", None)
        anonymous = Client(raise_request_exception=True)
        staff = Client(raise_request_exception=True)
        staff.force_login(user)
        limit = limits()
        #: label: (url or description, read, sanity of what it read or None)
        self.reads: dict[str, tuple] = {
            HEALTH: ("/health/", lambda: anonymous.get("/health/"), health_sanity),
            HEALTH_STAFF: ("/health/", lambda: staff.get("/health/"), health_sanity),
            SNAPSHOT: (
                "build_snapshot(EVERY, limits())",
                lambda: build_snapshot(EVERY, limit),
                snapshot_sanity,
            ),
        }
        self.skipped: dict[str, str] = {}
        request = RequestFactory().get(ADMIN_LIST)
        request.user = user
        column = status_column(request)
        model_admin = admin.site._registry[HealthCheck]
        for label, (query, _target) in ADMIN_PAGES.items():
            url, ordering = ADMIN_LIST, None
            derived = re.fullmatch(r"o=(-?)\{status_column\}", query)
            if column is not None or "{status_column}" not in query:
                url += "?" + query.format(status_column=column) if query else ""
            elif derived:
                ordering = derived_status_order(descending=bool(derived.group(1)))
                url += f" ordered by today's derived status{' desc' if derived.group(1) else ''}"
            else:
                self.skipped[label] = "no column sortable by status"
                continue

            def get(path: str = url.split()[0], ordering=ordering):
                if ordering is not None:
                    model_admin.get_ordering = lambda request: [ordering]
                try:
                    response = staff.get(path)
                finally:
                    model_admin.__dict__.pop("get_ordering", None)
                if response.status_code != 200:
                    raise RuntimeError(f"{path}: HTTP {response.status_code}")
                return response

            if "{status_column}" in query:  # the default page's rows in another order
                sanity = first_row_status
            else:
                sanity = lambda r: {"rows": changelist_rows(r.content)}  # noqa: E731
            self.reads[label] = (url, get, sanity)
        self.labels = [*self.reads, *self.skipped]
        order = [HEALTH, HEALTH_STAFF, SNAPSHOT, *ADMIN_PAGES]
        self.labels.sort(key=order.index)
        self.read_before: set[str] = set()

        self.writers = write_paths()
        self.batch = batch
        self.checks = list(HealthCheck.objects.filter(name__startswith="check-").order_by("pk"))
        random.Random(10).shuffle(self.checks)
        self.results_at_start = CheckResult.objects.count()
        self.base = timezone.now() + timedelta(seconds=1)
        self.sequence = 0

    def read(self, label: str, cap: float) -> dict:
        """One read, timed: wall and CPU seconds; ``capped`` when cut off at ``cap``."""
        from django.db import DatabaseError

        from connections_app.db.fail_fast import fail_fast

        url, call, sanity = self.reads[label]
        server_before = backend_cpu()
        cpu = time.process_time()
        started = time.perf_counter()
        outcome = None
        try:
            # Fail at once on an error, as a web request does: no retry inside a timing, and
            # a cancelled query is not run again.
            with self.canceller.after(cap), fail_fast():
                outcome = call()
        except DatabaseError:
            if not self.canceller.fired:
                raise
        wall = time.perf_counter() - started
        cpu = time.process_time() - cpu
        # /health/ answers its own 503 when its query fails: cut off too.
        cut = outcome is None or b"database unavailable" in getattr(outcome, "content", b"")
        capped = self.canceller.fired and cut
        server_after = backend_cpu()
        answer = {
            "url": url,
            "wall": wall,
            "cpu": cpu,
            "server_cpu": None if server_before is None else server_after - server_before,
            "capped": capped,
        }
        if label not in self.read_before and not capped and sanity is not None:
            answer["sanity"] = sanity(outcome)
        self.read_before.add(label)
        return answer

    def write(self, label: str) -> dict:
        """One batch through write path ``label``: distinct checks as far as there are (a
        runner's batch), every 50th result a failure, each newer than all before it."""
        outcomes = []
        for _ in range(self.batch):
            check = self.checks[self.sequence % len(self.checks)]
            at = self.base + timedelta(milliseconds=self.sequence)
            outcomes.append(make_outcome(check, ok=self.sequence % 50 != 49, checked_at=at))
            self.sequence += 1
        started = time.perf_counter()
        self.writers[label](outcomes)
        return {"wall": time.perf_counter() - started}

    def finish(self) -> dict:
        from connections_app.models import CheckResult

        stored = CheckResult.objects.count() - self.results_at_start
        if stored != self.sequence:
            raise SystemExit(f"wrote {self.sequence} results, {stored} stored")
        return {"results_written": stored}


# --------------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", help="checkout of today's code (status derived)")
    parser.add_argument("--after", help="checkout with the change (status stored)")
    parser.add_argument("--db", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--checks", type=int, default=10_000)
    parser.add_argument("--results", type=int, default=1_000_000)
    parser.add_argument("--writes", type=int, default=2_000, help="results per write path")
    parser.add_argument("--batch", type=int, default=200, help="the runner's BATCH_SIZE")
    parser.add_argument("--reps", type=int, default=5, help="timed reads after a warm-up")
    parser.add_argument("--budget", type=float, default=60.0, help="seconds of timed reads")
    parser.add_argument("--cap", type=float, default=120.0, help="a read's cut-off, seconds")
    parser.add_argument("--quick", action="store_true", help="1,000 checks, 50,000 results")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.db == "postgres":
        args.db = "postgresql"
    if args.quick:
        args.checks, args.results = 1_000, 50_000
    if not 1 <= args.checks <= 99_999 or args.results < args.checks:
        parser.error("--checks from 1 to 99,999, and at least one result per check")
    if args.child:
        return child(args)
    if not args.before:
        parser.error("--before is required")
    return parent(args)


if __name__ == "__main__":
    sys.exit(main())
