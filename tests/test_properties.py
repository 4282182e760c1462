"""Property tests (hypothesis): whatever the input, the redaction, the error classifier, the
environment parsing, check validation and the WebSocket frame parser never raise anything but
their documented error, and no generated secret survives the redaction.

Kept quick: a modest number of examples each, no deadline (a shared 2-core machine).
"""

from __future__ import annotations

import json
import string
from pathlib import Path
from urllib.parse import quote

import pytest
from django.core.exceptions import ImproperlyConfigured, ValidationError
from hypothesis import HealthCheck as Health
from hypothesis import given, settings
from hypothesis import strategies as st

from connections_app.errors import ErrorCategory, classify
from connections_app.redaction import bare_urls, redact, redact_mapping, redact_url
from project import config
from realtime.limits import Limits
from realtime.protocol import BadFrame, ClientMessage, parse_client_frame

QUICK = settings(max_examples=60, deadline=None)
DB = settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[Health.function_scoped_fixture, Health.too_slow],
)

# A secret: letters and digits after a fixed head, so it cannot appear by chance in the text
# around it (drawn from other characters) nor be mistaken for an ordinary word.
secrets = st.text(string.ascii_letters + string.digits, min_size=10, max_size=24).map(
    lambda s: f"Zq9{s}"
)
# Text around a secret: spaces, punctuation and letters beyond ASCII, never the secret's own.
around = st.text(alphabet=" \t\n.,;()[]{}<>|!ßéü漢ー", max_size=20)

SHAPES = [
    "password={}",
    "DB_PASSWORD='{}'",
    '{{"api_key": "{}"}}',
    "refresh_token: {}",
    "--password {}",
    "Authorization: Bearer {}",
    "Bearer {}",
    "https://user:{}@db.example.com:5432/app",
    "https://{}@o1.ingest.sentry.io/42",
    "GET /v1?auth_key={}&x=1",
    "GET /v1?subscription-key={}",
    "GET /v1?pw={}",
    "GET /v1?app_key={}",
    "GET /v1?consumer_key={}",
    "GET /v1?userkey={}",
    "https://api.example.com/x?token={}#frag",
    "https://api.telegram.org/bot12345:{}/sendMessage",
    "POST /api/webhooks/123/{}",
    "POST https://hooks.slack.com/services/T1/B2/{}",
    "ghp_{0}{0}{0}",
    "whsec_{0}{0}",
    "ya29.{0}{0}",
    "pass\nword={}",
    "pass\u200bword={}",
    "\uff50\uff41\uff53\uff53\uff57\uff4f\uff52\uff44={}",
]


@QUICK
@given(shape=st.sampled_from(SHAPES), secret=secrets, before=around, after=around)
def test_no_generated_secret_survives(shape, secret, before, after):
    text = f"{before} {shape.format(secret)} {after}"
    for shown in (redact(text), bare_urls(text)):
        assert secret not in shown
    encoded = f"GET /login?next={quote(shape.format(secret), safe='')}"
    assert secret not in bare_urls(encoded)


@QUICK
@given(text=st.text(max_size=300))
def test_redaction_never_raises_and_is_stable(text):
    once = redact(text)
    assert redact(once) == once
    bare_urls(text)
    redact_url(text)
    redact_mapping({text: text, "password": text})


@QUICK
@given(url=st.builds("{}://{}:{}@{}/{}?{}".format, *(st.text(max_size=12) for _ in range(6))))
def test_url_redaction_never_raises_on_url_shaped_junk(url):
    redact_url(url)
    bare_urls(f"failed: {url} then")


def _exceptions() -> st.SearchStrategy[BaseException]:
    text = st.text(max_size=40)
    plain = st.one_of(
        st.builds(OSError, st.integers(-5, 200), text),
        st.builds(ConnectionError, text),
        st.builds(TimeoutError, text),
        st.builds(ValueError, text),
        st.builds(RuntimeError, text),
        st.builds(KeyError, text),
        st.just(Exception()),
    )

    def chained(pair: tuple[BaseException, BaseException]) -> BaseException:
        outer, inner = pair
        outer.__cause__ = inner
        inner.__context__ = outer  # a cycle: the classifier must not loop
        return outer

    return st.one_of(plain, st.tuples(plain, plain).map(chained))


