"""The dashboard in a real browser (Debian's chromium through Playwright) on a real server.

Screenshots land in test-artifacts/ for a person to look at.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import IN_CI, REPO, free_port, manage
from tests.http_targets import HttpTarget

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(REPO) / "test-artifacts"
PASSWORD = "a-long-test-password-1"

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture(scope="module")
def browser():
    if not os.path.exists(CHROMIUM):
        reason = f"{CHROMIUM} is missing (apt-get install chromium)"
        if IN_CI:
            pytest.fail(reason)
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        yield browser
        browser.close()


class Server:
    """``manage.py serve`` in a child process that a test may kill and start again."""

    def __init__(self, env: dict) -> None:
        self.env = env
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.child: subprocess.Popen | None = None

    def start(self) -> None:
        self.child = subprocess.Popen(
            [sys.executable, "manage.py", "serve", "--port", str(self.port)],
            cwd=REPO,
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 30
        while not self._answers():
            if self.child.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"server did not start: {self.child.stderr.read()}")
            time.sleep(0.05)

    def _answers(self) -> bool:
        try:
            with urllib.request.urlopen(self.base + "/health/", timeout=1):
                return True
        except urllib.error.HTTPError:
            return True
        except OSError:
            return False

    def kill(self) -> None:
        if self.child and self.child.poll() is None:
            self.child.send_signal(signal.SIGKILL)
            self.child.wait(timeout=10)
            self.child.stderr.close()


@pytest.fixture
def site(sqlite_file_env):
    env = sqlite_file_env | {"DJANGO_SUPERUSER_PASSWORD": PASSWORD}
    created = manage(
        env, "createsuperuser", "--noinput", "--username", "staff", "--email", "s@x.io"
    )
    assert created.returncode == 0, created.stderr
    target = HttpTarget().start()
    check = {
        "name": "payments api",
        "target": target.url("/ok"),
        "interval": 1,
        "timeout": 0.5,
        "failures_before_down": 1,
        "tags": "prod",
    }
    assert manage(env, "importchecks", "-", stdin=json.dumps([check])).returncode == 0
    server = Server(env)
    server.start()
    yield server, target
    server.kill()
    target.stop()


def shot(page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def log_in(page, server: Server) -> None:
    page.goto(f"{server.base}/admin/login/?next=/dashboard/")
    page.fill("#id_username", "staff")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_url(f"{server.base}/dashboard/")


def card(page, name: str):
    return page.locator(f'li.check[data-name="{name}"]')


def test_a_target_going_down_turns_its_row_red_live(browser, site):
    server, target = site
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    log_in(page, server)
    page.wait_for_selector("#connection.conn-connected")
    api = card(page, "payments api")
    api.wait_for()
    page.wait_for_function(
        "document.querySelector('li.check[data-name=\"payments api\"]').dataset.status === 'up'"
    )
    shot(page, "dashboard-up")

    target.stop()  # the port now refuses: the next check fails, and one failure means DOWN
    page.wait_for_function(
        "document.querySelector('li.check[data-name=\"payments api\"]').dataset.status === 'down'",
        timeout=15000,
    )
    assert "status-down" in api.get_attribute("class")
    assert api.locator(".error").inner_text() == "connection refused"
    assert page.locator("#overall").inner_text() == "DOWN"
    shot(page, "dashboard-down")
    page.close()


def test_the_page_says_reconnecting_and_recovers_after_a_server_restart(browser, site):
    server, _target = site
    page = browser.new_page(viewport={"width": 390, "height": 844})  # a phone
    log_in(page, server)
    page.wait_for_selector("#connection.conn-connected")
    card(page, "payments api").wait_for()

    server.kill()
    page.wait_for_selector("#connection.conn-reconnecting", timeout=10000)
    assert "reconnecting" in page.locator("#connection").inner_text()
    shot(page, "dashboard-reconnecting-phone")

    server.start()
    page.wait_for_selector("#connection.conn-connected", timeout=40000)
    card(page, "payments api").wait_for()
    shot(page, "dashboard-recovered-phone")
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, "the page must not scroll sideways on a phone"
    page.close()


def test_filters_work_from_the_keyboard(browser, site):
    server, _target = site
    page = browser.new_page()
    log_in(page, server)
    card(page, "payments api").wait_for()
    page.focus('#status-filters button[data-status="down"]')
    page.keyboard.press("Enter")
    page.wait_for_selector('li.check[data-name="payments api"]', state="detached")
    assert page.locator("#empty").is_visible()
    page.focus('#status-filters button[data-status=""]')
    page.keyboard.press("Enter")
    card(page, "payments api").wait_for()
    page.close()


def test_a_page_older_than_the_server_stops_and_asks_for_a_reload(browser, site):
    server, _target = site
    page = browser.new_page()
    # As if the page were served before an update: it reads schema version 0, the server sends
    # 1. (Rewriting the response with page.route instead makes chromium treat the page as
    # public and block its WebSocket to 127.0.0.1.)
    page.add_init_script(
        """Object.defineProperty(window, "CH_CONFIG", {
             configurable: true,
             set(config) { this._chConfig = {...config, schemaVersion: 0}; },
             get() { return this._chConfig; },
           });"""
    )
    log_in(page, server)
    page.wait_for_selector("#banner:not([hidden])")
    assert "Reload the page" in page.locator("#banner").inner_text()
    assert page.locator("#connection-text").inner_text() == "page out of date"
    assert page.locator("li.check").count() == 0  # the snapshot was not misread
    # Coming back to the tab reconnects a page that lost its socket, but not this one.
    page.evaluate("document.dispatchEvent(new Event('visibilitychange'))")
    assert page.locator("#connection-text").inner_text() == "page out of date"
    shot(page, "dashboard-out-of-date")
    page.close()


STALE_CHECK = """
from datetime import timedelta
from django.utils import timezone
from connections_app.models import CheckResult, HealthCheck
now = timezone.now()
job = HealthCheck.objects.create(
    name="nightly export", kind="tcp", target="127.0.0.1:9", interval=3600, timeout=5,
    next_due_at=now + timedelta(hours=1),
)
CheckResult.objects.create(health_check=job, ok=True, checked_at=now - timedelta(hours=4))
from connections_app.state import rebuild_from_results
rebuild_from_results()
"""


def test_a_result_nobody_refreshed_for_three_intervals_is_marked_stale(browser, site):
    server, _target = site
    # Due in an hour, last result 4 h ago, interval 1 h: the runner skips it, the page
    # must not present that old UP as the present.
    assert manage(server.env, "shell", "-c", STALE_CHECK).returncode == 0
    page = browser.new_page()
    log_in(page, server)
    job, live = card(page, "nightly export"), card(page, "payments api")
    job.wait_for()
    page.wait_for_function(
        "document.querySelector('li.check[data-name=\"payments api\"]').dataset.status === 'up'"
    )
    assert "stale" in job.locator(".since").inner_text()
    assert "is-stale" in job.get_attribute("class")
    assert "stale" not in live.locator(".since").inner_text()
    shot(page, "dashboard-stale")
    page.close()


def test_ages_are_read_on_the_servers_clock_not_the_browsers(browser, site):
    server, _target = site
    page = browser.new_page()
    # The browser's clock is 10 minutes fast: by it, every result would look stale.
    fast = time.time() + 600
    page.clock.set_system_time(fast)
    log_in(page, server)
    live = card(page, "payments api")
    live.wait_for()
    page.wait_for_function(
        "document.querySelector('li.check[data-name=\"payments api\"]').dataset.status === 'up'"
    )
    page.wait_for_function(
        "document.querySelector('li.check[data-name=\"payments api\"] .since').textContent"
        ".endsWith(' s ago')"
    )
    assert page.evaluate("Date.now() / 1000") > fast - 60  # the browser's clock is still fast
    assert "stale" not in live.locator(".since").inner_text()
    assert "is-stale" not in live.get_attribute("class")
    page.close()


def test_staff_see_failed_alerts_in_the_header_at_phone_width(browser, site):
    server, _target = site
    made = manage(server.env, "shell", "-c", (
        "from connections_app.alerts.models import Alert, NotificationChannel\n"
        "c = NotificationChannel.objects.create(name='ops', target='http://127.0.0.1:9/')\n"
        "Alert.objects.bulk_create([Alert(channel=c, kind='test', status='failed')] * 2)\n"
    ))  # fmt: skip
    assert made.returncode == 0, made.stderr
    page = browser.new_page(viewport={"width": 390, "height": 844})
    log_in(page, server)
    link = page.locator("#failed-alerts")
    link.wait_for(state="visible")
    assert link.inner_text() == "2 failed alerts"
    assert link.get_attribute("href").endswith("/admin/connections_app/alert/?status__exact=failed")
    # Tidy on a phone: the header wraps, nothing runs off the side of the page.
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    shot(page, "dashboard-failed-alerts-phone")
    page.close()
