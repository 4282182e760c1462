"""A check's page (``/ws/health/?check=<id>``) through the real consumer: its check's snapshot
and events only, authorized as the page is; the dashboard beside it still gets everything."""

from __future__ import annotations

import json

import pytest
from asgiref.sync import sync_to_async

from connections_app.models import HealthCheck
from realtime.publish import publish_event
from tests.realtime.conftest import TIMEOUT, communicator, connected, receive, receive_type
from tests.realtime.test_consumer import closed_with, make_checks

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("clean_hub")]


async def next_updates(socket) -> dict:
    """The next ``updates`` frame, skipping others (at most 20)."""
    for _ in range(20):
        frame = await receive(socket)
        if frame["type"] == "updates":
            return frame
    raise AssertionError("no updates frame in 20")


def ids() -> dict[str, int]:
    return dict(HealthCheck.objects.filter(name__in=["api", "db"]).values_list("name", "pk"))


def flush(checks: dict[str, int]) -> dict:
    """A runner's flush as it announces it: a result of each check, then a change of each."""
    results = [
        {"check": {"id": pk, "name": name, "tags": [name]}, "result": {"ok": False, "i": pk}}
        for name, pk in checks.items()
    ]
    changes = [
        {"id": pk, "name": name, "tags": [name], "from": "up", "to": "down"}
        for name, pk in checks.items()
    ]
    return {"results": results, "changes": changes}


async def test_a_check_s_page_gets_its_check_only_and_the_dashboard_everything(staff_cookie):
    await sync_to_async(make_checks)()
    checks = await sync_to_async(ids)()
    page, snapshot = await connected(staff_cookie, f"check={checks['api']}")
    dashboard, full = await connected(staff_cookie)
    data = snapshot["data"]
    assert [c["name"] for c in data["checks"]] == ["api"]
    assert (data["total"], data["parts"], data["check"]) == (1, 0, checks["api"])
    assert data["errors"] == []  # the page has no error panel
    assert {"api", "db"} <= {c["name"] for c in full["data"]["checks"]}

    await publish_event("check.results", flush(checks))
    mine = await next_updates(page)
    assert [r["check"]["name"] for r in mine["data"]["results"]] == ["api"]
    assert [s["name"] for s in mine["data"]["statuses"]] == ["api"]
    everything = await next_updates(dashboard)
    assert [r["check"]["name"] for r in everything["data"]["results"]] == ["api", "db"]
    assert [s["name"] for s in everything["data"]["statuses"]] == ["api", "db"]

    # Another check's results alone: nothing for the page, whose next frame is the next
    # flush about its own check.
    await publish_event("check.results", flush({"db": checks["db"]}))
    assert (await next_updates(dashboard))["data"]["results"][0]["check"]["name"] == "db"
    await publish_event("check.results", flush({"api": checks["api"]}))
    following = await receive(page)
    assert following["type"] == "updates"
    assert "db" not in json.dumps(following["data"])
    await page.disconnect()
    await dashboard.disconnect()


async def test_a_check_s_page_gets_no_dashboard_header_frames(staff_cookie, settings):
    settings.DASHBOARD_LIMITS = {"heartbeat": 0.05}
    await sync_to_async(make_checks)()
    checks = await sync_to_async(ids)()
    page, _ = await connected(staff_cookie, f"check={checks['api']}")
    dashboard, _ = await connected(staff_cookie)
    # The first client count with both connected: a push the page would get if it were shown.
    for _ in range(20):
        if (await receive_type(dashboard, "clients"))["data"] == {"count": 2}:
            break
    else:
        raise AssertionError("no client count of 2 in 20 pushes")
    # That heartbeat pushed its frames before this event: the page's first frame is the event.
    await publish_event("check.results", flush({"api": checks["api"]}))
    assert (await receive(page))["type"] == "updates"
    await page.disconnect()
    await dashboard.disconnect()


@pytest.mark.parametrize(
    ("query", "code", "reason"),
    [
        ("check=abc", 4400, "check: one check id, a whole number from 1"),
        ("check=0", 4400, "check: one check id, a whole number from 1"),
        ("check=1&check=2", 4400, "check: one check id, a whole number from 1"),
        ("check=999999", 4404, "no such check"),
    ],
)
async def test_a_bad_or_unknown_check_is_closed_with_a_code_saying_so(
    staff_cookie, query, code, reason
):
    socket = communicator(staff_cookie, query=query)
    ok, _ = await socket.connect(timeout=TIMEOUT)
    assert ok  # accepted only to say why
    output = await socket.receive_output(timeout=TIMEOUT)
    assert (output["type"], output["code"], output.get("reason")) == (
        "websocket.close",
        code,
        reason,
    )


async def test_a_check_s_page_is_authorized_as_the_dashboard_is(transactional_db):
    from tests.realtime.conftest import session_cookie

    await sync_to_async(make_checks)()
    checks = await sync_to_async(ids)()
    anonymous = communicator(None, query=f"check={checks['api']}")
    await anonymous.connect(timeout=TIMEOUT)
    assert await closed_with(anonymous) == 4401
    cookie = await sync_to_async(session_cookie)("no-view", True, "view_notificationchannel")
    refused = communicator(cookie, query=f"check={checks['api']}")
    await refused.connect(timeout=TIMEOUT)
    assert await closed_with(refused) == 4403


async def test_a_tag_filter_on_a_check_s_connection_is_refused(staff_cookie):
    await sync_to_async(make_checks)()
    checks = await sync_to_async(ids)()
    page, _ = await connected(staff_cookie, f"check={checks['api']}")
    await page.send_to(text_data='{"type": "filter", "tags": ["db"]}')
    error = await receive(page)
    assert (error["type"], error["data"]["code"]) == ("error", "bad_field")
    await page.disconnect()
