"""The alert sender's units of work against real loopback receivers and a real SMTP server,
on a clock moved by hand: retries, leases and failures without sleeping through delays."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta

import pytest
from asgiref.sync import sync_to_async
from django.urls import reverse

from connections_app.alerts.delivery import Outcome
from connections_app.alerts.models import (
    ALERT_DOWN,
    ALERT_TEST,
    EMAIL,
    FAILED,
    PENDING,
    SENDING,
    SENT,
    Alert,
)
from connections_app.alerts.sender import (
    AlertSender,
    Finished,
    claim_due,
    connection_config,
    record_outcomes,
)
from connections_app.connection_manager import ConnectionManager
from connections_app.errors import ErrorCategory
from connections_app.models import HealthCheck
from connections_app.probes import ProbeResult
from connections_app.results import Outcome as ProbeOutcome
from connections_app.results import store_outcomes
from connections_app.retry import TASK
from tests.alerting import Clock, channel, smtp  # noqa: F401 - smtp is a fixture
from tests.conftest import free_port, refusing_port
from tests.http_targets import HttpTarget
from tests.realtime.helpers import wait_until

pytestmark = pytest.mark.django_db(transaction=True)


def down_alert(channel_target: str, **channel_fields) -> Alert:
    """A check that goes DOWN with one result: its change enqueues the channel's alert."""
    HealthCheck.objects.all().delete()
    made = channel("ops", channel_target, **channel_fields)
    check = HealthCheck.objects.create(
        name="payments",
        target="http://app:s3cret@127.0.0.1:9/pay?token=t0k3n",
        failures_before_down=1,
    )
    failure = ProbeResult.failure(
        ErrorCategory.REFUSED, "refused by http://app:s3cret@127.0.0.1:9/pay?token=t0k3n"
    )
    store_outcomes([ProbeOutcome(check, failure)])
    return Alert.objects.get(channel=made)


async def run_round(sender: AlertSender) -> None:
    await sender.send_due()
    await sender.drain()


@pytest.fixture(autouse=True)
async def close_senders(monkeypatch):
    """Every sender a test makes has its database thread and connection closed after it."""
    made: list[AlertSender] = []
    init = AlertSender.__init__

    def remembered(self, *args, **kwargs) -> None:
        init(self, *args, **kwargs)
        made.append(self)

    monkeypatch.setattr(AlertSender, "__init__", remembered)
    yield
    for sender in made:
        await sender.aclose()


@pytest.fixture
async def manager():
    async with ConnectionManager(connection_config()) as made:
        yield made


async def test_a_receiver_that_fails_twice_gets_one_delivery_on_the_policy_s_schedule(
    http_target, manager
):
    alert = await sync_to_async(down_alert)(http_target.url("/hook/ops"))
    assert alert.kind == ALERT_DOWN and alert.status == PENDING
    http_target.hook("ops", 500, 500)
    clock = Clock(alert.next_attempt_at)
    sender = AlertSender(manager, now=clock)
    assert sender.policy == TASK  # min(60 * 2**n, 300) s, 3 retries: the defaults
    await run_round(sender)
    await alert.arefresh_from_db()
    assert (alert.status, alert.attempts, alert.response_status) == (PENDING, 1, 500)
    assert alert.next_attempt_at == clock.now + timedelta(seconds=60)
    assert alert.last_error.startswith("HTTP 500")
    await run_round(sender)  # not due yet: nothing is sent
    assert len(http_target.received("ops")) == 1
    clock.advance(60)
    await run_round(sender)
    await alert.arefresh_from_db()
    assert (alert.status, alert.attempts) == (PENDING, 2)
    assert alert.next_attempt_at == clock.now + timedelta(seconds=120)
    clock.advance(120)
    await run_round(sender)
    await alert.arefresh_from_db()
    assert (alert.status, alert.attempts, alert.response_status) == (SENT, 3, 200)
    assert alert.sent_at == clock.now and alert.claimed_until is None
    keys = [r["key"] for r in http_target.received("ops")]
    assert keys == [str(alert.pk)] * 3  # the same key on every try
    assert http_target.delivered("ops") == [str(alert.pk)]


@pytest.mark.parametrize(
    ("answer", "wait"),
    [((429, {"Retry-After": "200"}), 200), ((503, {"Retry-After": "9999"}), 300), (408, 60)],
)
async def test_retry_after_is_honoured_within_the_cap(http_target, manager, answer, wait):
    alert = await sync_to_async(down_alert)(http_target.url("/hook/ops"))
    http_target.hook("ops", answer)
    clock = Clock(alert.next_attempt_at)
    await run_round(AlertSender(manager, now=clock))
    await alert.arefresh_from_db()
    assert alert.status == PENDING
    assert alert.next_attempt_at == clock.now + timedelta(seconds=wait)


