"""Turn environment values into Django settings, failing loud and naming the variable.

Every error is an ``ImproperlyConfigured`` whose message starts with the variable's name and
never repeats a password: ``manage.py`` and ``asgi.py`` print it as one line and stop.
"""

from __future__ import annotations

import math
from pathlib import Path
from urllib.parse import SplitResult, parse_qs, urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import environ
from django.core.exceptions import ImproperlyConfigured

from connections_app.redaction import redact_url

POSTGRES_SCHEMES = {"postgres", "postgresql", "pgsql", "psql"}
SQLITE_SCHEMES = {"sqlite"}
REDIS_SCHEMES = {"redis", "rediss", "unix"}
BACKENDS = {
    "postgres": "connections_app.db.backends.postgresql",
    "sqlite": "connections_app.db.backends.sqlite3",
}


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


#: libpq keepalives: a peer that vanished without a FIN or RST (a dead host, a dropped NAT
#: entry) is found in about 30 + 3 * 10 = 60 s instead of the kernel's two hours.
PG_KEEPALIVES = {
    "keepalives": 1,
    "keepalives_idle": 30,
    "keepalives_interval": 10,
    "keepalives_count": 3,
}
#: psycopg pool: one connection kept open, up to 10 for the threads of one process.
PG_POOL_SIZE = {"min_size": 1, "max_size": 10}
#: WAL lets readers run while one writer writes; NORMAL is durable at every checkpoint and
#: safe against corruption in WAL mode, without an fsync per commit.
SQLITE_INIT = "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL"
#: The default of CONN_MAX_AGE (seconds) when it is not set, by database.
DEFAULT_CONN_MAX_AGE = {"postgres": 60, "sqlite": 0}


def database_config(
    url: str | None,
    base_dir: Path,
    *,
    conn_max_age: int | None = None,
    pool: bool = False,
    connect_timeout: int = 5,
    busy_timeout: float = 5.0,
    retry_attempts: int = 3,
    retry_base_delay: float = 1.0,
) -> dict:
    """Django's DATABASES["default"] for ``DATABASE_URL`` (SQLite in ``base_dir`` when unset).

    The keyword arguments are the variables CONN_MAX_AGE (None: 60 s on PostgreSQL, 0 on
    SQLite), DB_POOL, DB_CONNECT_TIMEOUT (PostgreSQL), SQLITE_BUSY_TIMEOUT, DB_RETRY_ATTEMPTS
    and DB_RETRY_BASE_DELAY. ``RETRY`` holds the fields of the backend's ``RetryPolicy``.
    """
    _at_least("CONN_MAX_AGE", conn_max_age, 0)
    _at_least("DB_CONNECT_TIMEOUT", connect_timeout, 1)
    _at_least("SQLITE_BUSY_TIMEOUT", busy_timeout, 0)
    _at_least("DB_RETRY_ATTEMPTS", retry_attempts, 0)
    _at_least("DB_RETRY_BASE_DELAY", retry_base_delay, 0)
    config, kind = _database_from_url(url, base_dir)
    if pool and kind != "postgres":
        raise ImproperlyConfigured("DB_POOL: only PostgreSQL has a connection pool")
    if pool and conn_max_age:
        raise ImproperlyConfigured(
            f"DB_POOL: the pool keeps connections itself, so CONN_MAX_AGE must be 0 "
            f"(it is {conn_max_age}); unset CONN_MAX_AGE or set it to 0"
        )
    if conn_max_age is None:
        conn_max_age = 0 if pool else DEFAULT_CONN_MAX_AGE[kind]
    config["CONN_MAX_AGE"] = conn_max_age
    config["CONN_HEALTH_CHECKS"] = True
    # Retries after 1 s, 2 s, 4 s by default, scaled by the base delay.
    config["RETRY"] = {
        "attempts": retry_attempts,
        "base_delay": retry_base_delay,
        "cap": retry_base_delay * 4,
    }
    options = config.setdefault("OPTIONS", {})
    if kind == "postgres":
        options.setdefault("connect_timeout", connect_timeout)
        for name, value in PG_KEEPALIVES.items():
            options.setdefault(name, value)
        if pool:
            options["pool"] = {**PG_POOL_SIZE, "timeout": connect_timeout}
    else:
        options.setdefault("timeout", busy_timeout)
        # Writers take the write lock at BEGIN and queue on busy_timeout, instead of failing
        # at once when a read transaction tries to upgrade to a write.
        options.setdefault("transaction_mode", "IMMEDIATE")
        options.setdefault("init_command", SQLITE_INIT)
    return config


