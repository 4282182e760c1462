"""HTTP(S) probe: the request the check describes (method, headers, body, redirects), then its
answer judged: the status (the accepted list, else the range), a text, a regex and a JSON
condition on the body, and the certificate's days left (``tls.py``).

Every address connected to, redirects included, passes the manager's guard. Messages quote the
check's own rules, and of the answer at most a short redacted excerpt.
"""

from __future__ import annotations

import asyncio
import json
from urllib.parse import urlsplit

import aiohttp

from connections_app.cli import counted
from connections_app.connection_manager import ConnectionManager
from connections_app.errors import ErrorCategory, http_status_category
from connections_app.http_options import (
    NO_VALUE,
    compile_jsonpath,
    compile_regex,
    expected_json,
    parse_headers,
    parse_statuses,
)
from connections_app.probes.result import ProbeResult, excerpt
from connections_app.probes.timing import Stopwatch
from connections_app.probes.tls import days_left, judge_expiry

# Enough of a body to find the expected text in a health page; never the whole of a large one.
BODY_LIMIT = 64 * 1024


async def probe_http(check, manager: ConnectionManager) -> ProbeResult:
    clock = Stopwatch()
    # aiohttp refuses a decimal or hex host itself; this says which rule it would break.
    manager.guard.check(urlsplit(check.target).hostname or "")
    options = _request_options(check)
    try:
        async with manager.get_connection() as session:
            async with session.request(check.http_method, check.target, **options) as response:
                body = await _read_head(response) if _reads_body(check) else b""
                days = days_left(response)
    except aiohttp.TooManyRedirects:
        # aiohttp counts the answer it refused to follow: the check's own number says it.
        followed = counted(check.max_redirects, "redirect")
        message = f"gave up after {followed} (a redirect loop?)"
        return ProbeResult.failure(ErrorCategory.REDIRECTS, message, clock.ms())
    latency = clock.ms()
    status = response.status
    failure = _status_failure(check, status) or await _body_failure(check, body)
    if failure:
        result = ProbeResult.failure(failure[0], failure[1], latency, http_status=status)
    else:
        result = ProbeResult.success(latency, http_status=status)
    return judge_expiry(result, days, check.tls_warn_days)


def _request_options(check) -> dict:
    options = {
        "timeout": aiohttp.ClientTimeout(total=check.timeout),
        # aiohttp fails on reaching max_redirects (so one more lets exactly N through), and
        # reads 0 as "no limit": none to follow is no following.
        "allow_redirects": check.follow_redirects and check.max_redirects > 0,
        "max_redirects": check.max_redirects + 1,
        "headers": parse_headers(check.request_headers),
    }
    if check.http_method == "POST" and check.request_body:
        options["data"] = check.request_body.encode()
    if check.ignore_tls_errors:
        options["ssl"] = False
    return options


def _reads_body(check) -> bool:
    return bool(check.expected_body or check.body_regex or check.json_path)


def _status_failure(check, status: int) -> tuple[ErrorCategory, str] | None:
    listed = parse_statuses(check.accepted_statuses)
    if listed:
        accepted = status in listed
        expected = ", ".join(str(s) for s in sorted(listed))
    else:
        accepted = check.expected_status_min <= status <= check.expected_status_max
        expected = f"{check.expected_status_min}-{check.expected_status_max}"
    if accepted:
        return None
    category = http_status_category(status) or ErrorCategory.UNKNOWN
    return category, f"HTTP {status}, expected {expected}"


async def _body_failure(check, body: bytes) -> tuple[ErrorCategory, str] | None:
    if check.expected_body and check.expected_body.encode() not in body:
        return ErrorCategory.BODY_MISMATCH, f"body does not contain {check.expected_body!r}"
    if check.body_regex:
        text = body.decode("utf-8", errors="replace")
        # In a thread: a pattern that backtracks for long must not stop the event loop (the
        # probe's timeout still ends the wait).
        found = await asyncio.to_thread(compile_regex(check.body_regex).search, text)
        if found is None:
            return ErrorCategory.BODY_MISMATCH, f"body does not match {check.body_regex!r}"
    if check.json_path:
        return _json_failure(check, body)
    return None


def _json_failure(check, body: bytes) -> tuple[ErrorCategory, str] | None:
    try:
        document = json.loads(body)
    except (ValueError, RecursionError):
        return ErrorCategory.BODY_MISMATCH, "the body is not JSON (or longer than 64 KB)"
    values = [match.value for match in compile_jsonpath(check.json_path).find(document)]
    expected = expected_json(check.json_expected)
    if not values:
        return ErrorCategory.BODY_MISMATCH, f"JSON path {check.json_path} matches nothing"
    if expected is NO_VALUE or any(_same(value, expected) for value in values):
        return None
    found = excerpt(json.dumps(values[:3]), 60)  # the target's words: a short excerpt only
    wanted = json.dumps(expected)
    return ErrorCategory.BODY_MISMATCH, f"JSON path {check.json_path} is {found}, expected {wanted}"


def _same(value: object, expected: object) -> bool:
    """JSON equality: ``true`` is not ``1`` (Python's bool is an int)."""
    return value == expected and isinstance(value, bool) == isinstance(expected, bool)


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
