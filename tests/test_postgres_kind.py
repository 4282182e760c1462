"""postgres checks against the local PostgreSQL: a private database made for the test."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from urllib.parse import urlsplit

import psycopg
import pytest
from django.core.exceptions import ValidationError

from connections_app.connection_manager import ConnectionManager
from connections_app.guard import AddressGuard
from connections_app.masking import masked
from connections_app.models import HealthCheck
from connections_app.probes import run_probe
from tests.conftest import refusing_port
from tests.test_guard import StaticResolver


@pytest.fixture(scope="module")
def database() -> Iterator[str]:
    """A DSN of a database that exists only for these tests."""
    from tests.conftest import TEST_DATABASE_URL, require_server

    require_server(TEST_DATABASE_URL, "PostgreSQL (TEST_DATABASE_URL)")
    server = urlsplit(TEST_DATABASE_URL)
    admin = server._replace(path="/postgres").geturl()
    name = f"ch_kinds_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    try:
        yield server._replace(path=f"/{name}").geturl()
    finally:
        with psycopg.connect(admin, autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def make(target: str, **fields) -> HealthCheck:
    return HealthCheck(name="pg", kind="postgres", target=target, **({"timeout": 3} | fields))


async def probe(check: HealthCheck):
    manager = ConnectionManager(guard=AddressGuard(), resolver=StaticResolver(NAMES))
    async with manager:
        return await run_probe(check, manager)


NAMES = {"metadata.test": ["169.254.169.254"]}


async def test_select_1_answers(database):
    result = await probe(make(database))
    assert result.ok and result.latency_ms > 0, result


async def test_a_database_that_does_not_exist_fails(database):
    result = await probe(make(database.rsplit("/", 1)[0] + "/no_such_database_here"))
    assert (result.ok, result.error_category) == (False, "auth"), result
    assert "does not exist" in result.error_message


async def test_a_role_the_server_does_not_know_is_a_refused_login_without_a_traceback(
    database, caplog
):
    parts = urlsplit(database)
    stranger = parts._replace(netloc=f"ch_no_such_role@{parts.hostname}:{parts.port or 5432}")
    result = await probe(make(stranger.geturl()))
    assert (result.ok, result.error_category) == (False, "auth"), result
    assert 'role "ch_no_such_role" does not exist' in result.error_message
    # A login refused is a failure we can name: one line in the log, no traceback.
    assert caplog.records and not [r for r in caplog.records if r.exc_info]


async def test_nothing_listening_fails_and_the_password_stays_secret():
    result = await probe(make(f"postgres://app:hunter2@127.0.0.1:{refusing_port()}/app"))
    assert (result.ok, result.error_category) == (False, "db_disconnected"), result
    assert "hunter2" not in result.error_message


async def test_a_host_that_resolves_to_a_metadata_address_is_blocked():
    result = await probe(make("postgres://app:pw@metadata.test:5432/app"))
    assert (result.ok, result.error_category) == (False, "blocked"), result


def test_the_password_is_masked_where_staff_see_targets():
    assert masked("postgres://app:hunter2@db.internal:5432/app") == (
        "postgres://app:***@db.internal:5432/app"
    )


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("target", "words"),
    [
        ("mysql://app@db/app", "starts with postgres://"),
        ("postgres:///app", "no host"),
        ("postgres://app@db/app?host=/var/run/postgresql", "may not set host"),
        ("postgres://app@db/app?passfile=/etc/shadow", "may not set passfile"),
        ("postgres://app@169.254.169.254/app", "link-local"),
        ("postgres://app@db:99999/app", "port"),
    ],
)
def test_a_bad_dsn_gets_one_message(target, words):
    with pytest.raises(ValidationError) as caught:
        make(target).full_clean()
    errors = caught.value.message_dict
    assert list(errors) == ["target"] and words in errors["target"][0], errors


@pytest.mark.django_db
def test_a_good_dsn_is_accepted():
    make("postgresql://app:s3cret@db.internal:5432/app?sslmode=require").full_clean()
