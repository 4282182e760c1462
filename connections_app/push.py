"""Push checks: the job reports in (``/ping/<token>``), the runner only judges its silence.

A ping is stored as a result through ``results.store_outcomes``, so state and its
``StateChange`` rows follow as for any probe. ``/start`` only notes when a run began: the next
success carries the run's duration as its latency. Silence longer than the interval plus the
grace is a failed result of category ``timeout``; a push check's failures make it DOWN at once
(``state.judge``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timedelta

from connections_app.errors import ErrorCategory
from connections_app.models import KIND_PUSH, HealthCheck
from connections_app.probes.result import ProbeResult
from connections_app.redaction import redact
from connections_app.results import Outcome, store_outcomes

#: The most of a ping's body kept.
MAX_PING_BODY = 10 * 1024
START, FAIL, SUCCESS = "start", "fail", ""


def deadline(check: HealthCheck, since: datetime) -> datetime:
    """When silence since ``since`` becomes a failure."""
    return since + timedelta(seconds=check.interval + check.grace)


def record_ping(check: HealthCheck, signal: str, body: bytes, at: datetime) -> Outcome | None:
    """Store one ping: ``""`` success, ``"start"``, ``"fail"`` or an exit code (``"0"``..).
    The outcome stored, or None for a start (no result: the run is under way)."""
    if signal == START:
        _note(check, at, push_started_at=at)
        return None
    latency = None
    if check.push_started_at is not None and check.push_started_at <= at:
        latency = (at - check.push_started_at).total_seconds() * 1000
    result = _result(signal, latency, body)
    outcome = Outcome(check, result, checked_at=at)
    # Not one outer transaction: store_outcomes retries its own on a lock, which it cannot do
    # inside another. The ping counts (last_ping_at) only once its result is stored.
    store_outcomes([outcome])
    _note(check, at, push_started_at=None)
    return outcome


def silence(check: HealthCheck, now: datetime) -> ProbeResult | None:
    """The runner's verdict on a push check: a failure when the last ping (or the check's
    creation) is older than interval + grace, else None (nothing to store)."""
    since = check.last_ping_at or check.created_at
    if since is None or now <= deadline(check, since):
        return None
    silent = (now - since).total_seconds()
    return ProbeResult.failure(ErrorCategory.TIMEOUT, f"no ping for {silent:.0f} s")


def with_quiet_push_checks(checks: Sequence[HealthCheck], outcomes: list[Outcome]) -> list[Outcome]:
    """``outcomes`` of one round of ``checks``, and for each push check the round left alone
    (its job reported within its period: nothing new to store) its state as its last ping
    left it; in the order of ``checks``. A report of one round (``runchecks --once``) that
    left them out would say nothing of a job whose last ping said it failed."""
    ran = {outcome.check.pk: outcome for outcome in outcomes}
    quiet = [c.pk for c in checks if c.kind == KIND_PUSH and c.pk not in ran]
    for check in HealthCheck.objects.filter(pk__in=quiet):
        ran[check.pk] = _as_last_reported(check)
    return [ran[check.pk] for check in checks if check.pk in ran]


def _as_last_reported(check: HealthCheck) -> Outcome:
    """The check's last result as its row keeps it (``state.apply_result``): no query."""
    if check.last_checked_at is None:  # within its first period: nothing reported yet
        result = ProbeResult(ok=False, latency_ms=None, error_message="no ping yet")
        return Outcome(check, result, stored=True, status=check.status, health=check.health)
    result = ProbeResult(
        # A push result has no warnings: one with a category is a failure.
        ok=not check.last_error_category,
        latency_ms=check.last_latency_ms,
        error_category=check.last_error_category,
        error_message=check.last_error_message,
    )
    return Outcome(
        check,
        result,
        checked_at=check.last_checked_at,
        stored=True,
        status=check.status,
        health=check.health,
    )


def _result(signal: str, latency: float | None, body: bytes) -> ProbeResult:
    text = redact(body[:MAX_PING_BODY].decode("utf-8", errors="replace"))
    if signal == SUCCESS or signal == "0":
        return ProbeResult(ok=True, latency_ms=latency, ping_body=text)
    words = "the job reported a failure" if signal == FAIL else f"the job exited with {signal}"
    failure = ProbeResult.failure(ErrorCategory.REPORTED, words, latency)
    return replace(failure, ping_body=text)


def _note(check: HealthCheck, at: datetime, **fields) -> None:
    # The next due time is the deadline: the runner looks exactly when silence would matter.
    HealthCheck.objects.filter(pk=check.pk).update(
        last_ping_at=at, next_due_at=deadline(check, at), **fields
    )
