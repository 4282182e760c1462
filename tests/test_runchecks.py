"""``manage.py runchecks`` as scripts use it: a child process, a file database, real targets."""

from __future__ import annotations

import fcntl
import json
import os
import re
import select
import signal
import sqlite3
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.conftest import REPO, manage, refusing_port, start_manage, wait_until
from tests.http_targets import HttpTarget


@pytest.fixture
def target(http_target: HttpTarget) -> HttpTarget:
    return http_target


def import_checks(env: dict, checks: list[dict]) -> None:
    run = manage(env, "importchecks", "-", stdin=json.dumps(checks))
    assert run.returncode == 0, run.stderr


def check(name: str, target: str, kind: str = "http", **fields) -> dict:
    return {"name": name, "kind": kind, "target": target, "interval": 10, "timeout": 2} | fields


def run_once_json(env: dict, *args: str) -> tuple[int, dict]:
    run = manage(env, "runchecks", "--once", "--format", "json", *args)
    assert run.stdout, run.stderr
    return run.returncode, json.loads(run.stdout)


def results_in(env: dict) -> list[tuple]:
    path = env["DATABASE_URL"].removeprefix("sqlite:///")
    with sqlite3.connect(path) as db:
        return db.execute(
            "select c.name, r.ok, r.error_category from connections_app_checkresult r "
            "join connections_app_healthcheck c on c.id = r.health_check_id"
        ).fetchall()


def test_exit_0_when_all_selected_checks_are_up(sqlite_file_env, target):
    env = sqlite_file_env
    import_checks(env, [check("api", target.url("/ok")), check("body", target.url("/body"))])
    code, report = run_once_json(env, "--check", "api", "--check", "body")
    assert code == 0
    assert report["status"] == "up"
    assert {c["name"]: c["status"] for c in report["checks"]} == {"api": "up", "body": "up"}
    assert all(c["latency_ms"] > 0 for c in report["checks"])
    assert all(c["latency_ms"] == round(c["latency_ms"], 2) for c in report["checks"])
    # History from the rollups written with this run's results.
    assert all(c["uptime"]["24h"] == 100.0 == c["uptime"]["90d"] for c in report["checks"])
    assert all(c["latency_24h"]["p95"] > 0 for c in report["checks"])


def test_exit_1_when_a_check_is_degraded(sqlite_file_env, target):
    env = sqlite_file_env
    import_checks(env, [check("flaky", target.url("/status/500"), failures_before_down=3)])
    code, report = run_once_json(env, "--check", "flaky")
    assert code == 1
    row = report["checks"][0]
    assert row["status"] == "degraded"
    assert (row["error_category"], row["http_status"]) == ("http_5xx", 500)


def test_exit_2_when_a_check_is_down(sqlite_file_env, target):
    env = sqlite_file_env
    closed = refusing_port()
    checks = [
        check("api", target.url("/ok")),
        check("refused", f"127.0.0.1:{closed}", kind="tcp", failures_before_down=1),
    ]
    import_checks(env, checks)
    code, report = run_once_json(env, "--check", "api", "--check", "refused")
    assert code == 2
    assert report["status"] == "down"
    assert {c["name"]: c["error_category"] for c in report["checks"]}["refused"] == "refused"


PING = """
from django.utils import timezone
from connections_app.models import HealthCheck
from connections_app.push import record_ping
record_ping(HealthCheck.objects.get(name="backup"), "fail", b"disk full", timezone.now())
"""


