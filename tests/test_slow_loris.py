"""Slow-loris: idle half-open connections must not lock ``serve`` out of /health/ and the admin.

With a soft ``nofile`` limit of 1024 (systemd's default) and Twisted's 60 s idle timeout, 1,100
connections that each send half a request line and nothing more used every descriptor the
server had. ``serve`` now raises the soft limit towards the hard one at start and closes a
connection that stays silent for ``--idle-timeout`` seconds with no request in progress.
"""

from __future__ import annotations

import contextlib
import errno
import resource
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest

from tests.conftest import REPO, free_port, wait_until

pytestmark = pytest.mark.slow

IDLE = 1_100
SYSTEMD_SOFT_LIMIT = 1024
HALF_A_REQUEST_LINE = b"GET /health/ HT"


def _get(url: str, timeout: float) -> int | None:
    """The status of a GET, or None when the server does not answer in time."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            response.read()
            return response.status
    except urllib.error.HTTPError as exc:
        exc.close()
        return exc.code
    except OSError:
        return None


def _soft_nofile(pid: int) -> int:
    with open(f"/proc/{pid}/limits") as limits:
        for line in limits:
            if line.startswith("Max open files"):
                return int(line.split()[3])
    raise AssertionError(f"no 'Max open files' in /proc/{pid}/limits")


@contextlib.contextmanager
def _own_descriptors(wanted: int) -> Iterator[None]:
    """Let this test process hold ``wanted`` sockets (its own soft limit may be 1024 too)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < wanted:
        pytest.skip(f"the hard nofile limit {hard} is below the {wanted} sockets needed")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, wanted), hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@contextlib.contextmanager
def _serve(env: dict, idle_timeout: int, hard: int | None = None) -> Iterator:
    """``serve`` as a child started with the soft nofile limit at 1024 (and the hard one left
    as it is unless ``hard`` is given); yields ``(child, base URL)``."""
    _, current_hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    limits = (SYSTEMD_SOFT_LIMIT, hard or current_hard)
    port = free_port()
    child = subprocess.Popen(
        [sys.executable, "manage.py", "serve", "--no-checks", "--port", str(port)]
        + ["--idle-timeout", str(idle_timeout)],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, limits),
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: _get(base + "/health/", timeout=2) is not None, child, timeout=30)
        yield child, base
    finally:
        child.kill()
        child.wait(timeout=10)


@contextlib.contextmanager
def _half_open(port: int, count: int) -> Iterator[list[socket.socket]]:
    """Up to ``count`` connections that each send half a request line and then nothing. One
    after another, as the server accepts them; the first connect the server leaves waiting
    ends the opening (its descriptors have run out). Yields the open ones, non-blocking."""
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sockets.append(sock)
            sock.settimeout(1)
            try:
                sock.connect(("127.0.0.1", port))
                sock.sendall(HALF_A_REQUEST_LINE)
            except OSError:
                sockets.pop().close()
                break
            sock.setblocking(False)
        yield sockets
    finally:
        for sock in sockets:
            sock.close()


def _closed_by_server(sock: socket.socket) -> bool:
    """Whether the server has closed this connection (end of stream or reset); reads and
    discards whatever it sent first (Twisted may answer 408)."""
    try:
        while chunk := sock.recv(65536):
            del chunk
        return True
    except BlockingIOError:
        return False
    except OSError as exc:
        return exc.errno in (errno.ECONNRESET, errno.EPIPE, errno.ENOTCONN)


def test_idle_half_open_connections_leave_health_and_admin_reachable(sqlite_file_env):
    idle_timeout = 3
    with _own_descriptors(IDLE + 200), _serve(sqlite_file_env, idle_timeout) as (child, base):
        # The fix's first half: the soft limit was raised at start (hard limit is 20000 here).
        assert _soft_nofile(child.pid) > IDLE + 100
        port = int(base.rsplit(":", 1)[1])
        with _half_open(port, IDLE) as idle:
            assert len(idle) == IDLE
            started = time.monotonic()
            assert _get(base + "/health/", timeout=5) == 200
            assert _get(base + "/admin/login/", timeout=5) == 200
            # The second half: the server itself closes the silent connections after the
            # idle timeout (Twisted's default of 60 s would outlast this whole test).
            wait_until(lambda: all(_closed_by_server(s) for s in idle), child, timeout=15)
            assert time.monotonic() - started < idle_timeout + 12


def test_without_room_to_raise_the_idle_timeout_alone_gives_health_back(sqlite_file_env):
    """The attack is real here: with the hard limit also at 1024 nothing can be raised, and
    /health/ stops answering. The idle timeout then closes the intruders and it answers again."""
    idle_timeout = 10  # opening the intruders and asking once fit inside it on a busy machine
    with (
        _own_descriptors(IDLE + 200),
        _serve(sqlite_file_env, idle_timeout, hard=SYSTEMD_SOFT_LIMIT) as (child, base),
    ):
        assert _soft_nofile(child.pid) == SYSTEMD_SOFT_LIMIT
        port = int(base.rsplit(":", 1)[1])
        with _half_open(port, IDLE) as idle:
            assert len(idle) > SYSTEMD_SOFT_LIMIT - 100
            assert _get(base + "/health/", timeout=1) is None  # locked out
            wait_until(lambda: _get(base + "/health/", timeout=1) == 200, child, timeout=30)
