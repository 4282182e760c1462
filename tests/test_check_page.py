"""A check's page and its data: who may see them, what they hold, and what they never show."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission, User
from django.utils import timezone

from connections_app.errors import ErrorCategory
from connections_app.models import HealthCheck
from connections_app.probes import ProbeResult
from connections_app.results import Outcome, store_outcomes

pytestmark = pytest.mark.django_db

SECRET = "hunter2"


@pytest.fixture
def check() -> HealthCheck:
    found = HealthCheck.objects.create(
        name="cache", kind="redis", target=f"redis://:{SECRET}@127.0.0.1:6379/0",
        failures_before_down=1,
    )  # fmt: skip
    now = timezone.now()
    store_outcomes([
        Outcome(found, ProbeResult.success(12.0), checked_at=now - timedelta(minutes=2)),
        Outcome(found, ProbeResult.failure(
            ErrorCategory.REFUSED, f"refused by redis://:{SECRET}@127.0.0.1:6379/0"),
            checked_at=now - timedelta(minutes=1)),
    ])  # fmt: skip
    return found


def url(check: HealthCheck, data: bool = False) -> str:
    return f"/dashboard/checks/{check.pk}/{'data/' if data else ''}"


def test_staff_see_the_page_with_its_history(admin_client, check):
    page = admin_client.get(url(check))
    assert page.status_code == 200
    data = page.context["data"]
    assert data["uptime"]["24h"] == 50.0
    assert len(data["bars"]) == 90 and data["bars"][-1]["failures"] == 1
    assert [c["to"] for c in data["changes"]] == ["down", "up"]
    assert data["results"][0]["error_category"] == "refused"
    assert SECRET not in page.content.decode()


def test_the_data_follows_the_range_asked_for(admin_client, check):
    body = admin_client.get(url(check, data=True), {"range": "30d"}).json()
    assert body["range"] == "30d" and body["latency"]["30d"]["p50"] == 12.0
    assert len(body["series"]) >= 1 and SECRET not in str(body)
    # The chart's time axis: the whole 30 days up to now, however few hours have points.
    start, end = body["series_span"]
    assert end - start == 30 * 86400 and abs(end - time.time()) < 60


def test_an_unknown_range_is_refused_by_name(admin_client, check):
    answer = admin_client.get(url(check, data=True), {"range": "1y"})
    assert answer.status_code == 400
    assert answer.json() == {"error": "range: one of 24h, 7d, 30d"}


def test_an_unknown_check_is_404(admin_client, check):
    assert admin_client.get("/dashboard/checks/999999/").status_code == 404


def test_anonymous_visitors_are_sent_to_log_in(client, check):
    answer = client.get(url(check))
    assert answer.status_code == 302 and "/login/" in answer["Location"]


def test_staff_without_the_view_permission_are_refused(client, check):
    user = User.objects.create_user("viewer", password="pw-long-enough-1", is_staff=True)
    client.force_login(user)
    assert client.get(url(check)).status_code == 403
    user.user_permissions.add(Permission.objects.get(codename="view_healthcheck"))
    user = User.objects.get(pk=user.pk)  # permissions are cached on the instance
    client.force_login(user)
    assert client.get(url(check)).status_code == 200
    assert client.get(url(check, data=True)).status_code == 200
