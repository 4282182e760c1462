"""The alert sender's own process: ``runchecks`` starts it, starts it again when it dies,
stops it in order, and it never outlives a runner killed with SIGKILL; ``sendalerts`` alone
beside ``runchecks --no-alerts``. Child processes on a fresh SQLite file, real loopback
receivers; then ``supervise`` itself with stand-in commands (Linux /proc finds children).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import time
from pathlib import Path

import pytest

from connections_app import retry
from connections_app.alerts import process
from tests.alerting import alive, children
from tests.conftest import manage, start_manage, wait_until
from tests.http_targets import HttpTarget
from tests.realtime.helpers import wait_until as until
from tests.test_alerts_runners import FAST, add_channel, import_checks, sqlite_rows, stop

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")


def sender_of(runner) -> int:
    """The pid of the runner's sender, once it has one."""
    wait_until(lambda: len(children(runner.pid)) == 1, runner, timeout=30)
    return children(runner.pid)[0]


def one_flipping_check(env: dict, http_target: HttpTarget) -> None:
    api = {"name": "api", "target": http_target.url("/switch/api"), "interval": 1,
           "timeout": 0.5, "failures_before_down": 1}  # fmt: skip
    import_checks(env, [api])
    add_channel(env, http_target.url("/hook/ops"))


@pytest.mark.slow
def test_runchecks_sends_alerts_from_a_child_process(sqlite_file_env, http_target: HttpTarget):
    env = sqlite_file_env | FAST
    one_flipping_check(env, http_target)
    http_target.switch("api", 503)
    http_target.hook("ops", 500)  # then 200, on the retry half a second later
    runner = start_manage(env, "runchecks")
    try:
        sender = sender_of(runner)
        wait_until(lambda: len(http_target.delivered("ops")) == 1, runner, timeout=30)
        assert alive(sender)
    finally:
        err = stop(runner)
    assert runner.returncode == 0 and "Traceback" not in err, err
    assert not alive(sender)  # stopped with its runner
    alerts = "select kind, status, attempts from connections_app_alert"
    assert sqlite_rows(env, alerts) == [("down", "sent", 2)]
    # The failed try was counted in the sender's process, and written before it exited.
    errors = "select category, count from connections_app_errorstat where operation = 'alerts.send'"
    assert sqlite_rows(env, errors) == [("http_5xx", 1)]


@pytest.mark.slow
def test_a_sender_killed_is_started_again_and_sends_the_next_alert(
    sqlite_file_env, http_target: HttpTarget
):
    env = sqlite_file_env | FAST
    one_flipping_check(env, http_target)
    runner = start_manage(env, "runchecks")
    try:
        first = sender_of(runner)
        os.kill(first, signal.SIGKILL)
        wait_until(lambda: children(runner.pid) not in ([], [first]), runner, timeout=30)
        http_target.switch("api", 503)
        wait_until(lambda: len(http_target.delivered("ops")) == 1, runner, timeout=30)
    finally:
        err = stop(runner)
    assert "exited with code -9; starting it again in" in err
    assert sqlite_rows(env, "select kind, status from connections_app_alert") == [("down", "sent")]


@pytest.mark.slow
def test_the_sender_does_not_outlive_a_runner_killed_with_sigkill(sqlite_file_env):
    runner = start_manage(sqlite_file_env | FAST, "runchecks")
    try:
        sender = sender_of(runner)
        runner.send_signal(signal.SIGKILL)
        runner.communicate(timeout=30)
        deadline = time.monotonic() + 30
        while alive(sender) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not alive(sender), "the sender outlived its runner"
    finally:
        stop(runner)


