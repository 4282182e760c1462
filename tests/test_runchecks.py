"""``manage.py runchecks`` as scripts use it: a child process, a file database, real targets."""

from __future__ import annotations

import json
import signal
import socket
import sqlite3
import time
from pathlib import Path

import pytest

from tests.conftest import free_port, manage, start_manage, wait_until
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
    closed = free_port()
    checks = [
        check("api", target.url("/ok")),
        check("refused", f"127.0.0.1:{closed}", kind="tcp", failures_before_down=1),
    ]
    import_checks(env, checks)
    code, report = run_once_json(env, "--check", "api", "--check", "refused")
    assert code == 2
    assert report["status"] == "down"
    assert {c["name"]: c["error_category"] for c in report["checks"]}["refused"] == "refused"


def test_exit_3_on_usage_errors(sqlite_file_env):
    run = manage(sqlite_file_env, "runchecks", "--once", "--check", "nosuch")
    assert run.returncode == 3
    assert "no check named 'nosuch'" in run.stderr
    assert "Traceback" not in run.stderr
    run = manage(sqlite_file_env, "runchecks", "--once", "--tag", "nosuch")
    assert run.returncode == 3
    run = manage(sqlite_file_env, "runchecks", "--check", "x")
    assert run.returncode == 3 and "go with --once" in run.stderr


def test_exit_3_when_the_database_is_unusable(sqlite_file_env, tmp_path):
    env = sqlite_file_env | {"DATABASE_URL": f"sqlite:///{tmp_path}/missing/dir/db.sqlite3"}
    run = manage(env, "runchecks", "--once")
    assert run.returncode == 3
    assert "Traceback" not in run.stderr


def test_every_failure_becomes_a_categorised_result(sqlite_file_env, target):
    env = sqlite_file_env
    checks = [
        check("stall", target.url("/stall"), timeout=0.5),
        check("reset", target.url("/reset")),
        check("dns", "http://no-such-host.invalid/"),
        check("tls", target.url("/ok").replace("http://", "https://")),
        check("refused", f"http://127.0.0.1:{free_port()}/"),
        check("missing text", target.url("/ok"), expected_body="never there"),
    ]
    import_checks(env, checks)
    names = [arg for c in checks for arg in ("--check", c["name"])]
    code, report = run_once_json(env, *names)
    categories = {c["name"]: c["error_category"] for c in report["checks"]}
    assert categories == {
        "stall": "timeout",
        "reset": "reset",
        "dns": "dns",
        "tls": "tls",
        "refused": "refused",
        "missing text": "unknown",
    }
    assert code == 1  # each failed once; three failures are needed for DOWN
    assert len(results_in(env)) == len(checks)


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


def test_sigterm_mid_run_finishes_in_flight_checks_and_loses_no_result(sqlite_file_env, target):
    env = sqlite_file_env
    checks = [check(f"fast {i}", target.url("/ok")) for i in range(5)]
    checks.append(check("slow", target.url("/slow/1"), timeout=5))
    import_checks(env, checks)
    names = [arg for c in checks for arg in ("--check", c["name"])]
    child = start_manage(env, "runchecks", "--once", *names)
    wait_until(lambda: target.hits.get("/slow/1", 0) >= 1, child)
    child.send_signal(signal.SIGTERM)
    out, err = child.communicate(timeout=30)
    assert child.returncode == 0, err
    assert "Traceback" not in err
    stored = results_in(env)
    assert len(stored) == 6
    assert ("slow", 1, "") in stored


def test_forever_mode_runs_at_intervals_and_stops_cleanly(sqlite_file_env, target):
    env = sqlite_file_env
    import_checks(env, [check("api", target.url("/ok"), interval=1, timeout=0.5)])
    child = start_manage(env, "runchecks")
    wait_until(lambda: target.hits.get("/ok", 0) >= 2, child, timeout=30)
    child.send_signal(signal.SIGINT)
    _out, err = child.communicate(timeout=30)
    assert child.returncode == 0, err
    assert "Traceback" not in err
    assert "stopped after storing" in err
    api_results = [r for r in results_in(env) if r[0] == "api"]
    assert len(api_results) >= 2
    assert all(ok for _name, ok, _cat in api_results)


def test_a_tcp_check_passes_against_a_listening_port(sqlite_file_env):
    server = socket.create_server(("127.0.0.1", 0))
    try:
        port = server.getsockname()[1]
        import_checks(sqlite_file_env, [check("tcp", f"127.0.0.1:{port}", kind="tcp")])
        code, report = run_once_json(sqlite_file_env, "--check", "tcp")
    finally:
        server.close()
    assert code == 0 and report["checks"][0]["status"] == "up"


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
    child = start_manage(env, "runchecks")
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
    assert "results.store default: db_locked:" in err
    for operation in ("db.retry", "results.store", "checks.claim"):
        assert err.count(f"{operation} default: db_locked:") <= 1, err


def test_a_check_deleted_while_it_runs_does_not_block_the_others(sqlite_file_env, target):
    env = sqlite_file_env
    import_checks(env, [check("kept", target.url("/ok")), check("gone", target.url("/slow/1"))])
    child = start_manage(env, "runchecks", "--once", "--check", "kept", "--check", "gone")
    wait_until(lambda: target.hits.get("/slow/1", 0) >= 1, child)
    path = env["DATABASE_URL"].removeprefix("sqlite:///")
    with sqlite3.connect(path, timeout=10) as db:
        db.execute("pragma foreign_keys = on")
        db.execute("delete from connections_app_healthcheck where name = 'gone'")
    out, err = child.communicate(timeout=30)
    assert "Traceback" not in err
    assert [r[0] for r in results_in(env)] == ["kept"]
    assert "kept" in out and "gone" not in out
