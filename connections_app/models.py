"""Health checks, their results and aggregated error statistics.

Status is never stored: it is derived from the latest results (``HealthCheck.status`` for one
check, ``HealthCheck.objects.with_status()`` for a list in one query).
"""

from __future__ import annotations

import math
from datetime import timedelta

from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Count, Exists, OuterRef, Q, Subquery
from django.db.models.functions import Coalesce
from django.utils import timezone

from connections_app.redaction import redact
from connections_app.targets import (  # noqa: F401 - the kinds are the model's vocabulary
    KIND_CHANNEL_LAYER,
    KIND_CHOICES,
    KIND_DATABASE,
    KIND_HTTP,
    KIND_REDIS,
    KIND_TCP,
    validate_target,
)

UP = "up"
DEGRADED = "degraded"
DOWN = "down"
PAUSED = "paused"
UNKNOWN = "unknown"
STATUS_CHOICES = [
    (UP, "Up"),
    (DEGRADED, "Degraded"),
    (DOWN, "Down"),
    (PAUSED, "Paused"),
    (UNKNOWN, "Unknown"),
]
#: Worst first: the overall status is the first of these any check has.
STATUS_ORDER = [DOWN, DEGRADED, UNKNOWN, UP, PAUSED]

#: The most failures in a row a status ever needs to count (bounds the status query).
MAX_FAILURES_BEFORE_DOWN = 100

SEVERITY_CHOICES = [(s, s.title()) for s in ("info", "warning", "error", "critical")]


def derive_status(
    enabled: bool, last_checked_at, failures_in_a_row: int, failures_before_down: int
) -> str:
    """The status a check has, from what its results say."""
    if not enabled:
        return PAUSED
    if last_checked_at is None:
        return UNKNOWN
    if failures_in_a_row == 0:
        return UP
    if failures_in_a_row >= failures_before_down:
        return DOWN
    return DEGRADED


def overall_status(statuses: list[str]) -> str:
    present = set(statuses)
    for status in STATUS_ORDER:
        if status in present:
            return status
    return UNKNOWN


def split_tags(raw: str) -> list[str]:
    """``"db, Critical  api"`` -> ``["api", "critical", "db"]``: sorted, lower case, unique."""
    parts = raw.replace(",", " ").split()
    return sorted({p.strip().lower() for p in parts if p.strip()})


class HealthCheckQuerySet(models.QuerySet):
    def with_status(self) -> HealthCheckQuerySet:
        """Annotate the latest result and the failures since the last success, in one query."""
        results = CheckResult.objects.filter(health_check=OuterRef("pk")).order_by("-checked_at")
        # Inside ``failures`` the outer row is a CheckResult: match on its health_check.
        mine = CheckResult.objects.filter(health_check=OuterRef("health_check"))
        last_ok = mine.filter(ok=True).order_by("-checked_at").values("checked_at")[:1]
        # Count no further back than MAX_FAILURES_BEFORE_DOWN results: a check down for weeks
        # must not make every status query scan all its failures.
        horizon = mine.order_by("-checked_at").values("checked_at")[
            MAX_FAILURES_BEFORE_DOWN - 1 : MAX_FAILURES_BEFORE_DOWN
        ]
        failures = (
            CheckResult.objects.filter(health_check=OuterRef("pk"), ok=False)
            .filter(Q(checked_at__gt=Subquery(last_ok)) | ~Exists(last_ok))
            .filter(Q(checked_at__gte=Subquery(horizon)) | ~Exists(horizon))
            .order_by()
            .values("health_check")
            .annotate(n=Count("pk"))
            .values("n")
        )
        return self.annotate(
            last_checked_at=Subquery(results.values("checked_at")[:1]),
            last_latency_ms=Subquery(results.values("latency_ms")[:1]),
            last_error_category=Subquery(results.values("error_category")[:1]),
            failures_in_a_row=Coalesce(Subquery(failures), 0),
        )

    def with_uptime(self, since: timedelta = timedelta(hours=24)) -> HealthCheckQuerySet:
        """Annotate ``results_total`` and ``results_ok`` over the window, for uptime."""
        window = CheckResult.objects.filter(
            health_check=OuterRef("pk"), checked_at__gte=timezone.now() - since
        )

        def count(results):
            counted = results.order_by().values("health_check").annotate(n=Count("pk"))
            return Coalesce(Subquery(counted.values("n")), 0)

        return self.annotate(results_total=count(window), results_ok=count(window.filter(ok=True)))

    def with_derived_status(self, status: str) -> HealthCheckQuerySet:
        """Only checks whose derived status is ``status`` (call after ``with_status()``)."""
        down = Q(failures_in_a_row__gte=models.F("failures_before_down"))
        running = Q(enabled=True, last_checked_at__isnull=False)
        conditions = {
            PAUSED: Q(enabled=False),
            UNKNOWN: Q(enabled=True, last_checked_at__isnull=True),
            UP: running & Q(failures_in_a_row=0),
            DOWN: running & Q(failures_in_a_row__gt=0) & down,
            DEGRADED: running & Q(failures_in_a_row__gt=0) & ~down,
        }
        return self.filter(conditions[status])

    def with_tag(self, tag: str) -> HealthCheckQuerySet:
        tag = tag.strip().lower()
        return self.filter(
            Q(tags=tag)
            | Q(tags__startswith=f"{tag},")
            | Q(tags__endswith=f",{tag}")
            | Q(tags__contains=f",{tag},")
        )


