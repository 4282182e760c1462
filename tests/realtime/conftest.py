"""Fixtures for the live dashboard: staff sessions, WebSocket communicators, a clean hub."""

from __future__ import annotations

import json

import pytest
from channels.testing import WebsocketCommunicator
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.test import Client as HttpClient

from project.asgi import application
from realtime.hub import get_hub
from tests.realtime.helpers import events_of

ORIGIN = "http://127.0.0.1"
#: The Host header the communicator sends: the site the origin check compares the Origin with.
HOST = "127.0.0.1"
#: Every wait in these tests is bounded by this many seconds.
TIMEOUT = 5


def session_cookie(username: str, staff: bool = True, *permissions: str) -> str:
    """A logged-in session of a new user; staff get ``view_healthcheck`` unless other
    ``permissions`` are named."""
    user = get_user_model().objects.create_user(username, is_staff=staff)
    codenames = permissions or (("view_healthcheck",) if staff else ())
    user.user_permissions.add(*Permission.objects.filter(codename__in=codenames))
    browser = HttpClient()
    browser.force_login(user)
    return browser.cookies["sessionid"].value


@pytest.fixture
def staff_cookie(transactional_db) -> str:
    return session_cookie("staff")


@pytest.fixture
async def clean_hub():
    """The test ends without a hub: this event loop's hub stops before the loop closes (what
    is per process, the registry and the publisher's numbering, is reset for every test)."""
    yield
    await get_hub().stop()


def communicator(
    cookie: str | None, origin: str = ORIGIN, host: str = HOST, query: str = ""
) -> WebsocketCommunicator:
    """A socket to ``/ws/health/`` (``query``: its query string, ``check=7`` for a check's
    page)."""
    headers = [(b"origin", origin.encode()), (b"host", host.encode())]
    if cookie:
        headers.append((b"cookie", f"sessionid={cookie}".encode()))
    path = f"/ws/health/?{query}" if query else "/ws/health/"
    return WebsocketCommunicator(application, path, headers=headers)


async def receive(socket: WebsocketCommunicator) -> dict:
    return json.loads(await socket.receive_from(timeout=TIMEOUT))


async def receive_type(socket: WebsocketCommunicator, kind: str) -> dict:
    """The next frame of type ``kind``, skipping others (at most 50); ``check.result`` and
    ``check.status`` are found inside ``updates`` frames (the first one there)."""
    for _ in range(50):
        frame = await receive(socket)
        for event, data in events_of(frame):
            if event == kind:
                return frame | {"type": event, "data": data}
    raise AssertionError(f"no {kind} frame in 50")


async def connected(cookie: str, query: str = "") -> tuple[WebsocketCommunicator, dict]:
    """An open dashboard socket (a check's page's with ``query``) and its first frame (the
    snapshot)."""
    socket = communicator(cookie, query=query)
    ok, _ = await socket.connect(timeout=TIMEOUT)
    assert ok
    return socket, await receive(socket)
