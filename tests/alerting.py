"""Helpers for the alert tests: a clock moved by hand, channels, a real SMTP server, the
processes a runner started (Linux /proc)."""

from __future__ import annotations

import logging
import threading
from datetime import datetime, timedelta
from email import message_from_bytes, policy
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from django.utils import timezone

from connections_app.alerts.models import WEBHOOK, NotificationChannel
from tests.conftest import free_port

#: aiosmtpd logs each session's end at INFO from its own thread, sometimes after the test's
#: output capture ended: lines in the middle of the progress dots.
logging.getLogger("mail.log").setLevel(logging.WARNING)


class Clock:
    """An aware "now" a test moves by hand: retries and leases without sleeping."""

    def __init__(self, now: datetime | None = None) -> None:
        self.now = now or timezone.now()

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> datetime:
        self.now += timedelta(seconds=seconds)
        return self.now


def channel(name: str, target: str, kind: str = WEBHOOK, **fields) -> NotificationChannel:
    values = {"all_checks": True} | fields
    made = NotificationChannel(name=name, kind=kind, target=target, **values)
    made.full_clean()
    made.save()
    return made


class Mailbox:
    """What the SMTP server received; RCPT TO an address in ``refuse`` is answered 550."""

    def __init__(self) -> None:
        self.messages: list = []
        self.refuse: set[str] = set()
        self._lock = threading.Lock()

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address in self.refuse:
            return "550 5.1.1 no such mailbox"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        message = message_from_bytes(envelope.content, policy=policy.default)
        with self._lock:
            self.messages.append((envelope.rcpt_tos, message))
        return "250 Message accepted"


@pytest.fixture
def smtp(settings):
    """A real SMTP server on a free loopback port, and the settings that send to it."""
    mailbox = Mailbox()
    controller = Controller(mailbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", controller.port
    settings.EMAIL_HOST_USER = settings.EMAIL_HOST_PASSWORD = ""
    try:
        yield mailbox
    finally:
        controller.stop()


def _stat(pid: int) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name (state first), or None."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except (FileNotFoundError, ProcessLookupError):
        return None


def children(pid: int) -> list[int]:
    """The live processes whose parent is ``pid``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _stat(int(entry.name))
            if fields and fields[1] == str(pid) and fields[0] != "Z":
                found.append(int(entry.name))
    return found


def alive(pid: int) -> bool:
    """Running: not gone, and not a zombie nobody reaped (a container's init may not)."""
    fields = _stat(pid)
    return fields is not None and fields[0] != "Z"
