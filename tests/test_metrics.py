"""/metrics: who may read it, what it says (parsed with prometheus_client's own parser), that
it reads the stored state (so any process reports what every runner stored), and that no
secret reaches it."""

from __future__ import annotations

import subprocess
import sys
from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission, User
from django.db import connection
from django.test import Client
from django.utils import timezone
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from connections_app.alerts.models import ALERT_TEST, FAILED, PENDING, SENT, Alert
from connections_app.metrics import StoredStateCollector
from connections_app.models import ErrorStat, HealthCheck
from connections_app.runners import RunnerStats
from connections_app.runners import report as report_runner
from realtime.models import ConnectedClient
from tests.alerting import channel
from tests.conftest import REPO, manage, refusing_port
from tests.test_models import add_results

TOKEN = "a-metrics-token-of-32-characters"
SECRET = "s3cr3t-Pa55word"


@pytest.fixture
def token(settings):
    settings.METRICS_TOKEN = TOKEN
    return TOKEN


@pytest.fixture
def prometheus(token) -> Client:
    return Client(HTTP_AUTHORIZATION=f"Bearer {token}")


@pytest.fixture
def only_our_checks(db):
    HealthCheck.objects.all().delete()


def scrape(client: Client) -> dict[tuple[str, tuple], float]:
    """Every sample as {(name, sorted labels): value}."""
    response = client.get("/metrics")
    assert response.status_code == 200, response.content
    return samples(response.content.decode())


