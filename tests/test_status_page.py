"""/status/: the public checks only, by public name, and nothing a visitor should not see;
cached, so a second visit within the window runs no query."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from connections_app import rollups
from connections_app.models import DOWN, UP, CheckResult, HealthCheck, StateChange
from connections_app.status_page import UNNAMED, status_page
from tests.test_models import add_results

SECRET = "s3cr3t-Pa55word"


@pytest.fixture(autouse=True)
def empty_cache():
    """The page is cached per process: each test starts without another's copy."""
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def only_our_checks(db):
    HealthCheck.objects.all().delete()


@pytest.fixture
def anyone() -> Client:
    return Client()


def public_check(name: str, public_name: str, results: list[bool], **fields) -> HealthCheck:
    check = HealthCheck.objects.create(
        name=name,
        kind=fields.pop("kind", "postgres"),
        target=fields.pop("target", f"postgres://app:{SECRET}@db.internal.example/orders"),
        tags=fields.pop("tags", "internal-team-x"),
        public=True,
        public_name=public_name,
        failures_before_down=1,
        **fields,
    )
    add_results(check, results)
    return check


def test_it_shows_each_public_check_by_its_public_name_and_state(anyone, only_our_checks):
    public_check("orders-db-primary", "Orders", [True])
    public_check("payments-gw", "Payments", [False])
    response = anyone.get("/status/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "Orders" in html and "Payments" in html
    assert "Operational" in html and "Outage" in html
    assert "Some systems are down" in html  # the overall state of the public checks


def test_it_shows_nothing_else(anyone, only_our_checks):
    """No target (nor its host, nor its password), tag, error message or internal name."""
    check = public_check("orders-db-primary", "Orders", [True, False])
    private = HealthCheck.objects.create(
        name="hidden-billing-check", kind="tcp", target="10.1.2.3:5432", tags="secret-tag"
    )
    add_results(private, [False])
    html = anyone.get("/status/").content.decode()
    message = CheckResult.objects.filter(health_check=check, ok=False).get().error_message
    assert message  # the result has an error message: it must not be shown
    for hidden in (
        "orders-db-primary",
        SECRET,
        "db.internal.example",
        "internal-team-x",
        message,
        "ConnectionRefusedError",
        "refused",
        "hidden-billing-check",
        "10.1.2.3",
        "secret-tag",
    ):
        assert hidden not in html, hidden


def test_a_private_check_does_not_count_towards_the_overall_state(anyone, only_our_checks):
    public_check("api", "API", [True])
    down = HealthCheck.objects.create(
        name="internal", kind="tcp", target="127.0.0.1:1", failures_before_down=1
    )
    add_results(down, [False])
    assert "All systems operational" in anyone.get("/status/").content.decode()


def test_with_no_public_check_it_says_so(anyone, only_our_checks):
    HealthCheck.objects.create(name="internal", kind="tcp", target="127.0.0.1:1")
    html = anyone.get("/status/").content.decode()
    assert "No services are listed" in html and "internal" not in html


def test_each_check_has_a_90_day_bar_coloured_by_its_days(only_our_checks):
    check = public_check("api", "API", [])
    now = timezone.now()
    CheckResult.objects.bulk_create(
        [
            CheckResult(health_check=check, checked_at=now - timedelta(days=2), ok=False),
            CheckResult(health_check=check, checked_at=now - timedelta(days=1), ok=True),
        ]
    )
    rollups.rebuild()  # results made in bulk: their rollups as the runner would write them
    page = status_page(now=now)
    bar = page["checks"][0]["bar"]
    assert len(bar) == 90
    assert [day["level"] for day in bar[-3:-1]] == ["down", "up"]
    assert bar[0]["level"] == "none" and bar[0]["title"].endswith("no data")
    assert page["checks"][0]["uptime_90d"] == "50%"


def test_transitions_of_the_last_7_days_are_listed_without_reasons(anyone, only_our_checks):
    check = public_check("api", "API", [])
    now = timezone.now()
    for days, before, after in ((1, UP, DOWN), (2, DOWN, UP), (8, UP, DOWN)):
        StateChange.objects.create(
            health_check=check,
            from_status=before,
            to_status=after,
            at=now - timedelta(days=days),
            reason_category="refused",
            reason_message=f"connect to db.internal.example failed {SECRET}",
        )
    StateChange.objects.create(
        health_check=check, from_status=UP, to_status=DOWN, at=now, during_maintenance=True
    )
    changes = status_page(now=now)["checks"][0]["changes"]
    assert [(c["from_words"], c["to_words"]) for c in changes] == [
        ("Operational", "Outage"),
        ("Outage", "Operational"),
    ]
    html = anyone.get("/status/").content.decode()
    assert "Changes in the last 7 days (2)" in html
    assert SECRET not in html and "db.internal.example" not in html


def test_a_second_visit_within_the_cache_window_runs_no_query(
    anyone, only_our_checks, django_assert_num_queries
):
    public_check("api", "API", [True])
    first = anyone.get("/status/")
    assert "max-age=5" in first["Cache-Control"]
    with django_assert_num_queries(0):
        second = anyone.get("/status/")
    assert second.content == first.content


def test_the_page_reads_a_bounded_number_of_queries(
    anyone, only_our_checks, django_assert_max_num_queries
):
    for n in range(5):
        public_check(f"c{n}", f"Service {n}", [True, False])
    with django_assert_max_num_queries(3):
        assert anyone.get("/status/").status_code == 200


def test_post_is_refused(anyone, only_our_checks):
    assert anyone.post("/status/").status_code == 405


# --- the opt-in fields --------------------------------------------------------------------


def test_a_public_check_needs_a_public_name(db):
    check = HealthCheck(name="x", kind="tcp", target="127.0.0.1:1", public=True, public_name=" ")
    with pytest.raises(ValidationError) as caught:
        check.full_clean()
    assert "public name" in caught.value.message_dict["public_name"][0]
    check.public_name = "  Orders  "
    check.full_clean()
    assert check.public_name == "Orders"


def test_a_public_check_stored_without_a_name_is_shown_unnamed_never_by_its_name(
    anyone, only_our_checks
):
    HealthCheck.objects.create(name="internal-name", kind="tcp", target="127.0.0.1:1", public=True)
    html = anyone.get("/status/").content.decode()
    assert UNNAMED in html and "internal-name" not in html


def test_every_check_gets_its_own_badge_token(db):
    a = HealthCheck.objects.create(name="a", kind="tcp", target="127.0.0.1:1")
    b = HealthCheck.objects.create(name="b", kind="tcp", target="127.0.0.1:2")
    assert len(a.badge_token) >= 32 and a.badge_token != b.badge_token


def test_an_import_may_make_a_check_public_with_a_public_name(only_our_checks):
    from connections_app.management.commands.importchecks import import_checks

    item = {"name": "api", "kind": "tcp", "target": "127.0.0.1:1", "public": True}
    with pytest.raises(ValueError, match="public_name: A public check needs a public name"):
        import_checks([item])
    import_checks([item | {"public_name": "API"}])
    assert HealthCheck.objects.get(name="api").public_name == "API"


def test_a_database_that_cannot_be_read_answers_503_and_is_not_cached(
    anyone, only_our_checks, caplog
):
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE connections_app_statechange RENAME TO gone_statechange")
    public_check("api", "API", [])
    response = anyone.get("/status/")
    assert response.status_code == 503
    html = response.content.decode()
    assert "cannot be read right now" in html
    assert "statechange" not in html and "migrate" not in html  # the reason is for the log
    assert "run `manage.py migrate`" in caplog.text
    with CaptureQueriesContext(connection) as queries:  # not cached: the next visit reads
        assert anyone.get("/status/").status_code == 503
    assert len(queries) > 0
