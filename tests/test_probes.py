"""Each probe against a real target: loopback HTTP, the test Redis, channel layers."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest
import redis
from channels.layers import channel_layers

from connections_app.connection_manager import ConnectionManager
from connections_app.error_handler import get_global_error_handler, reset_global_error_handler
from connections_app.models import HealthCheck
from connections_app.probes import run_probe
from tests.conftest import refusing_port


@pytest.fixture(autouse=True)
def fresh_handler():
    reset_global_error_handler()
    yield
    reset_global_error_handler()


def make(kind: str, target: str, **fields) -> HealthCheck:
    # Probes need only the fields, not a stored row.
    return HealthCheck(name=f"{kind} check", kind=kind, target=target, **({"timeout": 2} | fields))


async def probe(check: HealthCheck):
    async with ConnectionManager() as manager:
        return await run_probe(check, manager)


async def test_http_finds_the_expected_text_across_chunks(http_target):
    result = await probe(make("http", http_target.url("/chunked"), expected_body="healthy world"))
    assert result.ok, result
    assert result.http_status == 200


async def test_http_status_outside_the_range_fails_and_is_counted(http_target):
    result = await probe(make("http", http_target.url("/status/503")))
    assert not result.ok
    assert (result.error_category, result.http_status) == ("http_5xx", 503)
    assert "HTTP 503, expected 200-399" in result.error_message
    stats = get_global_error_handler().get_error_stats()
    assert stats["by_category"].get("http_5xx") == 1


async def test_http_missing_text_fails(http_target):
    result = await probe(make("http", http_target.url("/body"), expected_body="on fire"))
    assert not result.ok and result.error_category == "body_mismatch"
    assert "does not contain 'on fire'" in result.error_message


async def test_a_redirect_loop_is_its_own_category_in_one_log_line(http_target, caplog):
    result = await probe(make("http", http_target.url("/loop")))
    assert result.error_category == "redirects"
    assert "gave up after 10 redirects" in result.error_message
    lines = [r for r in caplog.records if r.name.startswith("connections_app")]
    assert [r.exc_info for r in lines] == [None]  # one line, no traceback
    assert "gave up after 10 redirects" in lines[0].getMessage()


async def test_plain_http_refused_names_the_address_without_ssl_words(caplog):
    port = refusing_port()
    result = await probe(make("http", f"http://127.0.0.1:{port}/"))
    assert result.error_category == "refused"
    assert f"cannot connect to 127.0.0.1:{port}" in result.error_message
    logged = " ".join(r.getMessage() for r in caplog.records)
    assert "ssl:default" not in result.error_message + logged
    assert f"cannot connect to 127.0.0.1:{port}" in logged


async def test_a_client_side_timeout_is_logged_in_the_results_words(http_target, caplog):
    result = await probe(make("http", http_target.url("/stall"), timeout=0.3))
    assert result.error_message == "no answer within 0.3 s"
    logged = [r.getMessage() for r in caplog.records if r.name.startswith("connections_app")]
    assert any("no answer within 0.3 s" in line for line in logged), logged
    assert not any("TimeoutError" in line for line in logged), logged


async def test_a_probe_that_outlives_its_timeout_is_a_timeout(http_target):
    result = await probe(make("http", http_target.url("/stall"), timeout=0.3))
    assert result.error_category == "timeout"
    assert result.error_message == "no answer within 0.3 s"


async def test_redis_up(redis_url):
    result = await probe(make("redis", redis_url))
    assert result.ok and result.latency_ms > 0


async def test_redis_refused():
    result = await probe(make("redis", f"redis://127.0.0.1:{refusing_port()}/0"))
    assert (result.ok, result.error_category) == (False, "refused")


async def test_redis_password_never_reaches_the_message():
    result = await probe(make("redis", f"redis://:hunter2@127.0.0.1:{refusing_port()}/0"))
    assert "hunter2" not in result.error_message


async def test_redis_unknown_host_is_dns():
    # redis-py wraps the resolver's error in its own ConnectionError, which alone means reset.
    result = await probe(make("redis", "redis://no-such-host.invalid:6379/0"))
    assert (result.ok, result.error_category) == (False, "dns")


async def test_redis_wrong_credentials_are_a_refused_login(redis_url):
    parts = urlsplit(redis_url)
    result = await probe(
        make("redis", parts._replace(netloc=f"nobody:wrong@{parts.netloc}").geturl())
    )
    assert (result.ok, result.error_category) == (False, "auth")
    assert "AuthenticationError" in result.error_message
    assert "wrong" not in result.error_message


async def test_tcp_refused():
    assert (await probe(make("tcp", f"127.0.0.1:{refusing_port()}"))).error_category == "refused"


@pytest.mark.django_db(transaction=True)
async def test_database_probe_reports_latency():
    result = await probe(make("database", "default"))
    assert result.ok and result.latency_ms >= 0


async def test_in_memory_channel_layer_probe_reuses_one_channel(monkeypatch):
    layer = channel_layers["default"]
    made = []
    new_channel = layer.new_channel

    async def counted(prefix="specific."):
        made.append(await new_channel(prefix))
        return made[-1]

    # The in-memory layer forgets a channel once its queue is empty: ask how many it made.
    monkeypatch.setattr(layer, "new_channel", counted)
    for _ in range(20):
        assert (await probe(make("channel_layer", "default"))).ok
    assert len(made) == 1 and made[0].startswith("health.")


async def test_redis_pubsub_layer_probe_keeps_one_subscription(redis_url, settings):
    settings.CHANNEL_LAYERS = {
        "probe": {
            "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
            "CONFIG": {"hosts": [redis_url], "prefix": "chtest"},
        }
    }
    client = redis.Redis.from_url(redis_url)
    try:
        for _ in range(20):
            result = await probe(make("channel_layer", "probe"))
            assert result.ok, result
        subscribed = [c for c in client.pubsub_channels() if b"health." in c]
        assert len(subscribed) == 1
    finally:
        client.close()
        await channel_layers["probe"].flush()
        del channel_layers.backends["probe"]
