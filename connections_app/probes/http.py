"""HTTP(S) probe: status in the expected range and, optionally, a text in the body."""

from __future__ import annotations

from urllib.parse import urlsplit

import aiohttp

from connections_app.connection_manager import ConnectionManager
from connections_app.errors import ErrorCategory, http_status_category
from connections_app.probes.result import ProbeResult
from connections_app.probes.timing import Stopwatch
from connections_app.probes.tls import days_left, judge_expiry

# Enough of a body to find the expected text in a health page; never the whole of a large one.
BODY_LIMIT = 64 * 1024


async def probe_http(check, manager: ConnectionManager) -> ProbeResult:
    clock = Stopwatch()
    # aiohttp refuses a decimal or hex host itself; this says which rule it would break.
    manager.guard.check(urlsplit(check.target).hostname or "")
    timeout = aiohttp.ClientTimeout(total=check.timeout)
    async with manager.get_connection() as session:
        async with session.get(check.target, timeout=timeout, allow_redirects=True) as response:
            body = await _read_head(response) if check.expected_body else b""
            days = days_left(response)
    result = _verdict(check, response.status, body, clock.ms())
    return judge_expiry(result, days, check.tls_warn_days)


def _verdict(check, status: int, body: bytes, latency: float) -> ProbeResult:
    if not check.expected_status_min <= status <= check.expected_status_max:
        category = http_status_category(status) or ErrorCategory.UNKNOWN
        expected = f"{check.expected_status_min}-{check.expected_status_max}"
        return ProbeResult.failure(
            category, f"HTTP {status}, expected {expected}", latency, http_status=status
        )
    if check.expected_body and check.expected_body.encode() not in body:
        return ProbeResult.failure(
            ErrorCategory.UNKNOWN,
            f"body does not contain {check.expected_body!r}",
            latency,
            http_status=status,
        )
    return ProbeResult.success(latency, http_status=status)


async def _read_head(response: aiohttp.ClientResponse) -> bytes:
    """Up to BODY_LIMIT bytes of the body, however many chunks the server sends them in."""
    chunks: list[bytes] = []
    size = 0
    while size < BODY_LIMIT:
        chunk = await response.content.read(BODY_LIMIT - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)
