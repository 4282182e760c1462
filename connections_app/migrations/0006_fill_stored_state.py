"""Fill the stored state of every check from the results already stored: nothing is lost.

A frozen copy of the rules as they were when the state was introduced (``state.judge``): a
migration must not change with the code that comes after it.
"""

from django.db import migrations
from django.db.models import Count, Max, Min

STATE_FIELDS = [
    "status",
    "status_since",
    "health",
    "failures_in_a_row",
    "successes_in_a_row",
    "last_checked_at",
    "last_latency_ms",
    "last_error_category",
    "last_error_message",
]


def fill(apps, schema_editor):
    alias = schema_editor.connection.alias
    checks = apps.get_model("connections_app", "HealthCheck").objects.using(alias)
    results = apps.get_model("connections_app", "CheckResult").objects.using(alias)
    last = dict(results.values("health_check_id").annotate(at=Max("checked_at")).values_list(
        "health_check_id", "at"))  # fmt: skip
    last_ok = _latest(results.filter(ok=True))
    last_failed = _latest(results.filter(ok=False))
    updated = []
    for check in checks.filter(pk__in=list(last)):
        newest = results.filter(health_check_id=check.pk).order_by("-checked_at").first()
        streak_from = last_failed.get(check.pk) if newest.ok else last_ok.get(check.pk)
        streak = results.filter(health_check_id=check.pk)
        if streak_from is not None:
            streak = streak.filter(checked_at__gt=streak_from)
        counted = streak.aggregate(n=Count("pk"), since=Min("checked_at"))
        _fill(check, newest, counted["n"], counted["since"])
        updated.append(check)
    checks.bulk_update(updated, STATE_FIELDS, batch_size=500)
    # A check without results keeps UNKNOWN, or shows PAUSED when it is disabled.
    checks.filter(enabled=False).update(status="paused")


def _latest(results) -> dict:
    grouped = results.values("health_check_id").annotate(at=Max("checked_at"))
    return dict(grouped.values_list("health_check_id", "at"))


def _fill(check, newest, streak: int, since) -> None:
    if newest.ok:
        check.failures_in_a_row, check.successes_in_a_row, check.health = 0, streak, "up"
    else:
        check.failures_in_a_row, check.successes_in_a_row = streak, 0
        check.health = "down" if streak >= check.failures_before_down else "degraded"
    check.status = check.health if check.enabled else "paused"
    check.status_since = since
    check.last_checked_at = newest.checked_at
    check.last_latency_ms = newest.latency_ms
    check.last_error_category = newest.error_category
    check.last_error_message = newest.error_message


class Migration(migrations.Migration):
    dependencies = [("connections_app", "0005_stored_state")]

    operations = [migrations.RunPython(fill, migrations.RunPython.noop)]
