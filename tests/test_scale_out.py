"""Issue 10: two ``runchecks`` processes on PostgreSQL share 50 checks whose targets flip.

Every flip of a target is exactly one real transition once the next result lands (one failure
makes a check DOWN, one success UP again). The test flips sets of targets in rounds it controls
and waits, bounded, until every check shows what its target answers; midway it SIGKILLs one
runner and, later, starts another. Then it holds the product to:

- the stored results: each check's ok values, ordered by ``checked_at``, change exactly once
  per flip (plus the first result), and no check ran more often than its interval allows
  (a check claimed by both runners would have twice as many results);
- the ``StateChange`` rows: exactly one per change in those results (UNKNOWN -> UP first), a
  consistent from/to chain, each backed by a result of the run of equal results it starts;
  none while a runner was killed or restarted;
- the dashboard: one staff WebSocket client (acking every frame) receives exactly one
  ``check.status`` frame per row, same from/to/at, in the same order per check, and no
  snapshot besides its first (no resync, so no event could legitimately have been dropped).

Everything runs on a private PostgreSQL database and a private Redis (the pub/sub layer
ignores Redis database numbers: on the shared server other runs' events would reach this
test's daphne, and its runners' events theirs). Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import itertools
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterator
from datetime import datetime
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import pytest
from psycopg import sql

from project.config import channel_layers
from realtime import publish
from tests.conftest import IN_CI
from tests.http_targets import HttpTarget
from tests.realtime import servers
from tests.realtime.helpers import events_of

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow]

CHECKS = 50
NAMES = [f"c{n}" for n in range(CHECKS)]
INTERVAL = 1.0
#: Rounds of flips with both runners, after one was killed, and after its replacement started.
ROUNDS = (2, 1, 2)
SEED = 10
#: Bound of every wait for a condition (seconds); the whole test takes about 20 s.
TIMEOUT = 15.0
UP, DOWN, UNKNOWN = "up", "down", "unknown"

MIGRATE = """
import django
django.setup()
from django.core.management import call_command
from connections_app.models import HealthCheck
call_command("migrate", interactive=False, verbosity=0)
HealthCheck.objects.all().delete()  # the two self-checks: only the flipped checks run
"""
#: The checks are written not yet due, so the runners may start meanwhile: they run nothing,
#: hence announce nothing, until the dashboard watches and the test makes the checks due.
CREATE = """
import json, sys
from datetime import timedelta
import django
django.setup()
from django.contrib.auth import get_user_model
from django.test import Client
from django.utils import timezone
from connections_app.models import HealthCheck
for fields in json.loads(sys.stdin.read()):
    check = HealthCheck(**fields, next_due_at=timezone.now() + timedelta(days=1))
    check.full_clean()
    check.save()
