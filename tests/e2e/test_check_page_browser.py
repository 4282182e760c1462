"""A check's page in a real browser (Debian's chromium through Playwright) on a real server:
reached from the dashboard's card, charts drawn by uPlot, live, tidy at 1280 px and on a
phone, light and dark. Screenshots land in test-artifacts/ for a person to look at.
"""

from __future__ import annotations

import pytest

from tests.conftest import manage
from tests.e2e.test_dashboard_browser import browser, card, log_in, shot, site  # noqa: F401

pytestmark = [pytest.mark.browser, pytest.mark.slow]

#: 30 days of history for the check, every 10 minutes, with a bad afternoon 3 days ago, its
#: rollups built in SQL as the data migration builds them, and what covers it.
HISTORY = """
from datetime import timedelta
from zoneinfo import ZoneInfo
from django.utils import timezone
from connections_app import rollups
from connections_app.alerts.models import NotificationChannel
from connections_app.maintenance import MaintenanceWindow
from connections_app.models import CheckResult, HealthCheck, StateChange
check = HealthCheck.objects.get(name="payments api")
now = timezone.now()
rows = []
for n in range(1, 30 * 144):
    at = now - timedelta(minutes=10 * n)
    bad = timedelta(days=3) < now - at < timedelta(days=3, hours=4)
    rows.append(CheckResult(
        health_check=check, checked_at=at, ok=not bad,
        latency_ms=None if bad else 40 + (n * 37) % 60 + (150 if n % 97 == 0 else 0),
        error_category="refused" if bad else "",
        error_message="ConnectionRefusedError: [Errno 111] Connection refused" if bad else "",
    ))
CheckResult.objects.bulk_create(rows)
rollups.rebuild()
StateChange.objects.create(health_check=check, from_status="up", to_status="down",
    at=now - timedelta(days=3, hours=4), reason_category="refused",
    reason_message="ConnectionRefusedError: [Errno 111] Connection refused")
StateChange.objects.create(health_check=check, from_status="down", to_status="up",
    at=now - timedelta(days=3))
# Three days from today in Berlin: never open while the test runs (the check must go DOWN, not
# into maintenance).
day = (timezone.localtime(now, ZoneInfo("Europe/Berlin")).weekday() + 3) % 7
window = MaintenanceWindow.objects.create(name="Weekly deploys", schedule="weekly",
    weekdays=str(day), start_time="23:00", duration_minutes=60, time_zone="Europe/Berlin",
    tags="prod")
NotificationChannel.objects.create(
    name="ops webhook", target="http://127.0.0.1:9/hook", tags="prod")
"""


def open_check_page(page, server):
    log_in(page, server)
    link = card(page, "payments api").locator(".name a")
    link.wait_for()
    link.click()
    page.wait_for_url(f"{server.base}/dashboard/checks/*/")
    page.wait_for_selector("#connection.conn-connected")
    page.wait_for_selector("#chart canvas")


def test_the_check_page_shows_history_and_follows_the_check_live(browser, site):  # noqa: F811
    server, target = site
    made = manage(server.env, "shell", "-c", HISTORY)
    assert made.returncode == 0, made.stderr
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    open_check_page(page, server)
    assert page.locator("#bars .bar").count() == 90
    assert page.locator("#bars .bar-down, #bars .bar-degraded").count() >= 1  # the bad afternoon
    assert page.locator("#changes li").count() >= 2
    assert "Connection refused" in page.locator("#changes").inner_text()
    assert "Weekly deploys" in page.inner_text("main")
    assert "ops webhook" in page.inner_text("main")
    assert "127.0.0.1:9/hook" not in page.content()  # a channel's address is a secret
    uptime_30d = page.locator('[data-uptime="30d"] .value').inner_text()
    assert uptime_30d.endswith("%") and uptime_30d != "100 %"
    assert page.locator('[data-latency="p95"] .value').inner_text().endswith("ms")
    shot(page, "check-page")

    # A single hour of points still spans the whole range asked for on the time axis (uPlot
    # alone stretched one point's axis over years).
    got = page.evaluate("""async () => {
        const el = document.createElement("div");
        document.body.append(el);
        const now = Math.floor(Date.now() / 1000), hour = now - (now % 3600);
        const span = [now - 86400, now];
        const plot = window.CHChart.draw(el, [{t: hour, p50: 2, p95: 4, avg: 3}], span);
        await new Promise((drawn) => requestAnimationFrame(drawn));  // uPlot sets its scales
        const got = [[plot.scales.x.min, plot.scales.x.max], span];
        plot.destroy();
        el.remove();
        return got;
    }""")
    assert got[0] == got[1]

    page.click('.ranges button[data-range="30d"]')
    page.wait_for_selector('.ranges button[data-range="30d"][aria-pressed="true"]')
    page.wait_for_function("document.querySelector('[data-latency=\"p95\"] .label')"
                           ".textContent.includes('30d')")  # fmt: skip
    page.wait_for_selector("#chart canvas")
    shot(page, "check-page-30d")

    target.stop()  # the next check is refused: one failure means DOWN
    page.wait_for_function("document.getElementById('status').textContent === 'DOWN'",
                           timeout=15000)  # fmt: skip
    page.wait_for_function("document.querySelector('#results tbody tr td.failed') !== null")
    assert "refused" in page.locator("#results tbody tr").first.inner_text().lower()
    # The change is read back from the server, with its reason.
    page.wait_for_function("document.querySelector('#changes li .badge').textContent === 'DOWN'")
    assert "cannot connect" in page.locator("#changes li").first.inner_text()
    shot(page, "check-page-down")

    # The admin's change page: status, since, uptime and the same chart over 7 days.
    page.click("text=Edit in admin")
    page.wait_for_selector("#check-history #admin-latency-chart canvas")
    history = page.locator("#check-history").inner_text()
    assert "DOWN since" in history and "uptime 30d" in history
    shot(page, "check-admin-change")
    page.close()


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_the_check_page_fits_a_phone(browser, site, scheme):  # noqa: F811
    server, _target = site
    assert manage(server.env, "shell", "-c", HISTORY).returncode == 0
    page = browser.new_page(viewport={"width": 390, "height": 844}, color_scheme=scheme)
    open_check_page(page, server)
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    chart_width = page.evaluate("document.querySelector('#chart canvas').clientWidth")
    assert 300 <= chart_width <= 390
    shot(page, f"check-page-phone-{scheme}")
    page.close()


def test_the_check_page_in_dark_at_desktop_width(browser, site):  # noqa: F811
    server, _target = site
    assert manage(server.env, "shell", "-c", HISTORY).returncode == 0
    page = browser.new_page(viewport={"width": 1280, "height": 900}, color_scheme="dark")
    open_check_page(page, server)
    shot(page, "check-page-dark")
    page.close()
