"""What both fault runs share: the checks and their flipping targets, the webhook receiver, the
dashboard clients, the fault schedule, memory samples, the closing wait and the invariants.

A run is: set up (migrate, checks, channel, staff session) -> start the processes -> start the
clients -> flip targets and inject faults on a schedule for ``SOAK_SECONDS`` -> every target up
-> wait (bounded) until alerts are out and pages caught up -> stop the runner (its ``Runner``
row is written at stop) -> compute the invariants -> stop the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from tests.http_targets import HttpTarget
from tests.realtime import servers
from tests.soak import invariants
from tests.soak.clients import Rapid, Reader, Silent

#: Seconds of faults and flips; the short default keeps the suite in CI under 3 minutes.
#: ``SOAK_SECONDS=600`` is the long run by hand (docs/SECURITY.md, "What the fault suite proves").
SOAK_SECONDS = float(os.environ.get("SOAK_SECONDS", "45"))
LONG = SOAK_SECONDS >= 300
#: Healthy pages, pages that never read, pages that reconnect at once: 100 in the long run.
CLIENTS = (60, 20, 20) if LONG else (5, 2, 2)
CHECKS = [f"soak-{n}" for n in range(12)]
INTERVAL, TIMEOUT = 1.0, 0.5
#: What a flipped target does: answer, answer too late, reset the connection, answer 503.
MODES = (200, f"slow:{TIMEOUT * 4}", "reset", 503)
FLIP_EVERY = 3.0
#: A check's results may be this far apart at most (seconds): a 10 s outage of the database
#: must not show as a gap (results wait in the runner's buffer), only a slow claim may.
MAX_GAP = 3 * INTERVAL + TIMEOUT + 1.5
#: Bound of the closing wait for alerts and pages (seconds).
SETTLE = 30.0
#: The alert outbox's timing, shortened so that a send cut by a fault is retried within a run.
ALERT_ENV = {
    "ALERT_LEASE_SECONDS": "5",
    "ALERT_RETRY_BASE_DELAY": "1",
    "ALERT_RETRY_MAX_DELAY": "2",
    "ALERT_RETRY_ATTEMPTS": "10",
    "ALERT_SEND_TIMEOUT": "3",
}

SETUP = """
import json, sys
import django
django.setup()
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.test import Client
from connections_app.models import HealthCheck, NotificationChannel
call_command("migrate", interactive=False, verbosity=0)
spec = json.loads(sys.stdin.read())
for fields in spec["checks"]:
    check = HealthCheck(**fields)
    check.full_clean()
    check.save()
# The self-check of the app's own database at the soak's pace, so a 10 s outage is seen.
HealthCheck.objects.filter(name="self: database").update(interval=2, timeout=1)
channel = NotificationChannel(name="soak receiver", kind="webhook", target=spec["hook"],
                              tags="soak", on_down=True, on_recovered=True)
