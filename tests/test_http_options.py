"""The HTTP options: method, headers, body, redirects, accepted statuses, body regex, JSON
condition, ignore TLS errors; each against the loopback target, each bad value with its one
message, and header values masked in the admin."""

from __future__ import annotations

import json

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse

from connections_app.connection_manager import ConnectionManager
from connections_app.models import HealthCheck
from connections_app.probes import run_probe
from tests.http_targets import HttpTarget


def make(target: str, **fields) -> HealthCheck:
    return HealthCheck(name="api", target=target, **({"timeout": 2} | fields))


async def probe(check: HealthCheck):
    async with ConnectionManager() as manager:
        return await run_probe(check, manager)


async def sent(http_target, path: str, expected: str, **fields) -> bool:
    """Whether /echo saw ``expected`` at ``path`` of what it was sent (its JSON answer)."""
    check = make(http_target.url("/echo"), json_path=path, json_expected=expected, **fields)
    return (await probe(check)).ok


async def test_headers_and_a_post_body_are_sent(http_target):
    fields = {
        "http_method": "POST",
        "request_headers": '{"Authorization": "Bearer s3cret-token", "X-Env": "prod"}',
        "request_body": "ping=1",
    }
    assert await sent(http_target, "$.method", "POST", **fields)
    assert await sent(http_target, "$.body", "ping=1", **fields)
    assert await sent(http_target, "$.headers.Authorization", "Bearer s3cret-token", **fields)
    assert await sent(http_target, "$.headers['X-Env']", "prod", **fields)
    assert not await sent(http_target, "$.headers['X-Env']", "staging", **fields)


async def test_header_lines_are_sent_too(http_target):
    fields = {"request_headers": "X-One: 1\nX-Two: a: b"}
    assert await sent(http_target, "$.headers['X-Two']", "a: b", **fields)
    assert await sent(http_target, "$.method", "GET", **fields)


async def test_head_is_sent_as_head(http_target):
    result = await probe(make(http_target.url("/ok"), http_method="HEAD"))
    assert result.ok and http_target.hits["/ok"] == 1


async def test_redirects_are_followed_by_default(http_target):
    result = await probe(make(http_target.url("/redirect?to=/status/503")))
    assert (result.ok, result.http_status) == (False, 503)


async def test_redirects_off_judges_the_redirect_itself(http_target):
    check = make(http_target.url("/redirect?to=/status/503"), follow_redirects=False)
    result = await probe(check)
    assert (result.ok, result.http_status) == (True, 302)
    assert http_target.hits["/status/503"] == 0


async def test_more_redirects_than_allowed_fail(http_target):
    chain = http_target.url("/redirect?to=/redirect%3Fto%3D/ok")
    result = await probe(make(chain, max_redirects=1))
    assert (result.ok, result.error_category) == (False, "redirects")
    assert result.error_message == "gave up after 1 redirect (a redirect loop?)"
    assert (await probe(make(chain, max_redirects=2))).ok


async def test_an_accepted_list_replaces_the_range(http_target):
    assert (await probe(make(http_target.url("/status/503"), accepted_statuses="200, 503"))).ok
    result = await probe(make(http_target.url("/ok"), accepted_statuses="204"))
    assert (result.ok, result.error_message) == (False, "HTTP 200, expected 204")


async def test_a_body_regex_must_match(http_target):
    assert (await probe(make(http_target.url("/chunked"), body_regex=r"healthy\s+w.rld"))).ok
    result = await probe(make(http_target.url("/body"), body_regex=r"^on fire"))
    assert (result.ok, result.error_message) == (False, "body does not match '^on fire'")


@pytest.mark.parametrize(
    ("path", "expected", "ok"),
    [
        ("$.db.ok", "true", True),
        ("$.db.ok", "1", False),
        ("$.db.lag", "3", True),
        ("$.status", "ok", True),
        ("$.status", '"ok"', True),
        ("$.items[*]", "2", True),
        ("$.status", "", True),
        ("$.missing", "", False),
        ("$.status", "down", False),
    ],
)
async def test_a_json_condition(http_target, path, expected, ok):
    result = await probe(make(http_target.url("/json"), json_path=path, json_expected=expected))
    assert result.ok is ok, result


