"""The one error classifier: what kind of failure an exception is.

Classification looks at exception classes, errno values, SQLSTATE codes and SQLite result codes,
walking the chain of causes (requests wraps urllib3 which wraps the socket error; Django wraps
the driver's error). English message text is consulted only where a driver offers nothing else.
"""

from __future__ import annotations

import asyncio
import errno
import re
import socket
import sqlite3
import ssl
from enum import StrEnum

from connections_app.guard import BlockedAddress


class Severity(StrEnum):
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"
    CRITICAL = "critical"


class ErrorCategory(StrEnum):
    TIMEOUT = "timeout"
    REFUSED = "refused"
    RESET = "reset"
    DNS = "dns"
    TLS = "tls"
    HTTP_4XX = "http_4xx"
    HTTP_5XX = "http_5xx"
    DB_LOCKED = "db_locked"
    DB_DISCONNECTED = "db_disconnected"
    CHANNEL_FULL = "channel_full"
    CLIENT_GONE = "client_gone"
    #: An HTTP answer in the expected range whose body lacks the expected text.
    BODY_MISMATCH = "body_mismatch"
    #: Redirects that never end (a loop) or go on longer than a client follows.
    REDIRECTS = "redirects"
    #: The database has no tables for this app: ``manage.py migrate`` was not run against it.
    MISSING_TABLES = "missing_tables"
    #: An upside-down check's target answered: the one failure that is a success elsewhere.
    ANSWERED = "answered"
    #: The guard refused the address before any socket was made (``guard.py``).
    BLOCKED = "blocked"
    #: A success whose TLS certificate expires within the check's ``tls_warn_days``.
    TLS_EXPIRING = "tls_expiring"
    #: A push check's job said it failed (``/fail``, a non-zero exit code).
    REPORTED = "reported"
    #: A server answered our login with a "no" that no wait changes: a wrong user, password
    #: or database name (PostgreSQL's FATAL, Redis's AUTH). Never retried.
    AUTH = "auth"
    UNKNOWN = "unknown"

    @property
    def severity(self) -> Severity:
        return _SEVERITY[self]

    @property
    def retryable(self) -> bool:
        """Whether trying again may help somewhere (``RETRYABLE``)."""
        return self in RETRYABLE


_SEVERITY = {
    ErrorCategory.TIMEOUT: Severity.WARNING,
    ErrorCategory.REFUSED: Severity.ERROR,
    ErrorCategory.RESET: Severity.WARNING,
    ErrorCategory.DNS: Severity.ERROR,
    ErrorCategory.TLS: Severity.ERROR,
    ErrorCategory.HTTP_4XX: Severity.WARNING,
    ErrorCategory.HTTP_5XX: Severity.ERROR,
    ErrorCategory.DB_LOCKED: Severity.WARNING,
    ErrorCategory.DB_DISCONNECTED: Severity.ERROR,
    ErrorCategory.CHANNEL_FULL: Severity.WARNING,
    ErrorCategory.CLIENT_GONE: Severity.INFO,
    ErrorCategory.BODY_MISMATCH: Severity.ERROR,
    ErrorCategory.REDIRECTS: Severity.ERROR,
    ErrorCategory.ANSWERED: Severity.WARNING,
    ErrorCategory.MISSING_TABLES: Severity.CRITICAL,
    ErrorCategory.BLOCKED: Severity.ERROR,
    ErrorCategory.TLS_EXPIRING: Severity.WARNING,
    ErrorCategory.REPORTED: Severity.ERROR,
    ErrorCategory.AUTH: Severity.ERROR,
    ErrorCategory.UNKNOWN: Severity.ERROR,
}

