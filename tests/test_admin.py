"""The admin as staff use it, through Django's test client."""

import time

import pytest
from django.urls import reverse

from connections_app.models import CheckResult, ErrorStat, HealthCheck
from connections_app.run_now import running
from tests.test_models import add_results

pytestmark = pytest.mark.django_db

CHANGELIST = reverse("admin:connections_app_healthcheck_changelist")
ADD = reverse("admin:connections_app_healthcheck_add")


@pytest.fixture
def staff(admin_client):
    return admin_client


@pytest.fixture
def checks():
    HealthCheck.objects.all().delete()
    up = HealthCheck.objects.create(
        name="api", target="http://127.0.0.1:9/health", tags="prod,api", failures_before_down=1
    )
    down = HealthCheck.objects.create(
        name="cache",
        kind="redis",
        target="redis://:hunter2@127.0.0.1:6379/0",
        tags="prod",
        failures_before_down=1,
    )
    add_results(up, [True, True])
    add_results(down, [True, False])
    CheckResult.objects.filter(health_check=down, ok=False).update(
        error_category="refused", error_message="ConnectionRefusedError: refused"
    )
    return up, down


def test_changelist_shows_status_latency_and_uptime(staff, checks):
    page = staff.get(CHANGELIST).content.decode()
    assert "UP" in page and "DOWN" in page
    assert "5 ms" in page
    assert "50.00 %" in page  # cache: one of two results ok
    assert "refused" in page


def test_changelist_never_shows_a_password(staff, checks):
    page = staff.get(CHANGELIST).content.decode()
    assert "hunter2" not in page
    change = reverse("admin:connections_app_healthcheck_change", args=[checks[1].pk])
    assert "hunter2" not in staff.get(change).content.decode()


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("status=down", ["cache"]),
        ("status=up", ["api"]),
        ("status=paused", []),
        ("status=bogus", ["api", "cache"]),  # a hand-edited URL: no filter, not a 500
        ("kind__exact=redis", ["cache"]),
        ("tag=api", ["api"]),
        ("tag=prod", ["api", "cache"]),
        ("q=cach", ["cache"]),
    ],
)
def test_filters_and_search(staff, checks, query, expected):
    response = staff.get(f"{CHANGELIST}?{query}")
    assert response.status_code == 200
    shown = sorted(c.name for c in response.context["cl"].result_list)
    assert shown == expected


def test_pause_and_resume(staff, checks):
    ids = [str(c.pk) for c in checks]
    staff.post(CHANGELIST, {"action": "pause", "_selected_action": ids})
    assert not HealthCheck.objects.filter(enabled=True).exists()
    assert HealthCheck.objects.get(name="api").status == "paused"
    staff.post(CHANGELIST, {"action": "resume", "_selected_action": ids})
    assert HealthCheck.objects.filter(enabled=True).count() == 2


def _action_messages(staff, action: str, checks) -> list[str]:
    data = {"action": action, "_selected_action": [str(c.pk) for c in checks]}
    response = staff.post(CHANGELIST, data, follow=True)
    return [str(m) for m in response.context["messages"]]


def test_action_messages_count_one_check_or_several(staff, checks):
    assert _action_messages(staff, "pause", checks[:1]) == ["Paused 1 check."]
    assert _action_messages(staff, "pause", checks) == ["Paused 2 checks."]
    assert _action_messages(staff, "resume", checks[:1]) == ["Resumed 1 check."]
    assert _action_messages(staff, "resume", checks) == ["Resumed 2 checks."]


@pytest.mark.django_db(transaction=True)  # the run's own thread reads the checks: committed
def test_run_now_answers_at_once_and_stores_the_result_in_the_background(staff, http_target):
    HealthCheck.objects.all().delete()
    stalled = HealthCheck.objects.create(
        name="stalled", target=http_target.url("/stall"), timeout=3, interval=60
    )
    started = time.monotonic()
    response = staff.post(
        CHANGELIST, {"action": "run_now", "_selected_action": [str(stalled.pk)]}, follow=True
    )
    answered = time.monotonic() - started
    messages = [str(m) for m in response.context["messages"]]
    assert messages == [
        "Running 1 check in the background: each result appears here and on the dashboard "
        "when it finishes (at most its timeout)."
    ]
    assert answered < stalled.timeout  # the stalled probe was not waited for
    for thread in running():
        thread.join(timeout=stalled.timeout + 10)
    (result,) = stalled.results.all()
    assert (result.ok, result.error_message) == (False, "no answer within 3 s")


