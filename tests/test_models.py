from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from connections_app.errors import ErrorCategory
from connections_app.models import (
    DEGRADED,
    DOWN,
    PAUSED,
    UNKNOWN,
    UP,
    HealthCheck,
    overall_status,
)
from connections_app.probes import ProbeResult
from connections_app.results import Outcome, store_outcomes

pytestmark = pytest.mark.django_db


def make_check(**fields) -> HealthCheck:
    defaults = {"name": "api", "kind": "http", "target": "http://127.0.0.1:8080/health"}
    return HealthCheck.objects.create(**(defaults | fields))


def add_results(check: HealthCheck, oks: list[bool]) -> None:
    """Results oldest first, one second apart, ending now, stored as the runner stores them
    (so the check's state follows)."""
    now = timezone.now()
    outcomes = [
        Outcome(
            check,
            ProbeResult.success(5.0)
            if ok
            else ProbeResult.failure(ErrorCategory.REFUSED, "ConnectionRefusedError: refused", 5.0),
            checked_at=now - timedelta(seconds=age),
        )
        for age, ok in enumerate(reversed(oks))
    ]
    store_outcomes(outcomes)
    check.refresh_from_db()


def errors_of(**fields) -> dict:
    check = HealthCheck(**({"name": "x", "kind": "http", "target": "http://a.example"} | fields))
    with pytest.raises(ValidationError) as caught:
        check.full_clean()
    return caught.value.message_dict


@pytest.mark.parametrize(
    ("fields", "field", "words"),
    [
        ({"target": "ftp://files.example/x"}, "target", "scheme must be http or https"),
        ({"target": "127.0.0.1:8765"}, "target", "no scheme: write http://127.0.0.1:8765"),
        ({"target": "localhost:8765/health"}, "target", "no scheme: write http://localhost"),
        ({"target": "http://127.0.0.1:8765/a b"}, "target", "contains a space"),
        ({"target": "http://"}, "target", "no host"),
        ({"target": "http://a.example:70000/"}, "target", "port"),
        ({"kind": "tcp", "target": "db.internal"}, "target", "host:port"),
        ({"kind": "tcp", "target": "db.internal:0"}, "target", "port"),
        ({"kind": "tcp", "target": "db.internal:99999"}, "target", "port"),
        ({"kind": "tcp", "target": "[zz::1]:80"}, "target", "IPv6"),
        ({"kind": "redis", "target": "http://cache:6379"}, "target", "redis://"),
        ({"kind": "database", "target": "nosuch"}, "target", "No database alias"),
        ({"kind": "channel_layer", "target": "nosuch"}, "target", "No channel layer alias"),
        ({"kind": "carrier_pigeon"}, "kind", "the kinds are http, tcp"),
        ({"target": ""}, "target", "cannot be blank"),
        ({"interval": 0.5}, "interval", "at least 1 second"),
        ({"interval": 10, "timeout": 10}, "timeout", "shorter than the interval"),
        ({"timeout": 0}, "timeout", "above 0"),
        ({"failures_before_down": 0}, "failures_before_down", "At least 1"),
        ({"failures_before_down": 101}, "failures_before_down", "At most 100"),
        ({"expected_status_min": 99}, "expected_status_min", "between 100 and 599"),
        ({"expected_status_max": 600}, "expected_status_max", "between 100 and 599"),
        ({"expected_status_min": 300, "expected_status_max": 200}, "expected_status_max", "below"),
        ({"name": ""}, "name", "cannot be blank"),
        ({"interval": 1e12}, "interval", "at most 604800 seconds (7 days)"),
        ({"interval": float("inf")}, "interval", "finite"),
        ({"interval": float("nan")}, "interval", "finite"),
        ({"interval": 600, "timeout": 301}, "timeout", "at most 300 seconds"),
        ({"timeout": float("inf")}, "timeout", "finite"),
        ({"timeout": float("nan")}, "timeout", "finite"),
        ({"kind": "redis", "target": "redis://"}, "target", "no host"),
        ({"kind": "redis", "target": "rediss://:pw@:6379/0"}, "target", "no host"),
        ({"kind": "redis", "target": "unix:///run/redis.sock"}, "target", "unix:// socket"),
        ({"target": "http://169.254.169.254/latest/"}, "target", "169.254.169.254 is link-local"),
        ({"target": "http://2852039166/"}, "target", "169.254.169.254 is link-local"),
        ({"target": "http://0xa9fea9fe/"}, "target", "169.254.169.254 is link-local"),
        ({"target": "http://[::ffff:169.254.169.254]/"}, "target", "169.254.169.254"),
        ({"kind": "tcp", "target": "[fd00:ec2::254]:80"}, "target", "metadata"),
        ({"kind": "tcp", "target": "[fe80::1]:22"}, "target", "link-local"),
        ({"kind": "redis", "target": "redis://169.254.1.1:6379/0"}, "target", "link-local"),
        ({"kind": "redis", "target": "redis://a b:6379/0"}, "target", "contains a space"),
        ({"kind": "tcp", "target": "foo bar:80"}, "target", "'foo bar' contains a space"),
        ({"kind": "tcp", "target": "db!:80"}, "target", "contains '!'"),
        ({"kind": "tcp", "target": "a..b:80"}, "target", "empty part"),
        ({"kind": "tcp", "target": "-a:80"}, "target", "starts or ends with '-'"),
        ({"kind": "tcp", "target": "[::1:80"}, "target", "bracket"),
        ({"target": "http://a b/"}, "target", "'a b' contains a space"),
        ({"target": "http://a,b/"}, "target", "contains ','"),
        ({"target": "http://[::1/"}, "target", "malformed"),
        ({"target": " http://a.example/ "}, "target", "start or end with a space"),
        ({"target": "http://a.example/\nx"}, "target", "control character"),
    ],
)
def test_it_names_the_bad_field(fields, field, words):
    errors = errors_of(**fields)
    assert field in errors, errors
    assert words in " ".join(errors[field])


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"target": ""}, {"target": ["This field cannot be blank."]}),
        (
            {"failures_before_down": -1},
            {"failures_before_down": ["Ensure this value is greater than or equal to 0."]},
        ),
        ({"interval": "abc"}, {"interval": ["“abc” value must be a float."]}),
        ({"timeout": "abc"}, {"timeout": ["“abc” value must be a float."]}),
        (
            {"expected_status_min": "abc"},
            {"expected_status_min": ["“abc” value must be an integer."]},
        ),
        (
            {"kind": "nope", "target": "default"},
            {
                "kind": [
                    "'nope' is not a kind; the kinds are http, tcp, database, redis, "
                    "channel_layer, push, dns, postgres."
                ]
            },
        ),
        ({"kind": "", "target": "default"}, {"kind": ["This field cannot be blank."]}),
    ],
)
def test_each_field_gets_one_message_and_a_refused_value_is_not_checked_again(fields, expected):
    assert errors_of(**fields) == expected


