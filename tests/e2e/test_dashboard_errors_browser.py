"""The dashboard's words at phone width: recent errors split into the checks that failed (by
name) and the server's own troubles (in words), each with its "Where"; a failing card shows
its message and its whole name."""

from __future__ import annotations

import pytest

from tests.conftest import manage
from tests.e2e.test_dashboard_browser import (  # noqa: F401 - fixtures
    browser,
    card,
    log_in,
    shot,
    site,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ERRORS = """
from django.utils import timezone
from connections_app.models import ErrorStat
now = timezone.now()
for fingerprint, category, operation, endpoint in [
    ("a", "refused", "check.http", "payments api"),
    ("b", "reset", "ws.publish", "vm:18617"),
]:
    ErrorStat.objects.create(
        fingerprint=fingerprint, category=category, operation=operation, endpoint=endpoint,
        count=6, first_seen=now, last_seen=now, severity="error", last_message="...",
    )
"""

ROWS = """(id) => [...document.querySelectorAll(`#${id} tbody tr`)].map(
  (tr) => [...tr.children].map((td) => td.textContent))"""


def test_errors_at_phone_width_keep_where_and_speak_in_words(browser, site):  # noqa: F811
    server, target = site
    assert manage(server.env, "shell", "-c", ERRORS).returncode == 0
    page = browser.new_page(viewport={"width": 390, "height": 844})
    log_in(page, server)
    card(page, "payments api").wait_for()
    target.stop()  # refused from now on: one failure makes it DOWN
    page.wait_for_function(
        "document.querySelector('li.check[data-name=\"payments api\"]').dataset.status === 'down'",
        timeout=15000,
    )
    failing = card(page, "payments api")
    assert "cannot connect to 127.0.0.1" in failing.locator(".message").inner_text()
    assert failing.locator(".error").inner_text() == "connection refused"
    assert page.locator("#check-errors-table th").first.is_visible()
    assert page.locator("#errors-table th").first.inner_text().lower() == "where"
    checks = page.evaluate(ROWS, "check-errors-table")
    server_rows = page.evaluate(ROWS, "errors-table")
    # The seeded row; the runner's own report of the refusal may be listed above it once a
    # heartbeat pushed the error stats (every 10 s), as live updates arrive about 1 s apart.
    assert ["payments api", "connection refused", "6"] in [row[:3] for row in checks], checks
    assert ["sending live updates", "connection reset", "6"] == server_rows[0][:3], server_rows
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    name = card(page, "self: channel layer").locator(".name")
    assert name.inner_text() == "self: channel layer"  # whole, not "self: chann..."
    shot(page, "dashboard-errors-phone")
    page.close()
