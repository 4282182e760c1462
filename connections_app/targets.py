"""What a check may point at: its kinds, and whether a target is well formed for its kind.

Messages name what is wrong in words a person can act on; they may quote parts of a target, so
callers that show them pass them through ``redact`` (a target can hold a password).
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from django.conf import settings

from connections_app.guard import AddressGuard

KIND_HTTP = "http"
KIND_TCP = "tcp"
KIND_DATABASE = "database"
KIND_REDIS = "redis"
KIND_CHANNEL_LAYER = "channel_layer"
KIND_PUSH = "push"
KIND_DNS = "dns"
KIND_POSTGRES = "postgres"
KIND_CHOICES = [
    (KIND_HTTP, "HTTP(S) endpoint"),
    (KIND_TCP, "TCP host:port"),
    (KIND_DATABASE, "Django database alias"),
    (KIND_REDIS, "Redis URL"),
    (KIND_CHANNEL_LAYER, "Channels layer alias"),
    (KIND_PUSH, "Push: the job pings us"),
    (KIND_DNS, "DNS name"),
    (KIND_POSTGRES, "PostgreSQL DSN"),
]

_HOST_CHARACTERS = "letters, digits, '-', '_' and '.'"


def validate_target(kind: str, target: str) -> str | None:
    """A sentence naming what is wrong with ``target`` for ``kind``, or None when it is fine."""
    if not target.strip():
        return "A target is required."
    if target != target.strip():
        return "The target must not start or end with a space."
    control = next((c for c in target if ord(c) < 32 or ord(c) == 127), None)
    if control is not None:
        return f"The target contains a control character ({control!r})."
    if kind == KIND_HTTP:
        if "://" not in target:
            return f"The URL has no scheme: write http://{target} or https://{target}."
        parts, error = _split_url(target)
        if error:
            return error
        if parts.scheme not in ("http", "https"):
            return f"The URL scheme must be http or https, not {parts.scheme!r}."
        if not parts.hostname:
            return "The URL has no host."
        if error := _host_error(parts.hostname) or _port_error(parts):
            return error
        if any(c.isspace() for c in target):
            return "The URL's path contains a space: write it as %20."
        return None
    if kind == KIND_REDIS:
        parts, error = _split_url(target)
        if error:
            return error
        if parts.scheme == "unix":
            return "A unix:// socket is local to this server: checks may not use one."
        if parts.scheme not in ("redis", "rediss"):
            scheme = parts.scheme or "empty"
            return f"A Redis URL starts with redis:// or rediss://, not {scheme!r}."
        if not parts.hostname:
            return "The Redis URL has no host: it is redis://host:6379/0."
        return _host_error(parts.hostname) or _port_error(parts)
    if kind == KIND_TCP:
        return _host_port_error(target)
    if kind == KIND_DNS:
        return _dns_name_error(target)
    if kind == KIND_POSTGRES:
        return _postgres_error(target)
    if kind == KIND_DATABASE and target not in settings.DATABASES:
        return f"No database alias {target!r}; known: {', '.join(sorted(settings.DATABASES))}."
    if kind == KIND_CHANNEL_LAYER and target not in settings.CHANNEL_LAYERS:
        known = ", ".join(sorted(settings.CHANNEL_LAYERS))
        return f"No channel layer alias {target!r}; known: {known}."
    return None


#: DSN parameters a check may set: none that picks another host, a socket or a file to read.
_POSTGRES_PARAMETERS = {"sslmode", "application_name", "options", "target_session_attrs"}


def _postgres_error(target: str) -> str | None:
    parts, error = _split_url(target)
    if error:
        return error
    if parts.scheme not in ("postgres", "postgresql"):
        scheme = parts.scheme or "empty"
        return f"A PostgreSQL DSN starts with postgres://, not {scheme!r}."
    if not parts.hostname:
        return "The DSN has no host (a local socket is not allowed): postgres://user@host/db."
    names = {p.partition("=")[0] for p in parts.query.split("&") if p}
    refused = sorted(names - _POSTGRES_PARAMETERS)
    if refused:
        allowed = ", ".join(sorted(_POSTGRES_PARAMETERS))
        return f"The DSN may not set {', '.join(refused)}: only {allowed}."
    return _host_error(parts.hostname) or _port_error(parts)


def _dns_name_error(name: str) -> str | None:
    if ":" in name or not any(c.isalpha() for c in name):
        return "A DNS check resolves a name, such as api.example.com, not an address."
    return _host_error(name)


def split_resolver(text: str) -> tuple[str, int]:
    """``"10.0.0.2"`` -> ``("10.0.0.2", 53)``; ``"127.0.0.1:5353"``, ``"[::1]:5353"`` too."""
    if text.startswith("["):
        host, _, port = text[1:].partition("]")
        return host, int(port.removeprefix(":") or 53)
    if text.count(":") == 1:
        host, _, port = text.partition(":")
        return host, int(port)
    return text, 53


def validate_resolver(text: str) -> str | None:
    """What is wrong with a resolver's address (``10.0.0.2``, ``127.0.0.1:5353``,
    ``[::1]:53``), or None."""
    try:
        host, port = split_resolver(text.strip())
        ipaddress.ip_address(host)
    except ValueError:
        return "A resolver is an IP address with an optional port: 10.0.0.2 or 127.0.0.1:5353."
    if not 1 <= port <= 65535:
        return "The port must be a number from 1 to 65535."
    return _host_error(host)


def _split_url(target: str):
    """``(parts, None)``, or ``(None, sentence)`` for a URL that cannot be taken apart."""
    try:
        return urlsplit(target), None
    except ValueError:  # unbalanced brackets, an invalid bracketed address
        # Not the exception's text: it quotes the whole netloc, password included.
        return None, "The URL is malformed: check its brackets and the characters of its host."


def _port_error(parts) -> str | None:
    try:
        port = parts.port
    except ValueError:
        return "The port must be a number from 1 to 65535."
    if port is not None and not 1 <= port <= 65535:
        return "The port must be a number from 1 to 65535."
    return None


def _host_port_error(target: str) -> str | None:
    if "://" in target:  # a URL in a tcp check: "port must be a number" would mislead
        return "A TCP target is host:port, for example db.internal:5432, not a URL."
    host, sep, port = target.rpartition(":")
    if not sep or not host:
        return "A TCP target is host:port, for example db.internal:5432."
    if not (port.isascii() and port.isdigit()) or not 1 <= int(port) <= 65535:
        return "The port must be a number from 1 to 65535."
    if host.startswith("[") != host.endswith("]"):
        return f"{host!r} misses a bracket: an IPv6 address is written [::1]:6379."
    return _host_error(host.removeprefix("[").removesuffix("]"))


def _host_error(host: str) -> str | None:
    """A sentence naming what is wrong with a host name or IP address, or None."""
    # An address the guard refuses is refused here too, to say so before the first run; the
    # runner's guard still judges every address connected to (a name can resolve anywhere).
    refusal = AddressGuard.from_settings().refusal(host)
    if refusal:
        return f"Refused: {refusal}."
    if ":" in host:  # only an IPv6 address has colons
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            return f"{host!r} is not a valid IPv6 address."
        return None
    bad = next((c for c in host if not (c.isalnum() or c in "-_.")), None)
    if bad is not None:
        what = "a space" if bad.isspace() else repr(bad)
        return f"The host {host!r} contains {what}: a host name has only {_HOST_CHARACTERS}."
    labels = host.removesuffix(".").split(".")
    if "" in labels:
        return f"The host {host!r} has an empty part between dots."
    if any(len(label) > 63 for label in labels) or len(host) > 253:
        return f"The host {host!r} is too long: 63 characters a part, 253 in all."
    if any(label.startswith("-") or label.endswith("-") for label in labels):
        return f"The host {host!r} has a part that starts or ends with '-'."
    return None
