"""The health summary served by /health/ and printed by runchecks."""

from __future__ import annotations

from typing import TypedDict

from django.utils import timezone

from connections_app.models import DOWN, HealthCheck, overall_status


class CheckSummary(TypedDict):
    name: str
    kind: str
    status: str
    critical: bool
    tags: list[str]
    latency_ms: float | None
    last_checked_at: str | None
    error_category: str


class HealthSummary(TypedDict):
    status: str
    critical_down: bool
    generated_at: str
    checks: list[CheckSummary]


def check_summary(check: HealthCheck) -> CheckSummary:
    """One check as JSON-ready data; ``check`` comes from ``with_status()``. No target: it may
    hold credentials and /health/ is public."""
    return {
        "name": check.name,
        "kind": check.kind,
        "status": check.status,
        "critical": check.critical,
        "tags": check.tag_list,
        "latency_ms": round(check.last_latency_ms, 2)
        if check.last_latency_ms is not None
        else None,
        "last_checked_at": check.last_checked_at.isoformat() if check.last_checked_at else None,
        "error_category": check.last_error_category or "",
    }


def health_summary() -> HealthSummary:
    checks = [check_summary(c) for c in HealthCheck.objects.with_status()]
    statuses = [c["status"] for c in checks]
    return {
        "status": overall_status(statuses),
        "critical_down": any(c["status"] == DOWN and c["critical"] for c in checks),
        "generated_at": timezone.now().isoformat(),
        "checks": checks,
    }
