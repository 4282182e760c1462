"""The WebSocket's origin check: scheme, host and port must be the site's own (the request's
scheme and Host, the host in ALLOWED_HOSTS) or one of CSRF_TRUSTED_ORIGINS."""

from __future__ import annotations

import pytest

from realtime.origin import origin_allowed
from tests.realtime.conftest import TIMEOUT, communicator, session_cookie


def scope(origin: str | None, host: str | None, scheme: str = "ws", **headers: str) -> dict:
    pairs = [("origin", origin), ("host", host), *headers.items()]
    return {
        "type": "websocket",
        "scheme": scheme,
        "headers": [(n.replace("_", "-").encode(), v.encode()) for n, v in pairs if v is not None],
    }


@pytest.fixture(autouse=True)
def site(settings):
    settings.ALLOWED_HOSTS = ["localhost", "127.0.0.1", ".example.net"]
    settings.CSRF_TRUSTED_ORIGINS = ["https://dash.example.com", "https://*.example.org"]
    settings.SECURE_PROXY_SSL_HEADER = None


@pytest.mark.parametrize(
    ("origin", "host", "scheme"),
    [
        ("http://localhost:8000", "localhost:8000", "ws"),
        ("http://127.0.0.1", "127.0.0.1", "ws"),
        ("http://127.0.0.1:80", "127.0.0.1", "ws"),  # the default port, spelt out
        ("HTTP://LocalHost:8000", "localhost:8000", "ws"),
        ("https://a.example.net", "a.example.net", "wss"),
        ("https://dash.example.com", "127.0.0.1:8000", "ws"),  # trusted, behind a proxy
        ("https://eu.example.org", "127.0.0.1:8000", "ws"),  # trusted wildcard
    ],
)
def test_the_sites_own_and_trusted_origins_are_accepted(origin, host, scheme):
    assert origin_allowed(scope(origin, host, scheme))


@pytest.mark.parametrize(
    ("origin", "host", "scheme"),
    [
        ("http://localhost:9999", "localhost:8000", "ws"),  # another port on the same host
        ("http://localhost", "localhost:8000", "ws"),
        ("https://localhost:8000", "localhost:8000", "ws"),  # another scheme
        ("http://a.example.net", "a.example.net", "wss"),
        ("http://evil.example", "localhost:8000", "ws"),
        ("http://evil.example", "evil.example", "ws"),  # a host not in ALLOWED_HOSTS
        ("http://dash.example.com", "127.0.0.1", "ws"),  # trusted over https only
        ("https://dash.example.com:8443", "127.0.0.1", "ws"),
        ("http://eu.example.org", "127.0.0.1", "ws"),
        ("https://example.org.evil.example", "127.0.0.1", "ws"),
        ("null", "localhost:8000", "ws"),  # a sandboxed frame, a file:// page
        ("http://localhost:notaport", "localhost:notaport", "ws"),
        (None, "localhost:8000", "ws"),
        ("http://localhost:8000", None, "ws"),
    ],
)
def test_other_origins_are_refused(origin, host, scheme):
    assert not origin_allowed(scope(origin, host, scheme))


def test_a_proxy_that_terminates_tls_is_believed_only_when_configured(settings):
    behind = scope("https://localhost", "localhost", x_forwarded_proto="https")
    assert not origin_allowed(behind)
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    assert origin_allowed(behind)
    assert not origin_allowed(scope("https://localhost", "localhost"))


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("clean_hub")
@pytest.mark.parametrize(
    ("origin", "host", "accepted"),
    [
        ("http://localhost:8000", "localhost:8000", True),
        ("http://localhost:9999", "localhost:8000", False),
    ],
)
async def test_the_asgi_stack_applies_it_before_the_session(origin, host, accepted):
    from asgiref.sync import sync_to_async

    cookie = await sync_to_async(session_cookie)("staff")
    socket = communicator(cookie, origin=origin, host=host)
    ok, _ = await socket.connect(timeout=TIMEOUT)
    assert ok is accepted
    await socket.disconnect()
