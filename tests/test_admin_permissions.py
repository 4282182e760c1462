"""Who may use the admin's actions: real POSTs through Django's test client, as staff with only
some permissions. An action a user may not use is neither offered nor carried out."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.test import Client
from django.urls import reverse

from connections_app.alerts.models import FAILED, PENDING, Alert, NotificationChannel
from connections_app.models import HealthCheck
from connections_app.run_now import running
from tests.test_models import add_results

pytestmark = pytest.mark.django_db

CHECKS = reverse("admin:connections_app_healthcheck_changelist")
CHANNELS = reverse("admin:connections_app_notificationchannel_changelist")
ALERTS = reverse("admin:connections_app_alert_changelist")
#: A run of one check at a closed loopback port: refused at once, stored within this.
RUN_WAIT = 30


def staff_with(*codenames: str) -> Client:
    """A logged-in staff browser whose user has exactly these permissions."""
    user = get_user_model().objects.create_user(f"staff-{'-'.join(codenames)}", is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(codename__in=codenames))
    browser = Client()
    browser.force_login(user)
    return browser


def act(browser: Client, changelist: str, action: str, rows) -> list[str]:
    """POST ``action`` on ``rows`` as the changelist's form does; the messages shown after.

    A run started by the action is waited for before the next page is read: on the tests'
    shared in-memory SQLite its writes would lock the tables that page reads."""
    data = {"action": action, "_selected_action": [str(row.pk) for row in rows]}
    assert browser.post(changelist, data).status_code in (200, 302)
    for thread in running():
        thread.join(timeout=RUN_WAIT)
    assert running() == []
    return [str(message) for message in browser.get(changelist).context["messages"]]


def refused(messages: list[str]) -> bool:
    """What the admin answers an action the user may not use: nothing when the list offers no
    action at all, else "No action selected." (the action is not among the form's choices)."""
    return messages in ([], ["No action selected."])


def offered(browser: Client, changelist: str) -> set[str]:
    """The actions the changelist's drop-down offers."""
    form = browser.get(changelist).context["action_form"]  # None: no action at all
    return {name for name, _label in form.fields["action"].choices if name} if form else set()


@pytest.fixture
def check() -> HealthCheck:
    HealthCheck.objects.all().delete()
    api = HealthCheck.objects.create(
        name="api", target="http://127.0.0.1:9/", failures_before_down=1
    )
    add_results(api, [True])
    return api


def health_statuses(admin_client) -> list[str]:
    document = admin_client.get("/health/").json()
    return [document["status"], *(c["status"] for c in document["checks"])]


def test_view_only_staff_can_neither_pause_resume_nor_run(check, admin_client):
    viewer = staff_with("view_healthcheck")
    assert offered(viewer, CHECKS) == set()
    assert refused(act(viewer, CHECKS, "pause", [check]))
    check.refresh_from_db()
    assert (check.enabled, check.status) == (True, "up")
    assert "paused" not in health_statuses(admin_client)

    HealthCheck.objects.filter(pk=check.pk).update(enabled=False, status="paused")
    assert refused(act(viewer, CHECKS, "resume", [check]))
    assert HealthCheck.objects.get(pk=check.pk).enabled is False

    assert refused(act(viewer, CHECKS, "run_now", [check]))
    assert check.results.count() == 1


def test_the_change_permission_pauses_and_resumes_but_does_not_run(check):
    editor = staff_with("view_healthcheck", "change_healthcheck")
    assert offered(editor, CHECKS) == {"pause", "resume"}
    assert act(editor, CHECKS, "pause", [check]) == ["Paused 1 check."]
    assert HealthCheck.objects.get(pk=check.pk).status == "paused"
    assert act(editor, CHECKS, "resume", [check]) == ["Resumed 1 check."]
    assert HealthCheck.objects.get(pk=check.pk).enabled is True
    assert refused(act(editor, CHECKS, "run_now", [check]))


@pytest.mark.django_db(transaction=True)  # the run's own thread reads the check: committed
def test_run_now_needs_its_own_permission_and_nothing_else(check):
    runner = staff_with("view_healthcheck", "run_healthcheck")
    assert offered(runner, CHECKS) == {"run_now"}
    (message,) = act(runner, CHECKS, "run_now", [check])
    assert message.startswith("Running 1 check in the background")
    assert check.results.count() == 2  # the run stored its result (a refused port)
    assert refused(act(runner, CHECKS, "pause", [check]))


def test_superusers_have_every_action(check, admin_client):
    assert offered(admin_client, CHECKS) == {"pause", "resume", "run_now", "delete_selected"}


def test_a_test_alert_needs_the_change_permission_on_channels():
    channel = NotificationChannel.objects.create(
        name="ops", kind="webhook", target="https://hooks.example/T0/secret", all_checks=True
    )
    viewer = staff_with("view_notificationchannel")
    assert refused(act(viewer, CHANNELS, "send_test_alert", [channel]))
    assert not Alert.objects.exists()
    editor = staff_with("view_notificationchannel", "change_notificationchannel")
    (message,) = act(editor, CHANNELS, "send_test_alert", [channel])
    assert message.startswith("Queued 1 test alert")
    assert Alert.objects.count() == 1


def test_sending_an_alert_again_needs_the_change_permission_on_alerts():
    channel = NotificationChannel.objects.create(
        name="ops", kind="webhook", target="https://hooks.example/T0/secret", all_checks=True
    )
    failed = Alert.objects.create(channel=channel, kind="test", status=FAILED, attempts=5)
    viewer = staff_with("view_alert")
    assert offered(viewer, ALERTS) == set()
    assert refused(act(viewer, ALERTS, "send_again", [failed]))
    assert Alert.objects.get(pk=failed.pk).status == FAILED
    resender = staff_with("view_alert", "change_alert")
    assert act(resender, ALERTS, "send_again", [failed]) == ["Queued 1 alert to send again."]
    assert Alert.objects.get(pk=failed.pk).status == PENDING