# What "retryable" means, once for the whole project. Each retry loop names the set that fits
# where it runs (``retry.retry(func, policy, retry_on=...)``); nothing else decides.
#: The network failed on the way: the same request may get through later.
NETWORK_TRANSIENT = frozenset(
    {ErrorCategory.TIMEOUT, ErrorCategory.REFUSED, ErrorCategory.RESET, ErrorCategory.DNS}
)
#: Our own database: a lock that will be released, a connection that can be made again.
DATABASE_TRANSIENT = frozenset({ErrorCategory.DB_LOCKED, ErrorCategory.DB_DISCONNECTED})
#: A statement that did not run because of a lock (a dead connection is replaced, not waited).
DATABASE_LOCKED = frozenset({ErrorCategory.DB_LOCKED})
#: A WebSocket send that failed for good: the client's connection is gone.
DELIVERY_PERMANENT = frozenset(
    {ErrorCategory.CLIENT_GONE, ErrorCategory.RESET, ErrorCategory.REFUSED}
)
#: Anything that may succeed if tried again somewhere: never a refusal by the other side
#: (TLS, HTTP 4xx) nor a client that left.
RETRYABLE = (
    NETWORK_TRANSIENT
    | DATABASE_TRANSIENT
    | {ErrorCategory.HTTP_5XX, ErrorCategory.CHANNEL_FULL, ErrorCategory.UNKNOWN}
)


def is_retryable(exc: BaseException, categories: frozenset[ErrorCategory] = RETRYABLE) -> bool:
    """Whether ``exc`` falls in ``categories``: the one test every retry decision makes."""
    return classify(exc) in categories


_REFUSED_ERRNOS = {errno.ECONNREFUSED}
_RESET_ERRNOS = {errno.ECONNRESET, errno.EPIPE, errno.ECONNABORTED, errno.ESHUTDOWN}
_TIMEOUT_ERRNOS = {errno.ETIMEDOUT}
_UNREACHABLE_ERRNOS = {errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EADDRNOTAVAIL}

# SQLite primary result codes (sqlite3.h): BUSY, LOCKED.
_SQLITE_LOCKED_CODES = {5, 6}
# SQLSTATE classes and codes that mean "the connection is gone, the statement did not run".
_PG_DISCONNECT_CLASSES = ("08",)
_PG_DISCONNECT_CODES = {"57P01", "57P02", "57P03"}
_PG_LOCK_CODES = {"55P03", "40P01", "40001"}
# A connection attempt the server answered. libpq keeps only the text of the server's error
# ("...failed: FATAL:  database "x" does not exist"), without its SQLSTATE, so the text must
# tell "come back later" (57P03: starting up, shutting down, in recovery; 53300: too many
# connections) from a wrong database name, user or password, which no wait will fix.
_PG_CONNECT_FAILED = ("connection failed:", "connection is bad:")  # psycopg's own prefixes
_PG_SERVER_SAID = "FATAL:  "
_PG_TRY_LATER = (
    "the database system is ",
    "sorry, too many clients",
    "remaining connection slots",
    "too many connections",
)


def classify(exc: BaseException) -> ErrorCategory:
    """The category of ``exc``, looking through its causes until one is recognised.

    The lowest-level evidence wins: an errno or a driver code anywhere in the chain is more
    precise than a wrapper's class (urllib3's ``NewConnectionError`` is a subclass of its
    timeout error even when the socket said "connection refused").
    """
    links = causes(exc)
    for check in (_by_os_error, _by_database, _by_http_status, _by_library, _by_base_class):
        for link in links:
            category = check(link)
            if category is not None:
                return category
    return ErrorCategory.UNKNOWN


def http_status_category(status: int) -> ErrorCategory | None:
    if 400 <= status < 500:
        return ErrorCategory.HTTP_4XX
    if 500 <= status < 600:
        return ErrorCategory.HTTP_5XX
    return None


def causes(exc: BaseException) -> list[BaseException]:
    """``exc`` and everything it wraps, outermost first, without loops."""
    seen: list[BaseException] = []
    pending: list[BaseException] = [exc]
    while pending and len(seen) < 16:
        current = pending.pop(0)
        if any(current is s for s in seen):
            continue
        seen.append(current)
        for inner in _wrapped(current):
            if isinstance(inner, BaseException):
                pending.append(inner)
    return seen


