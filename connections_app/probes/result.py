"""What one probe run found."""

from __future__ import annotations

from dataclasses import dataclass

from connections_app.errors import ErrorCategory, classify
from connections_app.redaction import redact

MAX_MESSAGE = 500


@dataclass(frozen=True)
class ProbeResult:
    ok: bool
    latency_ms: float | None
    http_status: int | None = None
    error_category: str = ""
    error_message: str = ""

    @classmethod
    def success(cls, latency_ms: float, http_status: int | None = None) -> ProbeResult:
        return cls(ok=True, latency_ms=latency_ms, http_status=http_status)

    @classmethod
    def failure(
        cls,
        category: ErrorCategory,
        message: str,
        latency_ms: float | None = None,
        http_status: int | None = None,
    ) -> ProbeResult:
        return cls(
            ok=False,
            latency_ms=latency_ms,
            http_status=http_status,
            error_category=category.value,
            error_message=redact(message)[:MAX_MESSAGE],
        )

    @classmethod
    def from_exception(cls, exc: BaseException, latency_ms: float | None = None) -> ProbeResult:
        return cls.failure(classify(exc), describe(exc), latency_ms)


def describe(exc: BaseException) -> str:
    """``exc`` in one line a person can act on: its type and what went wrong."""
    name = type(exc).__name__
    history = getattr(exc, "history", None)
    if name == "TooManyRedirects" and history is not None:
        # aiohttp's own text is "302, message='', url=...": the count says what happened.
        return f"{name}: gave up after {len(history)} redirects (a redirect loop?)"
    os_error, host = getattr(exc, "os_error", None), getattr(exc, "host", None)
    if isinstance(os_error, OSError) and host is not None:
        # aiohttp's ClientConnectorError says "ssl:default" even for plain http://: the
        # address and the socket's reason are all that matter.
        reason = os_error.strerror or str(os_error)
        return f"{name}: cannot connect to {host}:{getattr(exc, 'port', '?')}: {reason}"
    return f"{name}: {str(exc) or name}"