def _at_least(name: str, value: float | None, minimum: float) -> None:
    # NaN compares false with everything: it would pass a plain `value < minimum`.
    if value is not None and (not math.isfinite(value) or value < minimum):
        raise ImproperlyConfigured(f"{name}: must be {minimum} or more, got {value}")


def _database_from_url(url: str | None, base_dir: Path) -> tuple[dict, str]:
    """The connection settings of ``DATABASE_URL`` and its kind, "postgres" or "sqlite"."""
    if not url:
        return {"ENGINE": BACKENDS["sqlite"], "NAME": str(base_dir / "db.sqlite3")}, "sqlite"
    scheme = _parse_url("DATABASE_URL", url).scheme
    if scheme in SQLITE_SCHEMES:
        config = environ.Env.db_url_config(url)
        config["ENGINE"] = BACKENDS["sqlite"]
        if not config.get("NAME"):
            raise ImproperlyConfigured("DATABASE_URL: an SQLite URL needs a file path")
        return config, "sqlite"
    if scheme not in POSTGRES_SCHEMES:
        raise _unsupported(
            "DATABASE_URL", scheme, url,
            "use postgres://user@host:5432/name or sqlite:////path/to/file.sqlite3",
        )  # fmt: skip
    config = environ.Env.db_url_config(url)
    if not config.get("NAME"):
        raise ImproperlyConfigured(f"DATABASE_URL: no database name in {redact_url(url)!r}")
    config["ENGINE"] = BACKENDS["postgres"]
    return config, "postgres"


