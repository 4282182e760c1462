"""The fault suite's own servers: a private PostgreSQL cluster and a private Redis on free
loopback ports, each with the faults the suite injects (stop, start, kill, terminate).

Every wait is bounded; every process started here is stopped by the context manager that
started it.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg

from tests.realtime.servers import HOST, free_port, stop, wait_for_port

#: Bound of one pg_ctl or initdb call (seconds); a loaded 2-core machine needs a few.
PG_TIMEOUT = 60


def postgres_bin(name: str) -> str | None:
    """``initdb``, ``pg_ctl``...: Debian keeps them out of PATH, one folder per version."""
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), key=_version)
    return found[-1] if found else shutil.which(name)


def _version(path: str) -> int:
    part = Path(path).parents[1].name
    return int(part) if part.isdigit() else 0


class PrivatePostgres:
    """A PostgreSQL cluster of its own (trust auth, no fsync) in a temporary folder.

    PostgreSQL refuses to run as root: when the suite is root, the cluster belongs to the
    ``postgres`` system user (every call runs as that user)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.user = "postgres" if os.geteuid() == 0 else None
        self.root = Path(tempfile.mkdtemp(prefix="soak-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "postgres.log"
        if self.user:
            shutil.chown(self.root, self.user, self.user)

    def url(self, database: str = "postgres") -> str:
        return f"postgres://postgres@{HOST}:{self.port}/{database}"

    def _run(self, *args: str) -> None:
        subprocess.run(
            args,
            check=True,
            capture_output=True,
            timeout=PG_TIMEOUT,
            user=self.user,
            group=self.user,
            cwd=self.root,
        )

    def init(self) -> None:
        self._run(
            postgres_bin("initdb"),
            "-D",
            str(self.data),
            "-A",
            "trust",
            "-U",
            "postgres",
            "--no-sync",
            "-E",
            "UTF8",
        )

    def start(self) -> None:
        options = (
            f"-p {self.port} -c listen_addresses={HOST} -k {self.root} -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off"
        )
        self._run(
            postgres_bin("pg_ctl"),
            "-D",
            str(self.data),
            "-l",
            str(self.log),
            "-o",
            options,
            "-w",
            "-t",
            str(PG_TIMEOUT),
            "start",
        )

    def stop(self) -> None:
        """``pg_ctl stop -m fast``: every session is cut, the server shuts down cleanly."""
        self._run(
            postgres_bin("pg_ctl"),
            "-D",
            str(self.data),
            "-m",
            "fast",
            "-w",
            "-t",
            str(PG_TIMEOUT),
            "stop",
        )

    def terminate_backends(self, database: str) -> int:
        """``pg_terminate_backend`` of every connection to ``database``; how many."""
        with psycopg.connect(self.url(), autocommit=True) as admin:
            row = admin.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = %s AND pid <> pg_backend_pid()",
                [database],
            ).fetchone()
        return row[0]

    def create_database(self, name: str) -> str:
        with psycopg.connect(self.url(), autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def remove(self) -> None:
        with contextlib.suppress(subprocess.SubprocessError):
            self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


@contextlib.contextmanager
def private_postgres() -> Iterator[PrivatePostgres]:
    cluster = PrivatePostgres()
    try:
        cluster.init()
        cluster.start()
        yield cluster
    finally:
        cluster.remove()


class PrivateRedis:
    """A Redis without persistence that the suite kills (SIGKILL) and starts again on the same
    port."""

    def __init__(self, log: Path) -> None:
        self.port = free_port()
        self.log = log
        self.child: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.port}/0"

    def start(self) -> None:
        args = [
            "redis-server",
            "--port",
            str(self.port),
            "--bind",
            HOST,
            "--save",
            "",
            "--appendonly",
            "no",
        ]
        with open(self.log, "ab") as out:
            self.child = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)
        wait_for_port(self.port, self.child)

    def kill(self) -> None:
        assert self.child is not None
        self.child.send_signal(signal.SIGKILL)
        self.child.wait(timeout=10)

    def stop(self) -> None:
        if self.child is not None:
            stop(self.child)


@contextlib.contextmanager
def private_redis(log: Path) -> Iterator[PrivateRedis]:
    redis = PrivateRedis(log)
    redis.start()
    try:
        yield redis
    finally:
        redis.stop()