def test_push_checks_are_reported_as_their_last_ping_left_them(sqlite_file_env):
    # Never probed: a job that reported within its period has nothing new to say, but the
    # report of the round still says what it last said (a failure: exit 2).
    env = sqlite_file_env
    jobs = [check("backup", "cron on db1", kind="push", interval=3600)]
    import_checks(env, jobs + [check("fresh", "cron on db2", kind="push", interval=3600)])
    assert manage(env, "shell", "-c", PING).returncode == 0
    code, report = run_once_json(env, "--check", "backup", "--check", "fresh")
    assert code == 2 and report["status"] == "down"
    rows = {row["name"]: row for row in report["checks"]}
    assert (rows["backup"]["status"], rows["backup"]["error_category"]) == ("down", "reported")
    assert (rows["fresh"]["status"], rows["fresh"]["error_message"]) == ("unknown", "no ping yet")
    table = manage(env, "runchecks", "--once")
    assert table.returncode == 2
    assert "reported: the job reported a failure" in table.stdout
    # The ping's result, nothing stored for the push checks by the rounds.
    assert [r for r in results_in(env) if r[0] in ("backup", "fresh")] == [
        ("backup", 0, "reported")
    ]


def test_exit_3_on_usage_errors(sqlite_file_env):
    run = manage(sqlite_file_env, "runchecks", "--once", "--check", "nosuch")
    assert run.returncode == 3
    assert "no check named 'nosuch'" in run.stderr
    assert "Traceback" not in run.stderr
    run = manage(sqlite_file_env, "runchecks", "--once", "--tag", "nosuch")
    assert run.returncode == 3
    run = manage(sqlite_file_env, "runchecks", "--check", "x")
    assert run.returncode == 3 and "--check goes with --once" in run.stderr
    run = manage(sqlite_file_env, "runchecks", "--format", "json")
    assert run.returncode == 3 and "--format goes with --once" in run.stderr
    assert "--check" not in run.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--once", "--format", "xml"], "argument --format: invalid choice: 'xml'"),
        (["--bogus"], "unrecognized arguments: --bogus"),
        (["--concurrency", "x"], "argument --concurrency: expected a whole number, got 'x'"),
        (["--once", "--concurrency", "0"], "argument --concurrency: must be 1 or more, got 0"),
        (["--once", "--verbosity", "7"], "argument -v/--verbosity: invalid choice: 7"),
    ],
)
def test_a_command_line_mistake_exits_3_with_the_usage_not_2(sqlite_file_env, args, message):
    # 2 means "some check down" to a script: a typo must not look like an outage.
    run = manage(sqlite_file_env, "runchecks", *args)
    assert run.returncode == 3, run.stderr
    assert run.stderr.startswith("usage: manage.py runchecks ")
    assert f"manage.py runchecks: error: {message}" in run.stderr
    assert run.stdout == ""


def test_help_documents_every_exit_code_and_paused_checks(sqlite_file_env):
    run = manage(sqlite_file_env, "runchecks", "--help")
    assert run.returncode == 0, run.stderr
    text = " ".join(run.stdout.split())
    for code in ("0 (all up)", "1 (some degraded)", "2 (some down)", "3 (usage", "130 or 143"):
        assert code in text
    assert "a paused (disabled) check named here runs too" in text
    assert "checks running at once in all (default: half the limit of open files" in text


def test_exit_3_when_the_database_is_unusable(sqlite_file_env, tmp_path):
    env = sqlite_file_env | {"DATABASE_URL": f"sqlite:///{tmp_path}/missing/dir/db.sqlite3"}
    run = manage(env, "runchecks", "--once")
    assert run.returncode == 3
    assert "Traceback" not in run.stderr


@pytest.mark.parametrize("once", [["--once"], []], ids=["once", "loop"])
def test_a_database_never_migrated_is_one_line_with_exit_3(sqlite_file_env, tmp_path, once):
    env = sqlite_file_env | {"DATABASE_URL": f"sqlite:///{tmp_path}/empty.sqlite3"}
    run = manage(env, "runchecks", *once, timeout=30)
    assert run.returncode == 3, run.stderr
    assert run.stderr.strip().splitlines() == [
        "CommandError: the database has no table connections_app_healthcheck: "
        "run `manage.py migrate`"
    ]