def test_change_form_pages_through_recent_results(staff, checks):
    api = checks[0]
    add_results(api, [True] * 60)
    url = reverse("admin:connections_app_healthcheck_change", args=[api.pk])
    first = staff.get(url).content.decode()
    assert "Recent results" in first and "page 1 of 3" in first
    assert "page 3 of 3" in staff.get(url + "?results_page=3").content.decode()


def test_an_unchanged_masked_target_keeps_the_stored_password(staff, checks):
    cache = checks[1]
    url = reverse("admin:connections_app_healthcheck_change", args=[cache.pk])
    form = staff.get(url).context["adminform"].form
    data = {k: v for k, v in form.initial.items() if v is not None and k in form.fields}
    data |= {"tags": "prod", "interval": 60}
    response = staff.post(url, data)
    assert response.status_code == 302, response.context["adminform"].form.errors
    cache.refresh_from_db()
    assert cache.target == "redis://:hunter2@127.0.0.1:6379/0"
    assert cache.interval == 60


@pytest.mark.parametrize(
    ("field", "value", "words"),
    [
        ("target", "gopher://x", "scheme"),
        ("interval", "0.2", "at least 1 second"),
        ("timeout", "99", "shorter than the interval"),
        ("interval", "soon", "Enter a number"),
        ("expected_status_min", "42", "between 100 and 599"),
        ("failures_before_down", "0", "At least 1"),
        ("kind", "smoke", "valid choice"),
        ("interval", "1e12", "at most 604800 seconds (7 days)"),
        ("interval", "inf", "Enter a number"),
        ("timeout", "301", "at most 300 seconds"),
        ("target", "http://a b/", "'a b' contains a space"),
        ("target", "http://a_b!/", "contains '!'"),
    ],
)
def test_bad_input_names_the_field(staff, field, value, words):
    response = staff.post(ADD, NEW_CHECK | {field: value})
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert field in errors
    assert words in " ".join(errors[field])
    assert not HealthCheck.objects.filter(name="new").exists()


NEW_CHECK = {
    "name": "new",
    "kind": "http",
    "target": "http://127.0.0.1:8080/",
    "interval": "30",
    "timeout": "5",
    "failures_before_down": "3",
    "successes_before_up": "1",
    "expected_status_min": "200",
    "expected_status_max": "399",
    "http_method": "GET",
    "follow_redirects": "on",
    "max_redirects": "10",
    "tls_warn_days": "14",
    "grace": "60",
    "dns_record_type": "A",
    "enabled": "on",
}


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"target": ""}, {"target": ["This field is required."]}),
        (
            {"target": "http://user:***@127.0.0.1:9/"},
            {
                "target": [
                    "*** stands for a stored password, and this target has none to keep: "
                    "type the password in full."
                ]
            },
        ),
        (
            {"kind": "nope", "target": "default"},
            {"kind": ["Select a valid choice. nope is not one of the available choices."]},
        ),
        (
            {"failures_before_down": "-1"},
            {"failures_before_down": ["Ensure this value is greater than or equal to 0."]},
        ),
    ],
)
def test_each_bad_field_gets_one_message(staff, changes, expected):
    response = staff.post(ADD, NEW_CHECK | changes)
    assert response.status_code == 200
    assert response.context["adminform"].form.errors == expected


def test_an_edit_with_an_invalid_kind_reports_only_the_kind(staff, checks):
    response = _edit(staff, checks[0], kind="nope", target="default")
    assert response.status_code == 200
    assert list(response.context["adminform"].form.errors) == ["kind"]


def test_results_and_error_stats_are_read_only(staff, checks):
    assert staff.get(reverse("admin:connections_app_checkresult_add")).status_code == 403
    assert staff.get(reverse("admin:connections_app_errorstat_add")).status_code == 403
    page = staff.get(reverse("admin:connections_app_checkresult_changelist"))
    assert page.status_code == 200
    assert staff.get(reverse("admin:connections_app_errorstat_changelist")).status_code == 200
    assert ErrorStat.objects.count() == 0


def _edit(staff, check, **changes):
    url = reverse("admin:connections_app_healthcheck_change", args=[check.pk])
    form = staff.get(url).context["adminform"].form
    data = {k: v for k, v in form.initial.items() if v is not None and k in form.fields}
    return staff.post(url, data | {"tags": "prod"} | changes)


