"""How many probes run at once: a few per target, many in all.

One slow or dead host can hold only its own target's slots, so it never stalls the checks of
other hosts (a single global bound let 20 blackholed checks stop everything). The total bound
is sized to the file descriptors the process may open: each probe holds about one socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import resource
from urllib.parse import urlsplit

from django.conf import settings

from connections_app.connection_manager import ConnectionConfig, ConnectionManager

#: Probes of one target (host and port) at once, unless the runner is told otherwise.
PER_TARGET = 10
#: File descriptors kept for everything else: the database, Redis, logs, the event loop.
RESERVED_FDS = 128
MIN_TOTAL, MAX_TOTAL = 20, 2000
#: The most the soft ``nofile`` limit is raised to at start (the hard limit may be "unlimited").
NOFILE_WANTED = 65536


def raise_nofile_limit() -> int:
    """Raise the soft limit of open files towards the hard one (systemd's default soft limit of
    1024 would cap us far below what the host allows); the soft limit in force afterwards."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = NOFILE_WANTED if hard == resource.RLIM_INFINITY else min(hard, NOFILE_WANTED)
    if wanted > soft:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
            soft = wanted
    return soft


def default_total() -> int:
    """Probes at once in all: half of the descriptors left after the reserve, within bounds."""
    return max(MIN_TOTAL, min(MAX_TOTAL, (raise_nofile_limit() - RESERVED_FDS) // 2))


def runner_manager(concurrency: int | None) -> tuple[int, ConnectionManager]:
    """A runner's probe slots in all (``concurrency``, or ``default_total``) and the
    ConnectionManager for them: a connection for every slot, and as many per host as a target
    has slots. Every command that runs checks sizes itself here."""
    total = concurrency or default_total()
    per_target = settings.PROBES_PER_TARGET
    config = ConnectionConfig(pool_total=max(total, per_target), pool_per_host=per_target)
    # Untraced: nothing reads the probes' connection counts, and tracing cost every request.
    return total, ConnectionManager(config, traced=False)


def target_key(kind: str, target: str) -> str:
    """The host and port a probe talks to ("kind" alone for the app's own database and layer,
    whose target is not an address)."""
    if not target:
        return kind
    parts = urlsplit(target if "://" in target else f"//{target}")
    try:
        port = parts.port
    except ValueError:
        port = None
    host = (parts.hostname or "").lower()
    return f"{host}:{port or ''}" if host else kind


class ProbeSlots:
    """Per-target semaphores (made on first use, dropped when idle) under one total bound."""

    def __init__(self, total: int, per_target: int = PER_TARGET) -> None:
        self.total = total
        self.per_target = per_target
        self._all = asyncio.Semaphore(total)
        self._targets: dict[str, tuple[asyncio.Semaphore, int]] = {}

    def hold(self, key: str) -> _Hold:
        """``async with``: one slot of ``key`` and one of the total, in that order: a probe
        waiting for a busy target holds none of the total meanwhile."""
        return _Hold(self, key)

    def _join(self, key: str) -> asyncio.Semaphore:
        semaphore, users = self._targets.get(key) or (asyncio.Semaphore(self.per_target), 0)
        self._targets[key] = (semaphore, users + 1)
        return semaphore

    def _leave(self, key: str) -> None:
        semaphore, users = self._targets[key]
        if users == 1:
            del self._targets[key]
        else:
            self._targets[key] = (semaphore, users - 1)

    @property
    def targets(self) -> int:
        """Targets with a probe running or waiting."""
        return len(self._targets)


class _Hold:
    """A probe's hold on its slots. A class, not a generator-based context manager: it is
    entered for every probe, and the generator's machinery cost more than the semaphores."""

    __slots__ = ("_slots", "_key", "_semaphore")

    def __init__(self, slots: ProbeSlots, key: str) -> None:
        self._slots = slots
        self._key = key
        self._semaphore: asyncio.Semaphore | None = None

    async def __aenter__(self) -> None:
        slots = self._slots
        semaphore = slots._join(self._key)
        try:
            await semaphore.acquire()
        except BaseException:
            slots._leave(self._key)  # cancelled while waiting: it held nothing
            raise
        try:
            await slots._all.acquire()
        except BaseException:
            semaphore.release()
            slots._leave(self._key)
            raise
        self._semaphore = semaphore

    async def __aexit__(self, *exc_info: object) -> None:
        self._slots._all.release()
        self._semaphore.release()
        self._slots._leave(self._key)