@pytest.mark.parametrize("status", [400, 401, 404, 410, 301])
async def test_a_4xx_or_a_redirect_fails_at_once(http_target, manager, status):
    alert = await sync_to_async(down_alert)(http_target.url("/hook/ops"))
    http_target.hook("ops", status)
    await run_round(AlertSender(manager, now=Clock(alert.next_attempt_at)))
    await alert.arefresh_from_db()
    assert (alert.status, alert.attempts, alert.response_status) == (FAILED, 1, status)
    assert alert.last_error.startswith(f"HTTP {status}")


async def test_a_receiver_down_for_every_try_fails_and_send_again_delivers_once(
    manager, admin_client
):
    port = free_port()  # nothing listens until the receiver below: every try is refused
    alert = await sync_to_async(down_alert)(f"http://127.0.0.1:{port}/hook/ops?key=k3y")
    clock = Clock(alert.next_attempt_at)
    sender = AlertSender(manager, now=clock)
    for wait in [*TASK.delays(), None]:
        await run_round(sender)
        await alert.arefresh_from_db()
        if wait is not None:
            assert alert.status == PENDING
            clock.advance(wait)
    assert (alert.status, alert.attempts) == (FAILED, 4)
    assert "Cannot connect to host 127.0.0.1:" in alert.last_error
    assert "k3y" not in alert.last_error
    with HttpTarget(port=port) as receiver:
        changelist = reverse("admin:connections_app_alert_changelist")
        data = {"action": "send_again", "_selected_action": [str(alert.pk)]}
        response = await sync_to_async(admin_client.post)(changelist, data, follow=True)
        assert response.status_code == 200
        await alert.arefresh_from_db()
        assert (alert.status, alert.attempts) == (PENDING, 0)
        clock.now = alert.next_attempt_at
        await run_round(sender)
        await run_round(sender)
        assert receiver.delivered("ops") == [str(alert.pk)]
    await alert.arefresh_from_db()
    assert alert.status == SENT


async def test_an_alert_whose_runner_died_is_taken_over_when_its_lease_ends(http_target, manager):
    alert = await sync_to_async(down_alert)(http_target.url("/hook/ops"))
    clock = Clock(alert.next_attempt_at)
    # A runner claims it and dies before sending: its claim is all that is left.
    (claimed,), _ = await sync_to_async(claim_due)(clock.now, 10, 30.0, TASK)
    sender = AlertSender(manager, now=clock, lease=30.0)
    await run_round(sender)
    assert http_target.received("ops") == []  # the lease still holds
    clock.advance(30)
    await run_round(sender)
    assert http_target.delivered("ops") == [str(alert.pk)]
    await alert.arefresh_from_db()
    assert (alert.status, alert.attempts) == (SENT, 2)
    # The first runner's late word changes nothing: its claim is not the latest.
    late = Finished(alert.pk, claimed.claimed_until, 1, Outcome(False, error="late"))
    assert await sync_to_async(record_outcomes)([late], clock.now, TASK) == 1
    await alert.arefresh_from_db()
    assert alert.status == SENT


async def test_a_stalled_receiver_delays_no_other_channel(manager):
    with HttpTarget() as stalled, HttpTarget() as fine:
        stalled.hook("slow", *["stall"] * 15)
        slow = await sync_to_async(channel)("slow", stalled.url("/hook/slow"))
        quick = await sync_to_async(channel)("quick", fine.url("/hook/quick"))
        clock = Clock()
        for _ in range(15):
            await Alert.objects.acreate(channel=slow, kind=ALERT_TEST, next_attempt_at=clock.now)
        late = await Alert.objects.acreate(
            channel=quick, kind=ALERT_TEST, next_attempt_at=clock.now + timedelta(seconds=1)
        )
        sender = AlertSender(manager, now=clock, send_timeout=2.0, lease=5.0)
        await sender.send_due()
        await wait_until(lambda: len(stalled.received("slow")) == 10)  # PER_CHANNEL
        clock.advance(1)
        await sender.send_due()
        await wait_until(lambda: fine.delivered("quick") == [str(late.pk)], within=5)
        assert len(stalled.received("slow")) == 10
        await sender.drain()
    assert await Alert.objects.filter(channel=slow, status=PENDING, attempts=1).acount() == 10