def test_editing_the_database_number_keeps_the_masked_password(staff, checks):
    cache = checks[1]
    response = _edit(staff, cache, target="redis://:***@127.0.0.1:6379/1")
    assert response.status_code == 302
    cache.refresh_from_db()
    assert cache.target == "redis://:hunter2@127.0.0.1:6379/1"


@pytest.mark.parametrize(
    "target",
    [
        "redis://:***@10.0.0.9:6379/0",  # another host
        "redis://:***@127.0.0.1:6380/0",  # another port
        "rediss://:***@127.0.0.1:6379/0",  # another scheme
    ],
)
def test_a_masked_password_is_never_sent_to_another_address(staff, checks, target):
    # Staff never see the stored password: it must not go, unseen, to a server of their choice.
    cache = checks[1]
    response = _edit(staff, cache, target=target)
    assert response.status_code == 200
    assert "type the secret in full for the new address" in str(
        response.context["adminform"].form.errors
    )
    cache.refresh_from_db()
    assert cache.target == "redis://:hunter2@127.0.0.1:6379/0"


def test_a_mask_with_nothing_to_stand_for_is_refused(staff, checks):
    api = checks[0]
    response = _edit(staff, api, target="http://user:***@127.0.0.1:9/health")
    assert response.status_code == 200
    assert "type the password in full" in str(response.context["adminform"].form.errors)
    api.refresh_from_db()
    assert api.target == "http://127.0.0.1:9/health"


def test_search_does_not_look_inside_targets(staff, checks):
    response = staff.get(f"{CHANGELIST}?q=hunter2")
    assert list(response.context["cl"].result_list) == []


@pytest.fixture
def secret_query():
    return HealthCheck.objects.create(
        name="query", target="http://bob:pw@127.0.0.1:18433/x?token=abc&a=1&token=def"
    )


def test_the_form_masks_the_password_and_secret_parameters(staff, secret_query):
    url = reverse("admin:connections_app_healthcheck_change", args=[secret_query.pk])
    form = staff.get(url).context["adminform"].form
    assert form.initial["target"] == "http://bob:***@127.0.0.1:18433/x?token=***&a=1&token=***"


def test_editing_the_path_keeps_masked_query_secrets(staff, secret_query):
    target = "http://bob:***@127.0.0.1:18433/y?token=***&a=2&token=***"
    response = _edit(staff, secret_query, target=target)
    assert response.status_code == 302, response.context["adminform"].form.errors
    secret_query.refresh_from_db()
    assert secret_query.target == "http://bob:pw@127.0.0.1:18433/y?token=abc&a=2&token=def"


def test_a_masked_query_secret_is_never_sent_to_another_host(staff, secret_query):
    stored = secret_query.target
    response = _edit(staff, secret_query, target="http://10.0.0.9:18433/x?token=***")
    assert response.status_code == 200
    assert "type the secret in full for the new address" in str(
        response.context["adminform"].form.errors
    )
    secret_query.refresh_from_db()
    assert secret_query.target == stored


def test_a_masked_parameter_with_nothing_stored_is_refused(staff, secret_query):
    target = "http://bob:***@127.0.0.1:18433/x?token=***&a=1&token=***&key=***"
    response = _edit(staff, secret_query, target=target)
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert errors == {
        "target": [
            "*** in key= stands for a stored value, and the stored target has no key to keep: "
            "type it in full."
        ]
    }
    secret_query.refresh_from_db()
    assert secret_query.target.endswith("/x?token=abc&a=1&token=def")


def test_a_mask_outside_the_password_and_query_is_refused(staff, secret_query):
    response = _edit(staff, secret_query, target="http://bob:***@127.0.0.1:18433/***")
    assert response.status_code == 200
    assert "type the value in full" in str(response.context["adminform"].form.errors)


def test_a_refused_interval_is_not_replaced_by_the_stored_one_in_other_checks(staff, checks):
    # The form refuses "abc"; the timeout must not then be compared with the stored 30 s.
    response = _edit(staff, checks[0], interval="abc", timeout="40")
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert set(errors) == {"interval"}, errors


@pytest.mark.parametrize(
    ("target", "secret"),
    [
        ("redis://:pass word@127.0.0.1:6379/0", "pass word"),  # a space ends a pattern's match
        ("http://127.0.0.1:9/x?api%5Fkey=s3cr3t-value", "s3cr3t-value"),  # an encoded name
    ],
)
def test_secrets_the_patterns_miss_are_masked_and_kept(staff, target, secret):
    kind = "redis" if target.startswith("redis") else "http"
    check = HealthCheck.objects.create(name="odd", kind=kind, target=target)
    assert secret not in staff.get(CHANGELIST).content.decode()
    change = reverse("admin:connections_app_healthcheck_change", args=[check.pk])
    assert secret not in staff.get(change).content.decode()
    assert _edit(staff, check).status_code == 302  # the masked target, unchanged
    check.refresh_from_db()
    assert check.target == target