def test_a_paused_check_named_with_check_runs_and_is_judged_as_if_enabled(sqlite_file_env, target):
    env = sqlite_file_env
    closed = f"http://127.0.0.1:{refusing_port()}/"
    checks = [
        check("fresh fail", closed, enabled=False, failures_before_down=1),
        check("paused flaky", closed, enabled=False, failures_before_down=3),
        check("paused up", target.url("/ok"), enabled=False),
    ]
    import_checks(env, checks)
    code, report = run_once_json(env, "--check", "fresh fail")
    assert code == 2
    row = report["checks"][0]
    assert (row["status"], row["enabled"], row["error_category"]) == ("down", False, "refused")
    assert report["status"] == "down"
    code, report = run_once_json(env, "--check", "paused flaky", "--check", "paused up")
    assert code == 1
    assert {c["name"]: c["status"] for c in report["checks"]} == {
        "paused flaky": "degraded",
        "paused up": "up",
    }
    table = manage(env, "runchecks", "--once", "--check", "fresh fail")
    assert table.returncode == 2
    assert table.stdout.splitlines()[1].split()[:3] == ["fresh", "fail", "http"]
    assert "DOWN" in table.stdout.splitlines()[1] and "PAUSED" not in table.stdout
    # Still paused for everything else: a run without --check leaves it out.
    import_checks(env, [check("api", target.url("/ok"))])
    _code, report = run_once_json(env)
    names = {c["name"] for c in report["checks"]}
    assert "api" in names and not names & {"fresh fail", "paused flaky", "paused up"}


def _details(table: str) -> dict[str, str]:
    """The DETAIL column of a runchecks table, by check name."""
    lines = table.splitlines()
    header, rows = lines[0], lines[1 : lines.index("")]
    kind, detail = header.index("KIND"), header.index("DETAIL")
    return {row[:kind].rstrip(): row[detail:] for row in rows}


def test_a_long_detail_is_cut_between_words_and_json_keeps_it_whole(sqlite_file_env, target):
    env = sqlite_file_env
    wordy = "the service answered with " + " ".join(f"word{i}" for i in range(20))
    checks = [
        # The walkthrough's case: a refusal message that ran past the cut by a few characters.
        check("refused", f"http://127.0.0.1:{refusing_port()}/"),
        check("wordy", target.url("/ok"), expected_body=wordy),
    ]
    import_checks(env, checks)
    names = ["--check", "refused", "--check", "wordy"]
    table = manage(env, "runchecks", "--once", *names).stdout
    _code, report = run_once_json(env, *names)
    full = {c["name"]: f"{c['error_category']}: {c['error_message']}" for c in report["checks"]}
    assert wordy in full["wordy"]  # the JSON document has every word
    details = _details(table)
    assert set(details) == {"refused", "wordy"}
    for name, detail in details.items():
        if len(full[name]) <= 120:
            assert detail == full[name]
            continue
        assert len(detail) <= 120 and detail.endswith("...")
        head = detail.removesuffix("...")
        assert full[name].startswith(head)
        # Cut where a word ends: what follows in the full text starts at a separator.
        assert full[name][len(head)] in " ,;:", (name, detail)
    assert details["wordy"].endswith("...")


@pytest.mark.parametrize(
    ("text", "width", "expected"),
    [
        ("short enough", 20, "short enough"),
        ("one two three four", 12, "one two..."),
        ("a, b, c, d, e, f", 10, "a, b..."),  # no dangling comma before the ellipsis
        ("x" * 30, 20, "x" * 17 + "..."),  # a single word longer than the line: cut inside
        ("line\none   two", 20, "line one two"),  # always one line
    ],
)
def test_shorten_cuts_between_words(text, width, expected):
    from connections_app.runchecks_output import shorten

    assert shorten(text, width) == expected
    assert len(shorten(text, width)) <= width


