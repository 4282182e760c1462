"""The consumer through the real ASGI stack (origin check, sessions, routing) in memory."""

import asyncio
import json
from datetime import timedelta

import pytest
from asgiref.sync import sync_to_async
from django.utils import timezone

from connections_app import rollups
from connections_app.models import CheckResult, ErrorStat, HealthCheck
from connections_app.state import rebuild_from_results
from realtime.publish import publish_event
from realtime.registry import registry
from tests.realtime.conftest import (
    TIMEOUT,
    communicator,
    connected,
    receive,
    receive_type,
    session_cookie,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("clean_hub")]


async def closed_with(socket) -> int:
    output = await socket.receive_output(timeout=TIMEOUT)
    assert output["type"] == "websocket.close", output
    return output["code"]


async def test_it_refuses_an_anonymous_user_with_4401():
    socket = communicator(cookie=None)
    ok, _ = await socket.connect(timeout=TIMEOUT)
    assert ok  # accepted only to say why: a refused handshake carries no code
    assert await closed_with(socket) == 4401
    assert len(registry) == 0


async def test_it_refuses_a_user_who_is_not_staff_with_4403():
    cookie = await sync_to_async(session_cookie)("visitor", staff=False)
    socket = communicator(cookie)
    await socket.connect(timeout=TIMEOUT)
    assert await closed_with(socket) == 4403


async def test_it_refuses_a_foreign_origin(staff_cookie):
    socket = communicator(staff_cookie, origin="http://evil.example")
    ok, _ = await socket.connect(timeout=TIMEOUT)
    assert not ok


async def test_it_refuses_a_missing_origin(staff_cookie):
    from channels.testing import WebsocketCommunicator

    from project.asgi import application

    headers = [(b"cookie", f"sessionid={staff_cookie}".encode())]
    socket = WebsocketCommunicator(application, "/ws/health/", headers=headers)
    ok, _ = await socket.connect(timeout=TIMEOUT)
    assert not ok


def make_checks() -> None:
    now = timezone.now()
    api = HealthCheck.objects.create(
        name="api", target="https://user:hunter2@api.internal/health", tags="web"
    )
    db = HealthCheck.objects.create(name="db", kind="tcp", target="127.0.0.1:5432", tags="db")
    for i in range(40):
        CheckResult.objects.create(
            health_check=api, checked_at=now - timedelta(seconds=i), ok=i % 4 != 1, latency_ms=i
        )
    CheckResult.objects.create(health_check=db, checked_at=now, ok=False, error_category="refused")
    rebuild_from_results()  # results written in bulk: the stored state follows them
    rollups.rebuild()  # ... and their rollups
    ErrorStat.objects.create(
        fingerprint="f1",
        category="refused",
        operation="probe",
        endpoint="redis://:hunter2@cache:6379",
        count=3,
        first_seen=now,
        last_seen=now,
        severity="error",
        last_message="password=hunter2 refused",
    )


async def test_it_sends_a_snapshot_first(staff_cookie):
    await sync_to_async(make_checks)()
    socket, snapshot = await connected(staff_cookie)
    assert (snapshot["v"], snapshot["seq"], snapshot["type"]) == (3, 1, "snapshot")
    data = snapshot["data"]
    checks = {c["name"]: c for c in data["checks"]}
    assert checks["api"]["status"] == "up"
    assert len(checks["api"]["recent"]) == 30
    assert checks["api"]["recent"][-1][2] == 0.0  # oldest first, newest last: [t, ok, ms]
    assert checks["api"]["uptime_24h"] == 0.75
    assert checks["db"]["error_category"] == "refused"
    assert data["errors"][0]["count"] == 3
    assert data["clients"] == 1
    assert data["failed_alerts"] == 0
    assert "hunter2" not in json.dumps(snapshot)
    assert "target" not in checks["api"]
    await socket.disconnect()


async def test_it_answers_a_ping_with_a_pong(staff_cookie):
    socket, _ = await connected(staff_cookie)
    await socket.send_to(text_data='{"type": "ping"}')
    pong = await receive(socket)
    assert (pong["type"], pong["seq"]) == ("pong", 2)
    await socket.disconnect()


async def test_a_live_event_reaches_the_client_redacted(staff_cookie):
    socket, _ = await connected(staff_cookie)
    result = {"ok": False, "error_message": "GET https://u:hunter2@x/ failed"}
    await publish_event("check.result", {"check": {"name": "api", "tags": []}, "result": result})
    event = await receive(socket)
    assert (event["type"], event["seq"]) == ("updates", 2)
    assert [r["check"]["name"] for r in event["data"]["results"]] == ["api"]
    assert "hunter2" not in json.dumps(event)
    await socket.disconnect()


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ({"text_data": "not json"}, "not_json"),
        ({"bytes_data": b"\x00"}, "binary"),
        ({"text_data": '{"type": "subscribe"}'}, "unknown_type"),
        ({"text_data": "[1]"}, "not_object"),
        ({"text_data": '{"type": "ping", "pad": "' + "x" * 70_000 + '"}'}, "too_large"),
        ({"text_data": "[" * 30_000 + "]" * 30_000}, "not_json"),
        ({"text_data": '{"type": "ack", "seq": 99}'}, "bad_field"),
        ({"text_data": '{"type": "filter", "tags": "db"}'}, "bad_field"),
    ],
)
async def test_a_bad_frame_gets_an_error_frame_and_the_socket_stays(staff_cookie, frame, code):
    socket, _ = await connected(staff_cookie)
    await socket.send_to(**frame)
    error = await receive(socket)
    assert (error["type"], error["data"]["code"]) == ("error", code)
    await socket.send_to(text_data='{"type": "ping"}')
    assert (await receive(socket))["type"] == "pong"
    await socket.disconnect()