def test_the_forms_words_dates_and_sections(staff, checks):
    api = checks[0]
    add_page = staff.get(ADD).content.decode()
    assert "Record" not in add_page  # nothing recorded yet
    assert "Connection Health administration" in add_page and "Dashboard" in add_page
    assert 'class="module aligned http-only"' in add_page  # hidden for other kinds
    assert "load balancer may take this app out" in add_page  # what critical does
    page = staff.get(reverse("admin:connections_app_healthcheck_change", args=[api.pk]))
    text = page.content.decode()
    assert "page 1 of" not in text and "2 results" in text
    assert api.created_at.astimezone().strftime("%Y-%m-%d") in text  # one date format
    assert " a.m." not in text and " p.m." not in text
    listing = staff.get(CHANGELIST).content.decode()
    assert " s ago" in listing and "0 minutes" not in listing


def test_the_list_sorts_by_uptime_and_status(staff, checks):
    column = 6  # uptime, counting the action checkbox as 0 (status is 2)
    by_uptime = staff.get(f"{CHANGELIST}?o={column}").context["cl"].result_list
    assert [c.name for c in by_uptime] == ["cache", "api"]  # 50 % before 100 %
    by_uptime = staff.get(f"{CHANGELIST}?o=-{column}").context["cl"].result_list
    assert [c.name for c in by_uptime] == ["api", "cache"]
    by_status = staff.get(f"{CHANGELIST}?o=2").context["cl"].result_list
    assert [c.name for c in by_status] == ["cache", "api"]  # DOWN first


@pytest.mark.parametrize(("column", "first"), [(7, "cache"), (8, "api")])
def test_the_list_sorts_by_30_day_uptime_and_p95(staff, checks, column, first):
    # 7: uptime over 30 d (cache 50 %, api 100 %); 8: p95 over 24 h (both 5 ms: by name).
    names = [c.name for c in staff.get(f"{CHANGELIST}?o={column}.1").context["cl"].result_list]
    assert names[0] == first


def test_the_change_page_shows_status_uptime_and_the_chart(staff, checks):
    _up, down = checks
    page = staff.get(reverse("admin:connections_app_healthcheck_change", args=[down.pk]))
    history = page.context["history"]
    assert history["uptime"]["24h"] == 50.0
    html = page.content.decode()
    assert 'id="check-history"' in html and "uPlot.iife.min.js" in html
    assert f"/dashboard/checks/{down.pk}/" in html
    assert "hunter2" not in html


RESULTS = reverse("admin:connections_app_checkresult_changelist")


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("", 4),
        ("?checked=1h", 4),
        ("?checked=1h&category=refused", 1),
        ("?ok__exact=0", 1),
        ("?category=timeout", 0),
        ("?checked=1y", 4),  # hand-edited: filters nothing
    ],
)
def test_the_results_list_never_scans_the_whole_table(staff, checks, query, expected):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as queries:
        page = staff.get(RESULTS + query)
    assert page.status_code == 200
    assert len(page.context["cl"].result_list) == expected
    sql = " ".join(q["sql"] for q in queries.captured_queries).upper()
    assert "DISTINCT" not in sql  # no date hierarchy, no filter choices read from the rows
    assert "LIMIT 10000" in sql  # the count stops at admin_lists.COUNT_CAP


def test_the_results_count_stops_at_the_cap(staff, checks, monkeypatch):
    from connections_app import admin_lists

    monkeypatch.setattr(admin_lists, "COUNT_CAP", 2)
    page = staff.get(RESULTS)
    assert page.context["cl"].result_count == 2


def test_each_rows_action_checkbox_is_the_one_django_renders(staff, checks):
    from django.contrib import admin
    from django.test.html import parse_html

    # Written without the widget templates (a third of a list's time), the markup that
    # actions.js selects and screen readers read must not change.
    model_admin = admin.site._registry[HealthCheck]
    for check in HealthCheck.objects.all():
        ours = model_admin.action_checkbox(check)
        djangos = admin.ModelAdmin.action_checkbox(model_admin, check)
        assert parse_html(ours) == parse_html(djangos)
    page = staff.get(CHANGELIST).content.decode()
    assert page.count('class="action-select"') == HealthCheck.objects.count()