from django.contrib.auth.models import Permission
user = get_user_model().objects.create_user("staff", is_staff=True)
user.user_permissions.add(Permission.objects.get(codename="view_healthcheck"))
browser = Client()
browser.force_login(user)
print(browser.cookies["sessionid"].value)
"""


@pytest.fixture
def database(postgres_url) -> Iterator[str]:
    """A private, migrated PostgreSQL database; dropped at the end."""
    name = f"ch_scaleout_{os.getpid()}_{uuid.uuid4().hex[:8]}"

    def admin(statement: sql.Composed) -> None:
        with psycopg.connect(postgres_url, autocommit=True) as connection:
            connection.execute(statement)

    admin(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield urlsplit(postgres_url)._replace(path=f"/{name}").geturl()
    finally:
        admin(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture
def env(database) -> dict[str, str]:
    """The environment of every child process (Redis is added once it runs)."""
    if not shutil.which("redis-server"):
        reason = "redis-server is not installed (this test runs a private Redis)"
        if IN_CI:
            pytest.fail(f"{reason} (CI=true: tests must not skip)")
        pytest.skip(reason)
    base = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    return base | {"DATABASE_URL": database, "PYTHONUNBUFFERED": "1", "LOG_LEVEL": "INFO"}


@pytest.fixture
def fence(settings) -> Callable[[str], Awaitable[str]]:
    """Publish a marker event from this process, as a new publisher (numbered from 1, so the
    server sees no gap): Redis delivers it after every event published before it."""
    publish.reset()  # a new publisher, numbered from 1, with no backoff from other tests

    async def send(redis_url: str) -> str:
        settings.CHANNEL_LAYERS = channel_layers(redis_url, "pubsub")
        marker = f"fence-{uuid.uuid4().hex}"
        await publish.publish_event("check.status", {"name": marker})
        assert publish.stats.published == 1, publish.stats
        return marker

    return send


def django_child(env: dict[str, str], code: str, stdin: str = "") -> str:
    """Run ``code`` with Django set up on the database of ``env``; its output."""
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=servers.REPO,
        # No layer: nobody watches yet, and a resync request would only wait for a timeout.
        env=env | {"DJANGO_SETTINGS_MODULE": "project.settings", "REDIS_URL": ""},
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def create_checks(env: dict[str, str], target: HttpTarget) -> str:
    """The 50 checks, not yet due; a staff session key."""
    checks = [
        {
            "name": name,
            "kind": "http",
            "target": target.url(f"/switch/{name}"),
            "interval": INTERVAL,
            "timeout": 0.5,
            "failures_before_down": 1,
            "successes_before_up": 1,
            "tags": "scaleout",
        }
        for name in NAMES
    ]
    return django_child(env, CREATE, json.dumps(checks)).strip().splitlines()[-1]


class Runners:
    """``manage.py runchecks`` children by name, each logging to its own file."""

    def __init__(self, env: dict[str, str], logs: Path) -> None:
        self.env, self.logs = env, logs
        self.children: dict[str, subprocess.Popen] = {}

    def start(self, name: str) -> None:
        with open(self.log(name), "wb") as out:
            self.children[name] = subprocess.Popen(
                [sys.executable, "manage.py", "runchecks", "-v", "2"],
                cwd=servers.REPO,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def log(self, name: str) -> Path:
        return self.logs / f"runner-{name}.log"

    def text(self, name: str) -> str:
        return self.log(name).read_text(errors="replace")

    def batches_stored(self, name: str) -> int:
        return len(re.findall(r"stored \d+ results", self.text(name)))

    def running(self) -> list[str]:
        return [name for name, child in self.children.items() if child.returncode is None]

    def check_alive(self) -> None:
        for name in self.running():
            if self.children[name].poll() is not None:
                tail = self.text(name)[-3000:]
                raise AssertionError(f"runner {name} exited early:\n{tail}")

    def kill(self, name: str) -> None:
        child = self.children[name]
        child.send_signal(signal.SIGKILL)
        assert child.wait(timeout=10) == -signal.SIGKILL

    def terminate(self, names: list[str]) -> dict[str, int]:
        for name in names:
            self.children[name].send_signal(signal.SIGTERM)
        return {name: self.children[name].wait(timeout=10) for name in names}

    def stop_all(self) -> None:
        for child in self.children.values():
            if child.poll() is None:
                child.kill()
                child.wait(timeout=10)


class Dashboard:
    """One staff WebSocket client that keeps every frame and acks each one."""

    def __init__(self, client) -> None:
        self.client = client
        self.snapshots = 0
        self.status: dict[str, list[dict]] = defaultdict(list)
        self.markers: set[str] = set()
        self.closed: str | None = None
        self.task = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        try:
            async for text in self.client:
                frame = json.loads(text)
                for kind, data in events_of(frame):
                    if kind == "snapshot":
                        self.snapshots += 1
                    elif kind == "check.status" and data["name"] in NAMES:
                        self.status[data["name"]].append(data)
                    elif kind == "check.status":
                        self.markers.add(data["name"])
                await self.client.send(json.dumps({"type": "ack", "seq": frame["seq"]}))
        except Exception as exc:  # recorded, and asserted on: the socket must stay open
            self.closed = repr(exc)
        else:
            self.closed = f"closed by the server: {self.client.close_code}"

    def events(self) -> int:
        return sum(map(len, self.status.values()))

    async def close(self) -> None:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)
        await self.client.close()


async def until(
    condition: Callable[[], bool | Awaitable[bool]],
    what: str,
    runners: Runners,
    within: float = TIMEOUT,
) -> None:
    """Poll ``condition`` until true; fail after ``within`` seconds or when a runner died."""
    deadline = time.monotonic() + within
    while True:
        met = condition()
        if inspect.isawaitable(met):
            met = await met
        if met:
            return
        runners.check_alive()
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {within} s: {what}")
        await asyncio.sleep(0.05)


async def statuses(db: psycopg.AsyncConnection) -> dict[str, str]:
    rows = await db.execute(
        "SELECT name, status FROM connections_app_healthcheck WHERE name = ANY(%s)", [NAMES]
    )
    return dict(await rows.fetchall())


async def state_changes(db: psycopg.AsyncConnection) -> dict[str, list[tuple]]:
    rows = await db.execute(
        "SELECT c.name, s.from_status, s.to_status, s.at, s.result_checked_at "
        "FROM connections_app_statechange s "
        "JOIN connections_app_healthcheck c ON c.id = s.health_check_id "
        "WHERE c.name = ANY(%s) ORDER BY s.at, s.id",
        [NAMES],
    )
    changes: dict[str, list[tuple]] = defaultdict(list)
    for name, *change in await rows.fetchall():
        changes[name].append(tuple(change))
    return changes


async def results(db: psycopg.AsyncConnection) -> dict[str, list[tuple[datetime, bool]]]:
    rows = await db.execute(
        "SELECT c.name, r.checked_at, r.ok FROM connections_app_checkresult r "
        "JOIN connections_app_healthcheck c ON c.id = r.health_check_id "
        "WHERE c.name = ANY(%s) ORDER BY r.checked_at, r.id",
        [NAMES],
    )
    by_check: dict[str, list[tuple[datetime, bool]]] = defaultdict(list)
    for name, checked_at, ok in await rows.fetchall():
        by_check[name].append((checked_at, ok))
    return by_check


def runs(sequence: list[tuple[datetime, bool]]) -> list[tuple[bool, datetime, datetime]]:
    """Runs of equal ok values: (ok, first checked_at, last checked_at)."""
    found: list[tuple[bool, datetime, datetime]] = []
    for checked_at, ok in sequence:
        if found and found[-1][0] == ok:
            found[-1] = (ok, found[-1][1], checked_at)
        else:
            found.append((ok, checked_at, checked_at))
    return found


async def test_two_runners_share_flipping_checks_and_survive_a_kill(
    env, http_target, fence, tmp_path
):
    started = time.monotonic()
    rng = random.Random(SEED)
    answers = dict.fromkeys(NAMES, True)  # what each target answers: 200 (True) or 503
    flips = dict.fromkeys(NAMES, 0)
    runners = Runners(env, tmp_path)

    async def settled() -> bool:
        shown = await statuses(db)
        return all(shown[name] == (UP if ok else DOWN) for name, ok in answers.items())

    async def flip_round() -> None:
        """Flip a random set of targets; wait until every check shows its target's answer."""
        for name in rng.sample(NAMES, rng.randint(CHECKS // 5, CHECKS * 4 // 5)):
            answers[name] = not answers[name]
            flips[name] += 1
            http_target.switch(name, 200 if answers[name] else 503)
        await until(settled, "every check shows what its target answers", runners)

    async def stored_changes() -> int:
        return sum(map(len, (await state_changes(db)).values()))

    async def all_announced() -> bool:
        return dashboard.events() >= await stored_changes()

    with contextlib.ExitStack() as stack:
        stack.callback(runners.stop_all)
        redis_url = stack.enter_context(servers.redis_server(tmp_path / "redis.log"))
        env = env | {"REDIS_URL": redis_url, "CHANNEL_LAYER_KIND": "pubsub"}
        runners.env = env
        # Starting takes seconds: daphne while the database is migrated (it reads it only once
        # a client connects), the runners while the checks are written.
        migrate = asyncio.ensure_future(asyncio.to_thread(django_child, env, MIGRATE))
        port, _ = stack.enter_context(servers.daphne(env, tmp_path / "daphne.log"))
        await migrate
        runners.start("a")
        runners.start("b")
        cookie = await asyncio.to_thread(create_checks, env, http_target)
        db = await psycopg.AsyncConnection.connect(env["DATABASE_URL"], autocommit=True)
        dashboard = Dashboard(await servers.ws_connect(port, cookie, max_queue=None))
        try:
            # The checks become due once the server has joined the group (it sends the snapshot
            # after): the runners' first events must not be lost, or look like a gap.
            await until(lambda: dashboard.snapshots >= 1, "the first snapshot", runners)
            await db.execute(
                "UPDATE connections_app_healthcheck SET next_due_at = NULL WHERE name = ANY(%s)",
                [NAMES],
            )
            await until(settled, "every check is UP after its first result", runners, 30)
            for _ in range(ROUNDS[0]):
                await flip_round()

            # Killed once everything it committed was announced: the moment between a commit
            # and its events is not what this measures (a kill there loses those events).
            await until(all_announced, "the dashboard has every event so far", runners)
            runners.kill("a")
            for _ in range(ROUNDS[1]):  # b alone must run a's checks too
                await flip_round()

            before_restart = await stored_changes()
            runners.start("c")
            # A bound on starting a Django process and its first claim, on a loaded machine.
            await until(lambda: runners.batches_stored("c") >= 1, "c stored results", runners, 45)
            assert await settled()
            assert await stored_changes() == before_restart, "a transition from the restart"
            for _ in range(ROUNDS[2]):
                await flip_round()

            codes = runners.terminate(["b", "c"])
            assert codes == {"b": 0, "c": 0}, codes
            # Every event the runners published is delivered before this one: what has not
            # arrived with it never will, and a doubled event would be here too.
            marker = await fence(redis_url)
            await until(lambda: marker in dashboard.markers, "the marker event", runners)
            changes, stored = await state_changes(db), await results(db)
        finally:
            await dashboard.close()
            await db.close()

    # Both runners that ran to the end stored results: the checks were shared.
    for name in ("b", "c"):
        found = re.search(r"stopped after storing (\d+) results", runners.text(name))
        assert found and int(found[1]) > 0, runners.text(name)[-2000:]
    assert dashboard.closed is None, dashboard.closed
    # Each runner's start resyncs the dashboards (for events a killed runner never sent);
    # any other resync would mean the server may have missed events.
    starts = 3  # a, b, and c after the kill
    assert dashboard.snapshots <= 1 + starts, f"{dashboard.snapshots - 1} resync snapshot(s)"

    later, gaps = 0, []
    for name in NAMES:
        sequence = stored[name]
        span = (sequence[-1][0] - sequence[0][0]).total_seconds()
        # Claims are an interval apart, so a check runs about once per interval; a check
        # claimed by both runners at once would have twice as many results.
        assert len(sequence) <= span / INTERVAL + 3, (name, len(sequence), span)
        gaps += [(b[0] - a[0]).total_seconds() for a, b in itertools.pairwise(sequence)]

        expected = runs(sequence)  # one transition per run of equal results
        assert expected[0][0] is True, name
        assert len(expected) == 1 + flips[name], (name, flips[name], expected)
        rows = changes[name]
        assert len(rows) == len(expected), (name, rows, expected)
        previous = UNKNOWN
        for (from_status, to_status, at, checked_at), (ok, first, last) in zip(
            rows, expected, strict=True
        ):
            assert from_status != to_status, (name, rows)
            assert (from_status, to_status) == (previous, UP if ok else DOWN), (name, rows)
            # Judged on a result of the run it starts: the first, or a later one when the
            # first was stored after a newer result of the other runner (then it is history).
            assert at == checked_at and first <= checked_at <= last, (name, rows, expected)
            later += checked_at != first
            previous = to_status

        events = [
            (e["from"], e["to"], datetime.fromisoformat(e["at"])) for e in dashboard.status[name]
        ]
        assert events == [row[:3] for row in rows], (name, events, rows)

    print(
        f"\n{sum(map(len, changes.values()))} transitions and as many check.status events "
        f"({sum(flips.values())} flips), {sum(map(len, stored.values()))} results; "
        f"{sum(gap < INTERVAL / 2 for gap in gaps)} runs less than half an interval after the "
        f"check's previous one (closest {min(gaps):.3f} s); {later} transitions judged on a "
        f"later result of their run; {time.monotonic() - started:.1f} s"
    )
