"""``manage.py serve``: the embedded default, web server and checks in one process."""

from __future__ import annotations

import json
import signal
import socket
import sqlite3
import subprocess
import sys
import urllib.error
import urllib.request

import pytest

from tests.alerting import alive, children
from tests.conftest import REPO, free_port, manage, wait_until


@pytest.fixture
def server(sqlite_file_env):
    port = free_port()
    child = subprocess.Popen(
        [sys.executable, "manage.py", "serve", "--port", str(port)],
        cwd=REPO,
        env=sqlite_file_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: _get(base + "/health/") is not None, child, timeout=30)
        yield child, base, sqlite_file_env["DATABASE_URL"].removeprefix("sqlite:///")
    finally:
        if child.poll() is None:
            child.kill()
            # Its alert sender holds the pipes until it sees its parent gone, which may be
            # while it is still starting Django (seconds, on a loaded machine).
            child.communicate(timeout=30)


def _get(url: str):
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except OSError:
        return None


def _raw_head(base: str, path: str) -> bytes:
    """Everything the server sends for a HEAD request, read off the socket until it closes
    (an HTTP client library would hide a body sent by mistake)."""
    host, port = base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(f"HEAD {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    return received


def _result_count(path: str) -> int:
    with sqlite3.connect(path) as db:
        return db.execute("select count(*) from connections_app_checkresult").fetchone()[0]


def test_it_serves_pages_and_runs_the_checks_live(server):
    child, base, db_path = server
    wait_until(lambda: _result_count(db_path) >= 2, child, timeout=30)  # both self-checks ran
    status, body = _get(base + "/health/")
    summary = json.loads(body)
    assert status == 200
    assert summary["counts"] == {"up": 2}  # both self-checks; names are for staff only
    head = _raw_head(base, "/health/")
    assert head.startswith(b"HTTP/1.1 200") and head.endswith(b"\r\n\r\n")  # headers, no body
    status, _ = _get(base + "/static/dashboard.js")
    assert status == 200
    status, icon = _get(base + "/favicon.ico")
    assert status == 200 and icon.startswith(b"\x00\x00\x01\x00")  # an ICO file
    status, body = _get(base + "/dashboard/")
    assert status == 200 and b"Log in" in body  # anonymous users land on the admin login


def test_sigterm_stops_it_cleanly(server):
    child, _base, _db = server
    wait_until(lambda: len(children(child.pid)) == 1, child, timeout=30)
    (sender,) = children(child.pid)  # the alert sender's process
    child.send_signal(signal.SIGTERM)
    out, err = child.communicate(timeout=30)
    assert child.returncode == 0, err
    assert "Traceback" not in err
    assert not alive(sender)  # stopped with the server
    assert "/dashboard/" in out and "createsuperuser" in out


def test_the_banner_asks_for_a_staff_user_only_while_there_is_none(sqlite_file_env):
    made = manage(
        sqlite_file_env | {"DJANGO_SUPERUSER_PASSWORD": "pw-for-a-test"},
        "createsuperuser",
        "--noinput",
        "--username",
        "admin",
        "--email",
        "a@example.com",
    )
    assert made.returncode == 0, made.stderr
    port = free_port()
    child = subprocess.Popen(
        [sys.executable, "manage.py", "serve", "--port", str(port), "--no-checks"],
        cwd=REPO,
        env=sqlite_file_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_until(lambda: _get(f"http://127.0.0.1:{port}/health/") is not None, child, 30)
    finally:
        child.send_signal(signal.SIGTERM)
        out, err = child.communicate(timeout=30)
    assert "/dashboard/" in out, err
    assert "createsuperuser" not in out


def test_a_busy_port_is_one_line_naming_the_address_and_exit_1(sqlite_file_env):
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        run = manage(sqlite_file_env, "serve", "--port", str(port))
    assert run.returncode == 1, run.stderr
    assert run.stderr.splitlines() == [
        f"CommandError: cannot listen on 127.0.0.1:{port}: Address already in use"
    ]
    assert run.stdout == ""  # no "Connection Health on ..." for a server that is not there


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--port", "99999"], "argument --port: must be 1 to 65535, got 99999"),
        (["--port", "http"], "argument --port: expected a port number, got 'http'"),
        (["--concurrency", "0"], "argument --concurrency: must be 1 or more, got 0"),
        (["--bogus"], "unrecognized arguments: --bogus"),
    ],
)
def test_a_command_line_mistake_exits_3_with_the_usage(sqlite_file_env, args, message):
    run = manage(sqlite_file_env, "serve", *args)
    assert run.returncode == 3, run.stderr
    assert run.stderr.startswith("usage: manage.py serve ")
    assert f"manage.py serve: error: {message}" in run.stderr


def test_help_explains_every_option_with_its_default(sqlite_file_env):
    run = manage(sqlite_file_env | {"COLUMNS": "80"}, "serve", "--help")
    assert run.returncode == 0, run.stderr
    text = " ".join(run.stdout.split())
    host = text[text.index("--host HOST ") : text.index("--port PORT ")]
    port = text[text.index("--port PORT ") : text.index("--no-checks ")]
    concurrency = text[text.index("--concurrency N ") : text.index("--version ")]
    assert "address to listen on" in host and "(default: 127.0.0.1)" in host
    assert "TCP port" in port and "(default: 8000)" in port
    assert "checks running at once" in concurrency
    assert "(default: half the limit of open files" in concurrency
    assert "1 when the address cannot be listened on" in text