def _parse_url(variable: str, url: str) -> SplitResult:
    """``url`` split into its parts; a malformed host or port stops start-up in one line."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as exc:
        raise ImproperlyConfigured(f"{variable}: {exc} in {redact_url(url)!r}") from None
    return parts


#: channels_redis backends by ``CHANNEL_LAYER_KIND``; docs/BENCHMARKS.md ("Live dashboard") has
#: the figures behind the default.
LAYER_KINDS = {
    "pubsub": "channels_redis.pubsub.RedisPubSubChannelLayer",
    "core": "channels_redis.core.RedisChannelLayer",
}
#: Messages a channel may hold. Each server process reads all events through one channel, and
#: the check runner publishes a batch of results back to back: the default 100 would drop some.
CHANNEL_CAPACITY = 1000
#: Seconds a group member of the core layer lives without renewal; the dashboard hub renews
#: every 10 s, so a dead server stops receiving after this.
GROUP_EXPIRY = 120


def channel_layers(url: str | None, kind: str = "pubsub") -> dict:
    """CHANNEL_LAYERS for ``REDIS_URL`` (the in-memory layer when unset) and
    ``CHANNEL_LAYER_KIND`` (``pubsub`` or ``core``, for channels_redis)."""
    # Checked without REDIS_URL too: a typo would otherwise wait for the day Redis is added.
    if kind not in LAYER_KINDS:
        raise ImproperlyConfigured(
            f"CHANNEL_LAYER_KIND: {kind!r} is not one of {', '.join(sorted(LAYER_KINDS))}"
        )
    if not url:
        return {
            "default": {
                "BACKEND": "channels.layers.InMemoryChannelLayer",
                "CONFIG": {"capacity": CHANNEL_CAPACITY},
            }
        }
    parts = _parse_url("REDIS_URL", url)
    if parts.scheme not in REDIS_SCHEMES:
        raise _unsupported("REDIS_URL", parts.scheme, url, "use redis://host:6379/0")
    if parts.scheme != "unix" and not parts.hostname:
        raise ImproperlyConfigured(f"REDIS_URL: no host in {redact_url(url)!r}")
    # Redis's pub/sub ignores the database number: without a prefix of their own, two
    # installations on one Redis hear each other's dashboard events (the check names).
    config: dict = {"hosts": [url], "prefix": f"asgi-db{redis_database(url)}"}
    if kind == "core":
        config |= {"capacity": CHANNEL_CAPACITY, "group_expiry": GROUP_EXPIRY}
    return {"default": {"BACKEND": LAYER_KINDS[kind], "CONFIG": config}}


#: ``SITE_URL`` when it is not set: this machine, as ``manage.py serve`` listens by default.
DEFAULT_SITE_URL = "http://127.0.0.1:8000"


def site_url(url: str) -> str:
    """``SITE_URL``: where people reach this server (links in alerts), without a trailing
    slash; an http(s) URL with a host, nothing after its path."""
    parts = _parse_url("SITE_URL", url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ImproperlyConfigured(
            f"SITE_URL: expected http(s)://host[:port][/path], got {redact_url(url)!r}"
        )
    if parts.username is not None or parts.query or parts.fragment:
        raise ImproperlyConfigured(f"SITE_URL: no user, query or fragment, got {redact_url(url)!r}")
    return url.rstrip("/")


def email_config(url: str | None) -> dict:
    """Django's EMAIL_* settings from ``EMAIL_URL`` (django-environ's ``email_url``): e.g.
    ``smtp+tls://user:password@mail.example.com:587``. Unset: the console backend."""
    if not url:
        url = "consolemail://"
    parts = _parse_url("EMAIL_URL", url)
    if parts.scheme not in environ.Env.EMAIL_SCHEMES:
        schemes = ", ".join(sorted(environ.Env.EMAIL_SCHEMES))
        raise _unsupported("EMAIL_URL", parts.scheme, url, f"use one of {schemes}")
    if parts.scheme.startswith("smtp") and not parts.hostname:
        raise ImproperlyConfigured(f"EMAIL_URL: no host in {redact_url(url)!r}")
    config = environ.Env.email_url_config(url)
    # The console backend leaves the host and port empty: Django's defaults stay.
    return {name: value for name, value in config.items() if value is not None}


def alert_timing(
    base_delay: float, max_delay: float, attempts: int, send_timeout: float, lease: float
) -> dict:
    """The alert sender's knobs, each checked against the others: ALERT_RETRY_BASE_DELAY,
    ALERT_RETRY_MAX_DELAY, ALERT_RETRY_ATTEMPTS, ALERT_SEND_TIMEOUT, ALERT_LEASE_SECONDS."""
    for name, value in (
        ("ALERT_RETRY_BASE_DELAY", base_delay),
        ("ALERT_RETRY_MAX_DELAY", max_delay),
        ("ALERT_SEND_TIMEOUT", send_timeout),
        ("ALERT_LEASE_SECONDS", lease),
    ):
        if not math.isfinite(value) or value < 0:
            raise ImproperlyConfigured(f"{name}: must be a number, 0 or more, got {value}")
    _at_least("ALERT_RETRY_ATTEMPTS", attempts, 0)
    if max_delay < base_delay:
        raise ImproperlyConfigured(
            f"ALERT_RETRY_MAX_DELAY: must be at least ALERT_RETRY_BASE_DELAY ({base_delay}), "
            f"got {max_delay}"
        )
    if send_timeout <= 0:
        raise ImproperlyConfigured(f"ALERT_SEND_TIMEOUT: must be above 0, got {send_timeout}")
    # A claim must outlive the send it covers, or a second runner sends while the first waits.
    if lease <= send_timeout:
        raise ImproperlyConfigured(
            f"ALERT_LEASE_SECONDS: must be longer than ALERT_SEND_TIMEOUT ({send_timeout}), "
            f"got {lease}"
        )
    return {
        "ALERT_RETRY_BASE_DELAY": base_delay,
        "ALERT_RETRY_MAX_DELAY": max_delay,
        "ALERT_RETRY_ATTEMPTS": attempts,
        "ALERT_SEND_TIMEOUT": send_timeout,
        "ALERT_LEASE_SECONDS": lease,
    }


