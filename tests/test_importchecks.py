"""``manage.py importchecks``: what a JSON file may hold, and how a bad item is reported."""

from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from connections_app.models import HealthCheck
from tests.conftest import manage
from tests.test_alerts_runners import postgres_env  # noqa: F401 - fixture

pytestmark = pytest.mark.django_db

GOOD = '{"name": "good", "target": "http://127.0.0.1:1/"}'


def run_import(tmp_path, text: str) -> str:
    path = tmp_path / "checks.json"
    path.write_text(text)
    out = StringIO()
    call_command("importchecks", str(path), stdout=out)
    return out.getvalue()


def refused(tmp_path, text: str) -> str:
    before = list(HealthCheck.objects.values_list("name", "updated_at"))
    with pytest.raises(CommandError) as caught:
        run_import(tmp_path, text)
    assert caught.value.returncode == 3
    assert list(HealthCheck.objects.values_list("name", "updated_at")) == before
    return str(caught.value)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        # Numbers: finite, within bounds, of the right type.
        ('"interval": 1e12', "interval: The interval must be at most 604800 seconds (7 days)."),
        ('"interval": 1e400', "interval: expected a finite number, got Infinity"),
        ('"interval": NaN', "interval: expected a finite number, got NaN"),
        ('"interval": -Infinity', "interval: expected a finite number, got -Infinity"),
        ('"interval": "abc"', 'interval: expected a number, got "abc"'),
        ('"interval": "30"', 'interval: expected a number, got "30"'),
        ('"interval": true', "interval: expected a number, got true"),
        ('"interval": null', "interval: expected a number, got null"),
        (
            '"interval": 600, "timeout": 301',
            "timeout: The timeout must be at most 300 seconds (5 minutes).",
        ),
        ('"timeout": 1e400', "timeout: expected a finite number, got Infinity"),
        ('"expected_status_min": "abc"', 'expected_status_min: expected a number, got "abc"'),
        ('"failures_before_down": 1e400', "failures_before_down: expected a finite number"),
        ('"failures_before_down": 2.5', "failures_before_down: expected a whole number, got 2.5"),
        (
            '"failures_before_down": -1',
            "failures_before_down: Ensure this value is greater than or equal to 0.",
        ),
        ('"failures_before_down": 0', "failures_before_down: At least 1 failure is needed"),
        # Strings and booleans.
        ('"kind": 1', "kind: expected a string, got 1"),
        ('"kind": "nope"', "kind: 'nope' is not a kind; the kinds are http, tcp"),
        ('"expected_body": ["ok"]', 'expected_body: expected a string, got ["ok"]'),
        ('"enabled": 1', "enabled: expected true or false, got 1"),
        ('"critical": "yes"', 'critical: expected true or false, got "yes"'),
        ('"tags": ["a", 1]', 'tags: expected a string or a list of strings, got ["a", 1]'),
        ('"tags": {"a": 1}', "tags: expected a string or a list of strings"),
        ('"tags": ["a b"]', "tags: 'a b' is not one tag"),
        # Targets.
        ('"target": " http://a.example/ "', "target: The target must not start or end"),
        ('"target": "http://a b/"', "target: The host 'a b' contains a space"),
        ('"kind": "tcp", "target": "foo bar:80"', "target: The host 'foo bar' contains a space"),
        ('"kind": "redis", "target": "redis://"', "target: The Redis URL has no host"),
        ('"target": ""', "target: This field cannot be blank."),
    ],
)
def test_a_bad_item_is_named_in_one_line_and_nothing_is_stored(tmp_path, fields, message):
    text = f'[{GOOD}, {{"name": "bad", "target": "http://127.0.0.1:1/", {fields}}}]'
    error = refused(tmp_path, text)
    assert error.startswith(f"check #2 ('bad'): {message}"), error
    assert "\n" not in error
    assert not HealthCheck.objects.filter(name__in=["good", "bad"]).exists()


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ('["a"]', 'check #2: name: expected a string, got ["a"]'),
        ("true", "check #2: name: expected a string, got true"),
        ("1", "check #2: name: expected a string, got 1"),
        ('""', "check #2: name: this field is required"),
        ('"  "', "check #2: name: this field is required"),
        ("null", "check #2: name: this field is required"),
    ],
)
def test_a_name_must_be_a_string(tmp_path, name, message):
    text = f'[{GOOD}, {{"name": {name}, "target": "http://127.0.0.1:1/"}}]'
    assert refused(tmp_path, text) == message


