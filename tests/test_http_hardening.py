"""Floods of issue 15: static files through WhiteNoise (a path that climbs out is a 404, no
traceback), a view's unhandled exception counted by the error handler rather than printed
per request, /health/'s 503 not an ERROR line, and daphne's access log through our logging."""

from __future__ import annotations

import socket
import urllib.request

import pytest
from django.test import Client

from connections_app.error_handler import get_global_error_handler
from connections_app.logging_config import get_logger
from connections_app.models import HealthCheck
from tests.realtime import servers
from tests.test_health_view import make
from tests.test_logging_config import log_file, logging_state  # noqa: F401 - fixtures
from tests.test_serve import server  # noqa: F401 - fixture


def _raw_get(base: str, path: str) -> bytes:
    """The server's whole answer to ``path`` sent exactly as written (a client library would
    fold the ``..`` away before sending)."""
    host, port = base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    return received


@pytest.mark.slow
def test_a_static_path_climbing_out_is_404_without_a_traceback(server):  # noqa: F811
    child, base, _ = server
    for path in (
        "/static/../project/settings.py",
        "/static/..%2fproject/settings.py",
        "/static/%2e%2e/project/settings.py",
        "/static/admin/../../project/settings.py",
    ):
        answer = _raw_get(base, path)
        assert answer.startswith(b"HTTP/1.1 404"), (path, answer[:80])
        assert b"SECRET_KEY" not in answer
    with urllib.request.urlopen(base + "/static/admin/css/base.css", timeout=5) as response:
        assert response.status == 200  # WhiteNoise serves the real files
    child.terminate()
    _out, err = child.communicate(timeout=20)
    assert "Traceback" not in err
    assert "project/settings.py" in err  # the access log still says what was asked


@pytest.fixture
def broken_urls(settings):
    settings.ROOT_URLCONF = "tests.http_hardening_urls"


def test_a_failing_view_is_counted_not_printed_per_request(log_file, broken_urls, db):  # noqa: F811
    browser = Client(raise_request_exception=False)
    for _ in range(20):
        assert browser.get("/broken/").status_code == 500
    written = log_file.read_text()
    assert written.count("Traceback") == 1  # the first in the window, then counts
    assert "http.request /broken/" in written
    assert "Broken-Pw-1" not in written
    stats = get_global_error_handler().get_error_stats()["by_fingerprint"].values()
    assert [s["count"] for s in stats if s["operation"] == "http.request"] == [20]


def test_health_answering_503_is_not_an_error_line(log_file, db):  # noqa: F811
    HealthCheck.objects.all().delete()
    make("db", [False])
    for _ in range(5):
        assert Client().get("/health/").status_code == 503
    get_logger("test").warning("the end")  # the file exists even when nothing else was said
    assert "ERROR" not in log_file.read_text()


def test_another_page_answering_500_still_logs(log_file, broken_urls, db):  # noqa: F811
    Client(raise_request_exception=False).get("/broken/")
    assert "ERROR" in log_file.read_text()


def test_a_404_is_not_a_warning_per_request(log_file, db):  # noqa: F811
    for _ in range(5):
        assert Client().get("/static/../project/settings.py").status_code == 404
    get_logger("test").info("the end")
    assert "Not Found" not in log_file.read_text()


def test_metrics_scraped_without_its_token_is_not_a_warning_per_request(log_file, db):  # noqa: F811
    for _ in range(5):
        assert Client().get("/metrics").status_code == 401
    get_logger("test").info("the end")
    assert "Unauthorized" not in log_file.read_text()


def test_a_tag_gives_one_services_health_to_anyone(db):
    HealthCheck.objects.all().delete()
    make("cache", [True])
    HealthCheck.objects.filter(name="cache").update(tags="web")
    make("db", [False])
    HealthCheck.objects.filter(name="db").update(tags="payments")
    anyone = Client()
    web, payments = anyone.get("/health/?tag=web"), anyone.get("/health/?tag=payments")
    assert (web.status_code, web.json()["counts"]) == (200, {"up": 1})
    assert (payments.status_code, payments.json()["counts"]) == (503, {"down": 1})
    assert "cache" not in web.content.decode() and "checks" not in web.json()


@pytest.mark.slow
def test_daphne_access_lines_are_redacted_and_go_through_our_logging(sqlite_file_env, tmp_path):
    log = tmp_path / "daphne.out"
    app_log = tmp_path / "app.log"
    env = sqlite_file_env | {"LOG_FILE": str(app_log)}
    with servers.daphne(env, log) as (port, _pid):
        path = "/health/?api_key=Access-Key-1&token=Access-Tok-2&tag=web"
        answer = _raw_get(f"http://127.0.0.1:{port}", path)
        # daphne writes the access line as the answer completes, before the socket closes.
        assert answer.startswith(b"HTTP/1.1 200")
    written = log.read_text() + app_log.read_text()
    assert "Access-Key-1" not in written and "Access-Tok-2" not in written
    access = [line for line in app_log.read_text().splitlines() if "daphne.access" in line]
    assert access and "/health/?api_key=***&token=***&tag=web" in access[0]
