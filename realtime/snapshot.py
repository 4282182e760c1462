"""The snapshot a dashboard starts from: every check, its recent results, uptime, error stats.

It comes in frames of bounded size, whatever the number of checks (daphne refuses a WebSocket
message over 1 MiB; one frame with every check passed that at about 350 checks): the
``snapshot`` frame holds the counts and the first checks, worst first, up to
``Limits.snapshot_first_checks`` and ``Limits.snapshot_frame_bytes``; ``snapshot.part`` frames
follow with the rest, each under ``snapshot_frame_bytes``. All of them go into the client's
outbox at once, where the hold put them (``Outbox.release``).

Built in a few queries, whatever the number of checks. Clients asking at about the
same moment share one build (``SharedBuilds``), so a reconnect storm after a restart costs a
few builds, not one per browser.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

from channels.db import database_sync_to_async
from django.utils import timezone

from connections_app import recent_points
from connections_app.alerts.models import failed_count
from connections_app.error_handler import report
from connections_app.errors import ErrorCategory, missing_tables_message
from connections_app.models import (
    STATUS_ORDER,
    ErrorStat,
    HealthCheck,
    overall_status,
)
from connections_app.summary import (
    NO_HISTORY,
    CheckRow,
    HistoryFigures,
    check_rows,
    check_summary,
    history_figures,
)
from realtime.client import Client
from realtime.limits import Limits
from realtime.protocol import (
    CLOSE_RESYNC,
    EVERY,
    Watch,
    compact_json,
    encode_event,
    now_iso,
    redact_strings,
    shown,
)
from realtime.registry import clients_elsewhere, registry, server_id


@dataclass
class Snapshot:
    """A snapshot as read: the first frame's fields, its checks and the parts' checks, each
    check already JSON text."""

    head: dict
    first: list[str]
    parts: list[list[str]]

    def bodies(self) -> list[str]:
        """The ``snapshot`` body, then one ``snapshot.part`` body per part."""
        at = now_iso()
        head = self.head | {"parts": len(self.parts)}
        bodies = [_with_checks(encode_event("snapshot", head | {"checks": []}, at), self.first)]
        for number, checks in enumerate(self.parts, start=1):
            data = {"part": number, "of": len(self.parts), "checks": []}
            bodies.append(_with_checks(encode_event("snapshot.part", data, at), checks))
        return bodies


def _with_checks(body: str, checks: list[str]) -> str:
    """``body`` (ending with ``"checks":[]}}``) with the encoded ``checks`` in that list."""
    tail = '"checks":[]}}'
    assert body.endswith(tail)
    return f'{body[: -len(tail)]}"checks":[{",".join(checks)}]}}}}'


def build_snapshot(watch: Watch, limits: Limits) -> Snapshot:
    """The snapshot for a client watching ``watch``, worst first: the checks it is shown
    (``protocol.shown``); a check's page gets its check alone (none once it is deleted) and no
    error statistics, which it does not show."""
    rows = HealthCheck.objects.order_by()
    if watch.check is not None:
        rows = rows.filter(pk=watch.check)
    every = check_rows(rows, "recent")
    checks = [(c, recent) for c, recent in every if shown(watch, c.pk, c.tag_list)]
    rank = {status: i for i, status in enumerate(STATUS_ORDER)}
    checks.sort(key=lambda pair: (rank.get(pair[0].status, len(rank)), pair[0].name))
    figures = history_figures(None if watch == EVERY else [c.pk for c, _ in checks])
    texts = list(_check_texts(checks, figures, limits))
    first, rest = _first_page(texts, limits)
    counts = Counter(c.status for c, _ in checks)
    head = {
        "status": overall_status(list(counts)),
        "total": len(checks),
        "counts": dict(counts),
        "errors": recent_errors(limits.error_stats) if watch.check is None else [],
        "clients": clients_elsewhere(server_id(), limits.registry_expiry),
        "failed_alerts": failed_count(),
        "filter": sorted(watch.tags) if watch.tags else None,
        "check": watch.check,
        "limits": {
            "max_unacked": limits.max_unacked,
            "max_ack_delay": limits.max_ack_delay,
            "max_frame_bytes": limits.max_frame_bytes,
        },
    }
    return Snapshot(head, first, list(_parts(rest, limits.snapshot_frame_bytes)))


def _check_texts(
    checks: list[tuple[CheckRow, str]], figures: dict[int, HistoryFigures], limits: Limits
) -> Iterator[str]:
    """Each check's snapshot entry as JSON text. Its ``recent`` points are the stored text
    (``recent_points``), spliced in unparsed."""
    now = timezone.now()
    for check, stored in checks:
        row = dict(check_summary(check, now))
        row["id"] = check.pk  # the card links to the check's page
        row.update(figures.get(check.pk, NO_HISTORY))
        text = compact_json(row)
        recent = recent_points.newest(stored, limits.sparkline_points)
        yield f'{text[:-1]},"recent":{recent}}}'


#: Room kept in a frame for its envelope and the snapshot's other fields.
ENVELOPE = 16 * 1024


def _first_page(texts: list[str], limits: Limits) -> tuple[list[str], list[str]]:
    """The checks the first frame holds (at most ``snapshot_first_checks``, and within the
    frame's size) and the rest."""
    budget, taken = limits.snapshot_frame_bytes - ENVELOPE, 0
    for text in texts[: limits.snapshot_first_checks]:
        if budget - len(text) - 1 < 0:
            break
        budget -= len(text) + 1
        taken += 1
    return texts[:taken], texts[taken:]


def _parts(texts: list[str], max_bytes: int) -> Iterator[list[str]]:
    """``texts`` cut into lists that each stay within ``max_bytes`` (one check larger than
    that goes alone)."""
    part: list[str] = []
    size = 0
    for text in texts:
        if part and size + len(text) + 1 > max_bytes - ENVELOPE:
            yield part
            part, size = [], 0
        part.append(text)
        size += len(text) + 1
    if part:
        yield part


def recent_errors(limit: int) -> list[dict]:
    stats = ErrorStat.objects.order_by("-last_seen")[:limit]
    return [
        redact_strings(
            {
                "category": s.category,
                "severity": s.severity,
                "operation": s.operation,
                "endpoint": s.endpoint,
                "count": s.count,
                "first_seen": s.first_seen.isoformat(),
                "last_seen": s.last_seen.isoformat(),
                "last_message": s.last_message,
            }
        )
        for s in stats
    ]


class _Build:
    def __init__(self) -> None:
        self.reading = False
        self.future: asyncio.Future[list[str]] | None = None


class SharedBuilds:
    """Snapshot builds shared by the clients of one event loop.

    A client may join a build only until the build starts reading the database: a build that
    read earlier could miss an event that the client will never receive, since the client's
    outbox hold (which keeps later events behind the snapshot) began after that read.
    """

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._builds: dict[Watch, _Build] = {}

    async def bodies(self, watch: Watch, limits: Limits) -> list[str]:
        """The serialized snapshot frames (``Snapshot.bodies``) for ``watch``."""
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            self._loop, self._builds = loop, {}
        build = self._builds.get(watch)
        if build is None or build.reading:
            build = self._builds[watch] = _Build()
            build.future = asyncio.ensure_future(self._build(watch, limits, build))
            build.future.add_done_callback(lambda _: self._forget(watch, build))
        return await asyncio.shield(build.future)

    def _forget(self, watch: Watch, build: _Build) -> None:
        if self._builds.get(watch) is build:
            del self._builds[watch]
        if not build.future.cancelled():
            build.future.exception()  # retrieved: waiters that left must not leave a warning

    async def _build(self, watch: Watch, limits: Limits, build: _Build) -> list[str]:
        def read() -> Snapshot:
            # Set in the database thread as the read begins, not when the build is queued
            # for that thread: under a reconnect storm, clients keep joining queued builds.
            build.reading = True
            return build_snapshot(watch, limits)

        snapshot = await database_sync_to_async(read)()
        snapshot.head["clients"] += len(registry)
        snapshot.head["server"] = {
            "id": server_id(),
            "clients": len(registry),
            "tasks": task_count(),
        }
        return snapshot.bodies()


shared_builds = SharedBuilds()
_tasks_counted = (float("-inf"), 0)


def task_count() -> int:
    """The server's asyncio tasks, counted at most once a second: counting walks every task,
    milliseconds with thousands of clients, and a reconnect storm builds many snapshots."""
    global _tasks_counted
    now = time.monotonic()
    if now - _tasks_counted[0] >= 1.0:
        _tasks_counted = (now, len(asyncio.all_tasks()))
    return _tasks_counted[1]


async def send_snapshot(client: Client) -> None:
    """Send ``client`` a fresh snapshot for its filter, in its place among the events.

    When no snapshot can be built (database down) the client is told to reconnect and resync:
    the page's backoff paces the next try.
    """
    async with client.refresh_lock:
        client.outbox.hold()
        try:
            bodies = await shared_builds.bodies(client.watch, client.limits)
        except Exception as exc:
            missing = missing_tables_message(exc)
            if missing:  # what to do, for the log and the page, in one line
                report(missing, "ws.snapshot", server_id(), category=ErrorCategory.MISSING_TABLES)
            else:
                report(exc, "ws.snapshot", server_id(), client=client.id)
            await client.close(CLOSE_RESYNC, missing or "snapshot unavailable")
            return
        client.outbox.release(*bodies)
