"""The dashboard with 1,200 checks and a full sparkline each, in a real browser on a real server.

The whole snapshot is about 3.5 MB: as one frame daphne refused it (over 1 MiB) and every tab
reconnected forever. In bounded frames the page loads once and shows every check.
"""

from __future__ import annotations

import pytest

from tests.conftest import manage
from tests.e2e.test_dashboard_browser import (  # noqa: F401 (browser: a fixture)
    ARTIFACTS,
    PASSWORD,
    Server,
    browser,
    log_in,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHECKS = 1200

#: Paused checks (the runner never claims them) with a stored status and 30 recent results.
_SEED = """
from datetime import timedelta
from django.utils import timezone
from connections_app.models import CheckResult, HealthCheck
now = timezone.now()
checks = HealthCheck.objects.bulk_create(
    HealthCheck(name=f"service {n:04d}", target=f"127.0.0.1:{1000 + n}", kind="tcp",
                enabled=False, status="down" if n % 50 == 0 else "up", tags="scale",
                last_error_message="connection refused" if n % 50 == 0 else "")
    for n in range(CHECKS)
)
CheckResult.objects.bulk_create(
    CheckResult(health_check=c, checked_at=now - timedelta(seconds=10 * i), ok=i % 7 != 0,
                latency_ms=1.5 + i, error_category="" if i % 7 else "refused",
                error_message="" if i % 7 else "connection refused by 127.0.0.1")
    for c in checks for i in range(30)
)
from connections_app import recent_points
recent_points.fill(HealthCheck, CheckResult)  # written in bulk: their sparkline points too
"""


@pytest.fixture
def big_site(sqlite_file_env):
    env = sqlite_file_env | {"DJANGO_SUPERUSER_PASSWORD": PASSWORD}
    created = manage(
        env, "createsuperuser", "--noinput", "--username", "staff", "--email", "s@x.io"
    )
    assert created.returncode == 0, created.stderr
    seeded = manage(env, "shell", "-c", _SEED.replace("CHECKS", str(CHECKS)), timeout=120)
    assert seeded.returncode == 0, seeded.stderr
    server = Server(env)
    server.start()
    yield server
    server.kill()


def test_a_page_with_1200_checks_loads_once_and_shows_them_all(browser, big_site):  # noqa: F811
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    sockets = []
    page.on("websocket", lambda ws: sockets.append(ws) if "/ws/health/" in ws.url else None)
    log_in(page, big_site)
    page.wait_for_function(
        f"document.querySelectorAll('li.check[data-name^=\"service \"]').length === {CHECKS}",
        timeout=30000,
    )
    page.wait_for_selector("#loading", state="hidden")
    assert page.locator("#connection").get_attribute("class") == "conn conn-connected"
    assert len(sockets) == 1, "the page reconnected while loading"
    assert not sockets[0].is_closed()
    # Worst first from the first frame: the checks that are down lead the list.
    first = page.locator("li.check").first
    assert first.get_attribute("data-status") == "down"
    assert page.locator("#overall").inner_text() == "DOWN"
    # The snapshot's compact points ([time, ok, ms]) drawn: 30 results, every seventh failed.
    label = first.locator(".spark").get_attribute("aria-label")
    assert "last 30 results, 5 failed, slowest 31 ms" in label, label
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "dashboard-1200-checks.png"))  # the first screen
    page.close()
