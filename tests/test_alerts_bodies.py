"""What each alert says, field by field: pure functions, no network. No body holds a secret."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from connections_app.alerts.bodies import (
    AlertFacts,
    check_url,
    discord_body,
    email_body,
    facts_of,
    slack_body,
    webhook_body,
)
from connections_app.alerts.models import ALERT_DOWN, ALERT_RECOVERED, ALERT_TEST, Alert
from connections_app.models import DOWN, UP, HealthCheck, StateChange
from tests.alerting import channel

AT = datetime(2026, 11, 30, 12, 0, 5, tzinfo=UTC)
URL = "http://127.0.0.1:8000/admin/connections_app/healthcheck/7/change/"
LEAKY = "ConnectTimeout to http://app:s3cret@10.0.0.5/pay?token=t0k3n after 5 s"
SECRETS = ("s3cret", "t0k3n")


def facts(**fields) -> AlertFacts:
    values = {
        "alert_id": 42,
        "kind": ALERT_DOWN,
        "channel": "ops",
        "check": "payments API",
        "check_url": URL,
        "from_status": UP,
        "to_status": DOWN,
        "since": AT,
        "reason_category": "timeout",
        "reason_message": LEAKY,
    }
    return AlertFacts(**(values | fields))


def test_the_webhook_body_is_the_documented_json():
    body = webhook_body(facts())
    assert body == {
        "alert_id": 42,
        "kind": "down",
        "summary": "payments API is DOWN",
        "check": {"name": "payments API", "url": URL},
        "from": "up",
        "to": "down",
        "since": "2026-11-30T12:00:05+00:00",
        "reason": {
            "category": "timeout",
            "message": "ConnectTimeout to http://app:***@10.0.0.5/pay?token=*** after 5 s",
        },
    }


def test_a_test_alert_names_no_check():
    body = webhook_body(
        facts(
            kind=ALERT_TEST,
            check=None,
            check_url=None,
            from_status="",
            to_status="",
            since=None,
            reason_category="",
            reason_message="",
        )  # fmt: skip
    )
    assert body["check"] is None and body["since"] is None
    assert body["summary"] == "Test alert from Connection Health: channel 'ops' works"
    assert body["reason"] == {"category": "", "message": ""}


@pytest.mark.parametrize(
    ("kind", "from_status", "to_status", "summary"),
    [
        ("down", "up", "down", "payments API is DOWN"),
        ("degraded", "up", "degraded", "payments API is DEGRADED"),
        ("recovered", "down", "up", "payments API is UP again"),
        ("reminder", "down", "down", "payments API is still DOWN"),
        ("flapping", "up", "down", "payments API is flapping: its alerts are held until it is "
         "stable"),
    ],
)  # fmt: skip
def test_each_kind_has_its_summary(kind, from_status, to_status, summary):
    assert facts(kind=kind, from_status=from_status, to_status=to_status).summary == summary


def test_slack_has_text_and_blocks_with_a_link_and_the_details():
    body = slack_body(facts())
    assert body["text"] == "payments API is DOWN"
    headline, details = body["blocks"]
    assert headline == {
        "type": "section",
        "text": {"type": "mrkdwn", "text": f"<{URL}|payments API> is DOWN"},
    }
    assert [f["text"] for f in details["fields"]] == [
        "*From*\nUP",
        "*To*\nDOWN",
        "*Since*\n2026-11-30 12:00:05 UTC",
        "*Reason*\ntimeout: ConnectTimeout to http://app:***@10.0.0.5/pay?token=*** after 5 s",
    ]


def test_slack_markup_in_a_check_name_is_escaped():
    body = slack_body(facts(check="<!channel> & co", check_url=None))
    assert body["blocks"][0]["text"]["text"] == "&lt;!channel&gt; &amp; co is DOWN"


def test_discord_has_content_and_one_embed_and_pings_nobody():
    body = discord_body(facts(kind=ALERT_RECOVERED, from_status=DOWN, to_status=UP,
                              reason_category="", reason_message=""))  # fmt: skip
    assert body["content"] == "payments API is UP again"
    assert body["allowed_mentions"] == {"parse": []}
    (embed,) = body["embeds"]
    assert embed == {
        "title": "payments API",
        "description": "payments API is UP again",
        "color": 0x1A7F37,
        "url": URL,
        "timestamp": "2026-11-30T12:00:05+00:00",
        "fields": [
            {"name": "From", "value": "DOWN", "inline": True},
            {"name": "To", "value": "UP", "inline": True},
            {"name": "Since", "value": "2026-11-30 12:00:05 UTC", "inline": True},
        ],
    }


def test_an_email_has_a_subject_a_text_part_and_an_escaped_html_part():
    email = email_body(facts(check="<b>payments</b>"))
    assert email.subject == "[Connection Health] <b>payments</b> is DOWN"
    assert email.text.splitlines() == [
        "<b>payments</b> is DOWN",
        "",
        "From: UP",
        "To: DOWN",
        "Since: 2026-11-30 12:00:05 UTC",
        "Reason: timeout: ConnectTimeout to http://app:***@10.0.0.5/pay?token=*** after 5 s",
        "",
        f"Check: {URL}",
    ]
    assert "<strong>&lt;b&gt;payments&lt;/b&gt; is DOWN</strong>" in email.html
    assert "<th align='left'>Reason</th>" in email.html
    assert f"<a href='{URL}'>Open &lt;b&gt;payments&lt;/b&gt;</a>" in email.html


@pytest.mark.parametrize("render", [webhook_body, slack_body, discord_body, email_body])
def test_no_body_holds_a_secret(render):
    body = render(facts())
    text = json.dumps(body) if isinstance(body, dict) else f"{body.subject}{body.text}{body.html}"
    assert not [s for s in SECRETS if s in text]


@pytest.mark.django_db
def test_facts_come_from_the_change_or_for_a_reminder_from_the_check():
    check = HealthCheck.objects.create(
        name="db", target="http://u:s3cret@127.0.0.1:9/", status=DOWN, status_since=AT,
        last_error_category="refused", last_error_message="refused",
    )  # fmt: skip
    HealthCheck.objects.filter(pk=check.pk).update(status=DOWN)  # a new check starts UNKNOWN
    check.refresh_from_db()
    change = StateChange.objects.create(
        health_check=check, from_status=UP, to_status=DOWN, at=AT, reason_category="refused"
    )
    made = channel("ops", "https://hooks.slack.com/services/T000/B000/XXXXsecret", kind="slack")
    alert = Alert.objects.create(channel=made, health_check=check, state_change=change,
                                 kind=ALERT_DOWN)  # fmt: skip
    about = facts_of(alert, "https://health.example.com/")
    assert (about.check, about.from_status, about.to_status, about.since) == ("db", UP, DOWN, AT)
    assert about.check_url == check_url("https://health.example.com", check.pk)
    assert about.check_url.startswith("https://health.example.com/admin/connections_app/")
    alert.state_change, alert.kind = None, "reminder"
    reminder = facts_of(alert, "http://127.0.0.1:8000")
    assert (reminder.from_status, reminder.to_status, reminder.reason) == (
        DOWN, DOWN, "refused: refused"
    )  # fmt: skip