class HealthCheck(models.Model):
    name = models.CharField(max_length=100, unique=True)
    kind = models.CharField(max_length=20, choices=KIND_CHOICES, default=KIND_HTTP)
    target = models.CharField(
        max_length=500,
        help_text="URL for http; host:port for tcp; alias for database and channel_layer; "
        "redis://host:port/db for redis.",
    )
    interval = models.FloatField(
        default=30.0, help_text="Seconds between checks: 1 to 604800 (7 days)."
    )
    timeout = models.FloatField(
        default=5.0, help_text="Seconds: above 0, at most 300, and below the interval."
    )
    failures_before_down = models.PositiveSmallIntegerField(
        default=3,
        help_text="Failures in a row before the check is DOWN (DEGRADED before); 1 to "
        f"{MAX_FAILURES_BEFORE_DOWN}.",
    )
    expected_status_min = models.PositiveSmallIntegerField(default=200)
    expected_status_max = models.PositiveSmallIntegerField(default=399)
    expected_body = models.CharField(
        max_length=200, blank=True, help_text="HTTP only: text the body must contain."
    )
    enabled = models.BooleanField(default=True)
    critical = models.BooleanField(
        default=True, help_text="A critical check that is DOWN makes /health/ answer 503."
    )
    tags = models.CharField(max_length=200, blank=True, help_text="Comma or space separated.")
    next_due_at = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = HealthCheckQuerySet.as_manager()

    class Meta:
        ordering = ["name"]
        indexes = [
            # runchecks: "which enabled checks are due?"
            models.Index(fields=["enabled", "next_due_at"], name="check_due_idx"),
        ]

    def __str__(self) -> str:
        return self.name

    def full_clean(self, exclude=None, validate_unique=True, validate_constraints=True) -> None:
        # clean() judges only values clean_fields() accepted. The fields a ModelForm refused
        # itself come as ``exclude`` (their values here are the stored ones); clean_fields()
        # adds the ones it refuses.
        self._not_judged = set(exclude or ())
        try:
            super().full_clean(exclude, validate_unique, validate_constraints)
        finally:
            del self._not_judged

    def clean_fields(self, exclude=None) -> None:
        try:
            super().clean_fields(exclude)
        except ValidationError as exc:
            if hasattr(self, "_not_judged"):
                self._not_judged |= set(exc.error_dict)
            raise

    def clean(self) -> None:
        # A refused value has its message already (one message per field), and may not even
        # be a number to compare.
        refused = getattr(self, "_not_judged", set()) & set(CLEANED_FIELDS)
        value = {name: None if name in refused else getattr(self, name) for name in CLEANED_FIELDS}
        errors: dict[str, str] = {}
        if "tags" not in refused:
            self.tags = ",".join(split_tags(self.tags or ""))
        interval, timeout = value["interval"], value["timeout"]
        if interval is not None:
            error = _seconds_error("interval", interval, MAX_INTERVAL_SECONDS)
            if error is None and interval < 1:
                error = "The interval must be at least 1 second."
            if error:
                errors["interval"] = error
                interval = None
        if timeout is not None:
            error = _seconds_error("timeout", timeout, MAX_TIMEOUT_SECONDS)
            if error is None and timeout <= 0:
                error = "The timeout must be above 0 seconds."
            elif error is None and interval is not None and timeout >= interval:
                error = "The timeout must be shorter than the interval."
            if error:
                errors["timeout"] = error
        failures = value["failures_before_down"]
        if failures is not None and failures < 1:
            errors["failures_before_down"] = "At least 1 failure is needed before DOWN."
        elif failures is not None and failures > MAX_FAILURES_BEFORE_DOWN:
            errors["failures_before_down"] = f"At most {MAX_FAILURES_BEFORE_DOWN} failures."
        errors.update(
            self._status_range_errors(value["expected_status_min"], value["expected_status_max"])
        )
        # A target is read by its kind: with no valid kind, only the kind is reported.
        if value["kind"] is not None and value["target"] is not None:
            target_error = validate_target(self.kind, self.target)
            if target_error:
                # Messages quote parts of the target: never a password that was in it.
                errors["target"] = redact(target_error)
        if errors:
            raise ValidationError(errors)

    def _status_range_errors(self, low: int | None, high: int | None) -> dict[str, str]:
        """The expected status range's errors, from the values clean_fields() accepted."""
        errors = {}
        for field, value in (("expected_status_min", low), ("expected_status_max", high)):
            if value is not None and not 100 <= value <= 599:
                errors[field] = "An HTTP status is between 100 and 599."
        if not errors and low is not None and high is not None and low > high:
            errors["expected_status_max"] = "The highest status must not be below the lowest."
        return errors

    @property
    def tag_list(self) -> list[str]:
        return split_tags(self.tags)

    @property
    def status(self) -> str:
        if hasattr(self, "failures_in_a_row"):
            return derive_status(
                self.enabled,
                self.last_checked_at,
                self.failures_in_a_row or 0,
                self.failures_before_down,
            )
        annotated = HealthCheck.objects.with_status().get(pk=self.pk)
        return annotated.status

    def uptime(self, since: timedelta = timedelta(hours=24)) -> float | None:
        """Share of successful results in the window, 0..1, or None without results."""
        if hasattr(self, "results_total"):
            total, ok = self.results_total, self.results_ok
        else:
            window = self.results.filter(checked_at__gte=timezone.now() - since)
            counts = window.aggregate(total=Count("pk"), ok=Count("pk", filter=Q(ok=True)))
            total, ok = counts["total"], counts["ok"]
        return ok / total if total else None


