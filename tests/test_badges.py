"""Badges: SVG for public checks at their token's URL, 404 for anything else; shown with their
Markdown on the check's admin page."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import timedelta

import pytest
from django.core.cache import cache
from django.test import Client
from django.utils import timezone

from connections_app import rollups
from connections_app.badges import GREEN, RED, YELLOW, uptime_colour
from connections_app.models import CheckResult, HealthCheck
from connections_app.status_page import uptime_text
from tests.test_models import add_results

SVG_NS = "{http://www.w3.org/2000/svg}"


@pytest.fixture(autouse=True)
def empty_cache():
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def anyone() -> Client:
    return Client()


@pytest.fixture
def orders(db) -> HealthCheck:
    check = HealthCheck.objects.create(
        name="orders-db-primary",
        kind="tcp",
        target="10.0.0.7:5432",
        public=True,
        public_name="Orders <API>",
        failures_before_down=1,
    )
    add_results(check, [True])
    return check


def texts(svg: bytes) -> list[str]:
    root = ET.fromstring(svg)  # well formed, or this raises
    assert root.tag == f"{SVG_NS}svg"
    return [t.text for t in root.iter(f"{SVG_NS}text")]


def test_the_status_badge_shows_the_public_name_and_status(anyone, orders):
    response = anyone.get(f"/badge/{orders.badge_token}/status.svg")
    assert response.status_code == 200
    assert response["Content-Type"] == "image/svg+xml; charset=utf-8"
    assert "public" in response["Cache-Control"] and "max-age=60" in response["Cache-Control"]
    body = response.content
    # Each text twice: its shadow, then itself.
    assert texts(body) == ["Orders <API>", "Orders <API>", "up", "up"]
    assert GREEN.encode() in body
    assert b"orders-db-primary" not in body and b"10.0.0.7" not in body


def test_the_status_badge_turns_red_when_the_check_is_down(anyone, orders):
    add_results(orders, [False])
    body = anyone.get(f"/badge/{orders.badge_token}/status.svg").content
    assert "down" in texts(body) and RED.encode() in body


def test_the_uptime_badge_shows_30_days(anyone, orders):
    now = timezone.now()
    CheckResult.objects.bulk_create(
        [
            CheckResult(health_check=orders, checked_at=now - timedelta(days=d), ok=d != 3)
            for d in (1, 2, 3, 40)
        ]
    )
    rollups.rebuild()  # results made in bulk: their rollups as the runner would write them
    response = anyone.get(f"/badge/{orders.badge_token}/uptime.svg")
    assert response.status_code == 200
    assert response["Content-Type"] == "image/svg+xml; charset=utf-8"
    # Today's, 1 and 2 days ago passed, 3 days ago failed; 40 days ago is out of the window.
    assert texts(response.content) == ["uptime 30d", "uptime 30d", "75%", "75%"]


def test_an_unknown_token_or_a_private_check_is_404(anyone, orders):
    assert anyone.get("/badge/not-a-token/status.svg").status_code == 404
    assert anyone.get("/badge/not-a-token/uptime.svg").status_code == 404
    HealthCheck.objects.filter(pk=orders.pk).update(public=False)
    for kind in ("status", "uptime"):
        response = anyone.get(f"/badge/{orders.badge_token}/{kind}.svg")
        assert response.status_code == 404
        assert b"orders" not in response.content.lower()


def test_a_badge_within_its_cache_window_runs_no_query(anyone, orders, django_assert_num_queries):
    url = f"/badge/{orders.badge_token}/uptime.svg"
    first = anyone.get(url)
    with django_assert_num_queries(0):
        assert anyone.get(url).content == first.content


@pytest.mark.parametrize(
    ("percent", "text", "colour"),
    [
        (100.0, "100%", GREEN),
        (99.996, "99.99%", GREEN),
        (96.5, "96.5%", YELLOW),
        (12.0, "12%", RED),
        (None, "no data", "#9f9f9f"),
    ],
)
def test_uptime_is_cut_never_rounded_up(percent, text, colour):
    assert uptime_text(percent) == text
    assert uptime_colour(percent) == colour


def test_the_admin_page_shows_the_badge_urls_and_markdown(admin_client, orders):
    html = admin_client.get(f"/admin/connections_app/healthcheck/{orders.pk}/change/").content
    html = html.decode()
    assert f"http://testserver/badge/{orders.badge_token}/status.svg" in html
    assert f"/badge/{orders.badge_token}/uptime.svg)" in html  # the Markdown snippet
    assert 'id="id_public"' in html and 'id="id_public_name"' in html


def test_a_private_checks_admin_page_shows_no_badges(admin_client, orders):
    HealthCheck.objects.filter(pk=orders.pk).update(public=False)
    html = admin_client.get(f"/admin/connections_app/healthcheck/{orders.pk}/change/").content
    assert orders.badge_token.encode() not in html


def test_the_admin_form_refuses_a_public_check_without_a_public_name(admin_client, db):
    response = admin_client.post(
        "/admin/connections_app/healthcheck/add/",
        {
            "name": "x",
            "kind": "tcp",
            "target": "127.0.0.1:1",
            "interval": 30,
            "timeout": 5,
            "failures_before_down": 3,
            "successes_before_up": 1,
            "expected_status_min": 200,
            "expected_status_max": 399,
            "http_method": "GET",
            "max_redirects": 10,
            "grace": 60,
            "dns_record_type": "A",
            "tls_warn_days": 14,
            "enabled": "on",
            "public": "on",
            "public_name": "",
        },
    )
    assert response.status_code == 200
    assert "A public check needs a public name" in response.content.decode()
    assert not HealthCheck.objects.filter(name="x").exists()
