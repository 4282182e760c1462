"""Shared fixtures: real servers, reachable or skipped with a reason (failed when CI=true)."""

from __future__ import annotations

import atexit
import os
import socket
from urllib.parse import urlsplit

import pytest

# The loopback HTTP target (fixture ``http_target``) is available to every test.
pytest_plugins = ["tests.http_targets"]

TEST_DATABASE_URL = os.environ.get("TEST_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/test")
TEST_REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
IN_CI = os.environ.get("CI", "").lower() == "true"


def _reachable(url: str) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname, parts.port), timeout=1):
            return True
    except OSError:
        return False


def _reset_process_state() -> None:
    from channels.layers import channel_layers

    from connections_app.db import counters
    from connections_app.error_handler import reset_global_error_handler
    from realtime import publish
    from realtime.registry import registry

    reset_global_error_handler()
    counters.reset()
    publish.reset()
    registry.clear()
    # The in-memory layer's queues belong to the event loop of the test that made them.
    channel_layers.backends.clear()


@pytest.fixture(autouse=True)
def fresh_process_state():
    """Each test starts, and leaves the next one, as a fresh process would: the global error
    handler (closed, its summaries logged), the database counters, the publisher's numbering
    and counts, the dashboard's client registry and the channel layers are made anew. The
    dashboard hub needs no reset: there is one per event loop (``realtime.hub.get_hub``)."""
    _reset_process_state()
    yield
    _reset_process_state()


@pytest.fixture(scope="session", autouse=True)
def _close_the_global_error_handler():
    """Close the process-wide handler while pytest's streams are open: its exit hook would
    write its summary lines to a closed stream."""
    yield
    from connections_app.error_handler import reset_global_error_handler

    reset_global_error_handler()


def require_server(url: str, what: str) -> None:
    """Skip the test when the server is down; in CI that is a failure, not a skip."""
    if _reachable(url):
        return
    reason = f"{what} at {urlsplit(url).hostname}:{urlsplit(url).port} is unreachable"
    if IN_CI:
        pytest.fail(f"{reason} (CI=true: tests must not skip)")
    pytest.skip(reason)


@pytest.fixture
def postgres_url() -> str:
    require_server(TEST_DATABASE_URL, "PostgreSQL (TEST_DATABASE_URL)")
    return TEST_DATABASE_URL


@pytest.fixture
def redis_url() -> str:
    require_server(TEST_REDIS_URL, "Redis (TEST_REDIS_URL)")
    return TEST_REDIS_URL


def free_port() -> int:
    """A loopback port free now, for a server started later (another process may take it
    first: for a port that must refuse, ``refusing_port``)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


#: The sockets holding ``refusing_port``'s ports, closed when the test process ends.
_REFUSING: list[socket.socket] = []
atexit.register(lambda: [s.close() for s in _REFUSING])


def refusing_port() -> int:
    """A loopback port that refuses every connection until the test process ends: bound and
    never listening, so no other test or process can start listening on it meanwhile."""
    held = socket.socket()
    held.bind(("127.0.0.1", 0))
    _REFUSING.append(held)
    return held.getsockname()[1]


REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="session")
def migrated_sqlite_template(tmp_path_factory) -> str:
    """A migrated SQLite file, made once per session; copy it, never write to it."""
    import subprocess
    import sys

    path = tmp_path_factory.mktemp("template") / "template.sqlite3"
    env = os.environ | {"DATABASE_URL": f"sqlite:///{path}"}
    env.pop("REDIS_URL", None)
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"],
        cwd=REPO,
        env=env,
        check=True,
        timeout=120,
    )
    return str(path)


@pytest.fixture
def sqlite_file_env(migrated_sqlite_template, tmp_path) -> dict[str, str]:
    """Environment for a child process on its own fresh copy of the migrated SQLite file."""
    import shutil

    path = tmp_path / "db.sqlite3"
    shutil.copy(migrated_sqlite_template, path)
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    return env | {"DATABASE_URL": f"sqlite:///{path}", "PYTHONUNBUFFERED": "1"}


def manage(env: dict, *args: str, stdin: str | None = None, timeout: float = 60):
    """Run ``manage.py`` in a child process; the finished process, output captured as text."""
    import subprocess
    import sys

    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=REPO,
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def wait_until(condition, child=None, timeout: float = 20) -> None:
    """Poll ``condition`` until true; fail at ``timeout`` or when ``child`` exits first."""
    import time

    deadline = time.monotonic() + timeout
    while not condition():
        if child is not None and child.poll() is not None:
            raise AssertionError(f"child exited early: {child.communicate()}")
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(0.02)


def start_manage(env: dict, *args: str):
    """``manage.py`` as a running child process (text pipes), for tests that signal it."""
    import subprocess
    import sys

    return subprocess.Popen(
        [sys.executable, "manage.py", *args],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


class FakeClock:
    """A clock a test moves by hand (``clock.now += 61``): windows and deadlines without sleep."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def refused() -> ConnectionRefusedError:
    """A real refusal from a loopback port nobody listens on."""
    try:
        socket.create_connection(("127.0.0.1", refusing_port()), timeout=1).close()
    except ConnectionRefusedError as exc:
        return exc
    pytest.fail("the free port accepted a connection")