#: The longest interval and timeout a check may have: the runner schedules by them.
MAX_INTERVAL_SECONDS = 7 * 24 * 3600
MAX_TIMEOUT_SECONDS = 300
#: The fields ``HealthCheck.clean()`` reads (only once clean_fields() has accepted them).
CLEANED_FIELDS = (
    "kind",
    "target",
    "interval",
    "timeout",
    "failures_before_down",
    "expected_status_min",
    "expected_status_max",
    "tags",
)
def _seconds_error(field: str, seconds: float, most: int) -> str | None:
    """What is wrong with a number of seconds that is not finite or above ``most``, or None."""
    if not math.isfinite(seconds):
        return f"The {field} must be a finite number of seconds, not {seconds}."
    if seconds > most:
        return f"The {field} must be at most {most} seconds ({_duration(most)})."
    return None


def _duration(seconds: int) -> str:
    """``604800`` -> ``"7 days"``, ``300`` -> ``"5 minutes"``."""
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds % size == 0:
            count = seconds // size
            return f"{count} {unit}{'' if count == 1 else 's'}"
    return f"{seconds} seconds"


class CheckResult(models.Model):
    health_check = models.ForeignKey(HealthCheck, on_delete=models.CASCADE, related_name="results")
    checked_at = models.DateTimeField(default=timezone.now)
    ok = models.BooleanField()
    latency_ms = models.FloatField(null=True, blank=True)
    http_status = models.PositiveSmallIntegerField(null=True, blank=True)
    error_category = models.CharField(max_length=30, blank=True)
    error_message = models.CharField(max_length=500, blank=True)

    class Meta:
        ordering = ["-checked_at"]
        constraints = [
            # Makes the batch insert idempotent: a retried batch ignores rows already written.
            models.UniqueConstraint(fields=["health_check", "checked_at"], name="result_once"),
        ]
        indexes = [
            # Status derivation: "last success of this check".
            models.Index(fields=["health_check", "ok", "-checked_at"], name="result_check_ok_idx"),
            # Retention pruning: "results older than N days".
            models.Index(fields=["checked_at"], name="result_age_idx"),
        ]

    def __str__(self) -> str:
        state = "ok" if self.ok else self.error_category or "failed"
        return f"{self.health_check_id} {self.checked_at:%Y-%m-%d %H:%M:%S} {state}"


class ErrorStat(models.Model):
    fingerprint = models.CharField(max_length=64, unique=True)
    category = models.CharField(max_length=30)
    operation = models.CharField(max_length=200)
    endpoint = models.CharField(max_length=500, blank=True)
    count = models.BigIntegerField(default=0)
    first_seen = models.DateTimeField()
    last_seen = models.DateTimeField()
    severity = models.CharField(max_length=10, choices=SEVERITY_CHOICES)
    last_message = models.CharField(max_length=500, blank=True)

    class Meta:
        ordering = ["-last_seen"]
        indexes = [models.Index(fields=["-last_seen"], name="errorstat_recent_idx")]

    def __str__(self) -> str:
        return f"{self.category} in {self.operation} ({self.count})"


# Imported here so Django registers the model defined in its own module.
from connections_app.maintenance import MaintenanceWindow  # noqa: E402,F401
