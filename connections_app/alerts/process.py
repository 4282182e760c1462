"""The alert sender in a process of its own (``manage.py sendalerts --with-parent``), started
and watched over by the check runner (``runchecks``, ``serve``).

Why a process: sending 1,000 alerts costs the sender 2 to 3 s of CPU. In the runner's
interpreter that time is taken from the checks' event loop (one GIL), and probes that come due
meanwhile start late (docs/BENCHMARKS.md, Alerts). In its own process the kernel schedules it
on another core, or beside the runner, never in front of a probe on the runner's loop.

Why ``manage.py`` as a subprocess rather than ``multiprocessing``: the child is a fresh
interpreter configured like every command (settings module, environment, logging), nothing is
pickled, the same command runs alone when alerts are sent elsewhere (``runchecks --no-alerts``
plus ``sendalerts``), and asyncio waits for it without a thread of its own.

How it lives:

- The child's stdin is a pipe the parent never writes to. When the parent closes it (a stop),
  or dies in any way (SIGKILL included: the kernel closes its end), the child reads EOF and
  stops like on SIGTERM: the sends in flight finish, each bounded by ``ALERT_SEND_TIMEOUT``,
  and are recorded. Any send it cannot finish keeps its lease, which lapses, and another
  sender takes the alert over: the outbox's exactly-once does not depend on the child.
- A child that exits while the runner runs is reported and started again after ``RESTART``'s
  back-off (``retry.aretry``); one that had run ``HEALTHY_AFTER`` seconds is started again at
  once, with the back-off afresh.
- At the runner's stop the child gets SIGTERM and its pipe is closed; it is given
  ``ALERT_SEND_TIMEOUT`` plus ``STOP_GRACE`` seconds to finish, then killed (its claims lapse,
  as after a crash). A child still starting Django ends at once on the SIGTERM.
- It has its own process group: a terminal's Ctrl-C reaches the runner only, which then stops
  the child in order instead of seeing it exit and restarting it.
- It writes its own error counts to ``ErrorStat`` (``run_sender_process``, what ``sendalerts``
  runs, alone too): a runner's housekeeping writes those of its own process only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import subprocess
import sys
from collections.abc import Sequence

from asgiref.sync import sync_to_async
from django.conf import settings

from connections_app import retry
from connections_app.alerts.sender import run_alert_sender
from connections_app.db.loop_connection import close_stale_connection
from connections_app.error_handler import get_global_error_handler, report
from connections_app.error_stats import flush_error_stats

logger = logging.getLogger(__name__)

#: Waits before starting a sender that died again: 1 s, 2 s, 4 s ... at most 60 s, forever.
RESTART = retry.RetryPolicy(attempts=None, base_delay=1.0, factor=2.0, cap=60.0, jitter=0.1)
#: A child that ran this long had started well: its death is a new trouble, not a crash loop.
HEALTHY_AFTER = 60.0
#: Seconds beyond a send's timeout that a stopping child has to record and close.
STOP_GRACE = 5.0
#: Seconds between two writes of the child's error counts (a runner's housekeeping period).
ERROR_STATS_INTERVAL = 10.0


class SenderExited(Exception):
    """The sender's process ended while the runner still runs."""

    def __init__(self, pid: int, code: int, ran_for: float) -> None:
        super().__init__(f"the alert sender (pid {pid}) exited with code {code}")
        self.pid, self.code, self.ran_for = pid, code, ran_for


def sender_command() -> list[str]:
    """``manage.py sendalerts --with-parent`` with this interpreter, wherever the runner's
    working directory is."""
    manage = os.path.join(settings.BASE_DIR, "manage.py")
    return [sys.executable, manage, "sendalerts", "--with-parent"]


async def supervise(stop: asyncio.Event, command: Sequence[str] | None = None) -> None:
    """Keep a sender process running until ``stop``; then stop it in order."""
    command = list(command or sender_command())
    stopped = asyncio.ensure_future(stop.wait())
    try:
        while not stop.is_set():
            # A fresh back-off on each pass: a pass ends when a child that started well dies.
            restarts = asyncio.ensure_future(
                retry.aretry(lambda: _run_child(command), RESTART, _crashed, on_retry=_restarting)
            )
            try:
                await asyncio.wait({restarts, stopped}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                restarts.cancel()  # a running child is stopped in order by _run_child itself
            try:
                await restarts
            except asyncio.CancelledError:
                pass
            except SenderExited as exc:
                report(f"{exc}; starting it again now", "alerts.process", "sendalerts",
                       category="unknown")  # fmt: skip
    finally:
        stopped.cancel()


def _crashed(exc: BaseException) -> bool:
    """Worth a back-off before the next start: a child that died soon after starting, or one
    the system would not start (no memory, no process slot)."""
    if isinstance(exc, SenderExited):
        return exc.ran_for < HEALTHY_AFTER
    return isinstance(exc, OSError)


def _restarting(exc: BaseException, policy: retry.RetryPolicy, wait: float) -> None:
    report(f"{exc}; starting it again in {wait:.0f} s", "alerts.process", "sendalerts",
           category="unknown")  # fmt: skip


async def _run_child(command: list[str]) -> None:
    """Start the sender and wait for it; raises ``SenderExited`` when it ends. Cancelled (the
    runner stops): closes its pipe and waits for it to finish its sends, then re-raises."""
    loop = asyncio.get_running_loop()
    child = await asyncio.create_subprocess_exec(*command, stdin=subprocess.PIPE, process_group=0)
    started = loop.time()
    logger.info("alert sender started (pid %d)", child.pid)
    try:
        code = await child.wait()
    except asyncio.CancelledError:
        await _stop_child(child)
        raise
    raise SenderExited(child.pid, code, loop.time() - started)


async def _stop_child(child: asyncio.subprocess.Process) -> None:
    """SIGTERM and EOF on its stdin, a bounded wait for it to finish its sends, then SIGKILL.

    SIGTERM too: a child still starting Django has no handler yet and ends at once (it has
    claimed nothing), instead of holding the runner's stop until it has started; a running one
    stops as on EOF."""
    if child.stdin is not None:
        child.stdin.close()
    with contextlib.suppress(ProcessLookupError):
        child.terminate()
    timeout = settings.ALERT_SEND_TIMEOUT + STOP_GRACE
    try:
        await asyncio.wait_for(child.wait(), timeout)
    except TimeoutError:
        report(f"the alert sender (pid {child.pid}) did not stop within {timeout:g} s; "
               "killed (its claims lapse)", "alerts.process", "sendalerts",
               category="timeout")  # fmt: skip
        with contextlib.suppress(ProcessLookupError):
            child.kill()
        await child.wait()


async def run_sender_process(stop: asyncio.Event) -> None:
    """What ``sendalerts`` runs until ``stop``: the sender, and this process's error counts
    (failed sends, database retries) written to ``ErrorStat`` every ``ERROR_STATS_INTERVAL``
    seconds and once more at the end."""
    counting = asyncio.ensure_future(_write_error_counts_every(ERROR_STATS_INTERVAL))
    try:
        await run_alert_sender(stop)
    finally:
        counting.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await counting
        await _write_error_counts()


async def _write_error_counts_every(seconds: float) -> None:
    while True:  # until cancelled by run_sender_process
        await asyncio.sleep(seconds)
        await _write_error_counts()


async def _write_error_counts() -> None:
    # Repeats counted in a window that has ended get their one line now, as in a runner.
    get_global_error_handler().close_expired_windows()
    await sync_to_async(_flush_error_stats)()


def _flush_error_stats() -> None:
    close_stale_connection()
    flush_error_stats()  # a database error is reported and the counts kept: it never raises
