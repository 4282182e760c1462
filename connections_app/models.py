"""Health checks, their results, their state changes and aggregated error statistics.

A check's state is stored on its row (``status``, ``health``, the counters, the last result)
and changes only in the transaction that stores the results causing it (``results.py``); every
change of status is a ``StateChange`` row written in that same transaction (``state.py``).
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Iterable

from django.core.exceptions import ValidationError
from django.db import models, router
from django.db.models import Case, Q, Value, When
from django.utils import timezone

from connections_app.db.transactions import retry_transaction
from connections_app.http_options import (
    MAX_BODY,
    MAX_REDIRECTS,
    MAX_REGEX,
    METHODS,
    http_option_errors,
)
from connections_app.redaction import REDACTED, redact
from connections_app.targets import (  # noqa: F401 - the kinds are the model's vocabulary
    KIND_CHANNEL_LAYER,
    KIND_CHOICES,
    KIND_DATABASE,
    KIND_DNS,
    KIND_HTTP,
    KIND_POSTGRES,
    KIND_PUSH,
    KIND_REDIS,
    KIND_TCP,
    validate_resolver,
    validate_target,
)
from connections_app.validation import OneMessagePerField

UP = "up"
DEGRADED = "degraded"
DOWN = "down"
PAUSED = "paused"
MAINTENANCE = "maintenance"
UNKNOWN = "unknown"
STATUS_CHOICES = [
    (UP, "Up"),
    (DEGRADED, "Degraded"),
    (DOWN, "Down"),
    (PAUSED, "Paused"),
    (MAINTENANCE, "Maintenance"),
    (UNKNOWN, "Unknown"),
]
#: What the results alone say of a check, whatever a pause or a maintenance window shows.
HEALTH_CHOICES = [(s, label) for s, label in STATUS_CHOICES if s not in (PAUSED, MAINTENANCE)]
#: Worst first: the overall status is the first of these any check has.
STATUS_ORDER = [DOWN, DEGRADED, UNKNOWN, UP, MAINTENANCE, PAUSED]

#: The most results in a row a threshold may ask for.
MAX_IN_A_ROW = 100
#: 24 random bytes: 32 URL-safe characters, beyond guessing.
PUSH_TOKEN_BYTES = 24
#: The longest warning before a certificate expires: certificates last at most 398 days.
MAX_TLS_WARN_DAYS = 398
#: 24 random bytes for a badge URL too: a public check's badges are unguessable, so the
#: status page's list is not the only way in, and a check opted out is not found by counting.
BADGE_TOKEN_BYTES = 24

SEVERITY_CHOICES = [(s, s.title()) for s in ("info", "warning", "error", "critical")]


def overall_status(statuses: list[str]) -> str:
    present = set(statuses)
    for status in STATUS_ORDER:
        if status in present:
            return status
    return UNKNOWN


def new_badge_token() -> str:
    return secrets.token_urlsafe(BADGE_TOKEN_BYTES)


def split_tags(raw: str) -> list[str]:
    """``"db, Critical  api"`` -> ``["api", "critical", "db"]``: sorted, lower case, unique."""
    parts = raw.replace(",", " ").split()
    return sorted({p.strip().lower() for p in parts if p.strip()})


class HealthCheckQuerySet(models.QuerySet):
    def worst_first(self) -> HealthCheckQuerySet:
        """Ordered by status, worst first (``STATUS_ORDER``), then by name."""
        return self.annotate(status_rank=status_rank()).order_by("status_rank", "name")

    def with_tag(self, tag: str) -> HealthCheckQuerySet:
        return self.filter(tag_q(tag))

    def with_any_tag(self, tags: Iterable[str]) -> HealthCheckQuerySet:
        """Checks with at least one of ``tags``; every check when ``tags`` is empty."""
        wanted = Q()
        for tag in tags:
            wanted |= tag_q(tag)
        return self.filter(wanted)


def tag_q(tag: str) -> Q:
    """Checks whose tags (stored sorted, comma separated) include ``tag``."""
    tag = tag.strip().lower()
    return (
        Q(tags=tag)
        | Q(tags__startswith=f"{tag},")
        | Q(tags__endswith=f",{tag}")
        | Q(tags__contains=f",{tag},")
    )


def status_rank() -> Case:
    """A status's place in ``STATUS_ORDER`` (0 is the worst), for sorting in SQL."""
    return Case(
        *(When(status=status, then=Value(rank)) for rank, status in enumerate(STATUS_ORDER)),
        default=Value(len(STATUS_ORDER)),
    )


