"""Real servers for end-to-end tests and the benchmark: daphne, a private Redis, a TCP proxy.

Everything listens on 127.0.0.1 only, every wait is bounded, and every process started here is
stopped by the context manager that started it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import websockets
from websockets.asyncio.client import ClientConnection

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
HOST = "127.0.0.1"
START_TIMEOUT = 20.0

_STAFF_SESSION = """
import django
django.setup()
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.test import Client
user, _ = get_user_model().objects.get_or_create(username="staff", is_staff=True)
user.user_permissions.add(Permission.objects.get(codename="view_healthcheck"))
browser = Client()
browser.force_login(user)
print(browser.cookies["sessionid"].value)
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def wait_for_port(port: int, process: subprocess.Popen, timeout: float = START_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server on port {port} exited with {process.returncode}")
        with contextlib.suppress(OSError), socket.create_connection((HOST, port), timeout=0.2):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on port {port} after {timeout} s")


def staff_session(env: dict[str, str]) -> str:
    """A staff user's session key in the database of ``env`` (created if missing, with the
    permission to view checks that the dashboard asks for)."""
    done = subprocess.run(
        [sys.executable, "-c", _STAFF_SESSION],
        cwd=REPO,
        env=env | {"DJANGO_SETTINGS_MODULE": "project.settings"},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stdout.strip().splitlines()[-1]


@contextlib.contextmanager
def process(args: list[str], env: dict[str, str], port: int, log: Path) -> Iterator[int]:
    """Run ``args`` until the block ends; yields its pid once ``port`` accepts connections."""
    with open(log, "ab") as out:
        child = subprocess.Popen(args, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_for_port(port, child)
        yield child.pid
    finally:
        stop(child)


def stop(child: subprocess.Popen) -> None:
    if child.poll() is None:
        child.terminate()
        try:
            child.wait(timeout=10)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait(timeout=10)


@contextlib.contextmanager
def daphne(env: dict[str, str], log: Path, app: str = "project.asgi:application") -> Iterator:
    """A daphne server; yields ``(port, pid)``."""
    port = free_port()
    args = [str(BIN / "daphne"), "-b", HOST, "-p", str(port), app]
    with process(args, env, port, log) as pid:
        yield port, pid


@contextlib.contextmanager
def redis_server(log: Path, port: int | None = None) -> Iterator[str]:
    """A private Redis without persistence, for tests that stop or restart it."""
    port = port or free_port()
    args = ["redis-server", "--port", str(port), "--bind", HOST, "--save", "", "--appendonly", "no"]
    with process(args, dict(os.environ), port, log):
        yield f"redis://{HOST}:{port}/0"


def rss_kib(pid: int) -> int:
    """Resident memory of a process, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise ValueError(f"no VmRSS for pid {pid}")


async def ws_connect(port: int, cookie: str, **options) -> ClientConnection:
    """A WebSocket client as a staff browser on 127.0.0.1 (no proxy, no compression); its
    origin is the served site's unless ``origin=`` says otherwise."""
    options.setdefault("origin", websockets.Origin(f"http://{HOST}:{port}"))
    return await websockets.connect(
        f"ws://{HOST}:{port}/ws/health/",
        additional_headers={"Cookie": f"sessionid={cookie}"},
        proxy=None,
        compression=None,
        open_timeout=20,
        **options,
    )


class CuttingProxy:
    """A TCP proxy that can cut every connection through it at once."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task] = set()

    async def __aenter__(self) -> CuttingProxy:
        self._server = await asyncio.start_server(self._accept, HOST, 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc) -> None:
        self._server.close()
        await self.cut()
        await self._server.wait_closed()

    async def cut(self) -> None:
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(HOST, self.target_port)
        except OSError:
            writer.transport.abort()
            return
        self._writers |= {writer, up_writer}
        for source, sink in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.ensure_future(_pipe(source, sink))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)


async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    try:
        while data := await source.read(65536):
            sink.write(data)
            await sink.drain()
    except (OSError, asyncio.IncompleteReadError):
        pass
    finally:
        sink.transport.abort()
