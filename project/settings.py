"""Connection Health settings: everything from the environment (and an optional ``.env``).

With no variable set this is the embedded default: SQLite in the repo folder, the in-memory
channel layer. DEBUG is off unless asked for: the debug page shows settings, and this server
may be reachable by more than its operator. ``scripts/run`` writes a random SECRET_KEY to
``.env`` on first start. ``.env.example`` documents every variable.
"""

from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

from connections_app.logging_config import build_logging_config
from project.config import (
    DEFAULT_SITE_URL,
    alert_timing,
    channel_layers,
    database_config,
    email_config,
    finite_at_least,
    log_file,
    positive_days,
    proxy_ssl_header,
    site_url,
    strict_bool,
    time_zone,
)

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)


def _read(name: str, cast, default):
    if cast is bool:
        return strict_bool(name, env.str(name, default=""), default)
    try:
        return env(name, cast=cast, default=default)
    except (ValueError, ImproperlyConfigured) as exc:
        if cast in (int, float):  # not Python's "invalid literal for int() with base 10"
            wanted = "a whole number" if cast is int else "a number"
            raise ImproperlyConfigured(
                f"{name}: expected {wanted}, got {env.str(name)!r}"
            ) from None
        raise ImproperlyConfigured(f"{name}: {exc}") from None


DEBUG = _read("DEBUG", bool, False)
SECRET_KEY = env.str("SECRET_KEY", default="")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("SECRET_KEY: required when DEBUG is false")
    SECRET_KEY = "insecure-development-key-set-SECRET_KEY-in-production"

