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
        text = str(exc) or type(exc).__name__
        return cls.failure(classify(exc), f"{type(exc).__name__}: {text}", latency_ms)