async def test_five_bad_frames_in_a_minute_close_the_socket_with_4008(staff_cookie):
    socket, _ = await connected(staff_cookie)
    for _ in range(4):
        await socket.send_to(text_data="nope")
        assert (await receive(socket))["type"] == "error"
    await socket.send_to(text_data="nope")
    assert await closed_with(socket) == 4008
    assert len(registry) == 0


async def test_acks_keep_a_client_that_receives_many_events(staff_cookie, settings):
    settings.DASHBOARD_LIMITS = {"max_unacked": 3}
    socket, _ = await connected(staff_cookie)
    for i in range(6):
        await publish_event("test.tick", {"i": i})  # not coalesced: a frame each
        event = await receive(socket)
        await socket.send_to(text_data=json.dumps({"type": "ack", "seq": event["seq"]}))
    await socket.send_to(text_data='{"type": "ping"}')
    assert (await receive_type(socket, "pong"))["seq"] == 8
    await socket.disconnect()


async def test_a_client_that_does_not_ack_is_told_to_resync(staff_cookie, settings):
    settings.DASHBOARD_LIMITS = {"max_unacked": 3, "ack_grace": 0}
    socket, _ = await connected(staff_cookie)
    for i in range(3):
        await publish_event("test.tick", {"i": i})  # not coalesced: a frame each
    for _ in range(3):
        await receive(socket)
    assert await closed_with(socket) == 4000


async def test_a_tag_filter_answers_with_a_filtered_snapshot_and_filters_events(staff_cookie):
    await sync_to_async(make_checks)()
    socket, _ = await connected(staff_cookie)
    await socket.send_to(text_data='{"type": "filter", "tags": ["DB"]}')
    snapshot = await receive(socket)
    assert snapshot["type"] == "snapshot"
    assert [c["name"] for c in snapshot["data"]["checks"]] == ["db"]
    assert snapshot["data"]["filter"] == ["db"]
    await publish_event("check.result", {"check": {"name": "api", "tags": ["web"]}})
    await publish_event("check.result", {"check": {"name": "db", "tags": ["db"]}})
    await publish_event("check.status", {"name": "api"})  # no tags: always passes
    updates = await receive(socket)
    assert updates["type"] == "updates"
    assert [r["check"]["name"] for r in updates["data"]["results"]] == ["db"]
    assert [s["name"] for s in updates["data"]["statuses"]] == ["api"]
    await socket.disconnect()


async def test_resync_sends_a_fresh_snapshot_but_not_too_often(staff_cookie, settings):
    settings.DASHBOARD_LIMITS = {"snapshot_min_interval": 60}
    socket, _ = await connected(staff_cookie)
    await socket.send_to(text_data='{"type": "resync"}')
    assert (await receive(socket))["type"] == "snapshot"
    await socket.send_to(text_data='{"type": "resync"}')
    error = await receive(socket)
    assert (error["type"], error["data"]["code"]) == ("error", "too_fast")
    await socket.disconnect()


async def test_pings_faster_than_the_limit_are_refused_and_count_as_bad_frames(
    staff_cookie, settings
):
    settings.DASHBOARD_LIMITS = {"ping_min_interval": 60, "bad_frames_allowed": 2}
    socket, _ = await connected(staff_cookie)
    await socket.send_to(text_data='{"type": "ping"}')
    assert (await receive(socket))["type"] == "pong"
    await socket.send_to(text_data='{"type": "ping"}')
    error = await receive(socket)
    assert (error["type"], error["data"]["code"]) == ("error", "too_fast")
    await socket.send_to(text_data='{"type": "ping"}')  # the second bad frame of two allowed
    assert await closed_with(socket) == 4008
    await socket.disconnect()


async def test_editing_a_check_pushes_a_fresh_snapshot(staff_cookie):
    socket, _ = await connected(staff_cookie)
    await sync_to_async(HealthCheck.objects.create)(name="new", target="https://new.internal/")
    snapshot = await receive_type(socket, "snapshot")
    assert "new" in [c["name"] for c in snapshot["data"]["checks"]]
    await socket.disconnect()


