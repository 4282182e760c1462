"""A WebSocket handshake while the database cannot be read: one reported line, a refusal, no
traceback (the session is read before any consumer runs)."""

from __future__ import annotations

import logging

import pytest
from asgiref.sync import sync_to_async
from django.db import connection

from tests.realtime.conftest import TIMEOUT, communicator, session_cookie

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("clean_hub")]


def rename_sessions(old: str, new: str) -> None:
    with connection.cursor() as cursor:
        cursor.execute(f"ALTER TABLE {old} RENAME TO {new}")


async def test_a_handshake_that_cannot_read_the_session_is_refused_and_reported(caplog):
    cookie = await sync_to_async(session_cookie)("staff")
    # The session table gone: reading it raises a real DatabaseError, as a database away does.
    await sync_to_async(rename_sessions)("django_session", "django_session_away")
    try:
        with caplog.at_level(logging.INFO):
            socket = communicator(cookie)
            ok, _ = await socket.connect(timeout=TIMEOUT)
            await socket.disconnect()
    finally:
        await sync_to_async(rename_sessions)("django_session_away", "django_session")
    assert ok is False
    assert "websocket.connect" in caplog.text
    assert "Traceback" not in caplog.text
