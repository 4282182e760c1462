"""The admin's check list in a real browser: it fits 1280 px without sideways scrolling."""

from __future__ import annotations

import re

import pytest

from tests.e2e.test_dashboard_browser import (  # noqa: F401 - fixtures
    browser,
    log_in,
    shot,
    site,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow]

OVERFLOW = """() => {
  const table = document.querySelector("#changelist .results");
  return {
    page: [document.documentElement.scrollWidth, document.documentElement.clientWidth],
    table: [table.scrollWidth, table.clientWidth],
  };
}"""


def test_the_check_list_fits_1280_px(browser, site):  # noqa: F811
    server, _target = site
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    log_in(page, server)
    page.goto(f"{server.base}/admin/connections_app/healthcheck/")
    page.wait_for_selector("#result_list")
    sizes = page.evaluate(OVERFLOW)
    shot(page, "admin-list-1280")
    assert sizes["page"][0] <= sizes["page"][1], sizes
    assert sizes["table"][0] <= sizes["table"][1], sizes
    assert page.locator("#site-name").inner_text() == "Connection Health administration"

    # The change page: its record and its results in one date format.
    page.click("text=payments api")
    page.wait_for_selector("#recent-results")
    shot(page, "admin-change-1280")
    text = page.locator("#content").inner_text()
    assert " a.m." not in text and " p.m." not in text and "page 1 of 1" not in text

    # The add form: HTTP expectations only while the kind is http, no empty Record section.
    page.goto(f"{server.base}/admin/connections_app/healthcheck/add/")
    expectations = page.locator("fieldset.http-only")
    assert expectations.is_visible()
    page.select_option("#id_kind", "tcp")
    assert expectations.is_hidden()
    assert page.locator("fieldset h2").filter(has_text=re.compile(r"^Record$")).count() == 0
    shot(page, "admin-add-tcp")
    page.close()
