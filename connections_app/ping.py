"""``/ping/<token>[/start|/fail|/<exit code>]``: where push checks' jobs report in.

No login and no CSRF token (cron and curl have neither): the token in the URL is the secret.
A token of the wrong shape is 404 without a query; any other costs one lookup by the unique
index. Each token may ping ``PINGS_PER_SECOND`` times a second in this process (an in-process
limiter: with N server processes a token gets up to N times that; the database is never asked
to count).
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from connections_app.models import KIND_PUSH, HealthCheck
from connections_app.push import FAIL, MAX_PING_BODY, START, record_ping

PINGS_PER_SECOND = 5
_TOKEN_SHAPE = re.compile(r"^[A-Za-z0-9_-]{20,64}$")


class RateLimiter:
    """At most ``per_second`` calls per key in each whole second; ``max_keys`` bounds memory
    (when full, the counts start afresh: a flood of made-up keys cannot grow it)."""

    def __init__(
        self, per_second: int, max_keys: int = 10_000, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.per_second = per_second
        self.max_keys = max_keys
        self._clock = clock
        self._counts: dict[str, tuple[int, int]] = {}
        self._lock = threading.Lock()

    def allow(self, key: str) -> bool:
        second = int(self._clock())
        with self._lock:
            if len(self._counts) >= self.max_keys and key not in self._counts:
                self._counts.clear()
            window, count = self._counts.get(key, (second, 0))
            if window != second:
                window, count = second, 0
            self._counts[key] = (window, count + 1)
            return count < self.per_second


limiter = RateLimiter(PINGS_PER_SECOND)


@csrf_exempt
@require_http_methods(["GET", "HEAD", "POST"])
def ping(request: HttpRequest, token: str, signal: str = "") -> HttpResponse:
    if not _TOKEN_SHAPE.match(token) or not _known_signal(signal):
        return HttpResponse("not found\n", status=404, content_type="text/plain")
    if not limiter.allow(token):
        return HttpResponse("too many pings\n", status=429, content_type="text/plain")
    try:
        check = HealthCheck.objects.get(push_token=token)
    except HealthCheck.DoesNotExist:
        return HttpResponse("not found\n", status=404, content_type="text/plain")
    if check.kind != KIND_PUSH:  # a token left over from when the check was a push check
        return HttpResponse("not found\n", status=404, content_type="text/plain")
    body = request.read(MAX_PING_BODY + 1) if request.method == "POST" else b""
    record_ping(check, signal, body, timezone.now())
    return HttpResponse("OK\n", content_type="text/plain")


def _known_signal(signal: str) -> bool:
    if signal in ("", START, FAIL):
        return True
    return signal.isascii() and signal.isdigit() and int(signal) <= 255
