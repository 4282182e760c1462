"""The public status page in a real browser: light and dark, a phone (390 px) and a laptop
(1280 px); nothing runs off the side, nothing internal is on the page."""

from __future__ import annotations

import itertools

import pytest

from tests.conftest import manage
from tests.e2e.test_dashboard_browser import Server, browser, shot  # noqa: F401 - fixtures

pytestmark = [pytest.mark.browser, pytest.mark.slow]

SECRET = "s3cr3t-Pa55word"

#: 90 days of results (one a day, with a bad patch) and changes of the last week, for two
#: public checks and one private one; none due for a day, so the server's runner leaves
#: them as they are.
SEED = f"""
from datetime import timedelta
from django.utils import timezone
from connections_app.models import CheckResult, HealthCheck, StateChange
now = timezone.now()
later = now + timedelta(days=1)
HealthCheck.objects.all().delete()
def made(name, public_name, status, tags=""):
    check = HealthCheck.objects.create(
        name=name, kind="postgres", target="postgres://app:{SECRET}@db.internal.example/x",
        tags=tags, public=bool(public_name), public_name=public_name)
    HealthCheck.objects.filter(pk=check.pk).update(
        status=status, health=status, status_since=now, next_due_at=later)
    return check
orders = made("orders-db-primary", "Orders", "down", tags="team-x")
api = made("public-api-gw", "Public API with a rather long name for a phone", "up")
made("hidden-billing", "", "down")
rows = []
for check, bad in ((orders, {{0, 1, 5, 30}}), (api, {{12}})):
    for day in range(90):
        at = now - timedelta(days=day, minutes=1)
        rows.append(CheckResult(health_check=check, checked_at=at, ok=day not in bad,
                                error_message="" if day not in bad else "{SECRET} refused"))
        if day == 5:
            rows.append(CheckResult(health_check=check, checked_at=at - timedelta(hours=1),
                                    ok=True))
CheckResult.objects.bulk_create(rows)
for hours, before, after in ((2, "up", "down"), (30, "down", "up"), (31, "up", "down")):
    StateChange.objects.create(health_check=orders, from_status=before, to_status=after,
                               at=now - timedelta(hours=hours), reason_message="{SECRET}")
print("TOKEN", orders.badge_token)
"""

SIZES = {"phone": (390, 844), "laptop": (1280, 800)}


@pytest.fixture
def status_site(sqlite_file_env):
    made = manage(sqlite_file_env, "shell", "--no-imports", "-c", SEED)
    assert made.returncode == 0, made.stderr
    server = Server(sqlite_file_env)
    server.token = made.stdout.split("TOKEN ")[1].strip()
    server.start()
    yield server
    server.kill()


def test_the_status_page_and_badges_read_well_light_and_dark_on_a_phone_and_a_laptop(
    browser,  # noqa: F811
    status_site,
):
    for scheme, (size, (width, height)) in itertools.product(("light", "dark"), SIZES.items()):
        page = browser.new_page(viewport={"width": width, "height": height}, color_scheme=scheme)
        page.goto(f"{status_site.base}/status/")
        assert page.locator("#overall").inner_text() == "Some systems are down"
        assert page.locator("section.service h2").all_inner_texts() == [
            "Orders",
            "Public API with a rather long name for a phone",
        ]
        # A phone shows the last 30 days of the bar, a laptop all 90.
        days = page.locator("section.service").first.locator(".day:visible")
        assert days.count() == (30 if size == "phone" else 90)
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
        text = page.locator("body").inner_text()
        for hidden in (SECRET, "db.internal.example", "team-x", "hidden-billing", "refused",
                       "orders-db-primary"):  # fmt: skip
            assert hidden not in text
        assert "Changes in the last 7 days (3)" in text
        background = page.evaluate("getComputedStyle(document.documentElement).backgroundColor")
        dark = background == "rgb(13, 17, 23)"
        assert dark == (scheme == "dark"), background
        shot(page, f"status-{size}-{scheme}")
        page.close()
    # One server for both (each start costs seconds): the badges, as a README shows them.
    badges_render(browser, status_site)


def badges_render(browser, status_site) -> None:  # noqa: F811
    page = browser.new_page(viewport={"width": 400, "height": 120})
    base = f"{status_site.base}/badge/{status_site.token}"
    page.set_content(
        f'<body style="margin:8px"><img id="s" src="{base}/status.svg"> '
        f'<img id="u" src="{base}/uptime.svg"></body>'
    )
    page.wait_for_function(
        "document.getElementById('s').complete && document.getElementById('u').complete"
    )
    sizes = page.evaluate("[...document.images].map(i => [i.naturalWidth, i.naturalHeight])")
    assert all(width > 40 and height == 20 for width, height in sizes), sizes
    shot(page, "status-badges")
    page.close()