@pytest.mark.slow
def test_no_alerts_leaves_them_to_sendalerts_run_alone(sqlite_file_env, http_target: HttpTarget):
    env = sqlite_file_env | FAST
    one_flipping_check(env, http_target)
    http_target.switch("api", 503)
    runner = start_manage(env, "runchecks", "--no-alerts")
    alerts = "select kind, status from connections_app_alert"
    try:
        wait_until(lambda: sqlite_rows(env, alerts) == [("down", "pending")], runner, timeout=30)
        assert children(runner.pid) == []
        sender = start_manage(env, "sendalerts")
        try:
            wait_until(lambda: len(http_target.delivered("ops")) == 1, sender, timeout=30)
        finally:
            sender_err = stop(sender)
        assert sender.returncode == 0 and "Traceback" not in sender_err, sender_err
    finally:
        err = stop(runner)
    assert runner.returncode == 0 and "Traceback" not in err, err
    assert sqlite_rows(env, alerts) == [("down", "sent")]


def test_sendalerts_refuses_a_database_without_tables(sqlite_file_env, tmp_path):
    env = sqlite_file_env | {"DATABASE_URL": f"sqlite:///{tmp_path / 'empty.sqlite3'}"}
    run = manage(env, "sendalerts")
    assert run.returncode == 3
    assert "manage.py migrate" in run.stderr and "Traceback" not in run.stderr


# -- supervise, with stand-in commands ------------------------------------------------------


@pytest.fixture
def quick_restarts(monkeypatch):
    monkeypatch.setattr(process, "RESTART", retry.RetryPolicy(attempts=None, base_delay=0.01,
                                                              cap=0.01))  # fmt: skip


def counting(path: Path, then: str = "") -> list[str]:
    """A child that notes each start in ``path``, then runs ``then``."""
    return [sys.executable, "-c", f"open({str(path)!r}, 'a').write('x\\n')\n{then}"]


def starts(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


async def test_a_child_that_keeps_dying_is_started_again_after_a_back_off(
    tmp_path, quick_restarts, caplog
):
    stop, noted = asyncio.Event(), tmp_path / "starts"
    running = asyncio.ensure_future(process.supervise(stop, counting(noted, "raise SystemExit(7)")))
    await until(lambda: starts(noted) >= 3, within=20)
    stop.set()
    await asyncio.wait_for(running, 20)
    assert "exited with code 7; starting it again in 0 s" in caplog.text


async def test_a_child_that_ran_well_is_started_again_at_once(
    tmp_path, quick_restarts, monkeypatch, caplog
):
    monkeypatch.setattr(process, "HEALTHY_AFTER", 0.0)
    stop, noted = asyncio.Event(), tmp_path / "starts"
    running = asyncio.ensure_future(process.supervise(stop, counting(noted)))
    await until(lambda: starts(noted) >= 2, within=20)
    stop.set()
    await asyncio.wait_for(running, 20)
    assert "exited with code 0; starting it again now" in caplog.text


async def test_a_command_that_cannot_start_is_tried_again(tmp_path, quick_restarts, caplog):
    stop = asyncio.Event()
    running = asyncio.ensure_future(process.supervise(stop, [str(tmp_path / "no-such-program")]))
    await until(lambda: "starting it again in" in caplog.text, within=20)
    stop.set()
    await asyncio.wait_for(running, 20)
    assert "No such file or directory" in caplog.text


async def test_a_child_that_ignores_the_stop_is_killed_after_its_grace(
    tmp_path, settings, monkeypatch, caplog
):
    settings.ALERT_SEND_TIMEOUT = 0.1
    monkeypatch.setattr(process, "STOP_GRACE", 0.1)
    stop, noted = asyncio.Event(), tmp_path / "starts"
    # Ignores its stdin and SIGTERM (set before its start is noted): only SIGKILL ends it.
    ignore = "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    command = [*counting(noted, "for _ in range(600): time.sleep(0.1)")]
    command[-1] = ignore + command[-1]
    running = asyncio.ensure_future(process.supervise(stop, command))
    await until(lambda: starts(noted) == 1, within=20)
    (child,) = children(os.getpid())
    caplog.set_level(logging.INFO)
    stop.set()
    await asyncio.wait_for(running, 20)
    assert "did not stop within 0.2 s; killed" in caplog.text
    assert not alive(child)
