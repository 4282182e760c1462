"""Logging set-up: redaction on every handler, quiet third-party loggers, rotation by size.

``build_logging_config`` returns a ``dictConfig`` dict (Django's ``LOGGING`` in settings);
``setup_logging`` applies the same dict outside Django. Every handler carries the redaction
filter, which redacts a record once, whatever number of handlers it passes: its message, its
exception text (rendered there, so no formatter ever renders a raw traceback) and its stack.
Logs go to stderr: stdout belongs to commands such as ``runchecks --format json``.
"""

from __future__ import annotations

import json
import logging
import logging.config
import logging.handlers
import sys
from datetime import UTC, datetime

from connections_app.error_handler import report
from connections_app.redaction import bare_urls, redact

#: Libraries that log every request or reconnect at INFO: WARNING and above by default.
NOISY_LOGGERS = (
    "urllib3",
    "aiohttp.access",
    "daphne",
    "asyncio",
    "channels_redis",
    "django.channels.server",
)
PLAIN_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
#: Libraries that log a traceback for every failed reconnect (channels_redis's receive loops
#: log one a second while Redis is away): their exceptions go through the error handler.
RETRYING_LOGGERS = ("channels_redis.pubsub", "channels_redis.core")
#: The health endpoint: load balancers probe it, and its 503 is an answer, not an error.
HEALTH_PATH = "/health/"


class RedactionFilter(logging.Filter):
    """Secrets out of a record's message, %-arguments, exception and stack text, once.

    Every URL in the message is cut to scheme, host, port and path (``bare_urls``): whatever a
    library puts in a query string or user part never reaches a log line.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "redacted", False):
            return True  # a second handler's filter: already done
        record.redacted = True
        message = _message(record)
        record.msg = message if getattr(record, "clean_message", False) else bare_urls(message)
        record.args = None
        if record.exc_info and not record.exc_text:
            # Rendered here so that every handler, ours or not, reuses the redacted text.
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = bare_urls(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


class ToErrorHandler(logging.Filter):
    """Hands a record's exception to the error handler (one line per window) instead of
    letting a library log a traceback for each retry."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.exc_info or record.exc_info[1] is None:
            return True
        report(record.exc_info[1], record.name)
        return False


class RequestErrors(logging.Filter):
    """On ``django.request``: a view's unhandled exception goes to the error handler (the
    first in a window logged with its traceback, repeats counted), not a traceback per request;
    ``/health/`` answering 503 is its answer, not an error to log each time it is probed; a 404,
    and a 401 (``/metrics`` scraped without its token), are in the access log already (a
    scanner's 200 probes are not 200 more warnings)."""

    def filter(self, record: logging.LogRecord) -> bool:
        request = getattr(record, "request", None)
        path = getattr(request, "path", "")
        status = getattr(record, "status_code", None)
        if status in (401, 404) or (status == 503 and path == HEALTH_PATH):
            return False
        if not record.exc_info or record.exc_info[1] is None:
            return True
        report(record.exc_info[1], "http.request", path)
        return False


class JsonLinesFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and, if any, exception."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=False)


class StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is when a record arrives, not when configured.

    A stream captured at configuration goes stale when a test runner or a daemoniser swaps
    ``sys.stderr``: the summaries logged at interpreter exit would hit a closed file.
    """

    def __init__(self) -> None:
        logging.Handler.__init__(self)

    @property
    def stream(self):
        return sys.stderr


class RotatingFileHandler(logging.handlers.RotatingFileHandler):
    """The standard size-based rotation. It never creates the log's folder: a typo in
    LOG_FILE is refused at start (``project.config.log_file``), not made into folders."""


def build_logging_config(
    log_level: str = "INFO",
    log_file: str | None = None,
    enable_console: bool = True,
    enable_file: bool | None = None,
    json_lines: bool = False,
    max_bytes: int = 10 * 1024 * 1024,
    backup_count: int = 5,
    third_party_level: str = "WARNING",
    noisy_loggers: tuple[str, ...] = NOISY_LOGGERS,
) -> dict:
    """The ``dictConfig`` dict for these options.

    ``enable_file=None`` means "when ``log_file`` is given". Django's own ``django`` and
    ``django.server`` loggers lose the handlers Django gives them by default (which would
    bypass redaction and print twice) and propagate to ours instead.
    """
    if enable_file is None:
        enable_file = bool(log_file)
    if enable_file and not log_file:
        raise ValueError("enable_file=True needs a log_file path")
    formatter = "json" if json_lines else "plain"
    handlers: dict[str, dict] = {}
    if enable_console:
        handlers["console"] = {
            "class": f"{__name__}.StderrHandler",
            "filters": ["redact"],
            "formatter": formatter,
        }
    if enable_file:
        handlers["file"] = {
            "class": f"{__name__}.RotatingFileHandler",
            "filename": str(log_file),
            "maxBytes": max_bytes,
            "backupCount": backup_count,
            "encoding": "utf-8",
            "delay": True,
            "filters": ["redact"],
            "formatter": formatter,
        }
    quiet = {"level": third_party_level.upper(), "handlers": [], "propagate": True}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {
            "redact": {"()": f"{__name__}.RedactionFilter"},
            "to_error_handler": {"()": f"{__name__}.ToErrorHandler"},
            "request_errors": {"()": f"{__name__}.RequestErrors"},
        },
        "formatters": {
            "plain": {"format": PLAIN_FORMAT},
            "json": {"class": f"{__name__}.JsonLinesFormatter"},
        },
        "handlers": handlers,
        "root": {"level": log_level.upper(), "handlers": list(handlers)},
        "loggers": {
            "django": {"level": "NOTSET", "handlers": [], "propagate": True},
            "django.server": {"level": "NOTSET", "handlers": [], "propagate": True},
            "django.request": {
                "level": "NOTSET",
                "handlers": [],
                "propagate": True,
                "filters": ["request_errors"],
            },
            **{name: dict(quiet) for name in noisy_loggers},
            # daphne's access lines (connections_app.access_log): at INFO, like daphne's own.
            "daphne.access": {"level": "INFO", "handlers": [], "propagate": True},
            **{name: quiet | {"filters": ["to_error_handler"]} for name in RETRYING_LOGGERS},
        },
    }


def setup_logging(
    log_level: str = "INFO",
    log_file: str | None = None,
    enable_console: bool = True,
    enable_file: bool | None = None,
    json_lines: bool = False,
    max_bytes: int = 10 * 1024 * 1024,
    backup_count: int = 5,
    third_party_level: str = "WARNING",
    noisy_loggers: tuple[str, ...] = NOISY_LOGGERS,
) -> None:
    """Configure the process's logging (outside Django, which applies ``LOGGING`` itself)."""
    logging.config.dictConfig(
        build_logging_config(
            log_level=log_level,
            log_file=log_file,
            enable_console=enable_console,
            enable_file=enable_file,
            json_lines=json_lines,
            max_bytes=max_bytes,
            backup_count=backup_count,
            third_party_level=third_party_level,
            noisy_loggers=noisy_loggers,
        )
    )


def get_logger(name: str) -> logging.Logger:
    return logging.getLogger(name)


def _message(record: logging.LogRecord) -> str:
    """The record's text; a broken %-format must not leak its raw arguments either."""
    try:
        return record.getMessage()
    except Exception:
        # logging.Handler.handleError would print msg and args raw to stderr: avoid it.
        return f"unformattable log message {record.msg!r} with arguments {record.args!r}"
