"""The dashboard when its server cannot reach the channel layer (a private Redis the test
stops): the page says so in the server's words, never a green "connected"."""

from __future__ import annotations

import contextlib

import pytest

from tests.conftest import manage
from tests.e2e.test_dashboard_browser import (  # noqa: F401 - fixtures
    PASSWORD,
    Server,
    browser,
    log_in,
    shot,
)
from tests.realtime.servers import redis_server

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.redis]

PAUSED = "live updates paused: the server cannot reach its channel layer"


def test_a_layer_out_of_reach_pauses_live_updates_in_words(browser, sqlite_file_env, tmp_path):  # noqa: F811
    redis = contextlib.ExitStack()
    redis_url = redis.enter_context(redis_server(tmp_path / "redis.log"))
    env = sqlite_file_env | {"DJANGO_SUPERUSER_PASSWORD": PASSWORD, "REDIS_URL": redis_url}
    made = manage(env, "createsuperuser", "--noinput", "--username", "staff", "--email", "s@x.io")
    assert made.returncode == 0, made.stderr
    server = Server(env)
    server.start()
    try:
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        log_in(page, server)
        page.wait_for_selector("#connection.conn-connected")
        page.locator('li.check[data-name="self: database"]').wait_for()
        # A fresh install (its two self-checks only) says how to add a check.
        assert "importchecks" in page.locator("#first-steps").inner_text()
        assert page.locator("#first-steps").is_visible()
        redis.close()  # the layer is gone; the server notices at its next layer call
        page.wait_for_function(
            f"document.getElementById('banner').textContent.includes({PAUSED!r})",
            timeout=45000,
        )
        assert page.locator("#banner").is_visible()
        assert page.locator("#connection-text").inner_text() == "live updates paused"
        assert "conn-connected" not in page.locator("#connection").get_attribute("class")
        shot(page, "dashboard-layer-paused")
        page.close()
    finally:
        server.kill()
        redis.close()
