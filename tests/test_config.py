"""Start-up configuration: embedded defaults, and one clear line for every bad variable."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

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
        ("STOP_TIMEOUT", "soon", "STOP_TIMEOUT"),
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
