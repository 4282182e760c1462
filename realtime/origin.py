"""The WebSocket's origin check: only pages of this site (or a trusted origin) may open it.

Channels' ``AllowedHostsOriginValidator`` compares the Origin's host name with
``ALLOWED_HOSTS`` and ignores scheme and port, so a page served by anything else on the same
host (``http://localhost:9999``) could open a staff socket with the staff's cookie. Here, as
Django's CSRF check does for a POST, the Origin must equal the site's own origin (the request's
scheme, its ``Host`` header, which must be in ``ALLOWED_HOSTS``) or one of
``CSRF_TRUSTED_ORIGINS`` (``https://*.example.com`` wildcards included), scheme, host and port
alike. A missing or malformed Origin is refused: browsers always send one.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from channels.security.websocket import WebsocketDenier
from django.conf import settings
from django.http.request import is_same_domain, split_domain_port, validate_host

DEFAULT_PORTS = {"http": 80, "https": 443}


def _origin(url: str) -> tuple[str, str, int] | None:
    """``(scheme, host, port)`` of an origin such as ``https://Example.com``, the default port
    filled in; None when it is not one."""
    try:
        parts = urlsplit(url)
        port = parts.port or DEFAULT_PORTS.get(parts.scheme.lower())
    except ValueError:
        return None
    if not parts.hostname or port is None:
        return None
    return parts.scheme.lower(), parts.hostname.lower(), port


def _headers(scope: dict) -> dict[bytes, str]:
    return {name.lower(): value.decode("latin1") for name, value in scope.get("headers", [])}


def _scheme(scope: dict, headers: dict[bytes, str]) -> str:
    """``https`` for a wss:// socket, or when ``SECURE_PROXY_SSL_HEADER`` says the proxy in
    front terminated TLS (as Django's ``request.is_secure()``); else ``http``."""
    if scope.get("scheme") in ("wss", "https"):
        return "https"
    proxy = getattr(settings, "SECURE_PROXY_SSL_HEADER", None)
    if proxy:
        name, secure = proxy
        header = name.removeprefix("HTTP_").replace("_", "-").lower().encode()
        if headers.get(header, "").split(",")[0].strip() == secure:
            return "https"
    return "http"


def _trusted(origin: tuple[str, str, int]) -> bool:
    for trusted in settings.CSRF_TRUSTED_ORIGINS:
        scheme, _, netloc = trusted.partition("://")
        if netloc.startswith("*"):
            # Django's CSRF wildcards: the scheme, and a host under the domain (port included).
            port = origin[2] if origin[2] != DEFAULT_PORTS.get(origin[0]) else None
            request_netloc = origin[1] if port is None else f"{origin[1]}:{port}"
            if scheme.lower() == origin[0] and is_same_domain(request_netloc, netloc[1:]):
                return True
        elif _origin(trusted) == origin:
            return True
    return False


def _allowed_hosts() -> list[str]:
    # As Django's request.get_host(): with DEBUG on and no ALLOWED_HOSTS, the local names.
    if settings.DEBUG and not settings.ALLOWED_HOSTS:
        return [".localhost", "127.0.0.1", "[::1]"]
    return settings.ALLOWED_HOSTS


def origin_allowed(scope: dict) -> bool:
    """Whether the handshake in ``scope`` comes from a page of this site or a trusted origin."""
    headers = _headers(scope)
    origin = _origin(headers.get(b"origin", ""))
    if origin is None:
        return False
    if _trusted(origin):
        return True
    host = headers.get(b"host", "")
    domain, _port = split_domain_port(host)
    if not domain or not validate_host(domain, _allowed_hosts()):
        return False
    return _origin(f"{_scheme(scope, headers)}://{host}") == origin


class SameOriginValidator:
    """ASGI middleware for WebSockets: a handshake whose origin is not allowed is refused (an
    HTTP 403, before any consumer or session is touched)."""

    def __init__(self, application) -> None:
        self.application = application

    async def __call__(self, scope, receive, send):
        if origin_allowed(scope):
            return await self.application(scope, receive, send)
        return await WebsocketDenier()(scope, receive, send)
