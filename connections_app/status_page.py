"""What the public status page and the badges may tell: the public checks only, and of each
only its public name, its status in plain words, its daily uptime and its changes of status.

Never a target, a tag, an error message or the internal name: everything shown is built here
from an explicit list of columns, so a field added to the model later is not shown by
accident. Three queries for the page (the checks, their days, their changes), whatever the
number of checks.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import TypedDict

from django.utils import timezone

from connections_app.history import daily_bars, uptime_windows
from connections_app.models import (
    DEGRADED,
    DOWN,
    MAINTENANCE,
    PAUSED,
    UNKNOWN,
    UP,
    HealthCheck,
    StateChange,
    overall_status,
)

BAR_DAYS = 90
CHANGES_DAYS = 7
#: The changes shown per check, newest first, and read in all: a check that flapped all week
#: must not make the page (or its one query) long.
CHANGES_SHOWN = 10
CHANGES_READ = 1000
#: Shown for a public check saved without a public name (an import or the shell: the admin
#: refuses it); never the internal name, which may say more than its owner meant to publish.
UNNAMED = "Unnamed service"

#: A status as the public reads it.
WORDS = {
    UP: "Operational",
    DEGRADED: "Degraded performance",
    DOWN: "Outage",
    MAINTENANCE: "Under maintenance",
    PAUSED: "Not monitored",
    UNKNOWN: "No data yet",
}
OVERALL_WORDS = {
    UP: "All systems operational",
    DEGRADED: "Some systems are degraded",
    DOWN: "Some systems are down",
    MAINTENANCE: "Maintenance under way",
    PAUSED: "Monitoring paused",
    UNKNOWN: "Status not known yet",
}

#: Only these columns of a check are ever read for the public.
PUBLIC_COLUMNS = ("pk", "public_name", "status", "status_since")


class Segment(TypedDict):
    day: str
    level: str  # "none", "up", "partial" or "down": the colour of the day
    title: str


class Change(TypedDict):
    at: datetime
    from_words: str
    to_words: str
    to_status: str


class PublicCheck(TypedDict):
    name: str
    status: str
    words: str
    since: datetime | None
    uptime_90d: str
    bar: list[Segment]
    changes: list[Change]


def public_name(name: str) -> str:
    return name.strip() or UNNAMED


def status_page(now: datetime | None = None) -> dict:
    """The page's whole content: the overall status and each public check, by public name."""
    now = now or timezone.now()
    rows = list(HealthCheck.objects.filter(public=True).values(*PUBLIC_COLUMNS))
    ids = [row["pk"] for row in rows]
    bars = daily_bars(ids, days=BAR_DAYS, now=now) if ids else {}
    changes = _changes(ids, now - timedelta(days=CHANGES_DAYS)) if ids else {}
    checks = [
        _public_check(row, bars.get(row["pk"], []), changes.get(row["pk"], [])) for row in rows
    ]
    checks.sort(key=lambda check: check["name"].lower())
    overall = overall_status([check["status"] for check in checks])
    return {
        "overall": overall,
        "overall_words": OVERALL_WORDS[overall] if checks else "No services listed",
        "checks": checks,
        "bar_days": BAR_DAYS,
        "changes_days": CHANGES_DAYS,
        "generated_at": now,
    }


def badge_check(token: str) -> dict | None:
    """The public check whose badge token is ``token`` (name and status), or None."""
    return (
        HealthCheck.objects.filter(badge_token=token, public=True).values(*PUBLIC_COLUMNS).first()
    )


def uptime_30d(check_id: int, now: datetime | None = None) -> float | None:
    return uptime_windows([check_id], now=now).get(check_id, {}).get("30d")


def uptime_text(percent: float | None) -> str:
    """``99.996`` -> ``"99.99%"``: cut, never rounded up to a 100 % that was not."""
    if percent is None:
        return "no data"
    cut = math.floor(percent * 100) / 100
    return f"{cut:.2f}".rstrip("0").rstrip(".") + "%"


def _public_check(row: dict, days: list[dict], changes: list[Change]) -> PublicCheck:
    results = sum(day["results"] for day in days)
    failures = sum(day["failures"] for day in days)
    return {
        "name": public_name(row["public_name"]),
        "status": row["status"],
        "words": WORDS[row["status"]],
        "since": row["status_since"],
        "uptime_90d": uptime_text(100.0 * (results - failures) / results if results else None),
        "bar": [_segment(day) for day in days],
        "changes": changes,
    }


def _segment(day: dict) -> Segment:
    label = str(day["day"])  # an ISO date
    if not day["results"]:
        return {"day": label, "level": "none", "title": f"{label}: no data"}
    level = "up" if not day["failures"] else "partial" if day["uptime"] >= 95 else "down"
    return {"day": label, "level": level, "title": f"{label}: {uptime_text(day['uptime'])} up"}


def _changes(ids: list[int], since: datetime) -> dict[int, list[Change]]:
    """Each check's changes of shown status since ``since``, newest first. Changes of health
    inside a maintenance window are left out: the public saw MAINTENANCE throughout."""
    rows = (
        StateChange.objects.filter(health_check_id__in=ids, at__gte=since)
        .exclude(during_maintenance=True)
        .order_by("-at", "-pk")
        .values_list("health_check_id", "from_status", "to_status", "at")[:CHANGES_READ]
    )
    changes: dict[int, list[Change]] = {}
    for check_id, before, after, at in rows:
        shown = changes.setdefault(check_id, [])
        if len(shown) >= CHANGES_SHOWN:
            continue
        shown.append(
            {"at": at, "from_words": WORDS[before], "to_words": WORDS[after], "to_status": after}
        )
    return changes
