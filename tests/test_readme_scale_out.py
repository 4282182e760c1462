"""The README's "Scale out, step by step", run as written, in order, on a private PostgreSQL
database: before ``migrate`` every piece names the missing tables; after it, two daphne
processes answer ``/health/`` and a separate ``runchecks`` stores the self-checks' results.

Two substitutions only, each said where it is made: the private database's URL and the test
Redis for the README's, free ports for 8001 and 8002, and ``createsuperuser`` in its
non-interactive form (it refuses to prompt without a terminal). Every wait is bounded.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import pytest
from psycopg import sql

from tests.conftest import REPO, TEST_DATABASE_URL, TEST_REDIS_URL, free_port, wait_until

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow]

MIGRATE_HINT = "run `manage.py migrate`"


def readme_commands() -> list[str]:
    text = (Path(REPO) / "README.md").read_text()
    section = text[text.index("### Scale out, step by step") :]
    block = re.search(r"```sh\n(.*?)```", section, re.S).group(1)
    return [line for line in block.splitlines() if line.strip()]


@pytest.fixture
def private_database(postgres_url, redis_url):
    name = f"ch_readme_{uuid.uuid4().hex[:12]}"
    _admin(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield urlsplit(TEST_DATABASE_URL)._replace(path=f"/{name}").geturl()
    finally:
        _admin(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def _admin(statement: sql.Composed) -> None:
    with psycopg.connect(TEST_DATABASE_URL, autocommit=True) as admin:
        admin.execute(statement)


def _get(url: str) -> tuple[int, dict] | None:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, json.loads(exc.read())
    except OSError:
        return None


def test_the_readme_scale_out_commands_run_as_written(private_database):
    commands = readme_commands()
    assert [c.split()[0] for c in commands] == ["export"] * 3 + [".venv/bin/python"] * 2 + [
        ".venv/bin/daphne",
        ".venv/bin/daphne",
        ".venv/bin/python",
    ]
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    ports = {"8001": str(free_port()), "8002": str(free_port())}
    background: list[subprocess.Popen] = []
    try:
        for command in commands:
            if command.startswith("export "):
                name, _, value = command.removeprefix("export ").partition("=")
                # Substitution: this test's private database and the test Redis.
                env[name] = {"DATABASE_URL": private_database, "REDIS_URL": TEST_REDIS_URL}.get(
                    name, value
                )
                if name == "DATABASE_URL":
                    _before_migrate(env)
                continue
            args = [ports.get(arg, arg) for arg in shlex.split(command.removesuffix("&"))]
            if command.endswith("&"):
                background.append(_start(args, env))
                continue
            if args[-1] == "createsuperuser":  # its non-interactive form: no terminal here
                args += ["--noinput", "--username", "admin", "--email", "admin@example.com"]
                env_run = env | {"DJANGO_SUPERUSER_PASSWORD": "readme-test-password"}
            else:
                env_run = env
            run = subprocess.run(
                args, cwd=REPO, env=env_run, capture_output=True, text=True, timeout=120
            )
            assert run.returncode == 0, (command, run.stderr)
        for port in ports.values():
            url = f"http://127.0.0.1:{port}/health/"
            # Both self-checks up, as stored by the separate runner, seen through each daphne.
            wait_until(lambda url=url: _all_up(url), timeout=60)
    finally:
        codes = _stop(background)
    assert codes == [0, 0, 0], codes


def _all_up(url: str) -> bool:
    answer = _get(url)
    return answer is not None and answer[0] == 200 and answer[1].get("counts") == {"up": 2}


def _before_migrate(env: dict) -> None:
    """On the empty database, before the README's migrate: the missing tables, in one line."""
    run = subprocess.run(
        [".venv/bin/python", "manage.py", "runchecks", "--once"],
        cwd=REPO,
        env=env | {"SECRET_KEY": "x" * 40},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 3, run.stderr
    assert len(run.stderr.strip().splitlines()) == 1 and MIGRATE_HINT in run.stderr


def _start(args: list[str], env: dict) -> subprocess.Popen:
    return subprocess.Popen(
        args, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _stop(children: list[subprocess.Popen]) -> list[int | None]:
    for child in children:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    codes = []
    for child in children:
        try:
            _out, err = child.communicate(timeout=30)
            assert "Traceback" not in err, err
        except subprocess.TimeoutExpired:
            child.kill()
            child.communicate()
        codes.append(child.returncode)
    return codes