def finite_at_least(name: str, value: float, minimum: float) -> float:
    """``value`` when it is a number (not NaN or infinite) and at least ``minimum``."""
    if not math.isfinite(value) or value < minimum:
        raise ImproperlyConfigured(f"{name}: must be a number, {minimum:g} or more, got {value}")
    return value


def positive_days(name: str, value: int) -> int:
    """A retention in whole days, 1 or more: 0 or less would let the next prune delete all."""
    if value < 1:
        raise ImproperlyConfigured(
            f"{name}: must be a whole number of days, 1 or more, got {value}"
        )
    return value


def time_zone(name: str) -> str:
    """``TIME_ZONE``: a name the tz database knows (``Europe/Paris``, ``UTC``)."""
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ImproperlyConfigured(
            f"TIME_ZONE: unknown time zone {name!r}; use a tz database name such as "
            "Europe/Paris or UTC"
        ) from None
    return name


def log_file(path: str) -> str:
    """``LOG_FILE``: a file this process can append to, in a folder that already exists (a
    log file never creates folders: a typo would otherwise scatter them). Opened once here, so
    that a read-only or special place (``/proc``) fails at start, not at the first line."""
    file = Path(path)
    if not file.parent.is_dir():
        raise ImproperlyConfigured(f"LOG_FILE: the folder {str(file.parent)!r} does not exist")
    if file.is_dir():
        raise ImproperlyConfigured(f"LOG_FILE: {path!r} is a folder, not a file")
    try:
        with open(file, "a", encoding="utf-8"):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ImproperlyConfigured(f"LOG_FILE: {path!r} is not writable: {reason}") from None
    return path


def _unsupported(name: str, scheme: str, url: str, hint: str) -> ImproperlyConfigured:
    what = f"unsupported scheme {scheme!r}" if scheme else "no scheme"
    return ImproperlyConfigured(f"{name}: {what} in {redact_url(url)!r}; {hint}")


def redis_database(url: str) -> int:
    """A Redis URL's database number: its path (``?db=`` for ``unix://``), 0 when it names
    none. ``/notanumber`` is refused, not silently read as database 0."""
    parts = _parse_url("REDIS_URL", url)
    if parts.scheme == "unix":
        number = parse_qs(parts.query).get("db", [""])[0]
    else:
        number = parts.path.strip("/")
    if number and not number.isdigit():
        raise ImproperlyConfigured(
            f"REDIS_URL: the database must be a number (redis://host:6379/0), "
            f"got {number!r} in {redact_url(url)!r}"
        )
    return int(number or 0)


def proxy_ssl_header(value: str) -> tuple[str, str] | None:
    """``SECURE_PROXY_SSL_HEADER``: ``X-Forwarded-Proto=https`` as Django wants it,
    ``("HTTP_X_FORWARDED_PROTO", "https")``; empty: None (no proxy says so)."""
    if not value.strip():
        return None
    header, equals, expected = value.partition("=")
    header, expected = header.strip(), expected.strip()
    if (
        not equals
        or not header
        or not expected
        or not all(c.isalnum() or c in "-_" for c in header)
    ):
        raise ImproperlyConfigured(
            f"SECURE_PROXY_SSL_HEADER: expected Header-Name=value such as "
            f"X-Forwarded-Proto=https, got {value!r}"
        )
    name = header.upper().replace("-", "_")
    return (name if name.startswith("HTTP_") else f"HTTP_{name}", expected)