async def test_a_gap_in_a_publishers_events_pushes_a_fresh_snapshot(staff_cookie):
    from channels.layers import get_channel_layer

    from realtime.publish import event_message

    socket, _ = await connected(staff_cookie)
    layer = get_channel_layer()
    first, _lost, third = (event_message("check.status", {"i": i}) for i in range(3))
    await layer.group_send("dashboard", first)
    await layer.group_send("dashboard", third)
    kinds = [(await receive(socket))["type"] for _ in range(3)]
    assert kinds == ["check.status", "check.status", "snapshot"]
    await socket.disconnect()


async def test_a_publisher_first_heard_past_its_first_event_pushes_a_fresh_snapshot(
    staff_cookie,
):
    from channels.layers import get_channel_layer

    from realtime.publish import event_message

    socket, _ = await connected(staff_cookie)
    for i in range(3):  # as if the first two were lost, before this server heard anything
        message = event_message("check.status", {"i": i})
    await get_channel_layer().group_send("dashboard", message)
    kinds = [(await receive(socket))["type"] for _ in range(2)]
    assert kinds == ["check.status", "snapshot"]
    await socket.disconnect()


async def test_disconnecting_unregisters_the_client(staff_cookie):
    sockets = [(await connected(staff_cookie))[0] for _ in range(3)]
    assert len(registry) == 3
    for socket in sockets:
        await socket.disconnect()
    assert len(registry) == 0


async def test_the_heartbeat_pushes_the_client_count_and_the_error_stats(staff_cookie, settings):
    settings.DASHBOARD_LIMITS = {"heartbeat": 0.05}
    await sync_to_async(make_checks)()
    socket, _ = await connected(staff_cookie)
    assert (await receive_type(socket, "clients"))["data"] == {"count": 1}
    errors = (await receive_type(socket, "errors.updated"))["data"]["errors"]
    assert errors[0]["category"] == "refused"
    assert "hunter2" not in json.dumps(errors)
    assert (await receive_type(socket, "alerts.failed"))["data"] == {"count": 0}
    await sync_to_async(fail_an_alert)()
    assert (await receive_type(socket, "alerts.failed"))["data"] == {"count": 1}
    await socket.disconnect()


def fail_an_alert() -> None:
    from connections_app.alerts.models import FAILED, Alert, NotificationChannel

    channel = NotificationChannel.objects.create(name="ops", target="http://127.0.0.1:9/")
    Alert.objects.create(channel=channel, kind="test", status=FAILED)


async def test_a_connect_cancelled_before_its_snapshot_leaves_no_client(staff_cookie, monkeypatch):
    import realtime.hub

    started = asyncio.Event()

    async def never_ready(client):  # a snapshot stuck on a slow database
        started.set()
        await asyncio.Event().wait()

    monkeypatch.setattr(realtime.hub, "send_snapshot", never_ready)
    socket = communicator(staff_cookie)
    connecting = asyncio.ensure_future(socket.connect(timeout=TIMEOUT))
    await asyncio.wait_for(started.wait(), TIMEOUT)
    assert len(registry) == 1
    socket.future.cancel()  # what daphne does to an application that outlives its close
    await asyncio.gather(socket.future, connecting, return_exceptions=True)
    assert len(registry) == 0


async def test_a_failing_heartbeat_does_not_end_live_updates(staff_cookie, settings, monkeypatch):
    from realtime.hub import Hub

    settings.DASHBOARD_LIMITS = {"heartbeat": 0.05}
    beats = []
    real_heartbeat = Hub._heartbeat

    async def flaky_heartbeat(self, layer):
        beats.append(1)
        if len(beats) == 1:
            raise RuntimeError("the database went away for one heartbeat")
        await real_heartbeat(self, layer)

    monkeypatch.setattr(Hub, "_heartbeat", flaky_heartbeat)
    socket, _snapshot = await connected(staff_cookie)
    for _ in range(100):  # bounded: 100 heartbeats' worth at most
        if len(beats) >= 3:
            break
        await asyncio.sleep(0.05)
    assert len(beats) >= 3
    await publish_event("check.status", {"name": "api", "from": "up", "to": "down", "at": "x"})
    frame = await receive_type(socket, "check.status")
    assert frame["data"]["to"] == "down"
    await socket.disconnect()


async def test_a_database_never_migrated_closes_the_socket_saying_so(staff_cookie):
    from django.db import connection

    def rename(old: str, new: str) -> None:
        with connection.cursor() as cursor:
            cursor.execute(f"ALTER TABLE {old} RENAME TO {new}")

    # As a database whose app tables were never made: the snapshot finds none.
    await sync_to_async(rename)("connections_app_healthcheck", "hidden_healthcheck")
    try:
        socket = communicator(staff_cookie)
        await socket.connect(timeout=TIMEOUT)
        output = await socket.receive_output(timeout=TIMEOUT)
    finally:
        await sync_to_async(rename)("hidden_healthcheck", "connections_app_healthcheck")
    assert output["type"] == "websocket.close", output
    assert output["reason"] == (
        "the database has no table connections_app_healthcheck: run `manage.py migrate`"
    )
