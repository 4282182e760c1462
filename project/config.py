"""Turn environment values into Django settings, failing loud and naming the variable.

Every error is an ``ImproperlyConfigured`` whose message starts with the variable's name and
never repeats a password: ``manage.py`` and ``asgi.py`` print it as one line and stop.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import environ
from django.core.exceptions import ImproperlyConfigured

POSTGRES_SCHEMES = {"postgres", "postgresql", "pgsql", "psql"}
SQLITE_SCHEMES = {"sqlite"}
REDIS_SCHEMES = {"redis", "rediss", "unix"}
BACKENDS = {
    "postgres": "connections_app.db.backends.postgresql",
    "sqlite": "connections_app.db.backends.sqlite3",
}


def _safe(url: str) -> str:
    """The URL as it may be shown: any password replaced."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()


TRUE_WORDS = {"1", "true", "yes", "on"}
FALSE_WORDS = {"0", "false", "no", "off"}


def strict_bool(name: str, raw: str, default: bool) -> bool:
    """``true``/``false`` (or 1/0, yes/no, on/off); anything else is an error, not False."""
    word = raw.strip().lower()
    if not word:
        return default
    if word in TRUE_WORDS | FALSE_WORDS:
        return word in TRUE_WORDS
    raise ImproperlyConfigured(f"{name}: expected true or false, got {raw!r}")


def database_config(url: str | None, base_dir: Path) -> dict:
    """Django's DATABASES["default"] for ``DATABASE_URL`` (SQLite in ``base_dir`` when unset)."""
    if not url:
        return {"ENGINE": BACKENDS["sqlite"], "NAME": str(base_dir / "db.sqlite3")}
    scheme = urlsplit(url).scheme
    if scheme in SQLITE_SCHEMES:
        config = environ.Env.db_url_config(url)
        config["ENGINE"] = BACKENDS["sqlite"]
        if not config.get("NAME"):
            raise ImproperlyConfigured("DATABASE_URL: an SQLite URL needs a file path")
        return config
    if scheme not in POSTGRES_SCHEMES:
        raise ImproperlyConfigured(
            f"DATABASE_URL: unsupported scheme {scheme or 'none'!r} in {_safe(url)!r}; "
            "use postgres://user@host:5432/name or sqlite:////path/to/file.sqlite3"
        )
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as exc:
        raise ImproperlyConfigured(f"DATABASE_URL: {exc} in {_safe(url)!r}") from None
    config = environ.Env.db_url_config(url)
    if not config.get("NAME"):
        raise ImproperlyConfigured(f"DATABASE_URL: no database name in {_safe(url)!r}")
    config["ENGINE"] = BACKENDS["postgres"]
    return config


def channel_layers(url: str | None) -> dict:
    """CHANNEL_LAYERS for ``REDIS_URL`` (the in-memory layer when unset)."""
    if not url:
        return {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    parts = urlsplit(url)
    if parts.scheme not in REDIS_SCHEMES:
        raise ImproperlyConfigured(
            f"REDIS_URL: unsupported scheme {parts.scheme or 'none'!r} in {_safe(url)!r}; "
            "use redis://host:6379/0"
        )
    try:
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as exc:
        raise ImproperlyConfigured(f"REDIS_URL: {exc} in {_safe(url)!r}") from None
    if parts.scheme != "unix" and not parts.hostname:
        raise ImproperlyConfigured(f"REDIS_URL: no host in {_safe(url)!r}")
    return {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [url]},
        }
    }