@QUICK
@given(exc=_exceptions())
def test_the_classifier_never_raises(exc):
    assert isinstance(classify(exc), ErrorCategory)


class _BrokenStr(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no text")


def test_the_classifier_survives_an_exception_whose_str_raises():
    assert isinstance(classify(_BrokenStr()), ErrorCategory)


ENV_PARSERS = [
    ("DATABASE_URL", lambda v: config.database_config(v, Path("/tmp"))),
    ("REDIS_URL", config.channel_layers),
    ("SITE_URL", config.site_url),
    ("EMAIL_URL", config.email_config),
    ("SECURE_PROXY_SSL_HEADER", config.proxy_ssl_header),
    ("TIME_ZONE", config.time_zone),
]
env_values = st.one_of(
    st.text(max_size=60),
    st.builds(
        "{}://{}@{}:{}/{}".format,
        st.sampled_from(["postgres", "redis", "sqlite", "smtp", "http", "https", "x"]),
        st.text(max_size=10),
        st.text(max_size=10),
        st.text(string.digits + "x-", max_size=7),
        st.text(max_size=10),
    ),
)


@QUICK
@given(parser=st.sampled_from(ENV_PARSERS), value=env_values)
def test_environment_parsing_raises_only_a_line_naming_the_variable(parser, value):
    variable, parse = parser
    try:
        parse(value)
    except ImproperlyConfigured as exc:
        message = str(exc)
        assert message.startswith(f"{variable}:"), message
        assert "\n" not in message  # one line


@QUICK
@given(value=st.floats(allow_nan=True, allow_infinity=True))
def test_numbers_from_the_environment_are_finite_or_refused(value):
    try:
        config.finite_at_least("SQLITE_BUSY_TIMEOUT", value, 0)
    except ImproperlyConfigured as exc:
        assert str(exc).startswith("SQLITE_BUSY_TIMEOUT:")
    else:
        assert value >= 0 and value == value


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
FIELDS = ["name", "kind", "target", "interval", "timeout", "tags", "enabled", "expected_body"]
items = st.dictionaries(st.sampled_from(FIELDS), json_values, max_size=6)


@pytest.mark.django_db
@DB
@given(checks=st.lists(items, max_size=3))
def test_importing_any_json_is_all_or_a_named_error(checks):
    from connections_app.management.commands.importchecks import import_checks

    try:
        import_checks(checks)
    except ValueError as exc:
        assert str(exc).startswith("check #"), str(exc)
        assert "\n" not in str(exc)


@pytest.mark.django_db
@DB
@given(fields=st.fixed_dictionaries({}, optional={f: st.text(max_size=30) for f in FIELDS[:3]}))
def test_model_validation_raises_only_validation_errors(fields):
    from connections_app.models import HealthCheck

    try:
        HealthCheck(**fields).full_clean()
    except ValidationError as exc:
        assert exc.message_dict


LIMITS = Limits(max_frame_bytes=2048)
frames = st.one_of(
    st.text(max_size=200),
    json_values.map(json.dumps),
    st.fixed_dictionaries(
        {"type": st.sampled_from(["ping", "ack", "filter", "resync", "x"])},
        optional={"seq": json_values, "tags": json_values},
    ).map(json.dumps),
    st.just("[" * 5000),
)


@QUICK
@given(text=st.one_of(st.none(), frames), data=st.one_of(st.none(), st.binary(max_size=20)))
def test_the_frame_parser_answers_a_message_or_a_clear_error(text, data):
    try:
        message = parse_client_frame(text, data, LIMITS)
    except BadFrame as exc:
        assert exc.code and exc.message
    else:
        assert isinstance(message, ClientMessage)