ALLOWED_HOSTS = _read("ALLOWED_HOSTS", list, ["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = _read("CSRF_TRUSTED_ORIGINS", list, [])

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "connections_app",
    "realtime",
]

MIDDLEWARE = [
    # First: sessions and auth query the database, and a web request must fail in one connect
    # timeout when the database is away, not wait out the runner's backoff.
    "connections_app.db.fail_fast.fail_fast_middleware",
    "django.middleware.security.SecurityMiddleware",
    # Static files before sessions and auth: they need neither.
    "connections_app.static_files.StaticFilesMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "project.urls"
ASGI_APPLICATION = "project.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {
    "default": database_config(
        env.str("DATABASE_URL", default=""),
        BASE_DIR,
        conn_max_age=_read("CONN_MAX_AGE", int, None),
        pool=_read("DB_POOL", bool, False),
        connect_timeout=_read("DB_CONNECT_TIMEOUT", int, 5),
        busy_timeout=finite_at_least(
            "SQLITE_BUSY_TIMEOUT", _read("SQLITE_BUSY_TIMEOUT", float, 5.0), 0
        ),
        retry_attempts=_read("DB_RETRY_ATTEMPTS", int, 3),
        retry_base_delay=_read("DB_RETRY_BASE_DELAY", float, 1.0),
    )
}
CHANNEL_LAYERS = channel_layers(
    env.str("REDIS_URL", default=""), _read("CHANNEL_LAYER_KIND", str, "pubsub")
)

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = time_zone(_read("TIME_ZONE", str, "UTC"))
USE_I18N = True
USE_TZ = True

# Dates as the check's own tables show them, on every page (not "Nov. 30, 2026, 10:59 p.m.").
FORMAT_MODULE_PATH = ["project.formats"]

# HTTPS behind a proxy (docs/DEPLOY.md): all off by default, so that plain http://127.0.0.1
# keeps working; the production example turns them on.
SESSION_COOKIE_SECURE = _read("SESSION_COOKIE_SECURE", bool, False)
CSRF_COOKIE_SECURE = _read("CSRF_COOKIE_SECURE", bool, False)
SECURE_SSL_REDIRECT = _read("SECURE_SSL_REDIRECT", bool, False)
SECURE_HSTS_SECONDS = _read("SECURE_HSTS_SECONDS", int, 0)
if SECURE_HSTS_SECONDS < 0:
    raise ImproperlyConfigured(f"SECURE_HSTS_SECONDS: 0 or more, got {SECURE_HSTS_SECONDS}")
SECURE_HSTS_INCLUDE_SUBDOMAINS = _read("SECURE_HSTS_INCLUDE_SUBDOMAINS", bool, False)
SECURE_HSTS_PRELOAD = _read("SECURE_HSTS_PRELOAD", bool, False)
#: ``X-Forwarded-Proto=https``: the header by which the proxy says the request came over HTTPS.
SECURE_PROXY_SSL_HEADER = proxy_ssl_header(_read("SECURE_PROXY_SSL_HEADER", str, ""))
#: /health/ is probed by load balancers over plain HTTP inside the network.
SECURE_REDIRECT_EXEMPT = [r"^health/$"]

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = BASE_DIR / "staticfiles"
# WhiteNoise serves from the apps' folders too, so the embedded default needs no
# collectstatic; after one, the collected copies in STATIC_ROOT serve as well.
WHITENOISE_USE_FINDERS = True

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
LOGIN_URL = "admin:login"

# Connection Health's own knobs. Raw results are kept RESULT_RETENTION_DAYS, the hourly and
# daily rollups ROLLUP_RETENTION_DAYS (a year and a month by default: last year's figures).
RESULT_RETENTION_DAYS = positive_days(
    "RESULT_RETENTION_DAYS", _read("RESULT_RETENTION_DAYS", int, 14)
)
ROLLUP_RETENTION_DAYS = positive_days(
    "ROLLUP_RETENTION_DAYS", _read("ROLLUP_RETENTION_DAYS", int, 400)
)


def _at_least_one(name: str, default: int) -> int:
    value = _read(name, int, default)
    if value < 1:
        raise ImproperlyConfigured(f"{name}: must be 1 or more, got {value}")
    return value


#: A bearer token that lets a script read /health/'s detail without a staff session (empty:
#: staff only). Anyone else gets the overall status and counts.
HEALTH_TOKEN = _read("HEALTH_TOKEN", str, "")
if HEALTH_TOKEN and len(HEALTH_TOKEN) < 16:
    raise ImproperlyConfigured("HEALTH_TOKEN: use at least 16 characters (or leave it unset)")

#: The bearer token Prometheus sends to read /metrics (empty: staff sessions only).
METRICS_TOKEN = _read("METRICS_TOKEN", str, "")
if METRICS_TOKEN and len(METRICS_TOKEN) < 16:
    raise ImproperlyConfigured("METRICS_TOKEN: use at least 16 characters (or leave it unset)")

#: More than FLAP_CHANGES status changes within FLAP_WINDOW_MINUTES make a check flapping,
#: until it has been stable for a whole window.
FLAP_CHANGES = _at_least_one("FLAP_CHANGES", 5)
FLAP_WINDOW_MINUTES = _at_least_one("FLAP_WINDOW_MINUTES", 30)

#: Probes of one target (host and port) a runner runs at once: a slow or dead host holds only
#: these, never the slots of other hosts (connections_app/probe_slots.py).
PROBES_PER_TARGET = _at_least_one("PROBES_PER_TARGET", 10)

#: Seconds a stopping runner (SIGTERM, SIGINT) gives its running checks before it cancels
#: them: below the 10 s after which Docker sends SIGKILL, so what finished is stored.
STOP_TIMEOUT = _read("STOP_TIMEOUT", float, 10.0)
if not 0 <= STOP_TIMEOUT <= 3600:
    raise ImproperlyConfigured(f"STOP_TIMEOUT: seconds from 0 to 3600, got {STOP_TIMEOUT:g}")
#: Seconds a connection to the web server (``serve``, or the ``daphne`` command) may send
#: nothing while no request is in progress before it is closed (connections_app/daphne_server.py).
IDLE_TIMEOUT = _at_least_one("IDLE_TIMEOUT", 20)
#: Checks may not connect to private addresses (10/8, 172.16/12, 192.168/16, fc00::/7) or to
#: loopback when these are true; link-local and metadata addresses are refused always
#: (connections_app/guard.py, docs/SECURITY.md).
CHECK_DENY_PRIVATE = _read("CHECK_DENY_PRIVATE", bool, False)
CHECK_DENY_LOOPBACK = _read("CHECK_DENY_LOOPBACK", bool, False)
#: Where people reach this server (https://health.example.com): alerts link there, push checks
#: show their ping URLs there (left at the default: on the admin page's own host).
SITE_URL = site_url(_read("SITE_URL", str, DEFAULT_SITE_URL))

# Alerts (docs/ALERTS.md): the outbox's retries follow retry.TASK, min(60 * 2**n, 300) s with
# 3 retries, unless changed here; a send may take ALERT_SEND_TIMEOUT seconds, and a claimed
# alert is taken over by another runner ALERT_LEASE_SECONDS after its claim.
globals().update(
    alert_timing(
        base_delay=_read("ALERT_RETRY_BASE_DELAY", float, 60.0),
        max_delay=_read("ALERT_RETRY_MAX_DELAY", float, 300.0),
        attempts=_read("ALERT_RETRY_ATTEMPTS", int, 3),
        send_timeout=_read("ALERT_SEND_TIMEOUT", float, 15.0),
        lease=_read("ALERT_LEASE_SECONDS", float, 60.0),
    )
)
# Email alerts go through Django's mail backend; EMAIL_URL unset prints them to the console.
globals().update(email_config(_read("EMAIL_URL", str, "")))
EMAIL_TIMEOUT = ALERT_SEND_TIMEOUT  # noqa: F821 - set just above
DEFAULT_FROM_EMAIL = _read("DEFAULT_FROM_EMAIL", str, "connection-health@localhost")

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def _level(name: str, default: str) -> str:
    level = _read(name, str, default).upper()
    if level not in LEVELS:
        raise ImproperlyConfigured(f"{name}: {level!r} is not one of {', '.join(LEVELS)}")
    return level


_LOG_FILE = _read("LOG_FILE", str, "")
_LOG_MAX_BYTES = _read("LOG_MAX_BYTES", int, 10 * 1024 * 1024)
if _LOG_MAX_BYTES < 1:  # 0 would never rotate, a negative number is a mistake
    raise ImproperlyConfigured(f"LOG_MAX_BYTES: bytes, 1 or more, got {_LOG_MAX_BYTES}")
_LOG_BACKUP_COUNT = _read("LOG_BACKUP_COUNT", int, 5)
if _LOG_BACKUP_COUNT < 0:
    raise ImproperlyConfigured(f"LOG_BACKUP_COUNT: 0 or more, got {_LOG_BACKUP_COUNT}")
LOGGING = build_logging_config(
    log_level=_level("LOG_LEVEL", "INFO"),
    log_file=log_file(_LOG_FILE) if _LOG_FILE else None,
    enable_console=True,
    enable_file=bool(_LOG_FILE),
    json_lines=_read("LOG_JSON", bool, False),
    max_bytes=_LOG_MAX_BYTES,
    backup_count=_LOG_BACKUP_COUNT,
    third_party_level=_level("LOG_THIRD_PARTY_LEVEL", "WARNING"),
)