class HealthCheck(OneMessagePerField):
    name = models.CharField(max_length=100, unique=True)
    kind = models.CharField(
        max_length=20,
        choices=KIND_CHOICES,
        default=KIND_HTTP,
        error_messages={
            "invalid_choice": "%(value)r is not a kind; the kinds are "
            + ", ".join(kind for kind, _ in KIND_CHOICES)
            + "."
        },
    )
    target = models.CharField(
        max_length=500,
        help_text="URL for http; host:port for tcp; alias for database and channel_layer; "
        "redis://host:port/db for redis; a name for dns; postgres://user:password@host/db "
        "for postgres; for push, a note on what sends the "
        "pings.",
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
        f"{MAX_IN_A_ROW}.",
    )
    successes_before_up = models.PositiveSmallIntegerField(
        default=1,
        help_text=f"Successes in a row before a DOWN check is UP again; 1 to {MAX_IN_A_ROW}.",
    )
    degraded_after_ms = models.FloatField(
        null=True,
        blank=True,
        help_text="A success slower than this many milliseconds is DEGRADED; blank: off.",
    )
    upside_down = models.BooleanField(
        default=False,
        help_text="The check passes when the target fails (a port that must stay closed).",
    )
    expected_status_min = models.PositiveSmallIntegerField(default=200)
    expected_status_max = models.PositiveSmallIntegerField(default=399)
    expected_body = models.CharField(
        max_length=200, blank=True, help_text="HTTP only: text the body must contain."
    )
    http_method = models.CharField(
        max_length=4, choices=[(m, m) for m in METHODS], default="GET", verbose_name="method"
    )
    request_headers = models.TextField(
        blank=True,
        help_text="One 'Name: value' a line, or a JSON object. The values are secrets: shown "
        f"masked ({REDACTED} keeps the stored value).",
    )
    request_body = models.TextField(
        blank=True, max_length=MAX_BODY, help_text="Sent with POST only."
    )
    follow_redirects = models.BooleanField(default=True)
    max_redirects = models.PositiveSmallIntegerField(
        default=10, help_text=f"The most redirects followed: 0 to {MAX_REDIRECTS}."
    )
    accepted_statuses = models.CharField(
        max_length=200,
        blank=True,
        help_text="A list such as '200, 204': when set, it replaces the status range.",
    )
    body_regex = models.CharField(
        max_length=MAX_REGEX,
        blank=True,
        help_text="A regular expression the body (its first 64 KB) must match.",
    )
    json_path = models.CharField(
        max_length=200,
        blank=True,
        verbose_name="JSON path",
        help_text="A JSONPath expression, such as $.db.ok, that must match in the JSON body.",
    )
    json_expected = models.CharField(
        max_length=200,
        blank=True,
        verbose_name="JSON expected value",
        help_text='What a match must equal: JSON (true, 3, "ok") or plain text; blank: any.',
    )
    ignore_tls_errors = models.BooleanField(
        default=False,
        verbose_name="ignore TLS errors",
        help_text="Accept any certificate (then no days left are recorded).",
    )
    grace = models.FloatField(
        default=60.0,
        help_text="Push: seconds a ping may be late (after the interval) before the check is "
        "DOWN; 0 to 604800.",
    )
    dns_record_type = models.CharField(
        max_length=5,
        choices=[(t, t) for t in ("A", "AAAA", "CNAME", "MX", "TXT")],
        default="A",
        verbose_name="DNS record type",
    )
    dns_resolver = models.CharField(
        max_length=100,
        blank=True,
        verbose_name="DNS resolver",
        help_text="An IP address with an optional port (127.0.0.1:5353); blank: the system's.",
    )
    dns_expected = models.CharField(
        max_length=255,
        blank=True,
        verbose_name="DNS expected value",
        help_text="A value one record must have: an address, a name, '10 mx.host' or a host "
        "for MX, the text of a TXT record; blank: any answer.",
    )
    #: Push: the secret in the check's ping URL (/ping/<token>); made when the check is.
    push_token = models.CharField(max_length=64, unique=True, null=True, blank=True, editable=False)
    tls_warn_days = models.PositiveSmallIntegerField(
        default=14,
        help_text="HTTPS: a certificate with fewer days left than this makes the check DEGRADED; "
        f"0 to {MAX_TLS_WARN_DAYS} (0: off).",
    )
    enabled = models.BooleanField(default=True)
    critical = models.BooleanField(
        default=False,
        help_text="Critical: while this check is DOWN, /health/ answers 503 and a load "
        "balancer may take this app out of service. Leave it off for third parties.",
    )
    tags = models.CharField(max_length=200, blank=True, help_text="Comma or space separated.")
    public = models.BooleanField(
        default=False,
        help_text="Shown on the public status page (/status/) and its badges: its public "
        "name, status, daily uptime and changes; never its target, tags or errors.",
    )
    public_name = models.CharField(
        max_length=100,
        blank=True,
        help_text="The name the public sees; required for a public check (the name above is "
        "never shown there).",
    )
    #: The secret in the check's badge URLs (/badge/<token>/status.svg); made with the check.
    badge_token = models.CharField(
        max_length=64, unique=True, default=new_badge_token, editable=False
    )
    next_due_at = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    # The stored state: written only with the results that cause it (results.store_outcomes),
    # by a pause or resume (state.switch), or a maintenance window (state.apply_maintenance).
    # Never by a form: see save().
    status = models.CharField(
        max_length=20, choices=STATUS_CHOICES, default=UNKNOWN, editable=False
    )
    status_since = models.DateTimeField(null=True, blank=True, editable=False)
    health = models.CharField(
        max_length=20, choices=HEALTH_CHOICES, default=UNKNOWN, editable=False
    )
    failures_in_a_row = models.PositiveIntegerField(default=0, editable=False)
    successes_in_a_row = models.PositiveIntegerField(default=0, editable=False)
    flapping = models.BooleanField(default=False, editable=False)
    last_checked_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_latency_ms = models.FloatField(null=True, blank=True, editable=False)
    last_error_category = models.CharField(max_length=30, blank=True, editable=False)
    last_error_message = models.CharField(max_length=500, blank=True, editable=False)
    #: Whole days the last https result's certificate had left (negative: expired).
    tls_days_left = models.IntegerField(null=True, blank=True, editable=False)
    #: The newest results as the dashboard's sparkline draws them (``recent_points``).
    recent = models.TextField(default="[]", editable=False)
    #: Push: the last ping of any kind, and the /start of the run under way (if any).
    last_ping_at = models.DateTimeField(null=True, blank=True, editable=False)
    push_started_at = models.DateTimeField(null=True, blank=True, editable=False)

    objects = HealthCheckQuerySet.as_manager()

    class Meta:
        ordering = ["name"]
        # "Run now" makes the server connect out at once: its own permission, apart from change.
        permissions = [("run_healthcheck", "Can run checks now")]
        indexes = [
            # runchecks: "which enabled checks are due?"
            models.Index(fields=["enabled", "next_due_at"], name="check_due_idx"),
            # /health/, the admin's status filter: "which checks are down?"
            models.Index(fields=["status"], name="check_status_idx"),
            # The admin sorted by status, the snapshot worst first: the first page of 10,000
            # checks is read from the index instead of sorting every row.
            models.Index(status_rank(), "name", name="check_status_rank_idx"),
        ]

    def __str__(self) -> str:
        return self.name

    def save(self, *args, **kwargs) -> None:
        """A new check starts UNKNOWN (PAUSED when disabled). An existing one saves its rules
        only: its state is the runner's, and a form loaded a minute ago holds a stale copy."""
        if self.kind == KIND_PUSH and not self.push_token:
            self.push_token = secrets.token_urlsafe(PUSH_TOKEN_BYTES)
            if kwargs.get("update_fields") is None and not self._state.adding:
                kwargs["update_fields"] = [*RULE_FIELDS, "push_token"]
        if self._state.adding:
            self.status = UNKNOWN if self.enabled else PAUSED
            super().save(*args, **kwargs)
            return
        if kwargs.get("update_fields") is None:
            kwargs["update_fields"] = RULE_FIELDS

        # One transaction with the receivers: a check switched off is PAUSED in the same
        # commit (connections_app.signals), never enabled=False and UP in between. Retried
        # whole, like any transaction of ours, when its connection was lost.
        @retry_transaction(using=kwargs.get("using") or router.db_for_write(HealthCheck))
        def save_with_receivers() -> None:
            super(HealthCheck, self).save(*args, **kwargs)

        save_with_receivers()

    def clean(self) -> None:
        # A refused value has its message already (one message per field), and may not even
        # be a number to compare.
        refused = self.refused_fields() & set(CLEANED_FIELDS)
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
        errors.update(_in_a_row_errors(value["failures_before_down"], value["successes_before_up"]))
        slow, most = value["degraded_after_ms"], 1000 * MAX_TIMEOUT_SECONDS
        if slow is not None and not (math.isfinite(slow) and 0 < slow <= most):
            errors["degraded_after_ms"] = f"Milliseconds above 0 and at most {most}, or blank."
        errors.update(
            self._status_range_errors(value["expected_status_min"], value["expected_status_max"])
        )
        if value["dns_resolver"]:
            error = validate_resolver(value["dns_resolver"])
            if error:
                errors["dns_resolver"] = error
        grace = value["grace"]
        if grace is not None:
            error = _seconds_error("grace", grace, MAX_INTERVAL_SECONDS)
            if error is None and grace < 0:
                error = "The grace must be 0 seconds or more."
            if error:
                errors["grace"] = error
        self.public_name = (self.public_name or "").strip()
        if self.public and not self.public_name:
            errors["public_name"] = (
                "A public check needs a public name: the status page never shows the name above."
            )
        warn = value["tls_warn_days"]
        if warn is not None and warn > MAX_TLS_WARN_DAYS:
            errors["tls_warn_days"] = f"At most {MAX_TLS_WARN_DAYS} days (0: no warning)."
        errors.update(http_option_errors(self, self.refused_fields()))
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
    "successes_before_up",
    "degraded_after_ms",
    "expected_status_min",
    "expected_status_max",
    "tls_warn_days",
    "grace",
    "dns_resolver",
    "tags",
)