def test_one_message_per_field(tmp_path):
    # clean() used to repeat, in its own words, what clean_fields() had already said.
    items = [{"name": "x", "target": "", "failures_before_down": -1}]
    assert refused(tmp_path, json.dumps(items)) == (
        "check #1 ('x'): target: This field cannot be blank."
    )
    items[0]["target"] = "http://a.example/"
    assert refused(tmp_path, json.dumps(items)) == (
        "check #1 ('x'): failures_before_down: Ensure this value is greater than or equal to 0."
    )


def test_tags_may_be_a_list_of_strings(tmp_path):
    out = run_import(tmp_path, '[{"name": "t", "target": "http://a.example/", "tags": ["b", "A"]}]')
    assert out == "1 check created, 0 updated\n"
    assert HealthCheck.objects.get(name="t").tags == "a,b"


def test_an_existing_name_updates_and_keeps_the_fields_left_out(tmp_path):
    HealthCheck.objects.create(
        name="api", target="http://a.example/", interval=60, timeout=7, tags="prod"
    )
    out = run_import(
        tmp_path,
        '[{"name": "api", "timeout": 3}, {"name": "new1", "target": "http://b.example/"},'
        ' {"name": "new2", "kind": "tcp", "target": "db.internal:5432"}]',
    )
    assert out == "2 checks created, 1 updated\n"
    api = HealthCheck.objects.get(name="api")
    assert (api.target, api.interval, api.timeout, api.tags) == ("http://a.example/", 60, 3, "prod")


def test_help_lists_the_fields_and_what_an_update_keeps(capsys):
    with pytest.raises(SystemExit):
        call_command("importchecks", "--help")
    help_text = " ".join(capsys.readouterr().out.split())
    for field in (
        "name",
        "kind",
        "target",
        "interval",
        "timeout",
        "failures_before_down",
        "expected_status_min",
        "expected_status_max",
        "expected_body",
        "enabled",
        "critical",
        "tags",
    ):
        assert f"{field} (" in help_text or f"{field} and" in help_text, field
    assert "604800" in help_text and "300" in help_text
    assert "An item whose name exists updates that check and keeps the fields it leaves out" in (
        help_text
    )


def test_the_command_line_reports_a_type_error_without_a_traceback(sqlite_file_env):
    bad = '[{"name": "n", "target": "http://a.example/", "interval": NaN}]'
    run = manage(sqlite_file_env, "importchecks", "-", stdin=bad)
    assert run.returncode == 3
    expected = "CommandError: check #1 ('n'): interval: expected a finite number, got NaN"
    assert run.stderr.strip() == expected
    assert "Traceback" not in run.stderr


def test_a_command_line_mistake_exits_3_with_the_usage(sqlite_file_env):
    run = manage(sqlite_file_env, "importchecks")  # the file is missing
    assert run.returncode == 3, run.stderr
    assert "usage:" in run.stderr and "file" in run.stderr


@pytest.mark.parametrize(
    "item",
    [
        # A value of the wrong type is quoted back: never with its password.
        '{"name": "n", "target": {"url": "redis://:hunter2@127.0.0.1:6379/0"}}',
        # A URL that cannot be taken apart: urlsplit's own message quotes the netloc.
        '{"name": "n", "target": "http://user:hunter2@[::1/"}',
        '{"name": "n", "kind": "redis", "target": "redis://user:hunter2@[::1/0"}',
        # A database alias that is a DSN instead.
        '{"name": "n", "kind": "database", "target": "postgres://u:hunter2@127.0.0.1/db"}',
    ],
)
def test_an_error_never_shows_a_password_from_the_item(tmp_path, item):
    assert "hunter2" not in refused(tmp_path, f"[{item}]")


def test_a_file_that_is_not_utf8_is_one_line_and_exit_3(sqlite_file_env, tmp_path):
    path = tmp_path / "checks.json"
    path.write_bytes(b'[{"name": "caf\xe9", "target": "http://127.0.0.1:1/"}]')  # Latin-1
    run = manage(sqlite_file_env, "importchecks", str(path))
    assert run.returncode == 3, run.stderr
    assert "not UTF-8 text" in run.stderr
    assert "Traceback" not in run.stderr