def _wrapped(exc: BaseException) -> list[object]:
    inner: list[object] = [exc.__cause__, exc.__context__]
    # urllib3 keeps the socket error in .reason; aiohttp in .os_error; requests in args[0].
    # vars() for reason: websockets' ConnectionClosed has a deprecated ``reason`` property.
    inner += [getattr(exc, "__dict__", {}).get("reason"), getattr(exc, "os_error", None)]
    inner += [a for a in getattr(exc, "args", ()) if isinstance(a, BaseException)]
    return [i for i in inner if i is not None]


def _by_library(exc: BaseException) -> ErrorCategory | None:
    name = _qualified_names(exc)
    if "channels.exceptions.ChannelFull" in name:
        return ErrorCategory.CHANNEL_FULL
    if name & {
        "websockets.exceptions.ConnectionClosed",
        "channels.exceptions.StopConsumer",
        "channels.exceptions.DenyConnection",
    }:
        return ErrorCategory.CLIENT_GONE
    # A server that answered "no" (wrong user or password): redis-py files it under its
    # ConnectionError, but no wait and no reconnect will change the answer.
    if name & {"redis.exceptions.AuthenticationError", "redis.exceptions.AuthorizationError"}:
        return ErrorCategory.AUTH
    # aiohttp keeps a reset after the headers only as text inside ClientPayloadError. redis-py
    # raises its own ConnectionError, with no socket error inside, when the server hangs up.
    if name & {
        "aiohttp.client_exceptions.ServerDisconnectedError",
        "aiohttp.client_exceptions.ClientPayloadError",
        "redis.exceptions.ConnectionError",
    }:
        return ErrorCategory.RESET
    if name & {
        "aiohttp.client_exceptions.ClientSSLError",
        "requests.exceptions.SSLError",
        "urllib3.exceptions.SSLError",
    } or isinstance(exc, (ssl.SSLError, ssl.CertificateError)):
        return ErrorCategory.TLS
    if name & {
        "aiohttp.client_exceptions.TooManyRedirects",
        "requests.exceptions.TooManyRedirects",
    }:
        return ErrorCategory.REDIRECTS
    if name & {
        "urllib3.exceptions.NameResolutionError",
        "dns.resolver.NXDOMAIN",
        "dns.resolver.NoAnswer",
        "dns.resolver.NoNameservers",
    }:
        return ErrorCategory.DNS
    if name & {
        "requests.exceptions.Timeout",
        "urllib3.exceptions.TimeoutError",
        "aiohttp.client_exceptions.ServerTimeoutError",
        "redis.exceptions.TimeoutError",
        "dns.exception.Timeout",
    } or isinstance(exc, (TimeoutError, asyncio.TimeoutError, socket.timeout)):
        return ErrorCategory.TIMEOUT
    return None


def _by_http_status(exc: BaseException) -> ErrorCategory | None:
    status = getattr(exc, "status", None)
    response = getattr(exc, "response", None)
    if status is None and response is not None:
        status = getattr(response, "status_code", None)
    if isinstance(status, int):
        return http_status_category(status)
    return None


def _by_database(exc: BaseException) -> ErrorCategory | None:
    if _missing_table(exc):
        return ErrorCategory.MISSING_TABLES
    if isinstance(exc, sqlite3.OperationalError):
        code = getattr(exc, "sqlite_errorcode", None)
        if code is not None and code & 0xFF in _SQLITE_LOCKED_CODES:
            return ErrorCategory.DB_LOCKED
        # CANTOPEN (a missing directory, no permission) is not waited out: no retry opens it.
        return None
    if isinstance(exc, sqlite3.ProgrammingError) and "closed database" in str(exc):
        return ErrorCategory.DB_DISCONNECTED
    return _by_psycopg(exc)


# SQLSTATE 42P01 undefined_table. SQLite has no code of its own for it (a plain ERROR), so its
# message is the evidence.
_PG_UNDEFINED_TABLE = "42P01"
_SQLITE_NO_TABLE = re.compile(r"^no such table: (\S+)")
_PG_NO_RELATION = re.compile(r'relation "([^"]+)" does not exist')


