"""Channels and alerts as staff use them, through Django's test client; no secret on any page,
in any log line or in any stored error."""

from __future__ import annotations

import asyncio
import logging

import pytest
from django.urls import reverse

from connections_app.alerts.models import (
    ALERT_TEST,
    FAILED,
    PENDING,
    SENT,
    Alert,
    NotificationChannel,
)
from connections_app.alerts.sender import AlertSender, connection_config
from connections_app.connection_manager import ConnectionManager
from connections_app.models import HealthCheck
from tests.alerting import Clock, channel
from tests.conftest import refusing_port

pytestmark = pytest.mark.django_db

CHANNELS = reverse("admin:connections_app_notificationchannel_changelist")
ADD = reverse("admin:connections_app_notificationchannel_add")
ALERTS = reverse("admin:connections_app_alert_changelist")
TOKEN = "xyzSECRETtoken0123456789"
URL_MESSAGE = "The target must be an http:// or https:// URL with a host."


def form(**fields) -> dict:
    values = {"name": "ops", "kind": "webhook", "target": "https://hooks.example.com/x",
              "enabled": "on", "on_down": "on", "on_recovered": "on",
              "remind_every": "0"}  # fmt: skip
    return values | fields


@pytest.mark.parametrize(
    ("kind", "target", "message"),
    [
        ("webhook", "ftp://files.example.com/x", URL_MESSAGE),
        ("slack", "hooks.slack.com/services/T/B/x", URL_MESSAGE),
        ("discord", "", "This field is required."),
        ("email", "ops@example.com, not an address", "Address #2 is not an email address."),
    ],
)
def test_a_bad_target_is_refused_with_a_message_on_the_target(admin_client, kind, target, message):
    response = admin_client.post(ADD, form(kind=kind, target=target))
    assert response.status_code == 200
    assert response.context["adminform"].form.errors["target"] == [message]
    assert not NotificationChannel.objects.exists()


def test_the_stored_target_is_never_shown_and_an_empty_field_keeps_it(admin_client):
    target = f"https://hooks.slack.com/services/T0/B0/{TOKEN}"
    made = channel("ops", target, kind="slack")
    change = reverse("admin:connections_app_notificationchannel_change", args=[made.pk])
    for page in (
        CHANNELS,
        reverse("admin:connections_app_notificationchannel_change", args=[made.pk]),
    ):
        text = admin_client.get(page).content.decode()
        assert TOKEN not in text and "https://hooks.slack.com/…" in text
    response = admin_client.post(change, form(kind="slack", target="", name="ops renamed"))
    assert response.status_code == 302
    made.refresh_from_db()
    assert (made.name, made.target) == ("ops renamed", target)
    admin_client.post(change, form(kind="slack", target="https://hooks.slack.com/services/N/E/W"))
    made.refresh_from_db()
    assert made.target == "https://hooks.slack.com/services/N/E/W"


def test_send_a_test_alert_queues_one_per_channel(admin_client):
    a, b = channel("a", "http://127.0.0.1:9/a"), channel("b", "http://127.0.0.1:9/b")
    data = {"action": "send_test_alert", "_selected_action": [str(a.pk), str(b.pk)]}
    response = admin_client.post(CHANNELS, data, follow=True)
    assert [str(m) for m in response.context["messages"]][0].startswith("Queued 2 test alerts")
    assert sorted(Alert.objects.values_list("channel__name", "kind", "status")) == [
        ("a", ALERT_TEST, PENDING), ("b", ALERT_TEST, PENDING)
    ]  # fmt: skip


def test_a_check_s_page_lists_the_channels_that_apply(admin_client):
    check = HealthCheck.objects.create(name="api", target="http://127.0.0.1:9/", tags="db")
    channel("everything", "http://127.0.0.1:9/a")
    channel("by tag", "http://127.0.0.1:9/b", all_checks=False, tags="db")
    channel("other tag", "http://127.0.0.1:9/c", all_checks=False, tags="web")
    channel("off", "http://127.0.0.1:9/d", enabled=False)
    page = admin_client.get(reverse("admin:connections_app_healthcheck_change", args=[check.pk]))
    listed = [c.name for c in page.context["alert_channels"]]
    assert listed == ["by tag", "everything"]
    assert "Alert channels" in page.content.decode()
    other = HealthCheck.objects.create(name="lonely", target="http://127.0.0.1:9/")
    NotificationChannel.objects.filter(all_checks=True).delete()
    page = admin_client.get(reverse("admin:connections_app_healthcheck_change", args=[other.pk]))
    assert "nobody is told when it goes down" in page.content.decode()


def test_alerts_are_read_only_and_filter_by_status_kind_and_channel(admin_client):
    a, b = channel("a", "http://127.0.0.1:9/a"), channel("b", "http://127.0.0.1:9/b")
    Alert.objects.create(channel=a, kind=ALERT_TEST, status=FAILED, last_error="HTTP 500")
    Alert.objects.create(channel=b, kind=ALERT_TEST, status=SENT)
    assert admin_client.get(reverse("admin:connections_app_alert_add")).status_code == 403
    for query, count in (("status__exact=failed", 1), (f"channel__id__exact={b.pk}", 1),
                         ("kind__exact=test", 2), ("kind__exact=down", 0)):  # fmt: skip
        response = admin_client.get(f"{ALERTS}?{query}")
        assert response.status_code == 200
        assert len(response.context["cl"].result_list) == count, query


@pytest.mark.django_db(transaction=True)
def test_no_secret_in_a_stored_error_a_log_line_or_an_admin_page(admin_client, caplog):
    port = refusing_port()  # refused: the error names the address it tried
    target = f"http://hook:pa55word@127.0.0.1:{port}/services/{TOKEN}?sig={TOKEN}"
    made = channel("ops", target)
    alert = Alert.objects.create(channel=made, kind=ALERT_TEST)

    async def one_try() -> None:
        async with ConnectionManager(connection_config()) as manager:
            sender = AlertSender(manager, now=Clock(alert.next_attempt_at))
            await sender.send_due()
            await sender.drain()
            await sender.aclose()

    with caplog.at_level(logging.INFO):
        asyncio.run(one_try())
    alert.refresh_from_db()
    assert alert.status == PENDING and f"127.0.0.1:{port}" in alert.last_error
    pages = [
        admin_client.get(url).content.decode()
        for url in (
            ALERTS,
            reverse("admin:connections_app_alert_change", args=[alert.pk]),
            CHANNELS,
            reverse("admin:connections_app_notificationchannel_change", args=[made.pk]),
        )
    ]
    for text in [alert.last_error, caplog.text, *pages]:
        assert TOKEN not in text and "pa55word" not in text