async def test_an_email_alert_has_a_text_and_an_html_part_and_no_secret(smtp, manager):  # noqa: F811
    alert = await sync_to_async(down_alert)("ops@example.com, oncall@example.com", kind=EMAIL)
    await run_round(AlertSender(manager, now=Clock(alert.next_attempt_at)))
    await alert.arefresh_from_db()
    assert alert.status == SENT
    ((recipients, message),) = smtp.messages
    assert recipients == ["ops@example.com", "oncall@example.com"]
    assert message["Subject"] == "[Connection Health] payments is DOWN"
    assert message["Message-ID"] == f"<alert-{alert.pk}@127.0.0.1>"
    text = message.get_body(("plain",)).get_content()
    html = message.get_body(("html",)).get_content()
    assert "payments is DOWN" in text and "<strong>payments is DOWN</strong>" in html
    assert f"/admin/connections_app/healthcheck/{alert.health_check_id}/change/" in text
    for secret in ("s3cret", "t0k3n"):
        assert secret not in message.as_string()


async def test_a_refused_recipient_fails_the_email_at_once(smtp, manager):  # noqa: F811
    smtp.refuse.add("gone@example.com")
    alert = await sync_to_async(down_alert)("gone@example.com", kind=EMAIL)
    await run_round(AlertSender(manager, now=Clock(alert.next_attempt_at)))
    await alert.arefresh_from_db()
    assert (alert.status, alert.attempts) == (FAILED, 1)
    assert alert.last_error == "recipients refused: [550]"


async def test_an_smtp_server_that_is_down_is_retried(manager, settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", refusing_port()
    alert = await sync_to_async(down_alert)("ops@example.com", kind=EMAIL)
    await run_round(AlertSender(manager, now=Clock(alert.next_attempt_at)))
    await alert.arefresh_from_db()
    assert (alert.status, alert.attempts) == (PENDING, 1)
    assert "Connection refused" in alert.last_error


async def test_run_forever_sends_until_stopped(http_target, manager):
    alert = await sync_to_async(down_alert)(http_target.url("/hook/ops"))
    stop = asyncio.Event()
    running = asyncio.ensure_future(AlertSender(manager).run_forever(stop))
    await wait_until(lambda: http_target.delivered("ops") == [str(alert.pk)], within=10)
    stop.set()
    await asyncio.wait_for(running, timeout=10)
    await alert.arefresh_from_db()
    assert alert.status == SENT


def test_a_sending_alert_is_not_claimed_again_before_its_lease_ends():
    made = channel("ops", "http://127.0.0.1:9/hook")
    clock = Clock()
    Alert.objects.create(channel=made, kind=ALERT_TEST, next_attempt_at=clock.now)
    (first,), _ = claim_due(clock.now, 10, 30.0, TASK)
    assert first.status == SENDING and first.claimed_until == clock.now + timedelta(seconds=30)
    assert claim_due(clock.advance(29), 10, 30.0, TASK)[0] == []
    assert len(claim_due(clock.advance(1), 10, 30.0, TASK)[0]) == 1


def test_an_alert_whose_runners_keep_dying_fails_instead_of_looping_forever():
    made = channel("ops", "http://127.0.0.1:9/hook")
    clock = Clock()
    alert = Alert.objects.create(channel=made, kind=ALERT_TEST, next_attempt_at=clock.now)
    for tries in range(1, TASK.attempts + 2):  # every try claimed, none ever told how it went
        (claimed,), _ = claim_due(clock.now, 10, 30.0, TASK)
        assert claimed.attempts == tries
        clock.advance(30)
    assert claim_due(clock.now, 10, 30.0, TASK)[0] == []
    alert.refresh_from_db()
    assert (alert.status, alert.attempts) == (FAILED, TASK.attempts + 1)
    assert alert.last_error == "the runner sending it stopped before it could tell"


def test_an_alert_for_a_channel_switched_off_fails_unsent():
    made = channel("ops", "http://127.0.0.1:9/hook")
    alert = Alert.objects.create(channel=made, kind=ALERT_TEST)
    made.enabled = False
    made.save()
    assert claim_due(alert.next_attempt_at, 10, 30.0, TASK)[0] == []
    alert.refresh_from_db()
    assert (alert.status, alert.attempts, alert.last_error) == (
        FAILED, 0, "not sent: the channel was disabled"
    )  # fmt: skip


@pytest.mark.parametrize(
    ("kind", "keys"), [("webhook", {"alert_id", "check"}), ("slack", {"text", "blocks"}),
                       ("discord", {"content", "embeds", "allowed_mentions"})],
)  # fmt: skip
async def test_each_kind_posts_its_own_body_with_the_idempotency_key(
    http_target, manager, kind, keys
):
    alert = await sync_to_async(down_alert)(http_target.url(f"/hook/{kind}"), kind=kind)
    await run_round(AlertSender(manager, now=Clock(alert.next_attempt_at)))
    (request,) = http_target.received(kind)
    assert keys <= set(request["body"])
    assert request["key"] == str(alert.pk)
    assert request["headers"]["Content-Type"] == "application/json"
    assert request["headers"]["User-Agent"].startswith("connection-health/")
    assert "s3cret" not in json.dumps(request) and "t0k3n" not in json.dumps(request)
