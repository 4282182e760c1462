"""Checks added, edited, paused, resumed or deleted: every open dashboard gets a fresh snapshot."""

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth import get_user_model
from django.test import Client as HttpClient
from django.urls import reverse

from connections_app.models import HealthCheck
from tests.realtime.conftest import connected, receive_type

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("clean_hub")]

CHANGELIST = reverse("admin:connections_app_healthcheck_changelist")


def admin_action(action: str, check: HealthCheck) -> int:
    admin, _ = get_user_model().objects.get_or_create(
        username="admin", defaults={"is_staff": True, "is_superuser": True}
    )
    browser = HttpClient()
    browser.force_login(admin)
    response = browser.post(CHANGELIST, {"action": action, "_selected_action": [str(check.pk)]})
    return response.status_code


def statuses(snapshot: dict) -> dict[str, str]:
    return {row["name"]: row["status"] for row in snapshot["data"]["checks"]}


@pytest.fixture
def api(transactional_db) -> HealthCheck:
    return HealthCheck.objects.create(name="api", target="http://127.0.0.1:9/health")


@pytest.mark.parametrize(
    ("action", "enabled_before", "status_after"),
    [
        ("pause", True, "paused"),
        ("resume", False, "unknown"),
    ],
)
async def test_the_admin_pause_and_resume_actions_resync_open_dashboards(
    staff_cookie, api, action, enabled_before, status_after
):
    # The actions write with update(), which sends no post_save: they must say so themselves.
    await HealthCheck.objects.filter(pk=api.pk).aupdate(enabled=enabled_before)
    socket, _ = await connected(staff_cookie)
    assert await sync_to_async(admin_action)(action, api) == 302
    assert statuses(await receive_type(socket, "snapshot"))["api"] == status_after
    await socket.disconnect()


async def test_a_saved_check_resyncs_open_dashboards(staff_cookie, api):
    socket, _ = await connected(staff_cookie)
    await HealthCheck.objects.acreate(name="cache", kind="tcp", target="127.0.0.1:9")
    # The self-checks are there or not, as the tests before this one left the database.
    ours = lambda snapshot: set(statuses(snapshot)) & {"api", "cache"}  # noqa: E731
    assert ours(await receive_type(socket, "snapshot")) == {"api", "cache"}
    await api.adelete()
    assert ours(await receive_type(socket, "snapshot")) == {"cache"}
    await socket.disconnect()