def _in_a_row_errors(failures: int | None, successes: int | None) -> dict[str, str]:
    errors = {}
    for field, value, what, to in (
        ("failures_before_down", failures, "failure", "DOWN"),
        ("successes_before_up", successes, "success", "UP"),
    ):
        if value is not None and value < 1:
            errors[field] = f"At least 1 {what} is needed before {to}."
        elif value is not None and value > MAX_IN_A_ROW:
            plural = "failures" if what == "failure" else "successes"
            errors[field] = f"At most {MAX_IN_A_ROW} {plural}."
    return errors


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


#: What a form or an import may write: the fields people edit (the stored state and the
#: schedule are not editable), and the time of the edit.
RULE_FIELDS = [
    f.name for f in HealthCheck._meta.concrete_fields if f.editable and not f.primary_key
] + ["updated_at"]


class CheckResult(models.Model):
    health_check = models.ForeignKey(HealthCheck, on_delete=models.CASCADE, related_name="results")
    checked_at = models.DateTimeField(default=timezone.now)
    ok = models.BooleanField()
    latency_ms = models.FloatField(null=True, blank=True)
    http_status = models.PositiveSmallIntegerField(null=True, blank=True)
    error_category = models.CharField(max_length=30, blank=True)
    error_message = models.CharField(max_length=500, blank=True)
    #: HTTPS: whole days the server's certificate had left (negative: expired); else None.
    tls_days_left = models.IntegerField(null=True, blank=True)
    #: Push: what the job sent with its ping (at most 10 KB), redacted.
    ping_body = models.TextField(blank=True)

    class Meta:
        ordering = ["-checked_at"]
        constraints = [
            # Makes the batch insert idempotent: a retried batch ignores rows already written.
            models.UniqueConstraint(fields=["health_check", "checked_at"], name="result_once"),
        ]
        indexes = [
            # Retention pruning: "results older than N days".
            models.Index(fields=["checked_at"], name="result_age_idx"),
            # The admin's results list filtered to failures, or to one error category, newest
            # first: failures only, so small, and no scan past millions of successes.
            models.Index(
                fields=["-checked_at"], condition=models.Q(ok=False), name="result_failed_idx"
            ),
            models.Index(
                fields=["error_category", "-checked_at"],
                condition=models.Q(ok=False),
                name="result_category_idx",
            ),
        ]

    def __str__(self) -> str:
        state = "ok" if self.ok else self.error_category or "failed"
        return f"{self.health_check_id} {self.checked_at:%Y-%m-%d %H:%M:%S} {state}"