def samples(text: str) -> dict[tuple[str, tuple], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(found: dict, name: str, **labels) -> float:
    return found[name, tuple(sorted(labels.items()))]


# --- who may read it ----------------------------------------------------------------------


def test_anyone_without_the_token_gets_401(token, db):
    response = Client().get("/metrics")
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert b"connection_health" not in response.content


@pytest.mark.parametrize(
    "header",
    ["Bearer wrong-token-of-enough-length", f"Basic {TOKEN}", f"Bearer {TOKEN}x", "Bearer "],
)
def test_a_wrong_token_or_scheme_gets_401(token, db, header):
    assert Client(HTTP_AUTHORIZATION=header).get("/metrics").status_code == 401


def test_with_no_token_set_a_bearer_of_nothing_is_refused(settings, db):
    settings.METRICS_TOKEN = ""
    assert Client(HTTP_AUTHORIZATION="Bearer ").get("/metrics").status_code == 401


def test_the_token_reads_it_as_prometheus_text(prometheus, only_our_checks):
    response = prometheus.get("/metrics")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain; version=")
    assert response["Cache-Control"] == "no-store"


def test_staff_who_may_view_checks_read_it_with_their_session(db):
    staff = User.objects.create_user("viewer", password="pw-long-enough-1", is_staff=True)
    client = Client()
    client.force_login(staff)
    assert client.get("/metrics").status_code == 401  # staff, but no view permission
    staff.user_permissions.add(Permission.objects.get(codename="view_healthcheck"))
    assert client.get("/metrics").status_code == 200


def test_a_signed_in_user_who_is_not_staff_gets_401(db):
    user = User.objects.create_user("someone", password="pw-long-enough-1")
    user.user_permissions.add(Permission.objects.get(codename="view_healthcheck"))
    client = Client()
    client.force_login(user)
    assert client.get("/metrics").status_code == 401


def test_a_short_metrics_token_is_refused_at_start(sqlite_file_env):
    done = manage(sqlite_file_env | {"METRICS_TOKEN": "short"}, "check")
    assert done.returncode != 0
    assert "METRICS_TOKEN: use at least 16 characters" in done.stderr


# --- what it says -------------------------------------------------------------------------


def test_each_check_has_up_status_latency_time_and_flapping(prometheus, only_our_checks):
    cache = HealthCheck.objects.create(name="cache", kind="redis", target="redis://127.0.0.1/0")
    add_results(cache, [True])
    db = HealthCheck.objects.create(
        name="orders db", kind="tcp", target="127.0.0.1:5432", failures_before_down=1
    )
    add_results(db, [False])
    HealthCheck.objects.filter(pk=db.pk).update(flapping=True)

    found = scrape(prometheus)
    cache_labels = {"check": "cache", "kind": "redis"}
    db_labels = {"check": "orders db", "kind": "tcp"}
    assert value(found, "connection_health_check_up", **cache_labels) == 1
    assert value(found, "connection_health_check_up", **db_labels) == 0
    # One series per status: 1 for the current one, 0 for the others.
    assert value(found, "connection_health_check_status", status="up", **cache_labels) == 1
    assert value(found, "connection_health_check_status", status="down", **cache_labels) == 0
    assert value(found, "connection_health_check_status", status="down", **db_labels) == 1
    statuses = [k for k in found if k[0] == "connection_health_check_status"]
    assert len(statuses) == 2 * 6
    assert value(found, "connection_health_check_latency_seconds", **cache_labels) == 0.005
    checked = value(found, "connection_health_check_last_checked_timestamp_seconds", **db_labels)
    assert checked == pytest.approx(db.last_checked_at.timestamp())
    assert value(found, "connection_health_check_flapping", **db_labels) == 1
    assert value(found, "connection_health_check_flapping", **cache_labels) == 0


def test_each_check_has_a_latency_histogram_of_its_successes(prometheus, only_our_checks):
    cache = HealthCheck.objects.create(name="cache", kind="redis", target="redis://127.0.0.1/0")
    add_results(cache, [True, True, False])  # each success took 5 ms; a failure has none
    found = scrape(prometheus)
    labels = {"check": "cache", "kind": "redis"}
    name = "connection_health_check_latency_histogram_seconds"
    assert value(found, f"{name}_count", **labels) == 2
    assert value(found, f"{name}_sum", **labels) == pytest.approx(0.010)
    assert value(found, f"{name}_bucket", le="+Inf", **labels) == 2
    buckets = {dict(k[1])["le"]: v for k, v in found.items() if k[0] == f"{name}_bucket"}
    below = [v for le, v in buckets.items() if le != "+Inf" and float(le) < 0.005]
    assert set(below) == {0.0} and max(buckets.values()) == 2


def test_a_check_never_run_has_no_latency_nor_time(prometheus, only_our_checks):
    HealthCheck.objects.create(name="new", kind="tcp", target="127.0.0.1:1")
    found = scrape(prometheus)
    labels = (("check", "new"), ("kind", "tcp"))
    assert found["connection_health_check_up", labels] == 0
    assert ("connection_health_check_latency_seconds", labels) not in found
    assert ("connection_health_check_last_checked_timestamp_seconds", labels) not in found


def test_certificate_days_left_are_reported_for_checks_that_record_them(
    prometheus, only_our_checks
):
    HealthCheck.objects.create(name="site", kind="http", target="https://a.example/")
    HealthCheck.objects.filter(name="site").update(tls_days_left=12)
    HealthCheck.objects.create(name="plain", kind="tcp", target="127.0.0.1:1")
    found = scrape(prometheus)
    assert value(found, "connection_health_check_tls_days_left", check="site", kind="http") == 12
    assert not [k for k in found if k[0].endswith("tls_days_left") and ("check", "plain") in k[1]]


def test_errors_by_category_and_database_retries_are_read_from_the_stored_counts(
    prometheus, only_our_checks
):
    now = timezone.now()

    def stat(fingerprint, category, operation, endpoint, count):
        ErrorStat.objects.create(
            fingerprint=fingerprint,
            category=category,
            operation=operation,
            endpoint=endpoint,
            count=count,
            first_seen=now,
            last_seen=now,
            severity="error",
        )

    stat("a", "timeout", "probe.http", "api", 3)
    stat("b", "timeout", "probe.tcp", "db", 4)
    stat("c", "database_locked", "db.retry", "default", 5)
    stat("d", "connection_lost", "db.reconnect", "default", 2)
    found = scrape(prometheus)
    assert value(found, "connection_health_errors_total", category="timeout") == 7
    assert value(found, "connection_health_errors_total", category="database_locked") == 5
    assert value(found, "connection_health_db_retries_total", database="default") == 5
    assert value(found, "connection_health_db_reconnects_total", database="default") == 2


def test_alerts_sent_and_failed_are_counted_and_waiting_ones_shown(prometheus, only_our_checks):
    ops = channel("ops", "https://hooks.example/T0/secret-path")
    for status in (SENT, SENT, FAILED, PENDING):
        Alert.objects.create(channel=ops, kind=ALERT_TEST, status=status)
    found = scrape(prometheus)
    assert value(found, "connection_health_alerts_total", status="sent") == 2
    assert value(found, "connection_health_alerts_total", status="failed") == 1
    assert value(found, "connection_health_alerts_queued", status="pending") == 1
    assert value(found, "connection_health_alerts_queued", status="sending") == 0


def test_dashboard_clients_of_every_live_server_are_counted(prometheus, only_our_checks):
    now = timezone.now()
    for n, seen in enumerate([now, now, now - timedelta(minutes=5)]):
        ConnectedClient.objects.create(
            client_id=f"c{n}", server=f"host:{n}", user="staff", connected_at=now, seen_at=seen
        )
    assert value(scrape(prometheus), "connection_health_dashboard_clients") == 2


def test_scheduling_lag_is_how_long_the_most_overdue_check_has_waited(only_our_checks):
    now = timezone.now()
    for name, due in (("late", -30), ("later", -90), ("ahead", 60)):
        HealthCheck.objects.create(name=name, kind="tcp", target="127.0.0.1:1")
        HealthCheck.objects.filter(name=name).update(next_due_at=now + timedelta(seconds=due))
    HealthCheck.objects.create(name="off", kind="tcp", target="127.0.0.1:1", enabled=False)
    HealthCheck.objects.filter(name="off").update(next_due_at=now - timedelta(hours=1))
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StoredStateCollector(now=lambda: now))
    found = samples(generate_latest(registry).decode())
    assert found["connection_health_scheduling_lag_seconds", ()] == 90
    HealthCheck.objects.exclude(name="ahead").delete()
    found = samples(generate_latest(registry).decode())
    assert found["connection_health_scheduling_lag_seconds", ()] == 0


