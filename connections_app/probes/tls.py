"""TLS certificate expiry: how many days an HTTPS server's certificate has left, and what that
does to a result (fewer than the check's ``tls_warn_days``: a warning, so DEGRADED).

An expired certificate never gets here: aiohttp refuses it while connecting, and the probe
fails with category ``tls``.
"""

from __future__ import annotations

import math
import ssl
import time

import aiohttp

from connections_app.errors import ErrorCategory
from connections_app.probes.result import ProbeResult

DAY = 86400


def days_left(response: aiohttp.ClientResponse) -> int | None:
    """Whole days left on the certificate the response came through; None over plain HTTP or
    when the certificate was not verified (``getpeercert()`` is empty then)."""
    # aiohttp gives the connection back to its pool once the body is read, often before the
    # caller sees the response (``response.connection`` is None then); the protocol stays.
    protocol = getattr(response, "_protocol", None)
    transport = getattr(protocol, "transport", None)
    ssl_object = transport.get_extra_info("ssl_object") if transport is not None else None
    if ssl_object is None:
        return None
    certificate = ssl_object.getpeercert()
    if not certificate or "notAfter" not in certificate:
        return None
    expires = ssl.cert_time_to_seconds(certificate["notAfter"])
    return math.floor((expires - time.time()) / DAY)


def judge_expiry(result: ProbeResult, days: int | None, warn_days: int) -> ProbeResult:
    """``result`` with the days left, and a ``tls_expiring`` warning on a success when fewer
    than ``warn_days`` are (0: never)."""
    if days is None:
        return result  # plain HTTP: nothing to add (``replace`` costs every probe)
    result = result.with_tls_days_left(days)
    if result.ok and days < warn_days:
        unit = "day" if days == 1 else "days"
        return result.warn(
            ErrorCategory.TLS_EXPIRING, f"the TLS certificate expires in {days} {unit}"
        )
    return result