class StateChange(models.Model):
    """One change of a check's status, written in the transaction that caused it.

    Inside a maintenance window the shown status stays MAINTENANCE, but what the results say
    still changes: those changes are recorded too, between health values, marked
    ``during_maintenance`` (alerts hold them back).
    """

    health_check = models.ForeignKey(
        HealthCheck, on_delete=models.CASCADE, related_name="state_changes"
    )
    from_status = models.CharField(max_length=20, choices=STATUS_CHOICES)
    to_status = models.CharField(max_length=20, choices=STATUS_CHOICES)
    at = models.DateTimeField()
    reason_category = models.CharField(max_length=30, blank=True)
    #: Redacted, like every stored error message.
    reason_message = models.CharField(max_length=500, blank=True)
    #: ``checked_at`` of the result that caused the change (with the check, the result's
    #: key); None for a pause, a resume or a window that began or ended.
    result_checked_at = models.DateTimeField(null=True, blank=True)
    during_maintenance = models.BooleanField(default=False)

    class Meta:
        ordering = ["-at", "-pk"]
        indexes = [
            # A check's page and flapping: "this check's changes since t".
            models.Index(fields=["health_check", "-at"], name="change_check_at_idx"),
            # The admin's list of all changes, newest first.
            models.Index(fields=["-at"], name="change_at_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.health_check_id} {self.from_status} -> {self.to_status} at {self.at}"


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


class Runner(models.Model):
    """A process running checks (``runchecks`` or ``serve``), as it last reported itself.

    Each runner writes its row every few seconds (``runners.report``), so any process can tell
    whether the checks keep up: the scheduling lag (a probe's start minus its due time) over
    the last period, and what could not be stored.
    """

    name = models.CharField(max_length=200, unique=True, help_text="host:pid")
    tags = models.CharField(
        max_length=200, blank=True, help_text="The checks it takes; blank: all."
    )
    started_at = models.DateTimeField()
    seen_at = models.DateTimeField()
    stopped_at = models.DateTimeField(null=True, blank=True)
    probe_slots = models.PositiveIntegerField(default=0, help_text="Probes it may run at once.")
    probes_running = models.PositiveIntegerField(default=0)
    lag_p50_ms = models.FloatField(null=True, blank=True, verbose_name="lag p50 (ms)")
    lag_p95_ms = models.FloatField(null=True, blank=True, verbose_name="lag p95 (ms)")
    lag_p99_ms = models.FloatField(null=True, blank=True, verbose_name="lag p99 (ms)")
    lag_max_ms = models.FloatField(null=True, blank=True, verbose_name="lag max (ms)")
    runs = models.BigIntegerField(default=0, help_text="Probes started.")
    runs_skipped = models.BigIntegerField(
        default=0, help_text="Runs not started: the previous run of the check was still going."
    )
    runs_missed = models.BigIntegerField(
        default=0,
        help_text="Runs never made up for: a check was more than an interval overdue when "
        "claimed (no runner, or the database away).",
    )
    results_stored = models.BigIntegerField(default=0)
    results_pending = models.PositiveIntegerField(
        default=0, help_text="Results waiting for the database."
    )
    results_dropped = models.BigIntegerField(
        default=0, help_text="Results lost: the database was away longer than the buffer lasts."
    )

    class Meta:
        ordering = ["-seen_at"]

    def __str__(self) -> str:
        return self.name


# Imported here so Django registers the models defined in their own modules.
from connections_app.alerts.models import Alert, NotificationChannel  # noqa: E402,F401
from connections_app.closed_totals import ClosedTotals  # noqa: E402,F401
from connections_app.maintenance import MaintenanceWindow  # noqa: E402,F401
from connections_app.rollups import ResultRollup  # noqa: E402,F401