# --- secrets ------------------------------------------------------------------------------


def test_no_target_nor_secret_in_it(prometheus, only_our_checks):
    pg = HealthCheck.objects.create(
        name="orders",
        kind="postgres",
        target=f"postgres://app:{SECRET}@db.internal.example:5432/orders",
        failures_before_down=1,
    )
    add_results(pg, [False])
    api = HealthCheck.objects.create(
        name="partner",
        kind="http",
        target=f"https://partner.example/v1/health?token={SECRET}",
        request_headers=f"Authorization: Bearer {SECRET}",
    )
    add_results(api, [True])
    channel("ops", f"https://hooks.example/services/{SECRET}")
    text = prometheus.get("/metrics").content.decode()
    assert "orders" in text and "partner" in text
    for leak in (SECRET, "db.internal.example", "partner.example", "hooks.example"):
        assert leak not in text


# --- several processes --------------------------------------------------------------------


@pytest.mark.slow
def test_what_a_runner_process_stored_is_reported_by_another_process(sqlite_file_env):
    """A runner stores a failure in one process; a second process, which ran no check,
    serves /metrics with it: nothing is read from the runner's memory."""
    env = sqlite_file_env | {"METRICS_TOKEN": TOKEN}
    port = refusing_port()  # nobody listens: refused
    made = (
        "from connections_app.models import HealthCheck; "
        f"HealthCheck.objects.create(name='edge', kind='tcp', target='127.0.0.1:{port}', "
        "failures_before_down=1)"
    )
    assert manage(env, "shell", "-c", made).returncode == 0
    ran = manage(env, "runchecks", "--once")
    assert "edge" in ran.stdout + ran.stderr
    read = (
        "from django.test.utils import setup_test_environment; setup_test_environment(); "
        "from django.test import Client; "
        f"print(Client(HTTP_AUTHORIZATION='Bearer {TOKEN}').get('/metrics').content.decode())"
    )
    served = subprocess.run(
        [sys.executable, "manage.py", "shell", "--no-imports", "-c", read],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert served.returncode == 0, served.stderr
    found = samples(served.stdout)
    labels = (("check", "edge"), ("kind", "tcp"), ("status", "down"))
    assert found["connection_health_check_status", labels] == 1
    assert found["connection_health_errors_total", (("category", "refused"),)] >= 1


def test_a_database_that_cannot_be_read_answers_503_naming_the_fix(prometheus, only_our_checks):
    """A table missing (a database never migrated): 503, so Prometheus marks the scrape failed,
    with the one line that says what to do. Dropped inside the test's transaction: rolled back."""
    with connection.cursor() as cursor:
        cursor.execute("DROP TABLE connections_app_errorstat")
    response = prometheus.get("/metrics")
    assert response.status_code == 503
    assert b"run `manage.py migrate`" in response.content
    assert b"connection_health" not in response.content


def test_each_live_runner_reports_its_lag_and_counts(prometheus, db):
    stats = RunnerStats()
    stats.started(timezone.now() - timedelta(seconds=2), timezone.now())
    report_runner(stats, {**stats.take_lags(), "results_stored": 7, "results_dropped": 1})
    report_runner(RunnerStats(name="gone:1"), {}, stopped=True)
    found = scrape(prometheus)
    runner = {"runner": stats.name}
    assert value(found, "connection_health_runner_lag_p99_seconds", **runner) >= 2.0
    assert value(found, "connection_health_runner_results_stored_total", **runner) == 7
    assert value(found, "connection_health_runner_results_dropped_total", **runner) == 1
    assert not any(("runner", "gone:1") in labels for _name, labels in found)