def test_it_refuses_two_items_with_one_name_naming_both(tmp_path):
    text = f'[{GOOD}, {{"name": "other", "target": "http://127.0.0.1:2/"}}, {GOOD}]'
    message = refused(tmp_path, text)
    assert "check #1 and check #3 are both named 'good'" in message


def test_it_says_a_tcp_target_is_host_port_not_a_url(tmp_path):
    message = refused(tmp_path, '[{"name": "t", "kind": "tcp", "target": "http://db:5432"}]')
    assert "A TCP target is host:port" in message
    assert "port must be a number" not in message


def test_a_bad_kind_lists_the_valid_ones(tmp_path):
    message = refused(tmp_path, '[{"name": "k", "kind": "ftp", "target": "x"}]')
    assert "'ftp' is not a kind; the kinds are http, tcp, database, redis, channel_layer" in message


def test_a_new_check_is_not_critical_and_the_self_checks_are(tmp_path):
    run_import(tmp_path, f"[{GOOD}]")
    assert HealthCheck.objects.get(name="good").critical is False
    assert set(HealthCheck.objects.filter(tags="self").values_list("critical", flat=True)) == {True}


def test_every_field_a_form_may_write_can_be_imported():
    from connections_app.management.commands.importchecks import IMPORTABLE
    from connections_app.models import RULE_FIELDS

    assert IMPORTABLE == set(RULE_FIELDS) - {"updated_at"}


def test_the_http_options_are_imported_and_validated(tmp_path):
    item = {
        "name": "api",
        "target": "http://127.0.0.1:1/",
        "http_method": "POST",
        "request_headers": "Authorization: Bearer abc\nX-Env: prod",
        "request_body": "{}",
        "follow_redirects": False,
        "max_redirects": 3,
        "accepted_statuses": "200, 204",
        "body_regex": "ok|fine",
        "json_path": "$.db.ok",
        "json_expected": "true",
        "ignore_tls_errors": True,
        "tls_warn_days": 30,
    }
    run_import(tmp_path, json.dumps([item]))
    check = HealthCheck.objects.get(name="api")
    assert {field: getattr(check, field) for field in item} == item
    bad = refused(tmp_path, json.dumps([item | {"body_regex": "(unclosed"}]))
    assert "body_regex: Not a regular expression" in bad


LONG = "9" * 5000


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (
            f'"interval": {LONG}',
            "('x'): interval: expected a number, got <a number of 5000",
        ),
        (f'"failures_before_down": -{LONG}', "failures_before_down: expected a number, got <a"),
        (f'"expected_body": {LONG}', "expected_body: expected a string, got <a number of 5000"),
        ('"expected_body": "a\\u0000b"', "check #1 ('x'): expected_body: contains a NUL"),
        ('"tags": ["a\\u0000"]', "tags: contains a NUL"),
        ('"tags": "a\\u0000"', "tags: contains a NUL"),
    ],
)
def test_a_huge_number_or_a_nul_names_item_and_field(tmp_path, fields, message):
    text = f'[{{"name": "x", "target": "http://127.0.0.1:1/", {fields}}}]'
    assert message in refused(tmp_path, text)


def test_a_nul_in_the_name_is_named_before_any_query(tmp_path):
    assert "check #1: name: contains a NUL" in refused(tmp_path, '[{"name": "a\\u0000b"}]')


@pytest.mark.postgres
@pytest.mark.slow
def test_huge_numbers_and_nul_bytes_on_postgresql_are_one_line_exit_3(postgres_env):  # noqa: F811
    """PostgreSQL refuses NUL in text: the command names item and field, no traceback."""
    for item in (
        f'[{GOOD}, {{"name": "pg", "target": "http://127.0.0.1:1/", "timeout": {LONG}}}]',
        f'[{GOOD}, {{"name": "p\\u0000g", "target": "http://127.0.0.1:1/"}}]',
        f'[{GOOD}, {{"name": "pg", "target": "http://127.0.0.1:1/\\u0000"}}]',
    ):
        run = manage(postgres_env, "importchecks", "-", stdin=item)
        assert run.returncode == 3, run.stderr
        lines = run.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("CommandError: check #2"), run.stderr
        assert "Traceback" not in run.stderr
    run = manage(postgres_env, "exportchecks")
    assert json.loads(run.stdout) == [] or "good" not in run.stdout  # nothing was stored
