"""Changelists answer only the lookups their filters declare: a stored secret cannot be read
back through a URL lookup (``?target__regex=^http://alice:S`` answering by row count). Real
GETs on every changelist, as staff who may only view."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.test import Client
from django.utils import timezone

from connections_app.alerts.models import FAILED, Alert, NotificationChannel
from connections_app.maintenance import MaintenanceWindow
from connections_app.models import CheckResult, ErrorStat, HealthCheck, StateChange
from realtime.models import ConnectedClient

pytestmark = pytest.mark.django_db

PASSWORD = "Sup3rSecret"
TARGET = f"http://alice:{PASSWORD}@db.internal:5432/health?token={PASSWORD}"
HOOK = f"https://hooks.slack.com/services/T000/B000/{PASSWORD}"


def url(model: str) -> str:
    app = "realtime" if model == "connectedclient" else "connections_app"
    return f"/admin/{app}/{model}/"


@pytest.fixture
def viewer() -> Client:
    """Staff who may view every model and change none: the attacker of the issue."""
    user = get_user_model().objects.create_user("viewer", is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(codename__startswith="view_"))
    browser = Client()
    browser.force_login(user)
    return browser


@pytest.fixture
def rows() -> dict[str, int]:
    """One row of each model, secrets wherever a row can hold one; their primary keys."""
    now = timezone.now()
    HealthCheck.objects.all().delete()  # the self checks a migration adds
    check = HealthCheck.objects.create(name="db", target=TARGET, tags="prod")
    channel = NotificationChannel.objects.create(
        name="ops", kind="slack", target=HOOK, all_checks=True
    )
    CheckResult.objects.create(
        health_check=check,
        checked_at=now,
        ok=False,
        error_category="refused",
        error_message=TARGET,
        ping_body=TARGET,
    )
    StateChange.objects.create(
        health_check=check, from_status="up", to_status="down", at=now, reason_message=TARGET
    )
    ErrorStat.objects.create(
        fingerprint="f",
        category="refused",
        operation="check.http",
        endpoint=TARGET,
        first_seen=now,
        last_seen=now,
        severity="error",
        last_message=TARGET,
    )
    Alert.objects.create(channel=channel, health_check=check, kind="down", status=FAILED)
    window = MaintenanceWindow.objects.create(
        name="nightly", starts_at=now, ends_at=now + timedelta(hours=1), all_checks=True
    )
    ConnectedClient.objects.create(
        client_id="c1", server="host:1", user="staff", connected_at=now, seen_at=now
    )
    return {"check": check.pk, "channel": channel.pk, "window": window.pk}


#: For each changelist, lookups that would answer a guess about a secret by row count.
PROBES = {
    "healthcheck": ["target__regex", "target__startswith", "request_headers__contains"],
    "notificationchannel": ["target__regex", "target__contains"],
    "checkresult": ["error_message__regex", "ping_body__contains", "health_check__target__regex"],
    "statechange": ["reason_message__regex", "health_check__target__regex"],
    "errorstat": ["endpoint__regex", "last_message__contains"],
    "alert": ["channel__target__regex", "health_check__target__regex", "last_error__regex"],
    "maintenancewindow": ["checks__target__regex"],
    "connectedclient": ["user__regex"],
}


@pytest.mark.parametrize(
    ("model", "lookup"),
    [(model, lookup) for model, lookups in PROBES.items() for lookup in lookups],
)
def test_an_undeclared_lookup_is_refused_whether_the_guess_is_right_or_not(
    viewer, rows, model, lookup
):
    right = viewer.get(url(model), {lookup: f".*alice:{PASSWORD[0]}" if "regex" in lookup else ""})
    wrong = viewer.get(url(model), {lookup: "^nothing-matches-this$"})
    assert right.status_code == wrong.status_code == 400  # DisallowedModelAdminLookup
    assert right.content == wrong.content
    assert PASSWORD.encode() not in right.content


@pytest.mark.parametrize("query", ["target=x", "foo=bar", "enabled=1", "name__regex=d"])
def test_unknown_parameters_are_refused_too(viewer, rows, query):
    assert viewer.get(f"{url('healthcheck')}?{query}").status_code == 400


def declared(rows: dict[str, int]) -> dict[str, list[str]]:
    """For each changelist, every parameter its filters, search, sorting and paging write."""
    year = timezone.now().year
    return {
        "healthcheck": [
            "status=unknown",
            "flapping__exact=0",
            "kind__exact=http",
            "tag=prod",
            "enabled__exact=1",
            "critical__exact=0",
            "kind__isnull=False",
            "q=db",
            "o=2",
            "p=1",
        ],
        "notificationchannel": ["kind__exact=slack", "enabled__exact=1", "q=ops"],
        "checkresult": [
            "ok__exact=0",
            "category=refused",
            f"health_check__id__exact={rows['check']}",
            "checked=24h",
            "q=db",
        ],
        "statechange": [
            "to_status__exact=down",
            "from_status__exact=up",
            "during_maintenance__exact=0",
            f"health_check__id__exact={rows['check']}",
        ],
        "errorstat": [
            "category__exact=refused",
            "severity__exact=error",
            f"last_seen__year={year}",
        ],
        "alert": [
            "status__exact=failed",
            "kind__exact=down",
            f"channel__id__exact={rows['channel']}",
        ],
        "maintenancewindow": ["enabled__exact=1", "schedule__exact=once", "q=nightly"],
        "connectedclient": ["server__exact=host:1", "q=staff"],
    }


def test_every_declared_filter_still_answers(viewer, rows):
    for model, queries in declared(rows).items():
        for query in queries:
            response = viewer.get(f"{url(model)}?{query}")
            assert response.status_code == 200, (model, query)
            assert response.context["cl"].result_count == 1, (model, query)