async def test_a_json_condition_on_a_body_that_is_not_json(http_target):
    result = await probe(make(http_target.url("/body"), json_path="$.x"))
    assert (result.ok, result.error_message) == (
        False,
        "the body is not JSON (or longer than 64 KB)",
    )


async def test_a_json_mismatch_quotes_only_a_short_excerpt(http_target):
    result = await probe(make(http_target.url("/json"), json_path="$.db", json_expected="1"))
    assert not result.ok
    assert result.error_message.startswith('JSON path $.db is [{"ok": true, "lag": 3}]')


async def test_ignore_tls_errors_accepts_a_certificate_nobody_trusts():
    with HttpTarget(tls=True) as target:
        refused = await probe(make(target.url("/ok")))
        accepted = await probe(make(target.url("/ok"), ignore_tls_errors=True))
    assert refused.error_category == "tls"
    assert accepted.ok and accepted.tls_days_left is None


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("fields", "field", "words"),
    [
        ({"http_method": "PUT"}, "http_method", "not a valid choice"),
        ({"request_headers": "no colon here"}, "request_headers", "Line 1 is not 'Name: value'"),
        ({"request_headers": '{"X": 1}'}, "request_headers", "must be a string"),
        ({"request_headers": "Bad Name: x"}, "request_headers", "is not a header name"),
        ({"request_headers": "{nope"}, "request_headers", "Not a JSON object"),
        ({"request_body": "x"}, "request_body", "POST only"),
        ({"http_method": "POST", "request_body": "x" * 10001}, "request_body", "At most"),
        ({"max_redirects": 31}, "max_redirects", "At most 30"),
        ({"accepted_statuses": "200, 6xx"}, "accepted_statuses", "'6xx' is not an HTTP status"),
        ({"body_regex": "(unclosed"}, "body_regex", "Not a regular expression"),
        ({"body_regex": "a" * 201}, "body_regex", "at most 200 characters"),
        ({"json_path": "$[["}, "json_path", "Not a JSONPath expression"),
        ({"json_expected": "1"}, "json_expected", "needs a JSON path"),
        ({"http_method": "HEAD", "body_regex": "x"}, "http_method", "no body"),
        ({"tls_warn_days": 400}, "tls_warn_days", "At most 398 days"),
    ],
)
def test_each_bad_http_option_gets_one_message(fields, field, words):
    check = make("http://127.0.0.1:1/", **fields)
    with pytest.raises(ValidationError) as caught:
        check.full_clean()
    errors = caught.value.message_dict
    assert list(errors) == [field], errors
    assert len(errors[field]) == 1 and words in errors[field][0]


@pytest.mark.django_db
def test_header_values_are_masked_in_the_admin_and_kept_when_unchanged(admin_client):
    check = HealthCheck.objects.create(
        name="api",
        target="http://127.0.0.1:1/",
        request_headers="Authorization: Bearer s3cret-token\nX-Env: prod",
    )
    url = reverse("admin:connections_app_healthcheck_change", args=[check.pk])
    page = admin_client.get(url)
    assert "s3cret-token" not in page.content.decode() and "prod" not in page.content.decode()
    form = page.context["adminform"].form
    data = {k: v for k, v in form.initial.items() if v is not None and k in form.fields}
    data["request_headers"] = "Authorization: ***\nX-Env: staging"
    response = admin_client.post(url, data)
    assert response.status_code == 302, response.context["adminform"].form.errors
    check.refresh_from_db()
    assert check.request_headers == "Authorization: Bearer s3cret-token\nX-Env: staging"
    changelist = admin_client.get(reverse("admin:connections_app_healthcheck_changelist"))
    assert "s3cret-token" not in changelist.content.decode()
    # A masked value is not carried to another address.
    data |= {"target": "http://127.0.0.2:1/", "request_headers": "Authorization: ***"}
    refused = admin_client.post(url, data)
    assert "same address only" in json.dumps(refused.context["adminform"].form.errors)
