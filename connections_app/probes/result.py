"""What one probe run found."""

from __future__ import annotations

from dataclasses import dataclass

from connections_app.errors import ErrorCategory, causes, classify
from connections_app.guard import BlockedAddress
from connections_app.redaction import redact

MAX_MESSAGE = 500
#: The most of a target's own words (an exception's text, a body) a message may quote: enough
#: to recognise an error, too little to read a service's banner or a page through a check.
MAX_EXCERPT = 160


def excerpt(text: str, limit: int = MAX_EXCERPT) -> str:
    """``text`` on one line, redacted, cut to ``limit`` characters: what an answer may show."""
    flat = " ".join("".join(c if c.isprintable() else " " for c in text).split())
    flat = redact(flat)
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


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
        category = classify(exc)
        if category is ErrorCategory.BLOCKED:
            blocked = next(c for c in causes(exc) if isinstance(c, BlockedAddress))
            return cls.failure(category, f"blocked: {blocked.strerror}", latency_ms)
        # An exception's text can quote what the target sent (a banner, a status line).
        text = excerpt(str(exc) or type(exc).__name__)
        return cls.failure(category, f"{type(exc).__name__}: {text}", latency_ms)
