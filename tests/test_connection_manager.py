"""ConnectionManager against real loopback servers: pooling, timeouts, retries, errors, cleanup."""

from __future__ import annotations

import asyncio
import gc
import os
import time
import warnings
from collections.abc import Iterator

import aiohttp
import pytest
import requests

from connections_app import retry
from connections_app.connection_manager import ConnectionConfig, ConnectionManager
from connections_app.errors import ErrorCategory, classify
from connections_app.http_retry import HttpRetry
from connections_app.retry import RetryPolicy
from tests.conftest import refusing_port
from tests.http_targets import BODY, HttpTarget

# Retries without waiting, so retry tests count tries instead of sleeping through backoff.
QUICK = RetryPolicy(attempts=2, base_delay=0.0, factor=1.0, cap=0.0)
QUICK_CONFIG = ConnectionConfig(retry=QUICK)
NO_RETRY = ConnectionConfig(connect_timeout=1, read_timeout=2, total_timeout=5, retry=retry.NONE)
#: For a server that stalls: a short read timeout ends the wait soon. Kept off the tests that
#: expect an answer (a busy machine can stall a loopback reply for a few hundred ms).
STALL = ConnectionConfig(connect_timeout=1, read_timeout=0.3, total_timeout=2, retry=retry.NONE)


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.fixture
def no_resource_warnings() -> Iterator[None]:
    """Fail the test if any ResourceWarning was emitted, including at garbage collection."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
        gc.collect()
    leaks = [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]
    assert leaks == []


# The configuration.


def test_it_has_the_documented_defaults() -> None:
    config = ConnectionConfig()

    assert (config.connect_timeout, config.read_timeout, config.total_timeout) == (5, 10, 30)
    assert (config.pool_per_host, config.pool_total) == (10, 100)
    assert config.retry is retry.HTTP
    assert config.retry_statuses == {429, 502, 503, 504}
    assert config.retry_methods == {"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"}
    assert config.max_retry_after == 30
    assert config.verify_tls is True
    assert config.user_agent.startswith("connection-health/")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("connect_timeout", 0),
        ("read_timeout", -1),
        ("total_timeout", "30"),
        ("pool_per_host", 0),
        ("pool_total", 5),
        ("retry", 3),
        ("retry", RetryPolicy(attempts=None)),
        ("retry_statuses", {503, 700}),
        ("retry_statuses", "503"),
        ("retry_methods", {"GET", "POST"}),
        ("retry_methods", {"patch"}),
        ("max_retry_after", -1),
        ("verify_tls", "yes"),
        ("user_agent", "probe\r\nX-Injected: 1"),
    ],
)
def test_it_refuses_a_bad_value_naming_the_field(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=f"ConnectionConfig.{field} "):
        ConnectionConfig(**{field: value})


def test_it_accepts_methods_in_any_case() -> None:
    assert ConnectionConfig(retry_methods=["get", "Head"]).retry_methods == {"GET", "HEAD"}


def test_it_waits_the_backoff_or_a_longer_capped_retry_after() -> None:
    rules = HttpRetry(policy=retry.HTTP, max_retry_after=5.0)

    assert rules.wait(1.0, None) == 1.0
    assert rules.wait(1.0, "0") == 1.0
    assert rules.wait(1.0, "3") == 3.0
    assert rules.wait(1.0, "3600") == 5.0
    assert rules.wait(1.0, "Wed, 21 Oct 2015 07:28:00 GMT") == 1.0  # a date in the past
    assert rules.wait(1.0, "soon") == 1.0  # unreadable: ignored


# The sync path.


def test_the_sync_usage_of_the_issue_works(http_target: HttpTarget) -> None:
    url = http_target.url("/ok")

    with ConnectionManager(ConnectionConfig(connect_timeout=2, read_timeout=5)) as conn:
        session = conn.get_sync_connection()
        data = session.get(url).json()
        conn.release_sync_connection()

    assert data == {"ok": True}
    assert isinstance(session, requests.Session)
    assert conn.stats()["sessions_in_use"] == 0


def test_it_hands_out_one_pooled_session(http_target: HttpTarget) -> None:
    config = ConnectionConfig(pool_per_host=4, pool_total=20)
    with ConnectionManager(config) as conn:
        session = conn.get_sync_connection()
        assert conn.get_sync_connection() is session
        assert conn.stats()["sessions_in_use"] == 2
        adapter = session.get_adapter("https://example.invalid/")

        assert session.get_adapter(http_target.url("/")) is adapter
        # requests keeps the pool sizes in these (pickled) fields: 5 host pools of 4 each.
        assert (adapter._pool_connections, adapter._pool_maxsize) == (5, 4)
        assert adapter.poolmanager.connection_pool_kw["maxsize"] == 4
        assert adapter.max_retries.total == 0  # the session retries, in the one loop
        assert session.headers["User-Agent"] == config.user_agent


def test_it_reuses_pooled_connections_on_the_sync_path(http_target: HttpTarget) -> None:
    with ConnectionManager() as conn:
        session = conn.get_sync_connection()
        for _ in range(5):
            session.get(http_target.url("/ok")).raise_for_status()
        inside = conn.stats()

    assert inside["requests"] == 5
    assert inside["new_connections"] == 1
    assert inside["reused_connections"] == 4
    assert inside["open_connections"] == 1
    assert conn.stats()["open_connections"] == 0


def test_it_gives_every_sync_request_a_timeout(http_target: HttpTarget) -> None:
    # No timeout passed: the config's read timeout must end the wait on a server that stalls.
    with ConnectionManager(STALL) as conn:
        session = conn.get_sync_connection()
        # With a urllib3 Retry mounted, requests wraps an exhausted read timeout in
        # ConnectionError: the classifier still finds the timeout inside.
        with pytest.raises(requests.RequestException) as caught:
            session.get(http_target.url("/stall"))

    assert classify(caught.value) == ErrorCategory.TIMEOUT
    assert conn.stats()["failures"] == 1


def test_it_retries_a_retry_status_on_the_sync_path(http_target: HttpTarget) -> None:
    with ConnectionManager(QUICK_CONFIG) as conn:
        response = conn.get_sync_connection().get(http_target.url("/flaky/2"))

    assert response.json() == {"ok": True, "calls": 3}
    assert http_target.hits["/flaky/2"] == 3
    assert conn.stats()["retries"] == 2
    assert conn.stats()["requests"] == 1


def test_it_returns_the_last_answer_when_sync_retries_run_out(http_target: HttpTarget) -> None:
    with ConnectionManager(QUICK_CONFIG) as conn:
        response = conn.get_sync_connection().get(http_target.url("/flaky/9"))

    assert response.status_code == 503
    assert http_target.hits["/flaky/9"] == 3


def test_it_never_retries_a_post(http_target: HttpTarget) -> None:
    with ConnectionManager(QUICK_CONFIG) as conn:
        response = conn.get_sync_connection().post(http_target.url("/flaky/1"))

    assert response.status_code == 503
    assert http_target.hits["/flaky/1"] == 1


def test_it_honours_retry_after_on_the_sync_path(http_target: HttpTarget) -> None:
    config = ConnectionConfig(retry=QUICK, max_retry_after=0.3)
    started = time.monotonic()

    with ConnectionManager(config) as conn:
        response = conn.get_sync_connection().get(http_target.url("/flaky/1?retry_after=3600"))

    # The backoff is 0: only the (capped) Retry-After can have made us wait.
    assert response.status_code == 200
    assert 0.3 <= time.monotonic() - started < 30


def test_it_refuses_a_release_without_a_get() -> None:
    with ConnectionManager() as conn, pytest.raises(RuntimeError):
        conn.release_sync_connection()


def test_leaving_closes_a_streamed_response_left_unread(
    http_target: HttpTarget, no_resource_warnings: None
) -> None:
    before = open_fds()
    with ConnectionManager() as conn:
        response = conn.get_sync_connection().get(http_target.url("/body"), stream=True)
        assert conn.stats()["open_connections"] == 1

    assert conn.stats()["open_connections"] == 0
    http_target.wait_idle()
    assert open_fds() == before
    del response


def test_a_closed_manager_refuses_to_hand_out_sessions() -> None:
    with ConnectionManager() as conn:
        pass

    with pytest.raises(RuntimeError, match="closed"):
        conn.get_sync_connection()


# The async path.


async def test_the_async_usage_of_the_issue_works(http_target: HttpTarget) -> None:
    url = http_target.url("/ok")

    async with ConnectionManager() as conn:
        async with conn.get_connection() as session:
            async with session.get(url) as response:
                data = await response.json()
        assert not session.closed  # leaving the inner block keeps the shared session
        async with conn.get_connection() as again:
            assert again is session

    assert data == {"ok": True}
    assert isinstance(session, aiohttp.ClientSession)
    assert session.closed


async def test_the_async_session_is_bounded_and_configured() -> None:
    config = ConnectionConfig(
        connect_timeout=1, read_timeout=2, total_timeout=3, pool_per_host=3, pool_total=7
    )
    async with ConnectionManager(config) as conn:
        session = conn.session

        assert (session.connector.limit, session.connector.limit_per_host) == (7, 3)
        assert session.timeout == aiohttp.ClientTimeout(total=3, sock_connect=1, sock_read=2)
        assert session.headers["User-Agent"] == config.user_agent


async def test_it_reuses_pooled_connections_on_the_async_path(http_target: HttpTarget) -> None:
    async with ConnectionManager() as conn:
        for _ in range(3):
            await conn.request("GET", http_target.url("/ok"))
        async with conn.get_connection() as session:
            for _ in range(2):
                async with session.get(http_target.url("/ok")) as response:
                    await response.read()
        inside = conn.stats()

    assert inside["requests"] == 5  # managed and raw requests alike
    assert inside["new_connections"] == 1
    assert inside["reused_connections"] == 4
    assert inside["open_connections"] == 1
    assert conn.stats()["open_connections"] == 0


async def test_an_untraced_manager_counts_only_what_it_sends_itself(
    http_target: HttpTarget,
) -> None:
    # A runner's manager: its probes' raw requests and connections are not counted, while
    # the managed requests, the open sockets and the pool are as in any other.
    async with ConnectionManager(traced=False) as conn:
        await conn.request("GET", http_target.url("/ok"))
        async with conn.get_connection() as session:
            for _ in range(2):
                async with session.get(http_target.url("/ok")) as response:
                    assert response.status == 200
        inside = conn.stats()

    assert inside["requests"] == 1
    assert (inside["new_connections"], inside["reused_connections"]) == (0, 0)
    assert inside["open_connections"] == 1
    assert conn.stats()["open_connections"] == 0


async def test_it_returns_the_response_with_its_body_read(http_target: HttpTarget) -> None:
    async with ConnectionManager() as conn:
        response = await conn.request("GET", http_target.url("/body"))
        assert conn.stats()["sessions_in_use"] == 0

    # Read after the manager closed: the body came back with the response.
    assert await response.text() == BODY


async def test_it_retries_a_retry_status_on_the_async_path(http_target: HttpTarget) -> None:
    async with ConnectionManager(QUICK_CONFIG) as conn:
        response = await conn.request("GET", http_target.url("/flaky/2"))

    assert await response.json() == {"ok": True, "calls": 3}
    assert http_target.hits["/flaky/2"] == 3
    assert conn.stats()["retries"] == 2
    assert conn.stats()["requests"] == 1


async def test_it_returns_the_last_answer_when_async_retries_run_out(
    http_target: HttpTarget,
) -> None:
    async with ConnectionManager(QUICK_CONFIG) as conn:
        response = await conn.request("GET", http_target.url("/flaky/9"))
        with pytest.raises(aiohttp.ClientResponseError) as caught:
            await conn.request("GET", http_target.url("/flaky/9"), raise_for_status=True)

    assert response.status == 503
    assert caught.value.status == 503
    assert http_target.hits["/flaky/9"] == 6
    assert conn.stats()["failures"] == 1


async def test_it_never_retries_an_async_post(http_target: HttpTarget) -> None:
    async with ConnectionManager(QUICK_CONFIG) as conn:
        response = await conn.request("POST", http_target.url("/flaky/1"))

    assert response.status == 503
    assert http_target.hits["/flaky/1"] == 1


async def test_it_honours_retry_after_on_the_async_path(http_target: HttpTarget) -> None:
    config = ConnectionConfig(retry=QUICK, max_retry_after=0.3)
    started = time.monotonic()

    async with ConnectionManager(config) as conn:
        response = await conn.request("GET", http_target.url("/flaky/1?retry_after=3600"))

    assert response.status == 200
    assert 0.3 <= time.monotonic() - started < 30


async def test_a_request_timeout_can_be_shorter_than_the_config(http_target: HttpTarget) -> None:
    config = ConnectionConfig(retry=retry.NONE)  # 30 s total, 10 s read
    async with ConnectionManager(config) as conn:
        with pytest.raises(asyncio.TimeoutError) as caught:
            await conn.request("GET", http_target.url("/stall"), timeout=0.2)

    assert classify(caught.value) == ErrorCategory.TIMEOUT


async def test_it_refuses_a_timeout_of_zero() -> None:
    async with ConnectionManager() as conn:
        with pytest.raises(ValueError, match="timeout"):
            await conn.request("GET", "http://127.0.0.1:9/", timeout=0)


def test_the_async_session_needs_async_with() -> None:
    with ConnectionManager() as conn, pytest.raises(RuntimeError, match="async with"):
        conn.session  # noqa: B018


# HTTPS: certificates are verified, and TLS connections are pooled like plain ones.


@pytest.fixture
def https_target() -> Iterator[HttpTarget]:
    with HttpTarget(tls=True) as target:
        yield target


def test_it_verifies_certificates_and_pools_tls_connections(https_target: HttpTarget) -> None:
    url = https_target.url("/ok")
    with ConnectionManager(NO_RETRY) as conn:
        session = conn.get_sync_connection()
        with pytest.raises(requests.exceptions.SSLError) as caught:
            session.get(url)  # self-signed: not trusted by default
        session.verify = str(https_target.ca_file)
        for _ in range(3):
            session.get(url).raise_for_status()
        stats = conn.stats()

    assert classify(caught.value) == ErrorCategory.TLS
    assert (stats["new_connections"], stats["reused_connections"]) == (1, 2)


async def test_it_verifies_certificates_and_pools_tls_connections_async(
    https_target: HttpTarget,
) -> None:
    url = https_target.url("/ok")
    trusted = https_target.client_ssl_context()
    async with ConnectionManager(NO_RETRY) as conn:
        with pytest.raises(aiohttp.ClientConnectorCertificateError) as caught:
            await conn.request("GET", url)
        for _ in range(3):
            await conn.request("GET", url, ssl=trusted, raise_for_status=True)
        stats = conn.stats()

    assert classify(caught.value) == ErrorCategory.TLS
    assert (stats["new_connections"], stats["reused_connections"]) == (1, 2)


async def test_it_can_skip_certificate_checks(https_target: HttpTarget) -> None:
    async with ConnectionManager(ConnectionConfig(verify_tls=False)) as conn:
        response = await conn.request("GET", https_target.url("/ok"))

    assert response.status == 200


# Errors the manager raises, as the one classifier sees them.


def error_url(category: str, target: HttpTarget) -> str:
    return {
        "refused": f"http://127.0.0.1:{refusing_port()}/",
        "timeout": target.url("/stall"),
        "reset": target.url("/reset"),
        "dns": "http://connection-health-test.invalid/",
        "tls": target.url("/ok", scheme="https"),
        "http_5xx": target.url("/status/500"),
    }[category]


CATEGORIES = ["refused", "timeout", "reset", "dns", "tls", "http_5xx"]


def config_for(category: str) -> ConnectionConfig:
    return STALL if category == "timeout" else NO_RETRY


@pytest.mark.parametrize("category", CATEGORIES)
def test_sync_errors_are_classified(category: str, http_target: HttpTarget) -> None:
    with ConnectionManager(config_for(category)) as conn:
        session = conn.get_sync_connection()
        with pytest.raises(requests.RequestException) as caught:
            session.get(error_url(category, http_target)).raise_for_status()

    assert classify(caught.value) == ErrorCategory(category)


@pytest.mark.parametrize("category", CATEGORIES)
async def test_async_errors_are_classified(category: str, http_target: HttpTarget) -> None:
    async with ConnectionManager(config_for(category)) as conn:
        with pytest.raises((aiohttp.ClientError, asyncio.TimeoutError)) as caught:
            await conn.request("GET", error_url(category, http_target), raise_for_status=True)

    assert classify(caught.value) == ErrorCategory(category)
    assert conn.stats()["failures"] == 1


# Which failures are retried: the same rules on both paths.


def sync_failure(method: str, url: str) -> tuple[BaseException, int]:
    with ConnectionManager(QUICK_CONFIG) as conn:
        with pytest.raises(requests.RequestException) as caught:
            conn.get_sync_connection().request(method, url)
    return caught.value, conn.stats()["retries"]


async def async_failure(method: str, url: str) -> tuple[BaseException, int]:
    async with ConnectionManager(QUICK_CONFIG) as conn:
        with pytest.raises(aiohttp.ClientError) as caught:
            await conn.request(method, url)
    return caught.value, conn.stats()["retries"]


@pytest.mark.parametrize(
    ("method", "category", "retries"),
    [
        ("GET", "reset", 2),  # a dropped connection, idempotent method: tried again
        ("POST", "reset", 0),  # the POST may have been received: never sent twice
        ("POST", "refused", 2),  # no connection, nothing sent: safe for any method
        ("GET", "tls", 0),  # the classifier says a TLS failure will not heal by retrying
    ],
)
async def test_both_paths_retry_the_same_failures(
    method: str, category: str, retries: int, http_target: HttpTarget
) -> None:
    url = error_url(category, http_target)

    for exc, retried in [sync_failure(method, url), await async_failure(method, url)]:
        assert classify(exc) == ErrorCategory(category)
        assert retried == retries


# Every socket closes: a thousand managers on each path.


def test_a_thousand_sync_managers_leave_no_socket_open(
    http_target: HttpTarget, no_resource_warnings: None
) -> None:
    before = open_fds()

    for _ in range(1000):
        with ConnectionManager() as conn:
            session = conn.get_sync_connection()
            assert session.get(http_target.url("/ok")).status_code == 200
            conn.release_sync_connection()

    http_target.wait_idle()  # the server side closes once it sees the client go
    assert open_fds() == before


async def test_a_thousand_async_managers_leave_no_socket_open(
    http_target: HttpTarget, no_resource_warnings: None
) -> None:
    before = open_fds()

    for i in range(1000):
        async with ConnectionManager() as conn:
            await conn.request("GET", http_target.url("/ok"))
            if i % 10 == 0:  # a sample also uses the raw session and the sync path
                async with conn.get_connection() as session, session.get(http_target.url("/body")):
                    pass
                conn.get_sync_connection().get(http_target.url("/ok"))

    http_target.wait_idle()
    assert open_fds() == before
