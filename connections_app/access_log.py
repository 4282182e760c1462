"""daphne's access log through our logging: redacted, rotated with LOG_FILE, one format.

daphne writes each access line straight to a stream (stdout, or ``--access-log FILE``), past the
redaction filter and the rotation. ``install()`` makes its writer log to the ``daphne.access``
logger instead, whatever stream daphne opened; a query string such as ``?token=...`` is then
masked like any other line.
"""

from __future__ import annotations

import logging

from daphne.access import AccessLogGenerator

logger = logging.getLogger("daphne.access")


def write_entry(
    self: AccessLogGenerator,
    host: str | None,
    date: object,
    request: str,
    status: int | None = None,
    length: int | None = None,
    ident: str | None = None,
    user: str | None = None,
) -> None:
    """One access line as a log record; the time comes from the log's own format."""
    logger.info('%s "%s" %s %s', host or "-", request, status or "-", length or "-")


def install() -> None:
    """Route every daphne access line, of ``daphne`` and of ``manage.py serve``, to logging.
    Replacing the method (not the class) also reaches a writer daphne made before."""
    AccessLogGenerator.write_entry = write_entry


def access_logger() -> AccessLogGenerator:
    """The access log writer for a server we start ourselves (``manage.py serve``)."""
    install()
    return AccessLogGenerator(stream=None)