channel.full_clean()
channel.save()
user = get_user_model().objects.create_user("staff", is_staff=True, is_superuser=True)
browser = Client()
browser.force_login(user)
print(browser.cookies["sessionid"].value)
"""


def setup_database(env: dict[str, str], target: HttpTarget) -> str:
    """Migrate, write the checks and the webhook channel; a staff session key."""
    checks = [
        {
            "name": name,
            "kind": "http",
            "target": target.url(f"/switch/{name}"),
            "interval": INTERVAL,
            "timeout": TIMEOUT,
            "failures_before_down": 1,
            "successes_before_up": 1,
            "tags": "soak",
        }
        for name in CHECKS
    ]
    spec = json.dumps({"checks": checks, "hook": target.url("/hook/soak")})
    done = subprocess.run(
        [sys.executable, "-c", SETUP],
        cwd=servers.REPO,
        env=env | {"DJANGO_SETTINGS_MODULE": "project.settings", "REDIS_URL": ""},
        input=spec,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1]


class Processes:
    """The server and runner children, each logging to its own file, sampled for memory."""

    def __init__(self, env: dict[str, str], logs: Path) -> None:
        self.env, self.logs = env, logs
        self.children: dict[str, subprocess.Popen] = {}
        self.rss: dict[str, list[tuple[float, int]]] = {}

    def log(self, name: str) -> Path:
        return self.logs / f"{name}.log"

    def start(self, name: str, *args: str, port: int | None = None) -> None:
        with open(self.log(name), "ab") as out:
            child = subprocess.Popen(
                [sys.executable, "manage.py", *args],
                cwd=servers.REPO,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self.children[name] = child
        self.rss[name] = []
        if port is not None:
            servers.wait_for_port(port, child, timeout=60)

    def check_alive(self) -> None:
        for name, child in self.children.items():
            if child.poll() is not None:
                tail = self.log(name).read_text(errors="replace")[-3000:]
                raise AssertionError(f"{name} exited with {child.returncode}:\n{tail}")

    def sample(self, elapsed: float) -> None:
        for name, child in self.children.items():
            with contextlib.suppress(OSError, ValueError):
                self.rss[name].append((elapsed, servers.rss_kib(child.pid)))

    def terminate(self, name: str) -> int:
        child = self.children[name]
        child.send_signal(signal.SIGTERM)
        return child.wait(timeout=30)

    def stop_all(self) -> None:
        for child in self.children.values():
            servers.stop(child)


@dataclass
class Fault:
    """One injection: at ``offset`` seconds into each cycle, ``run`` (blocking, in a thread)."""

    offset: float
    name: str
    run: Callable[[], object]


@dataclass
class Run:
    processes: Processes
    target: HttpTarget
    port: int
    cookie: str
    faults: list[Fault]
    cycle: float
    seed: int = 15
    injected: list[str] = field(default_factory=list)
    readers: list[Reader] = field(default_factory=list)
    others: list = field(default_factory=list)
    started: datetime = field(default_factory=lambda: datetime.now(UTC))

    async def soak(self, seconds: float = SOAK_SECONDS) -> None:
        """Clients on, flips and faults for ``seconds``, then every target up."""
        readers, silent, rapid = CLIENTS
        self.readers = [Reader(self.port, self.cookie) for _ in range(readers)]
        self.others = [Silent(self.port, self.cookie) for _ in range(silent)]
        self.others += [Rapid(self.port, self.cookie) for _ in range(rapid)]
        for client in self.readers + self.others:
            client.start()
        await self._until(lambda: all(r.first_snapshot for r in self.readers), 30, "snapshots")
        rng = random.Random(self.seed)
        self.started = datetime.now(UTC)
        started = time.monotonic()
        next_flip, schedule = 0.0, self._schedule(seconds)
        while (elapsed := time.monotonic() - started) < seconds:
            self.processes.check_alive()
            self.processes.sample(elapsed)
            if elapsed >= next_flip:
                for name in rng.sample(CHECKS, len(CHECKS) // 4):
                    self.target.switch(name, rng.choice(MODES))
                next_flip += FLIP_EVERY
            if schedule and elapsed >= schedule[0][0]:
                at, fault = schedule.pop(0)
                figures = await asyncio.to_thread(fault.run)
                self.injected.append(f"{at:5.1f} s {fault.name} {figures or ''}".rstrip())
            await asyncio.sleep(0.25)
        for name in CHECKS:
            self.target.switch(name, 200)

    def _schedule(self, seconds: float) -> list[tuple[float, Fault]]:
        cycles = max(1, int(seconds // self.cycle))
        return sorted(
            ((n * self.cycle + f.offset, f) for n in range(cycles) for f in self.faults),
            key=lambda item: item[0],
        )

    async def settle(self, query: invariants.Query) -> None:
        """Wait (bounded) until every check is UP again, no alert is waiting and every page
        caught up."""

        def done() -> bool:
            try:
                down = query(
                    "SELECT count(*) FROM connections_app_healthcheck "
                    "WHERE tags = 'soak' AND status <> 'up'"
                )[0][0]
                waiting = query(
                    "SELECT count(*) FROM connections_app_alert "
                    "WHERE status IN ('pending', 'sending')"
                )[0][0]
                changes = invariants.state_changes(query)
            except Exception:  # the database may still be coming back
                return False
            return not down and not waiting and not invariants.uncovered(self.readers, changes)

        with contextlib.suppress(AssertionError):
            await self._until(done, SETTLE, "alerts out and pages caught up")

    async def stop_clients(self) -> None:
        await asyncio.gather(*(client.stop() for client in self.readers + self.others))

    async def _until(self, condition: Callable[[], bool], within: float, what: str) -> None:
        deadline = time.monotonic() + within
        while not await asyncio.to_thread(condition):
            self.processes.check_alive()
            if time.monotonic() > deadline:
                raise AssertionError(f"not within {within} s: {what}")
            await asyncio.sleep(0.25)

    def verdict(self, query: invariants.Query) -> list[invariants.Invariant]:
        logs = {name: self.processes.log(name) for name in self.processes.children}
        return [
            invariants.runs_accounted(query, CHECKS, MAX_GAP),
            invariants.transitions_delivered(
                self.readers, invariants.state_changes(query), self.started
            ),
            invariants.alerts_once(query, self.target.received("soak")),
            invariants.no_tracebacks(logs),
            invariants.rss_flat(self.processes.rss),
        ]

    def report(self, verdict: list[invariants.Invariant]) -> str:
        clients = self.readers + self.others
        lines = [
            f"soak: {SOAK_SECONDS:.0f} s, {len(clients)} pages "
            f"({sum(c.connects for c in clients)} connects), {len(CHECKS)} flipping checks",
            *(f"  {line}" for line in self.injected),
            invariants.table(verdict),
        ]
        if not all(row.holds for row in verdict):
            logs = {name: self.processes.log(name) for name in self.processes.children}
            lines.append(invariants.first_traceback(logs))
        return "\n".join(lines)
