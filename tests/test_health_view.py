import pytest

from connections_app.models import HealthCheck
from tests.test_models import add_results

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def only_our_checks():
    HealthCheck.objects.all().delete()


def make(name, results, critical=True, target="redis://:hunter2@127.0.0.1:6379/0"):
    check = HealthCheck.objects.create(
        name=name, kind="redis", target=target, critical=critical, failures_before_down=1
    )
    add_results(check, results)
    return check


def test_it_answers_200_when_everything_is_up(client):
    make("cache", [True])
    response = client.get("/health/")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "up"
    assert body["checks"][0]["name"] == "cache"
    assert body["checks"][0]["status"] == "up"


def test_it_answers_503_when_a_critical_check_is_down(client):
    make("cache", [True])
    make("db", [False])
    response = client.get("/health/")
    assert response.status_code == 503
    assert response.json()["status"] == "down"


def test_a_non_critical_check_down_keeps_200(client):
    make("cache", [True])
    make("reports", [False], critical=False)
    response = client.get("/health/")
    assert response.status_code == 200
    assert response.json()["status"] == "down"


def test_it_never_shows_targets_or_their_secrets(client):
    make("cache", [True])
    text = client.get("/health/").content.decode()
    assert "hunter2" not in text
    assert "6379" not in text


def test_it_only_answers_get(client):
    assert client.post("/health/").status_code == 405
