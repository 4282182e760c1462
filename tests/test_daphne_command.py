"""The plain ``daphne project.asgi:application`` deployment (docs/DEPLOY.md, shapes 2 and 3)
gets what ``manage.py serve`` has: the soft ``nofile`` limit raised at start and idle
connections closed after ``IDLE_TIMEOUT`` seconds (``project/asgi.py``,
``connections_app/daphne_server.py``). A real daphne on a loopback port."""

from __future__ import annotations

import contextlib
import os
import resource
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from tests.conftest import REPO, free_port, wait_until
from tests.test_slow_loris import HALF_A_REQUEST_LINE, SYSTEMD_SOFT_LIMIT, _get, _soft_nofile

DAPHNE = os.path.join(os.path.dirname(sys.executable), "daphne")
#: The longest the test waits for the server to close an idle connection (Twisted's default
#: idle timeout, 60 s, would outlast it).
CLOSE_DEADLINE = 15.0


def _daphne(env: dict, port: int, soft: int | None = None) -> subprocess.Popen:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    limits = (soft, hard) if soft is not None else None
    return subprocess.Popen(
        [DAPHNE, "-b", "127.0.0.1", "-p", str(port), "project.asgi:application"],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=(lambda: resource.setrlimit(resource.RLIMIT_NOFILE, limits)) if limits else None,
    )


@contextlib.contextmanager
def _running(env: dict, soft: int | None = None) -> Iterator[tuple[subprocess.Popen, int]]:
    port = free_port()
    child = _daphne(env, port, soft)
    try:
        wait_until(lambda: _get(f"http://127.0.0.1:{port}/health/", 2) is not None, child, 30)
        yield child, port
    finally:
        child.kill()
        child.communicate(timeout=10)


def _seconds_until_closed(sock: socket.socket, deadline: float) -> float:
    """Read (and discard: Twisted may answer 408) until the server closes; fail at
    ``deadline`` seconds."""
    started = time.monotonic()
    while (left := deadline - (time.monotonic() - started)) > 0:
        sock.settimeout(left)
        try:
            if not sock.recv(65536):
                return time.monotonic() - started
        except TimeoutError:
            break
        except ConnectionResetError:
            return time.monotonic() - started
    raise AssertionError(f"the connection was still open after {deadline} s")


@pytest.mark.slow
def test_the_daphne_command_closes_an_idle_half_open_connection(sqlite_file_env):
    with _running(sqlite_file_env | {"IDLE_TIMEOUT": "1"}) as (_child, port):
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(HALF_A_REQUEST_LINE)
            assert _seconds_until_closed(sock, CLOSE_DEADLINE) < CLOSE_DEADLINE


@pytest.mark.slow
def test_the_daphne_command_raises_its_soft_nofile_limit(sqlite_file_env):
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard <= SYSTEMD_SOFT_LIMIT:
        pytest.skip(f"the hard nofile limit {hard} leaves nothing to raise")
    with _running(sqlite_file_env, soft=SYSTEMD_SOFT_LIMIT) as (child, _port):
        assert _soft_nofile(child.pid) > SYSTEMD_SOFT_LIMIT


def test_a_bad_idle_timeout_stops_the_daphne_command_with_one_line(sqlite_file_env):
    child = _daphne(sqlite_file_env | {"IDLE_TIMEOUT": "0"}, free_port())
    _, stderr = child.communicate(timeout=60)
    assert child.returncode == 3
    # (daphne logs at INFO from the start: django-environ's ".env not found" may come first.)
    assert stderr.strip().splitlines()[-1] == (
        "configuration error: IDLE_TIMEOUT: must be 1 or more, got 0"
    )
    assert "Traceback" not in stderr


def test_a_daphne_given_its_own_server_class_keeps_it():
    from connections_app.daphne_server import IdleTimeoutServer, install_in_daphne_command

    class Mine(IdleTimeoutServer):
        pass

    class Cli:
        class CommandLineInterface:
            server_class = Mine

    assert not install_in_daphne_command(Cli)
    assert Cli.CommandLineInterface.server_class is Mine
