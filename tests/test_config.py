"""Start-up configuration: embedded defaults, and one clear line for every bad variable."""

import asyncio
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

from project.config import alert_timing, channel_layers, database_config, email_config, site_url

REPO = Path(__file__).resolve().parent.parent


def manage(*args: str, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=REPO,
        env=clean | env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_no_variables_means_sqlite_and_the_in_memory_layer():
    config = database_config(None, Path("/srv/app"))
    assert config["ENGINE"] == "connections_app.db.backends.sqlite3"
    assert config["NAME"] == "/srv/app/db.sqlite3"
    assert channel_layers(None)["default"]["BACKEND"] == "channels.layers.InMemoryChannelLayer"


def test_database_url_switches_to_postgresql():
    config = database_config("postgres://app:pw@db.internal:5433/health", Path("."))
    assert config["ENGINE"] == "connections_app.db.backends.postgresql"
    assert (config["HOST"], config["PORT"], config["NAME"]) == ("db.internal", 5433, "health")


def test_redis_url_switches_to_channels_redis():
    layer = channel_layers("redis://127.0.0.1:6379/0")["default"]
    assert layer["BACKEND"].startswith("channels_redis.")


@pytest.mark.parametrize(
    ("url", "number"),
    [("redis://cache:6379", 0), ("redis://cache:6379/7", 7), ("unix:///run/redis.sock?db=3", 3)],
)
def test_each_redis_database_gets_a_channel_prefix_of_its_own(url, number):
    assert channel_layers(url)["default"]["CONFIG"]["prefix"] == f"asgi-db{number}"


def test_a_unix_socket_redis_database_must_be_a_number():
    with pytest.raises(ImproperlyConfigured, match="the database must be a number"):
        channel_layers("unix:///run/redis.sock?db=two")


@pytest.mark.redis
@pytest.mark.parametrize("kind", ["pubsub", "core"])
async def test_installations_on_two_redis_databases_hear_only_their_own(redis_url, kind):
    # Redis's pub/sub ignores the database number: the layers' prefixes keep them apart.
    base = redis_url.rsplit("/", 1)[0]
    configs = [channel_layers(f"{base}/{n}", kind)["default"] for n in (13, 14)]
    ours, theirs = (import_string(c["BACKEND"])(**c["CONFIG"]) for c in configs)
    group = f"dashboard-{uuid.uuid4().hex[:8]}"
    heard: dict = {ours: [], theirs: []}
    listeners = []
    try:
        for layer in (ours, theirs):
            channel = await layer.new_channel()
            await layer.group_add(group, channel)
            listeners.append(asyncio.create_task(listen(layer, channel, heard[layer])))
            await until_heard(layer, group, heard[layer], "self")  # subscribed
        await theirs.group_send(group, {"type": "checks.changed", "from": "theirs"})
        await until_heard(theirs, group, heard[theirs], "theirs", send=False)
        # Redis hands a published message to every subscriber as it publishes: "theirs" would
        # be in our connection's stream before this last message of our own.
        await until_heard(ours, group, heard[ours], "end", send=True)
        assert "theirs" not in heard[ours]
    finally:
        for task in listeners:
            task.cancel()
        await asyncio.gather(*listeners, return_exceptions=True)
        for layer in (ours, theirs):
            await layer.flush()
            if hasattr(layer, "close_pools"):
                await layer.close_pools()


async def listen(layer, channel: str, heard: list) -> None:
    while True:  # until cancelled (a cancelled receive also unsubscribes the channel)
        heard.append((await layer.receive(channel))["from"])


async def until_heard(layer, group: str, heard: list, word: str, send: bool = True) -> None:
    """Wait until ``heard`` holds ``word`` (5 s at most); with ``send``, sending ``word`` to
    ``group`` every 0.1 s meanwhile (a pub/sub subscription takes effect a moment later)."""
    for _ in range(50):
        if word in heard:
            return
        if send:
            await layer.group_send(group, {"type": "checks.changed", "from": word})
        await asyncio.sleep(0.1)
    pytest.fail(f"{word!r} never arrived")


@pytest.mark.parametrize(
    ("variable", "value", "words"),
    [
        ("DATABASE_URL", "mysql://root:hunter2@db/x", "unsupported scheme 'mysql'"),
        ("DATABASE_URL", "postgres://app:hunter2@db:notaport/x", "Port"),
        ("DATABASE_URL", "postgres://app:hunter2@db:5432/", "no database name"),
        ("REDIS_URL", "http://:hunter2@cache:6379", "unsupported scheme 'http'"),
        ("REDIS_URL", "redis://:hunter2@cache:port/0", "Port"),
        ("DATABASE_URL", "postgres://app:hunter2@[bad/x", "Invalid IPv6 URL"),
        ("REDIS_URL", "redis://:hunter2@[bad", "Invalid IPv6 URL"),
        ("DEBUG", "maybe", "DEBUG"),
        ("LOG_LEVEL", "LOUD", "not one of DEBUG"),
        ("STOP_TIMEOUT", "soon", "STOP_TIMEOUT: expected a number, got 'soon'"),
        ("CONN_MAX_AGE", "abc", "CONN_MAX_AGE: expected a whole number, got 'abc'"),
        ("STOP_TIMEOUT", "-1", "STOP_TIMEOUT: seconds from 0 to 3600, got -1"),
        ("LOG_THIRD_PARTY_LEVEL", "quiet", "not one of DEBUG"),
        ("IDLE_TIMEOUT", "soon", "IDLE_TIMEOUT"),
        ("IDLE_TIMEOUT", "0", "IDLE_TIMEOUT: must be 1 or more, got 0"),
        # One start-up per alert variable; their other mistakes are judged in-process below.
        ("ALERT_RETRY_BASE_DELAY", "soon", "ALERT_RETRY_BASE_DELAY"),
        ("ALERT_RETRY_MAX_DELAY", "10", "at least ALERT_RETRY_BASE_DELAY"),
        ("ALERT_RETRY_ATTEMPTS", "-1", "0 or more"),
        ("ALERT_SEND_TIMEOUT", "0", "above 0"),
        ("ALERT_LEASE_SECONDS", "5", "longer than ALERT_SEND_TIMEOUT"),
        ("EMAIL_URL", "smtps://bob:hunter2@mail.example.com:port", "Port"),
        ("SITE_URL", "https://bob:hunter2@health.example.com", "no user"),
    ],
)
def test_a_bad_variable_stops_start_up_with_one_line(variable, value, words):
    run = manage("check", **{variable: value})
    assert run.returncode == 3
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1, run.stderr
    assert lines[0].startswith(f"configuration error: {variable}")
    assert words.lower() in lines[0].lower()
    assert "hunter2" not in run.stderr
    assert "Traceback" not in run.stderr


def test_secret_key_is_required_without_debug():
    run = manage("check", DEBUG="false", SECRET_KEY="")
    assert run.returncode == 3
    assert run.stderr.strip() == "configuration error: SECRET_KEY: required when DEBUG is false"


def test_debug_allows_a_missing_secret_key():
    run = manage("check", DEBUG="true", SECRET_KEY="")
    assert run.returncode == 0, run.stderr


def test_a_channel_layer_kind_is_checked_without_redis_too():
    with pytest.raises(ImproperlyConfigured, match="^CHANNEL_LAYER_KIND: 'fast' is not one of"):
        channel_layers(None, "fast")


def test_a_url_without_a_scheme_is_said_to_have_none():
    with pytest.raises(ImproperlyConfigured, match="^DATABASE_URL: no scheme in 'garbage'; use"):
        database_config("garbage", Path("."))
    with pytest.raises(ImproperlyConfigured, match="^REDIS_URL: no scheme in '127.0.0.1:6379'"):
        channel_layers("127.0.0.1:6379")


def test_config_errors_are_improperly_configured():
    with pytest.raises(ImproperlyConfigured, match="^DATABASE_URL: "):
        database_config("oracle://x/y", Path("."))


def test_the_alert_and_email_variables_have_working_defaults_and_values():
    assert email_config("")["EMAIL_BACKEND"] == "django.core.mail.backends.console.EmailBackend"
    config = email_config("smtp+tls://alerts%40example.com:pw@mail.example.com:587")
    assert (config["EMAIL_HOST"], config["EMAIL_PORT"], config["EMAIL_USE_TLS"]) == (
        "mail.example.com", 587, True
    )  # fmt: skip
    assert config["EMAIL_HOST_USER"] == "alerts@example.com"
    assert site_url("https://health.example.com/") == "https://health.example.com"
    # The examples of docs/ALERTS.md mean what it says they mean.
    ssl = email_config("smtp+ssl://alerts%40example.com:app-password@smtp.example.com:465")
    assert (ssl["EMAIL_PORT"], ssl["EMAIL_USE_SSL"]) == (465, True)
    files = email_config("filemail:////var/tmp/alert-mail")
    assert files["EMAIL_FILE_PATH"] == "/var/tmp/alert-mail"


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: alert_timing(-1, 300, 3, 15, 60), "^ALERT_RETRY_BASE_DELAY: must be a number"),
        (lambda: alert_timing(float("nan"), 300, 3, 15, 60), "^ALERT_RETRY_BASE_DELAY: "),
        (lambda: alert_timing(60, float("inf"), 3, 15, 60), "^ALERT_RETRY_MAX_DELAY: "),
        (lambda: alert_timing(60, 300, 3, 15, 15), "^ALERT_LEASE_SECONDS: must be longer"),
        (lambda: email_config("pop3://bob:hunter2@mail.example.com"), "unsupported scheme 'pop3'"),
        (lambda: email_config("smtp://bob:hunter2@:25"), "^EMAIL_URL: no host"),
        (lambda: site_url("ftp://health.example.com"), "^SITE_URL: expected http"),
        (lambda: site_url("https://health.example.com:port"), "^SITE_URL: Port"),
        (lambda: site_url("https://health.example.com/?next=1"), "^SITE_URL: no user, query"),
    ],
)
def test_each_alert_setting_mistake_names_its_variable(make, message):
    with pytest.raises(ImproperlyConfigured, match=message) as caught:
        make()
    assert "hunter2" not in str(caught.value)