def test_json_goes_to_stdout_alone_and_the_table_is_readable(sqlite_file_env, target):
    env = sqlite_file_env
    import_checks(env, [check("api", target.url("/ok"))])
    run = manage(env, "runchecks", "--once", "--check", "api", "--format", "json")
    json.loads(run.stdout)  # nothing but the document
    table = manage(env, "runchecks", "--once", "--check", "api").stdout
    assert table.splitlines()[0].split() == ["CHECK", "KIND", "STATUS", "LATENCY", "DETAIL"]
    assert "api" in table and "UP" in table and "overall UP" in table


def test_the_self_checks_pass_on_the_embedded_default(sqlite_file_env):
    code, report = run_once_json(sqlite_file_env, "--tag", "self")
    assert code == 0, report
    kinds = sorted(c["kind"] for c in report["checks"])
    assert kinds == ["channel_layer", "database"]


def signal_twice(child, sig: signal.Signals) -> str:
    """Send ``sig``, wait (bounded) until the child says it took it, send it again; the stderr
    read so far. Two signals sent back to back may arrive as one."""
    child.send_signal(sig)
    said = ""
    deadline = time.monotonic() + 15
    while "send it again" not in said:
        assert time.monotonic() < deadline, f"no answer to the first {sig.name}: {said!r}"
        line = child.stderr.readline()
        assert line, f"stderr closed before the first {sig.name} was taken: {said!r}"
        said += line
    child.send_signal(sig)
    return said


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_during_once_lets_running_checks_finish_and_loses_no_result(
    sqlite_file_env, target, sig
):
    env = sqlite_file_env
    checks = [check(f"fast {i}", target.url("/ok")) for i in range(3)]
    checks.append(check("slow", target.url("/slow/3"), timeout=5))  # seconds for the signal
    checks.append(check("waiting", target.url("/ok")))  # after "slow" in name order
    import_checks(env, checks)
    names = [arg for c in checks for arg in ("--check", c["name"])]
    # One at a time, in name order: the fast ones have finished when the slow one starts.
    child = start_manage(env, "runchecks", "--once", "--concurrency", "1", *names)
    try:
        wait_until(lambda: target.hits.get("/slow/3", 0) >= 1, child)
        child.send_signal(sig)
        out, err = child.communicate(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.communicate()
    assert child.returncode == 0, err
    assert f"runchecks: {sig.name}: letting the running checks finish" in err
    assert f"runchecks: stopped by {sig.name}; 4 results stored" in err
    assert "Traceback" not in err
    assert out == ""  # no report of a run cut short
    stored = sorted(results_in(env))
    assert stored == [(f"fast {i}", 1, "") for i in range(3)] + [("slow", 1, "")]


@pytest.mark.parametrize(
    ("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["SIGINT", "SIGTERM"]
)
def test_a_second_signal_abandons_running_checks_and_stores_what_finished(
    sqlite_file_env, target, sig, code
):
    env = sqlite_file_env
    checks = [check(f"fast {i}", target.url("/ok")) for i in range(3)]
    checks.append(check("stalled", target.url("/stall"), timeout=20, interval=60))  # never answers
    import_checks(env, checks)
    names = [arg for c in checks for arg in ("--check", c["name"])]
    child = start_manage(env, "runchecks", "--once", "--concurrency", "1", *names)
    try:
        wait_until(lambda: target.hits.get("/stall", 0) >= 1, child)
        signalled = time.monotonic()
        said = signal_twice(child, sig)
        out, err = child.communicate(timeout=30)
        err = said + err
        elapsed = time.monotonic() - signalled
    finally:
        if child.poll() is None:
            child.kill()
            child.communicate()
    assert child.returncode == code, err
    assert elapsed < 10, f"took {elapsed:.1f} s: the 20 s probe was waited out, not abandoned"
    assert f"runchecks: interrupted by {sig.name}; 3 results stored" in err
    assert "Traceback" not in err
    assert out == ""
    assert sorted(results_in(env)) == [(f"fast {i}", 1, "") for i in range(3)]


def test_results_that_cannot_be_stored_outrank_a_signal(sqlite_file_env, target):
    # Stopped by a signal, but the result was lost: exit 3, never the 0 a script reads as "up".
    env = sqlite_file_env | {"SQLITE_BUSY_TIMEOUT": "0.2"}
    import_checks(env, [check("slow", target.url("/slow/3"), timeout=5)])
    path = env["DATABASE_URL"].removeprefix("sqlite:///")
    child = start_manage(env, "runchecks", "--once", "--check", "slow")
    holder = sqlite3.connect(path, isolation_level=None, timeout=5)
    try:
        wait_until(lambda: target.hits.get("/slow/3", 0) >= 1, child)
        holder.execute("begin immediate")  # every writer is locked out until the child ends
        child.send_signal(signal.SIGINT)
        _out, err = child.communicate(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
            child.communicate()
        holder.close()
    assert child.returncode == 3, err
    assert "could not store 1 result (see the log above)" in err
    assert "runchecks: stopped by SIGINT; 0 results stored" in err
    assert results_in(env) == []


def test_once_abandoned_before_any_result_stores_none(sqlite_file_env, target):
    env = sqlite_file_env
    import_checks(env, [check("stalled", target.url("/stall"), timeout=20, interval=60)])
    child = start_manage(env, "runchecks", "--once", "--check", "stalled")
    try:
        wait_until(lambda: target.hits.get("/stall", 0) >= 1, child)
        said = signal_twice(child, signal.SIGINT)
        _out, err = child.communicate(timeout=30)
        err = said + err
    finally:
        if child.poll() is None:
            child.kill()
            child.communicate()
    assert child.returncode == 130, err
    assert "interrupted by SIGINT; 0 results stored" in err
    assert results_in(env) == []


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_forever_mode_runs_at_intervals_and_stops_cleanly(sqlite_file_env, target, sig):
    env = sqlite_file_env
    import_checks(env, [check("api", target.url("/ok"), interval=1, timeout=0.5)])
    child = start_manage(env, "runchecks")
    wait_until(lambda: target.hits.get("/ok", 0) >= 2, child, timeout=30)
    child.send_signal(sig)
    _out, err = child.communicate(timeout=30)
    assert child.returncode == 0, err
    assert "Traceback" not in err
    assert "stopped after storing" in err
    api_results = [r for r in results_in(env) if r[0] == "api"]
    assert len(api_results) >= 2
    assert all(ok for _name, ok, _cat in api_results)


@pytest.mark.slow
def test_sigterm_in_forever_mode_cancels_what_outlives_stop_timeout(sqlite_file_env, target):
    env = sqlite_file_env | {"STOP_TIMEOUT": "1"}
    import_checks(
        env,
        [
            check("api", target.url("/ok"), interval=1, timeout=0.5),
            check("stalled", target.url("/stall"), timeout=20, interval=60),  # never answers
        ],
    )
    child = start_manage(env, "runchecks")
    try:
        wait_until(lambda: target.hits.get("/stall", 0) >= 1, child, timeout=30)
        wait_until(lambda: any(r[0] == "api" for r in results_in(env)), child, timeout=30)
        signalled = time.monotonic()
        child.send_signal(signal.SIGTERM)
        _out, err = child.communicate(timeout=30)
        elapsed = time.monotonic() - signalled
    finally:
        if child.poll() is None:
            child.kill()
            child.communicate()
    assert child.returncode == 0, err
    assert elapsed < 8, f"took {elapsed:.1f} s: the 20 s probe was waited out"
    assert "runchecks: 1 running check cancelled after STOP_TIMEOUT (1 s)" in err
    assert "Traceback" not in err
    names = {name for name, _ok, _category in results_in(env)}
    assert "api" in names and "stalled" not in names  # the cancelled probe has no result


def test_one_signal_during_once_abandons_after_stop_timeout(sqlite_file_env, target):
    env = sqlite_file_env | {"STOP_TIMEOUT": "0.5"}
    import_checks(
        env,
        [
            check("fast", target.url("/ok")),
            check("stalled", target.url("/stall"), timeout=20, interval=60),
        ],
    )
    child = start_manage(
        env, "runchecks", "--once", "--concurrency", "1", "--check", "fast", "--check", "stalled"
    )
    try:
        wait_until(lambda: target.hits.get("/stall", 0) >= 1, child)
        child.send_signal(signal.SIGTERM)
        out, err = child.communicate(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.communicate()
    assert child.returncode == 143, err
    assert "letting the running checks finish (at most 0.5 s, STOP_TIMEOUT)" in err
    assert "runchecks: interrupted by SIGTERM; 1 result stored, 1 cancelled" in err
    assert out == ""
    assert results_in(env) == [("fast", 1, "")]


def test_importchecks_names_the_bad_item_and_stores_nothing(sqlite_file_env):
    bad = [check("good", "http://127.0.0.1:1/"), check("bad", "http://127.0.0.1:1/", interval=0)]
    run = manage(sqlite_file_env, "importchecks", "-", stdin=json.dumps(bad))
    assert run.returncode == 3
    assert "check #2 ('bad'): interval:" in run.stderr
    assert not [r for r in _names(sqlite_file_env) if r == "good"]
    run = manage(sqlite_file_env, "importchecks", "-", stdin="{not json")
    assert run.returncode == 3 and "not JSON" in run.stderr


def _names(env: dict) -> list[str]:
    path = Path(env["DATABASE_URL"].removeprefix("sqlite:///"))
    with sqlite3.connect(path) as db:
        return [r[0] for r in db.execute("select name from connections_app_healthcheck")]


def test_a_locked_database_delays_results_but_loses_none(sqlite_file_env, target):
    env = sqlite_file_env | {
        "SQLITE_BUSY_TIMEOUT": "0.1",
        "DB_RETRY_ATTEMPTS": "1",
        "DB_RETRY_BASE_DELAY": "0.05",
    }
    import_checks(env, [check("api", target.url("/slow/1"), interval=2, timeout=1.5)])
    # No alert sender: its process logs to the same stderr with an error handler of its own,
    # so "logged once" below would count two processes.
    child = start_manage(env, "runchecks", "--no-alerts")
    path = env["DATABASE_URL"].removeprefix("sqlite:///")
    wait_until(lambda: target.hits.get("/slow/1", 0) >= 1, child, timeout=30)
    # A probe is in flight: lock every writer out until well after it ends, so its result
    # meets a locked database at every flush for a while.
    holder = sqlite3.connect(path, isolation_level=None, timeout=5)
    holder.execute("begin immediate")
    time.sleep(3)
    holder.execute("rollback")
    holder.close()
    api_results = lambda: [r for r in results_in(env) if r[0] == "api"]  # noqa: E731
    wait_until(lambda: len(api_results()) >= 1, child, timeout=30)
    child.send_signal(signal.SIGTERM)
    _out, err = child.communicate(timeout=30)
    assert child.returncode == 0, err
    assert len(api_results()) == target.hits["/slow/1"]  # every probe's result was stored
    assert "Traceback" not in err
    # Each kind of failure is logged in full once, then only counted: no storm.
    logged = re.findall(r"(\S+) default: db_locked: ", err)
    # Claims (at least one a second, not retried) and the stored batch both met the lock.
    assert {"checks.claim", "results.store"} <= set(logged), err
    assert sorted(logged) == sorted(set(logged)), err


def test_ctrl_c_while_django_starts_is_one_line_not_a_traceback(sqlite_file_env):
    # Python reports each import on stderr as it ends: the signal goes once Django's own
    # modules are loading, past the interpreter's start (where SIGINT is fatal, by Python).
    # The child's stderr is a pipe of one page, read no further than that line: the child
    # soon blocks writing, some 70 kB of imports before start-up ends, so the signal always
    # comes during start-up (through a 64 kB pipe it could come after, and exit 0).
    # The child gets SIGINT's default action, as from a terminal, even when this run ignores
    # it (a background job inherits "ignore", and Python then installs no handler at start).
    read_end, write_end = os.pipe()
    ours = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        fcntl.fcntl(write_end, fcntl.F_SETPIPE_SZ, PAGE)
        child = subprocess.Popen(
            [sys.executable, "manage.py", "runchecks", "--once"],
            cwd=REPO,
            env=sqlite_file_env | {"PYTHONPROFILEIMPORTTIME": "1"},
            stdout=subprocess.DEVNULL,
            stderr=write_end,
        )
    finally:
        signal.signal(signal.SIGINT, ours)
        os.close(write_end)
    with os.fdopen(read_end, "rb", buffering=0) as stderr:
        try:
            said = read_until(stderr, b"django.core")
            child.send_signal(signal.SIGINT)
            err = (said + read_until(stderr, None)).decode()
            child.wait(timeout=30)
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
    assert "Traceback" not in err
    assert child.returncode == 130, err[-500:]
    assert err.strip().endswith("runchecks: interrupted")


PAGE = os.sysconf("SC_PAGE_SIZE")


def read_until(stream, marker: bytes | None, timeout: float = 30) -> bytes:
    """What ``stream`` says until ``marker`` (or its end, for None), a page at a time."""
    said = b""
    deadline = time.monotonic() + timeout
    while marker is None or marker not in said:
        ready, _, _ = select.select([stream], [], [], max(0, deadline - time.monotonic()))
        assert ready, f"nothing more within {timeout} s: {said[-500:]!r}"
        chunk = stream.read(PAGE)
        if not chunk:
            assert marker is None, f"stream closed before {marker!r}: {said[-500:]!r}"
            break
        said += chunk
    return said


def test_a_locked_database_does_not_stop_the_checks(sqlite_file_env, target):
    # While no claim can be written, the runner keeps the schedule of the checks it holds: the
    # results of the locked seconds are stored afterwards, with the times they were taken.
    env = sqlite_file_env | {"SQLITE_BUSY_TIMEOUT": "0.1", "DB_RETRY_ATTEMPTS": "1"}
    import_checks(env, [check("api", target.url("/ok"), interval=1, timeout=0.5)])
    child = start_manage(env, "runchecks")
    path = env["DATABASE_URL"].removeprefix("sqlite:///")
    wait_until(lambda: target.hits.get("/ok", 0) >= 2, child, timeout=30)
    holder = sqlite3.connect(path, isolation_level=None, timeout=5)
    holder.execute("begin immediate")
    locked_from = datetime.now(UTC)
    hits_before = target.hits.get("/ok", 0)
    time.sleep(5)  # the scenario: another process keeps the write lock this long
    hits_during = target.hits.get("/ok", 0) - hits_before
    locked_until = datetime.now(UTC)
    holder.execute("rollback")
    holder.close()

    def taken_while_locked() -> list[datetime]:
        with sqlite3.connect(path) as db:
            rows = db.execute(
                "select r.checked_at from connections_app_checkresult r join "
                "connections_app_healthcheck c on c.id = r.health_check_id where c.name = 'api'"
            ).fetchall()
        times = [datetime.fromisoformat(at).replace(tzinfo=UTC) for (at,) in rows]
        return [at for at in times if locked_from <= at <= locked_until]

    wait_until(lambda: len(taken_while_locked()) >= 3, child, timeout=30)
    child.send_signal(signal.SIGTERM)
    _out, err = child.communicate(timeout=30)
    assert child.returncode == 0, err
    assert hits_during >= 3, err  # checked on while locked, not after
    assert "Traceback" not in err
