"""What one probe run found."""

from __future__ import annotations

from dataclasses import dataclass, replace

from connections_app.errors import ErrorCategory, causes, classify
from connections_app.guard import BlockedAddress
from connections_app.redaction import bare_urls

MAX_MESSAGE = 500
#: The most of a target's own words (an exception's text, a body) a message may quote: enough
#: to recognise an error, too little to read a service's banner or a page through a check.
MAX_EXCERPT = 160


def excerpt(text: str, limit: int = MAX_EXCERPT) -> str:
    """``text`` on one line, redacted, cut to ``limit`` characters: what an answer may show."""
    # Redacted before flattening: a name split by a line break or an invisible character
    # (``pass\u200bword=``) must be seen whole.
    flat = bare_urls(text)
    flat = " ".join("".join(c if c.isprintable() else " " for c in flat).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


@dataclass(frozen=True)
class ProbeResult:
    ok: bool
    latency_ms: float | None
    http_status: int | None = None
    error_category: str = ""
    error_message: str = ""
    #: HTTPS: whole days the server's certificate had left (negative: expired).
    tls_days_left: int | None = None
    #: Push: what the job sent with its ping, redacted.
    ping_body: str = ""

    @classmethod
    def success(cls, latency_ms: float, http_status: int | None = None) -> ProbeResult:
        return cls(ok=True, latency_ms=latency_ms, http_status=http_status)

    def warn(self, category: ErrorCategory, message: str) -> ProbeResult:
        """This success with a reason to worry: the check is DEGRADED (``state.judge``)."""
        return replace(self, error_category=category.value, error_message=_message(message))

    def with_tls_days_left(self, days: int | None) -> ProbeResult:
        return replace(self, tls_days_left=days)

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
            error_message=_message(message),
        )

    @classmethod
    def from_exception(cls, exc: BaseException, latency_ms: float | None = None) -> ProbeResult:
        category = classify(exc)
        if category is ErrorCategory.BLOCKED:
            blocked = next(c for c in causes(exc) if isinstance(c, BlockedAddress))
            return cls.failure(category, blocked.strerror, latency_ms)
        # The words that matter sit at the end of a long chain (aiohttp's wrapper is an
        # ssl.CertificateError too, without them).
        verify = [getattr(c, "verify_message", None) for c in causes(exc)]
        reason = next((v for v in verify if v), None)
        if reason:
            return cls.failure(category, f"TLS certificate refused: {reason}", latency_ms)
        return cls.failure(category, describe(exc), latency_ms)


def describe(exc: BaseException) -> str:
    """``exc`` in one line a person can act on: its type and what went wrong."""
    name = type(exc).__name__
    os_error, host = getattr(exc, "os_error", None), getattr(exc, "host", None)
    if isinstance(os_error, OSError) and host is not None:
        # aiohttp's ClientConnectorError says "ssl:default" even for plain http://: the
        # address and the socket's reason are all that matter.
        reason = os_error.strerror or str(os_error)
        return f"{name}: cannot connect to {host}:{getattr(exc, 'port', '?')}: {reason}"
    # An exception's text can quote what the target sent (a banner, a status line).
    return f"{name}: {excerpt(str(exc) or name)}"


def _message(text: str) -> str:
    """What is stored and shown: redacted, and every URL cut to scheme, host, port and path,
    so no query string, user part or fragment an error quotes is ever kept."""
    return bare_urls(text)[:MAX_MESSAGE]