def test_a_valid_timeout_is_not_compared_with_a_refused_interval():
    assert errors_of(interval=1e12, timeout=60) == {
        "interval": ["The interval must be at most 604800 seconds (7 days)."]
    }


def test_the_longest_interval_and_timeout_are_accepted():
    HealthCheck(name="slow", target="http://a.example", interval=604800, timeout=300).full_clean()


def test_it_rejects_a_duplicate_name():
    make_check(name="api")
    assert "name" in errors_of(name="api")


def test_it_accepts_every_kind_of_good_target():
    good = [
        ("http", "https://api.example.com/health?x=1"),
        ("tcp", "127.0.0.1:5432"),
        ("tcp", "[::1]:6379"),
        ("tcp", "db-1.internal:5432"),
        ("tcp", "my_service:80"),
        ("http", "http://[::1]:8080/x"),
        ("http", "https://bücher.example/"),
        ("http", "http://user:p%40ss@host.example./x?token=a%20b"),
        ("redis", "redis://:secret@127.0.0.1:6379/0"),
        ("redis", "rediss://cache.internal"),
        ("database", "default"),
        ("channel_layer", "default"),
    ]
    for i, (kind, target) in enumerate(good):
        HealthCheck(name=f"c{i}", kind=kind, target=target).full_clean()


def test_it_normalises_tags():
    check = HealthCheck(name="t", target="http://a.example", tags="DB, critical  db api")
    check.full_clean()
    assert check.tags == "api,critical,db"
    assert check.tag_list == ["api", "critical", "db"]


def test_with_tag_matches_whole_tags_only():
    make_check(name="a", tags="db,prod")
    make_check(name="b", tags="dbx")
    make_check(name="c", tags="prod")
    names = lambda tag: sorted(HealthCheck.objects.with_tag(tag).values_list("name", flat=True))  # noqa: E731
    assert names("db") == ["a"]
    assert names("prod") == ["a", "c"]
    assert names("PROD") == ["a", "c"]


def test_overall_status_is_the_worst():
    assert overall_status([UP, DEGRADED, UP]) == DEGRADED
    assert overall_status([UP, DOWN, DEGRADED]) == DOWN
    assert overall_status([PAUSED, UP]) == UP
    assert overall_status([]) == UNKNOWN


def test_first_start_has_the_two_self_checks():
    names = set(HealthCheck.objects.values_list("name", flat=True))
    assert {"self: database", "self: channel layer"} <= names


def test_the_migrations_match_the_models():
    # A model edit without its migration (a help text included) would surface on a user's
    # next makemigrations as a change of ours.
    from io import StringIO

    from django.core.management import call_command

    out = StringIO()
    call_command("makemigrations", "--check", "--dry-run", stdout=out)
    assert "No changes detected" in out.getvalue()
