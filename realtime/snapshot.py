"""The snapshot a dashboard starts from: every check, its recent results, uptime, error stats.

Built in a fixed number of queries whatever the number of checks. Clients asking at about the
same moment share one build (``SharedBuilds``), so a reconnect storm after a restart costs a
few builds, not one per browser.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict

from channels.db import database_sync_to_async
from django.db.models import F, Window
from django.db.models.functions import RowNumber
from django.utils import timezone

from connections_app.alerts.models import failed_count
from connections_app.error_handler import report
from connections_app.errors import ErrorCategory, missing_tables_message
from connections_app.models import (
    UPTIME_WINDOW,
    CheckResult,
    ErrorStat,
    HealthCheck,
    overall_status,
)
from connections_app.summary import NO_HISTORY, SUMMARY_FIELDS, check_summary, history_figures
from realtime.client import Client
from realtime.limits import Limits
from realtime.protocol import CLOSE_RESYNC, encode_event, redact_strings
from realtime.registry import clients_elsewhere, registry, server_id


def build_snapshot(tags: frozenset[str] | None, limits: Limits) -> dict:
    """The snapshot's data for a client filtering on ``tags`` (None: every check)."""
    checks = HealthCheck.objects.only(*SUMMARY_FIELDS)
    checks = [c for c in checks if _matches(c, tags)]
    since = timezone.now() - UPTIME_WINDOW
    recent = recent_results([c.pk for c in checks], limits.sparkline_points, since)
    figures = history_figures(None if tags is None else [c.pk for c in checks])
    rows = []
    for check in checks:
        row = dict(check_summary(check))
        row["id"] = check.pk  # the card links to the check's page
        row.update(figures.get(check.pk, NO_HISTORY))
        row["recent"] = recent.get(check.pk, [])
        rows.append(row)
    return {
        "status": overall_status([r["status"] for r in rows]),
        "checks": rows,
        "errors": recent_errors(limits.error_stats),
        "clients": clients_elsewhere(server_id(), limits.registry_expiry),
        "failed_alerts": failed_count(),
        "filter": sorted(tags) if tags else None,
        "limits": {
            "max_unacked": limits.max_unacked,
            "max_ack_delay": limits.max_ack_delay,
            "max_frame_bytes": limits.max_frame_bytes,
        },
    }


def _matches(check: HealthCheck, tags: frozenset[str] | None) -> bool:
    return tags is None or not tags.isdisjoint(check.tag_list)


def recent_results(ids: list[int], points: int, since) -> dict[int, list[dict]]:
    """The last ``points`` results of each check (oldest first), in one windowed query."""
    ranked = (
        CheckResult.objects.filter(health_check_id__in=ids, checked_at__gte=since)
        .annotate(
            rank=Window(
                RowNumber(), partition_by=[F("health_check_id")], order_by=F("checked_at").desc()
            )
        )
        .filter(rank__lte=points)
        .order_by("health_check_id", "checked_at")
        .values_list("health_check_id", "checked_at", "ok", "latency_ms", "error_category")
    )
    by_check: dict[int, list[dict]] = defaultdict(list)
    for check_id, checked_at, ok, latency, category in ranked:
        by_check[check_id].append(
            {
                "checked_at": checked_at.isoformat(),
                "ok": ok,
                "latency_ms": round(latency, 2) if latency is not None else None,
                "error_category": category,
            }
        )
    return by_check


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
        self.future: asyncio.Future[str] | None = None


class SharedBuilds:
    """Snapshot builds shared by the clients of one event loop.

    A client may join a build only until the build starts reading the database: a build that
    read earlier could miss an event that the client will never receive, since the client's
    outbox hold (which keeps later events behind the snapshot) began after that read.
    """

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._builds: dict[frozenset[str] | None, _Build] = {}

    async def body(self, tags: frozenset[str] | None, limits: Limits) -> str:
        """A serialized snapshot event (``protocol.encode_event``) for ``tags``."""
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            self._loop, self._builds = loop, {}
        build = self._builds.get(tags)
        if build is None or build.reading:
            build = self._builds[tags] = _Build()
            build.future = asyncio.ensure_future(self._build(tags, limits, build))
            build.future.add_done_callback(lambda _: self._forget(tags, build))
        return await asyncio.shield(build.future)

    def _forget(self, tags: frozenset[str] | None, build: _Build) -> None:
        if self._builds.get(tags) is build:
            del self._builds[tags]
        if not build.future.cancelled():
            build.future.exception()  # retrieved: waiters that left must not leave a warning

    async def _build(self, tags: frozenset[str] | None, limits: Limits, build: _Build) -> str:
        def read() -> dict:
            # Set in the database thread as the read begins, not when the build is queued
            # for that thread: under a reconnect storm, clients keep joining queued builds.
            build.reading = True
            return build_snapshot(tags, limits)

        data = await database_sync_to_async(read)()
        data["clients"] += len(registry)
        data["server"] = {"id": server_id(), "clients": len(registry), "tasks": task_count()}
        return encode_event("snapshot", data)


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
            body = await shared_builds.body(client.tags, client.limits)
        except Exception as exc:
            missing = missing_tables_message(exc)
            if missing:  # what to do, for the log and the page, in one line
                report(missing, "ws.snapshot", server_id(), category=ErrorCategory.MISSING_TABLES)
            else:
                report(exc, "ws.snapshot", server_id(), client=client.id)
            await client.close(CLOSE_RESYNC, missing or "snapshot unavailable")
            return
        client.outbox.release(body)
