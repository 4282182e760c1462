"""A check's state machine: what stored results, pauses and maintenance windows do to the state
kept on its row, and the ``StateChange`` row each change of status leaves.

Two values describe a check. ``health`` is what its results say (UP, DEGRADED, DOWN, UNKNOWN),
by its rules: ``failures_before_down`` failures in a row make it DOWN (DEGRADED before),
``successes_before_up`` successes in a row bring a DOWN check back UP, a success slower than
``degraded_after_ms`` is DEGRADED. ``status`` is what everyone is shown: PAUSED while disabled,
MAINTENANCE inside a maintenance window, else the health. Every change of status is a
``StateChange``; inside a window, changes of health are recorded too, marked
``during_maintenance``.

Every function here changes rows only inside the caller's transaction, with the rows locked:
results (``results.store_outcomes``), a pause or resume (``switch``), a window that begins or
ends (``apply_maintenance``). So any number of runners, a retried batch or a restart agree:
nothing is kept in memory between two calls.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS
from django.db.models import Count, Max, Min
from django.utils import timezone

from connections_app import recent_points
from connections_app.alerts.enqueue import enqueue_for_changes
from connections_app.db.transactions import retry_transaction
from connections_app.maintenance import MaintenanceWindow, checks_in_maintenance
from connections_app.models import (
    DEGRADED,
    DOWN,
    KIND_PUSH,
    MAINTENANCE,
    PAUSED,
    UNKNOWN,
    UP,
    CheckResult,
    HealthCheck,
    StateChange,
)
from connections_app.result_rows import ResultRow

#: The stored state: what ``apply_result`` moves, what ``save_state`` writes.
STATE_FIELDS = [
    "status",
    "status_since",
    "health",
    "failures_in_a_row",
    "successes_in_a_row",
    "flapping",
    "last_checked_at",
    "last_latency_ms",
    "last_error_category",
    "last_error_message",
    "tls_days_left",
    "recent",
]


def judge(
    check: HealthCheck, ok: bool, latency_ms: float | None, warning: str = ""
) -> tuple[str, int, int]:
    """The health, failures and successes in a row after one more result, by ``check``'s
    rules and its current health and counters. ``warning``: the category a success carries
    when it still needs attention (``tls_expiring``): it is DEGRADED, but counts as a success."""
    if not ok:
        failures = check.failures_in_a_row + 1
        # A push check's failure is the job's own word, or a ping already late past the grace.
        down = failures >= check.failures_before_down or check.health == DOWN
        down = down or check.kind == KIND_PUSH
        return (DOWN if down else DEGRADED), failures, 0
    successes = check.successes_in_a_row + 1
    if check.health == DOWN and successes < check.successes_before_up:
        return DOWN, 0, successes  # recovering, not yet recovered
    if warning:
        return DEGRADED, 0, successes
    slow = check.degraded_after_ms
    if slow is not None and latency_ms is not None and latency_ms > slow:
        return DEGRADED, 0, successes
    return UP, 0, successes


def shown_status(enabled: bool, in_maintenance: bool, health: str) -> str:
    if not enabled:
        return PAUSED
    if in_maintenance:
        return MAINTENANCE
    return health


@dataclass(frozen=True)
class FlapRule:
    """More than ``changes`` changes within ``window`` make a check flapping, until it has
    been stable for a whole window."""

    changes: int
    window: timedelta

    @classmethod
    def from_settings(cls) -> FlapRule:
        return cls(settings.FLAP_CHANGES, timedelta(minutes=settings.FLAP_WINDOW_MINUTES))


class Transitions:
    """The ``StateChange`` rows of one transaction, made as checks move, saved together."""

    def __init__(self) -> None:
        self.rows: list[StateChange] = []
        #: Per check (by id): how many of ``rows`` its results caused. Counted as they are
        #: recorded: counting by scanning ``rows`` for every check was quadratic, a second of
        #: the database thread for a batch in which a thousand checks changed.
        self._by_results: Counter[int] = Counter()

    def record(
        self,
        check: HealthCheck,
        old: str,
        new: str,
        at: datetime,
        *,
        result: ResultRow | None = None,
        during_maintenance: bool = False,
    ) -> None:
        # A failure says why; so does a success that carries a warning (tls_expiring).
        failed = result is not None and bool(result.error_category)
        if result is not None:
            self._by_results[check.pk] += 1
        self.rows.append(
            StateChange(
                health_check=check,
                from_status=old,
                to_status=new,
                at=at,
                reason_category=result.error_category if failed else "",
                reason_message=result.error_message if failed else "",
                result_checked_at=result.checked_at if result is not None else None,
                during_maintenance=during_maintenance,
            )
        )

    def move(
        self,
        check: HealthCheck,
        new: str,
        at: datetime,
        *,
        result: ResultRow | None = None,
        during_maintenance: bool = False,
    ) -> None:
        """Change the check's shown status to ``new`` and record it (``status_since`` is when
        the shown status last changed, not what the results said inside a window)."""
        old = check.status
        check.status, check.status_since = new, at
        self.record(check, old, new, at, result=result, during_maintenance=during_maintenance)

    def caused_by_results(self, check: HealthCheck) -> int:
        return self._by_results[check.pk]

    def save(self, using: str = DEFAULT_DB_ALIAS) -> list[StateChange]:
        return StateChange.objects.using(using).bulk_create(self.rows)


def apply_result(
    check: HealthCheck, result: ResultRow, in_maintenance: bool, transitions: Transitions
) -> None:
    """Move ``check``'s state (in memory; the caller saves it) by one result, newer than any
    it has seen: the caller skips the ones that are not, so a batch stored twice counts once."""
    warning = result.error_category if result.ok else ""
    health, failures, successes = judge(check, result.ok, result.latency_ms, warning)
    old_status, old_health = check.status, check.health
    check.health, check.failures_in_a_row, check.successes_in_a_row = health, failures, successes
    check.last_checked_at = result.checked_at
    check.last_latency_ms = result.latency_ms
    check.last_error_category = result.error_category
    check.last_error_message = result.error_message
    check.tls_days_left = result.tls_days_left
    check.recent = recent_points.add(
        check.recent, [recent_points.point(result.checked_at, result.ok, result.latency_ms)]
    )
    status = shown_status(check.enabled, in_maintenance, health)
    at = result.checked_at
    if in_maintenance and check.enabled and health != old_health:
        transitions.record(check, old_health, health, at, result=result, during_maintenance=True)
    if status != old_status:
        transitions.move(check, status, at, result=result, during_maintenance=status == MAINTENANCE)


def update_flapping(
    checks: Iterable[HealthCheck], transitions: Transitions, at: datetime, rule: FlapRule
) -> list[HealthCheck]:
    """Mark a check flapping after more than ``rule.changes`` changes caused by its results
    within the window (stored ones plus this transaction's; a pause or a window is not the
    check flapping), and clear the mark once it has had none for a whole window. The checks
    that began flapping now (their one alert says so)."""
    since = at - rule.window
    new = {check.pk: transitions.caused_by_results(check) for check in checks}
    asked = [pk for pk, n in new.items() if n] + [c.pk for c in checks if c.flapping]
    if not asked:
        return []
    stored = dict(
        StateChange.objects.filter(
            health_check_id__in=asked, at__gt=since, result_checked_at__isnull=False
        )
        .order_by()
        .values("health_check_id")
        .annotate(n=Count("pk"))
        .values_list("health_check_id", "n")
    )
    began = []
    for check in checks:
        changes = stored.get(check.pk, 0) + new[check.pk]
        if changes > rule.changes and not check.flapping:
            check.flapping = True
            began.append(check)
        elif check.flapping and changes == 0:
            check.flapping = False
    return began


@retry_transaction
def switch(ids: Iterable[int], enabled: bool, at: datetime | None = None) -> list[StateChange]:
    """Pause (``enabled=False``) or resume checks, recording each change of status.

    A resumed check starts afresh (UNKNOWN, counters at 0) and is due at once: what its
    results said before the pause is too old to judge by.
    """
    at = at or timezone.now()
    transitions = Transitions()
    checks = list(HealthCheck.objects.select_for_update().filter(pk__in=list(ids)))
    inside = checks_in_maintenance(((c.pk, c.tags) for c in checks), at) if enabled else set()
    moved = []
    for check in checks:
        if enabled and check.status == PAUSED:
            check.health, check.failures_in_a_row, check.successes_in_a_row = UNKNOWN, 0, 0
            check.next_due_at = None
            in_window = check.pk in inside
            new = shown_status(True, in_window, UNKNOWN)
            transitions.move(check, new, at, during_maintenance=in_window)
        elif not enabled and check.status != PAUSED:
            transitions.move(check, PAUSED, at)
        elif check.enabled == enabled:
            continue  # already as asked: nothing to write
        check.enabled = enabled
        moved.append(check)
    HealthCheck.objects.bulk_update(moved, ["enabled", "next_due_at", *STATE_FIELDS])
    return transitions.save()


@retry_transaction
def apply_maintenance(at: datetime | None = None) -> list[StateChange]:
    """Show MAINTENANCE on the enabled checks a window covers now and end it on the others,
    recording each change (a check with a long interval must not wait for its next result)."""
    at = at or timezone.now()
    if not (
        MaintenanceWindow.objects.filter(enabled=True).exists()
        or HealthCheck.objects.filter(status=MAINTENANCE).exists()
    ):
        return []
    enabled = HealthCheck.objects.filter(enabled=True).values_list("pk", "tags")
    inside = checks_in_maintenance(enabled, at)
    moving = _moving(inside)
    transitions = Transitions()
    for check in moving:
        new = shown_status(check.enabled, check.pk in inside, check.health)
        transitions.move(check, new, at, during_maintenance=new == MAINTENANCE)
    HealthCheck.objects.bulk_update(moving, ["status", "status_since"])
    changes = transitions.save()
    # A window that ends on a check still failing is news, told with the change.
    enqueue_for_changes(changes)
    return changes


def _moving(inside: set[int]) -> list[HealthCheck]:
    locked = HealthCheck.objects.select_for_update()
    entering = locked.filter(enabled=True, pk__in=inside).exclude(status=MAINTENANCE)
    leaving = locked.filter(status=MAINTENANCE).exclude(pk__in=inside)
    return [*entering, *leaving]


def rebuild_from_results(
    checks_model: type[HealthCheck] = HealthCheck,
    results_model: type[CheckResult] = CheckResult,
    using: str = DEFAULT_DB_ALIAS,
) -> int:
    """Fill every check's stored state from the results already stored (the migration that
    introduced the stored state; benchmarks that load results in bulk). The checks updated.

    The streaks are read from the results: failures since the last success, successes since
    the last failure. ``status_since`` is when the current streak began.
    """
    results = results_model.objects.using(using)
    ends = dict(
        results.values("health_check_id")
        .annotate(last=Max("checked_at"))
        .values_list("health_check_id", "last")
    )
    last_ok = _last(results.filter(ok=True))
    last_failed = _last(results.filter(ok=False))
    updated = []
    for check in checks_model.objects.using(using).filter(pk__in=list(ends)):
        last = results.filter(health_check_id=check.pk).order_by("-checked_at").first()
        ok_at, failed_at = last_ok.get(check.pk), last_failed.get(check.pk)
        streak = results.filter(health_check_id=check.pk)
        if last.ok:
            streak = streak.filter(checked_at__gt=failed_at) if failed_at else streak
        else:
            streak = streak.filter(checked_at__gt=ok_at) if ok_at else streak
        counted = streak.aggregate(n=Count("pk"), since=Min("checked_at"))
        _fill(check, last, counted["n"], counted["since"])
        updated.append(check)
    # A migration passes the models as they were then: only the fields they had.
    names = {f.name for f in checks_model._meta.concrete_fields}
    fields = [name for name in STATE_FIELDS if name in names and name != "recent"]
    checks_model.objects.using(using).bulk_update(updated, fields, batch_size=500)
    if "recent" in names:
        recent_points.fill(checks_model, results_model, using)
    return len(updated)


def _last(results) -> dict[int, datetime]:
    return defaultdict(
        lambda: None,
        results.values("health_check_id")
        .annotate(at=Max("checked_at"))
        .values_list("health_check_id", "at"),
    )


def _fill(check, last, streak: int, since: datetime | None) -> None:
    if last.ok:
        check.failures_in_a_row, check.successes_in_a_row = 0, streak
        check.health = DEGRADED if last.error_category else UP
    else:
        check.failures_in_a_row, check.successes_in_a_row = streak, 0
        check.health = DOWN if streak >= check.failures_before_down else DEGRADED
    check.status = PAUSED if not check.enabled else check.health
    check.status_since = since
    check.flapping = False
    check.last_checked_at = last.checked_at
    check.last_latency_ms = last.latency_ms
    check.last_error_category = last.error_category
    check.last_error_message = last.error_message
    check.tls_days_left = getattr(last, "tls_days_left", None)
