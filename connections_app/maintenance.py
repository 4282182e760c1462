"""Maintenance windows: times when checks keep running and storing results, but their status
shows MAINTENANCE and status changes are recorded as happening inside a window.

A window is one-off (``starts_at`` to ``ends_at``) or weekly (chosen days, a local start time
and a duration in a named time zone), and applies to all checks, chosen checks or tags.

Times are half-open: a window is active from its start, included, to its end, excluded, so
two windows that meet leave no gap and do not overlap.

Weekly windows and daylight saving time: each day's start is the local wall-clock time in the
window's zone, and the duration is added in real time (in UTC). A 2 h window is 2 h long on
the night the clocks change, whatever the wall clock shows at its end. A start time the clocks
skip (02:30 on a spring-forward night) begins when the wall clock would have shown it had it
not jumped (03:30 summer time); a start time that occurs twice (autumn) begins at the first.
That is Python's ``fold=0``, and it never raises.

Everything that decides whether a window is active is pure (``is_active``, ``occurrence``):
the database is read once per batch (``active_windows``, ``checks_in_maintenance``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Prefetch, Q, prefetch_related_objects
from django.utils import timezone

from connections_app.scope import covers, scope_text
from connections_app.validation import OneMessagePerField

logger = logging.getLogger(__name__)

ONCE = "once"
WEEKLY = "weekly"
SCHEDULE_CHOICES = [(ONCE, "One-off"), (WEEKLY, "Weekly")]

#: Monday is 0, as ``date.weekday()`` counts.
DAY_NAMES = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
MIN_DURATION_MINUTES = 1
MAX_DURATION_MINUTES = 7 * 24 * 60


def default_time_zone() -> str:
    # A callable, not the value: a migration would otherwise freeze this machine's setting.
    return settings.TIME_ZONE


def zone_error(name: str) -> str | None:
    """A sentence saying why ``name`` is not a time zone, or None when it is one."""
    try:
        ZoneInfo(name)
    except (KeyError, ValueError, OSError):  # not found; a path or an empty name
        return f"Unknown time zone {name!r}: use an IANA name such as Europe/Berlin or UTC."
    return None


class MaintenanceWindow(OneMessagePerField):
    name = models.CharField(max_length=100)
    note = models.TextField(blank=True)
    enabled = models.BooleanField(default=True)
    schedule = models.CharField(max_length=10, choices=SCHEDULE_CHOICES, default=ONCE)
    starts_at = models.DateTimeField(null=True, blank=True, help_text="One-off windows.")
    ends_at = models.DateTimeField(
        null=True, blank=True, help_text="One-off windows: the first moment after the window."
    )
    weekdays = models.CharField(
        max_length=7, blank=True, help_text="Weekly windows: days as digits, 0 Monday to 6 Sunday."
    )
    start_time = models.TimeField(
        null=True, blank=True, help_text="Weekly windows: local time in the window's time zone."
    )
    duration_minutes = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text=f"Weekly windows: {MIN_DURATION_MINUTES} to {MAX_DURATION_MINUTES} minutes "
        "(7 days), in real time: a DST change does not stretch or shorten it.",
    )
    time_zone = models.CharField(
        max_length=64, default=default_time_zone, help_text="IANA name, e.g. Europe/Berlin."
    )
    all_checks = models.BooleanField(default=False)
    checks = models.ManyToManyField(
        "connections_app.HealthCheck", blank=True, related_name="maintenance_windows"
    )
    tags = models.CharField(
        max_length=200,
        blank=True,
        help_text="Checks with any of these tags; comma or space separated.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        app_label = "connections_app"
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    # -- validation ------------------------------------------------------------------------

    def clean(self) -> None:
        from connections_app.models import split_tags

        skip = self.refused_fields()
        errors: dict[str, str] = {}
        if "tags" not in skip:
            self.tags = ",".join(split_tags(self.tags or ""))
        if "time_zone" not in skip:
            error = zone_error(self.time_zone or "")
            if error:
                errors["time_zone"] = error
        if self.schedule == ONCE:
            errors.update(self._once_errors(skip))
        elif self.schedule == WEEKLY:
            errors.update(self._weekly_errors(skip))
        if "checks" not in skip and not {"all_checks", "tags"} & skip:
            if self._applies_to_nothing():
                errors["checks"] = (
                    "The window applies to nothing: tick all checks, choose some checks or "
                    "give some tags."
                )
        if errors:
            raise ValidationError(errors)

    def _once_errors(self, skip: set[str]) -> dict[str, str]:
        errors = {}
        if "starts_at" not in skip and self.starts_at is None:
            errors["starts_at"] = "A one-off window needs a start."
        if "ends_at" not in skip and self.ends_at is None:
            errors["ends_at"] = "A one-off window needs an end."
        if not errors and not {"starts_at", "ends_at"} & skip:
            if self.ends_at <= self.starts_at:
                errors["ends_at"] = "The end must be after the start."
        return errors

    def _weekly_errors(self, skip: set[str]) -> dict[str, str]:
        errors = {}
        if "weekdays" not in skip:
            # Commas and spaces are forgiven: "0, 6" from a shell means "06".
            typed = (self.weekdays or "").replace(",", "").replace(" ", "")
            wrong = sorted({c for c in typed if c not in "0123456"})
            if wrong:
                errors["weekdays"] = (
                    f"Days are digits from 0 (Monday) to 6 (Sunday), not {''.join(wrong)!r}."
                )
            elif not typed:
                errors["weekdays"] = "A weekly window needs at least one day."
            else:
                self.weekdays = "".join(sorted(set(typed)))
        if "start_time" not in skip and self.start_time is None:
            errors["start_time"] = "A weekly window needs a start time."
        if "duration_minutes" not in skip:
            minutes = self.duration_minutes
            if minutes is None:
                errors["duration_minutes"] = "A weekly window needs a duration."
            elif not MIN_DURATION_MINUTES <= minutes <= MAX_DURATION_MINUTES:
                errors["duration_minutes"] = (
                    f"The duration is {MIN_DURATION_MINUTES} minute to {MAX_DURATION_MINUTES} "
                    "minutes (7 days)."
                )
        return errors

    def _applies_to_nothing(self) -> bool:
        if self.all_checks or self.tags.strip(", "):
            return False
        # A form saves the many-to-many after clean(): it says what was chosen (see the admin's
        # form); without one, the stored checks count.
        chosen = getattr(self, "_chosen_checks", None)
        if chosen is not None:
            return not chosen
        return self.pk is None or not self.checks.exists()

    # -- when ------------------------------------------------------------------------------

    @property
    def zone(self) -> ZoneInfo:
        """The window's time zone; UTC for a name stored without validation, so that one bad
        row cannot stop the runner."""
        try:
            return ZoneInfo(self.time_zone)
        except (KeyError, ValueError, OSError):
            logger.warning("maintenance window %r: unknown time zone, UTC used", self.name)
            return ZoneInfo("UTC")

    def occurrence(self, at: datetime) -> tuple[datetime, datetime] | None:
        """The (start, end) in UTC of this window's occurrence that contains ``at``, or None.
        When occurrences overlap (a daily window longer than a day), the latest to start."""
        _require_aware(at)
        if self.schedule == ONCE:
            if self.starts_at is None or self.ends_at is None:
                return None
            if not self.starts_at <= at < self.ends_at:
                return None
            return self.starts_at.astimezone(UTC), self.ends_at.astimezone(UTC)
        if self.schedule == WEEKLY:
            return self._weekly_occurrence(at)
        return None

    def is_active(self, at: datetime) -> bool:
        """Whether ``at`` (an aware datetime) is inside the window. Ignores ``enabled``."""
        return self.occurrence(at) is not None

    def _weekly_occurrence(self, at: datetime) -> tuple[datetime, datetime] | None:
        if not self.weekdays or self.start_time is None or not self.duration_minutes:
            return None  # stored without clean(): never active rather than a crash
        zone = self.zone
        length = timedelta(minutes=self.duration_minutes)
        today = at.astimezone(zone).date()
        # An occurrence that contains ``at`` started at most ``length`` before it: look back as
        # many local days, one more for the start time within its day and a DST hour.
        for back in range(length.days + 2):
            day = today - timedelta(days=back)
            if str(day.weekday()) not in self.weekdays:
                continue
            start = self.local_start(day, zone)
            end = start + length  # in UTC: real time, not wall-clock time
            if start <= at < end:
                return start, end
        return None

    def local_start(self, day: date, zone: ZoneInfo | None = None) -> datetime:
        """The UTC moment a weekly window starts on local ``day`` (see the module's DST note)."""
        zone = zone or self.zone
        return datetime.combine(day, self.start_time, tzinfo=zone).astimezone(UTC)

    # -- to what ---------------------------------------------------------------------------

    def tag_set(self) -> frozenset[str]:
        from connections_app.models import split_tags

        return frozenset(split_tags(self.tags or ""))

    def applies_to(self, check_id: int, tags: Iterable[str] | str) -> bool:
        """Whether the window covers this check. Uses prefetched checks when present (see
        ``active_windows``), else one query."""
        chosen = (c.pk for c in self.checks.all())
        return covers(self.all_checks, chosen, self.tag_set(), check_id, _tag_set(tags))

    # -- in words, for the admin -----------------------------------------------------------

    def schedule_text(self) -> str:
        """``weekly Sun 23:00 Europe/Paris for 2 h``, ``once 2026-12-01 02:00–04:00 UTC``."""
        if self.schedule == WEEKLY:
            if not self.weekdays or self.start_time is None or not self.duration_minutes:
                return "weekly (incomplete)"
            days = days_text(self.weekdays)
            length = duration_text(self.duration_minutes)
            return f"weekly {days} {self.start_time:%H:%M} {self.time_zone} for {length}"
        if self.starts_at is None or self.ends_at is None:
            return "once (incomplete)"
        start, end = self.starts_at.astimezone(self.zone), self.ends_at.astimezone(self.zone)
        if start.date() == end.date():
            return f"once {start:%Y-%m-%d %H:%M}–{end:%H:%M} {self.time_zone}"
        return f"once {start:%Y-%m-%d %H:%M} – {end:%Y-%m-%d %H:%M} {self.time_zone}"

    def scope_text(self) -> str:
        """``all checks``, or the chosen checks' names and the tags (names from prefetched
        checks when present)."""
        if self.all_checks:
            return "all checks"
        return scope_text(False, (c.name for c in self.checks.all()), self.tag_set())


def days_text(weekdays: str) -> str:
    """``"0123456"`` -> ``every day``, ``"01234"`` -> ``Mon–Fri``, ``"06"`` -> ``Mon, Sun``."""
    days = sorted({int(c) for c in weekdays if c in "0123456"})
    if len(days) == 7:
        return "every day"
    runs: list[list[int]] = []
    for day in days:
        if runs and runs[-1][-1] == day - 1:
            runs[-1].append(day)
        else:
            runs.append([day])
    # Three days or more in a row read better as a range.
    words = [
        f"{DAY_NAMES[run[0]]}–{DAY_NAMES[run[-1]]}"
        if len(run) >= 3
        else ", ".join(DAY_NAMES[d] for d in run)
        for run in runs
    ]
    return ", ".join(words)


def duration_text(minutes: int) -> str:
    """``120`` -> ``2 h``, ``90`` -> ``1 h 30 min``, ``1500`` -> ``1 day 1 h``."""
    days, rest = divmod(minutes, 24 * 60)
    hours, mins = divmod(rest, 60)
    parts = []
    if days:
        parts.append(f"{days} {'day' if days == 1 else 'days'}")
    if hours:
        parts.append(f"{hours} h")
    if mins:
        parts.append(f"{mins} min")
    return " ".join(parts) or "0 min"


def _require_aware(at: datetime) -> None:
    # A naive datetime would be compared as if in some zone: a silent error of hours.
    if timezone.is_naive(at):
        raise ValueError("a maintenance window needs an aware datetime, not a naive one")


def _tag_set(tags: Iterable[str] | str) -> frozenset[str]:
    from connections_app.models import split_tags

    # A raw "db,prod" string would otherwise be taken letter by letter.
    if isinstance(tags, str):
        return frozenset(split_tags(tags))
    return frozenset(t.strip().lower() for t in tags)


def active_windows(at: datetime | None = None) -> list[MaintenanceWindow]:
    """The enabled windows active at ``at`` (default: now), their checks prefetched.

    One query for the windows (one-off windows already over or not begun are left in the
    database), and one more for their checks only when some window is active.
    """
    from connections_app.models import HealthCheck

    at = timezone.now() if at is None else at
    _require_aware(at)
    candidates = MaintenanceWindow.objects.filter(enabled=True).filter(
        ~Q(schedule=ONCE) | Q(starts_at__lte=at, ends_at__gt=at)
    )
    windows = [w for w in candidates if w.is_active(at)]
    checks = HealthCheck.objects.order_by().only("pk", "name")
    prefetch_related_objects(windows, Prefetch("checks", queryset=checks))
    return windows


def checks_in_maintenance(
    checks: Iterable[tuple[int, Iterable[str] | str]],
    at: datetime | None = None,
    windows: Sequence[MaintenanceWindow] | None = None,
) -> set[int]:
    """The ids of the given checks that an active window covers at ``at`` (default: now).

    ``checks`` are ``(id, tags)`` pairs, tags as a list or as the stored string. Reads the
    windows once (``active_windows``), never once per check; pass ``windows`` (from
    ``active_windows(at)``) to read nothing at all.
    """
    at = timezone.now() if at is None else at
    if windows is None:
        windows = active_windows(at)
    else:
        windows = [w for w in windows if w.enabled and w.is_active(at)]
    if not windows:
        return set()
    if any(w.all_checks for w in windows):
        return {check_id for check_id, _tags in checks}
    chosen = {c.pk for w in windows for c in w.checks.all()}
    tags = frozenset().union(*(w.tag_set() for w in windows))
    return {
        check_id
        for check_id, check_tags in checks
        if check_id in chosen or (tags and tags & _tag_set(check_tags))
    }
