"""Issue 15's environment mistakes: each one line naming the variable and exit code 3, and the
HTTPS settings settable from the environment so that ``check --deploy`` is clean."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from project.config import (
    channel_layers,
    database_config,
    log_file,
    positive_days,
    proxy_ssl_header,
    time_zone,
)
from tests.test_config import REPO, manage


def _one_line(run, variable: str) -> str:
    assert run.returncode == 3, run.stderr
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1, run.stderr
    assert lines[0].startswith(f"configuration error: {variable}:"), lines[0]
    assert "Traceback" not in run.stderr
    return lines[0]


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("LOG_FILE", "/proc/connection-health/app.log"),
        ("LOG_FILE", "/proc/app.log"),
        ("TIME_ZONE", "Mars/Olympus"),
        ("SQLITE_BUSY_TIMEOUT", "nan"),
        ("LOG_MAX_BYTES", "-1"),
        ("REDIS_URL", "redis://127.0.0.1:6379/notanumber"),
        ("RESULT_RETENTION_DAYS", "-1"),
        ("RESULT_RETENTION_DAYS", "soon"),
        ("ROLLUP_RETENTION_DAYS", "0"),
        ("SECURE_PROXY_SSL_HEADER", "https"),
    ],
)
def test_each_bad_variable_is_one_line_and_exit_3(variable, value):
    _one_line(manage("check", **{variable: value}), variable)


def test_an_unwritable_log_file_is_refused_before_anything_is_created():
    # /proc takes no new file, whoever asks (root included, as in CI).
    run = manage("check", LOG_FILE="/proc/app.log")
    assert "not writable" in _one_line(run, "LOG_FILE")


def test_log_file_never_creates_folders(tmp_path):
    missing = tmp_path / "no" / "such" / "app.log"
    run = manage("check", LOG_FILE=str(missing))
    assert "does not exist" in _one_line(run, "LOG_FILE")
    assert not (tmp_path / "no").exists()


def test_a_writable_log_file_is_written(tmp_path):
    path = tmp_path / "app.log"
    run = manage("check", LOG_FILE=str(path))
    assert run.returncode == 0, run.stderr
    assert log_file(str(path)) == str(path)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: time_zone("Mars/Olympus"), "TIME_ZONE: unknown time zone 'Mars/Olympus'"),
        (lambda: time_zone("../../etc/passwd"), "TIME_ZONE: unknown"),
        (lambda: database_config(None, Path("."), busy_timeout=float("nan")), "SQLITE_BUSY"),
        (lambda: database_config(None, Path("."), busy_timeout=float("inf")), "SQLITE_BUSY"),
        (lambda: channel_layers("redis://127.0.0.1:6379/notanumber"), "REDIS_URL: the database"),
        (lambda: channel_layers("redis://:hunter2@127.0.0.1/x1"), "REDIS_URL: the database"),
        (lambda: positive_days("RESULT_RETENTION_DAYS", 0), "RESULT_RETENTION_DAYS: must"),
        (lambda: positive_days("ROLLUP_RETENTION_DAYS", -5), "ROLLUP_RETENTION_DAYS: must"),
        (lambda: proxy_ssl_header("X-Forwarded-Proto"), "SECURE_PROXY_SSL_HEADER"),
        (lambda: proxy_ssl_header("X Forwarded=https"), "SECURE_PROXY_SSL_HEADER"),
        (lambda: log_file("/"), "LOG_FILE"),
    ],
)
def test_each_mistake_names_its_variable(make, message):
    with pytest.raises(ImproperlyConfigured) as caught:
        make()
    assert str(caught.value).startswith(message)
    assert "hunter2" not in str(caught.value)


def test_good_values_pass():
    assert time_zone("Europe/Paris") == "Europe/Paris"
    layer = channel_layers("redis://127.0.0.1:6379/2")["default"]
    assert layer["CONFIG"]["hosts"] == ["redis://127.0.0.1:6379/2"]
    assert channel_layers("redis://127.0.0.1:6379")["default"]["BACKEND"]
    assert positive_days("RESULT_RETENTION_DAYS", 1) == 1
    assert proxy_ssl_header("X-Forwarded-Proto=https") == ("HTTP_X_FORWARDED_PROTO", "https")
    assert proxy_ssl_header("") is None


def test_retention_settings_default_to_14_and_400_days():
    from django.conf import settings

    assert settings.ROLLUP_RETENTION_DAYS == 400
    assert settings.RESULT_RETENTION_DAYS >= 1


def _production_example() -> dict[str, str]:
    """The variables of docs/DEPLOY.md's production example (the block marked for it)."""
    text = (REPO / "docs" / "DEPLOY.md").read_text()
    block = re.search(r"<!-- production-env -->\s*```sh\n(.*?)```", text, re.S)
    assert block, "docs/DEPLOY.md lost its production example"
    variables = {}
    for line in block.group(1).splitlines():
        line = line.split("#", 1)[0].strip()
        if "=" in line:
            name, _, value = line.partition("=")
            variables[name] = value
    return variables


def test_check_deploy_is_clean_with_the_production_example(sqlite_file_env, tmp_path):
    example = _production_example()
    example["LOG_FILE"] = str(tmp_path / "app.log")
    # The example's SECRET_KEY is a placeholder; a real one is 50 random characters.
    example["SECRET_KEY"] = "k" + "".join(chr(33 + (i * 7) % 90) for i in range(60))
    example.pop("DATABASE_URL", None)
    example.pop("REDIS_URL", None)
    run = manage("check", "--deploy", "--fail-level", "WARNING", **(sqlite_file_env | example))
    assert run.returncode == 0, run.stdout + run.stderr
    assert "no issues" in run.stdout