def _missing_table(exc: BaseException) -> str | None:
    """The name of the table ``exc`` says is missing ("?" when it names none), or None."""
    if isinstance(exc, sqlite3.OperationalError):
        found = _SQLITE_NO_TABLE.match(str(exc))
        return found.group(1) if found else None
    if getattr(exc, "sqlstate", None) == _PG_UNDEFINED_TABLE:
        found = _PG_NO_RELATION.search(str(exc))
        return found.group(1) if found else "?"
    return None


def missing_tables_message(exc: BaseException) -> str | None:
    """One line for a database that was never migrated, or None when ``exc`` is not that."""
    for link in causes(exc):
        table = _missing_table(link)
        if table is not None:
            return f"the database has no table {table}: run `manage.py migrate`"
    return None


def _by_psycopg(exc: BaseException) -> ErrorCategory | None:
    if not _qualified_names(exc) & {"psycopg.OperationalError", "psycopg.InterfaceError"}:
        return None
    sqlstate = getattr(exc, "sqlstate", None)
    if sqlstate in _PG_LOCK_CODES:
        return ErrorCategory.DB_LOCKED
    if sqlstate is None:
        # psycopg gives no SQLSTATE when the socket itself failed, the connection is closed,
        # or the server turned a connection attempt away.
        if _pg_connect_refused_for_good(exc):
            return ErrorCategory.AUTH
        return ErrorCategory.DB_DISCONNECTED
    if sqlstate in _PG_DISCONNECT_CODES:
        return ErrorCategory.DB_DISCONNECTED
    if sqlstate.startswith(_PG_DISCONNECT_CLASSES):
        return ErrorCategory.DB_DISCONNECTED
    return None


def _pg_connect_refused_for_good(exc: BaseException) -> bool:
    """A connection attempt the server answered with a "no" that waiting will not change."""
    # The first line is the last attempt's (psycopg lists every host's failure below it).
    first_line = str(exc).partition("\n")[0]
    if not first_line.startswith(_PG_CONNECT_FAILED):
        return False
    # The server asked for a password and there is none: libpq gives up without a FATAL.
    if getattr(getattr(exc, "pgconn", None), "needs_password", False):
        return True
    _, answered, answer = first_line.partition(_PG_SERVER_SAID)
    return bool(answered) and not answer.startswith(_PG_TRY_LATER)


def _by_os_error(exc: BaseException) -> ErrorCategory | None:
    if isinstance(exc, BlockedAddress):  # before the errno it carries for printing's sake
        return ErrorCategory.BLOCKED
    if isinstance(exc, socket.gaierror):
        return ErrorCategory.DNS
    if isinstance(exc, ConnectionRefusedError):
        return ErrorCategory.REFUSED
    if isinstance(exc, (ConnectionResetError, BrokenPipeError, ConnectionAbortedError)):
        return ErrorCategory.RESET
    if isinstance(exc, OSError) and exc.errno is not None:
        if exc.errno in _REFUSED_ERRNOS or exc.errno in _UNREACHABLE_ERRNOS:
            return ErrorCategory.REFUSED
        if exc.errno in _RESET_ERRNOS:
            return ErrorCategory.RESET
        if exc.errno in _TIMEOUT_ERRNOS:
            return ErrorCategory.TIMEOUT
    return None


def _by_base_class(exc: BaseException) -> ErrorCategory | None:
    """Last resort, after every more precise look: a bare ``ConnectionError`` (no errno, no
    library class we know) still says the connection is gone."""
    return ErrorCategory.RESET if isinstance(exc, ConnectionError) else None


def _qualified_names(exc: BaseException) -> set[str]:
    """Every class ``exc`` is an instance of, by module and name: no import of the library."""
    return {f"{cls.__module__}.{cls.__qualname__}" for cls in type(exc).__mro__} | {
        f"{cls.__module__.split('.')[0]}.{cls.__qualname__}" for cls in type(exc).__mro__
    }
