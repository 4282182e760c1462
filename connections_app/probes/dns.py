"""DNS probe: a name resolves to records of a type (A, AAAA, CNAME, MX, TXT) with dnspython,
through the system's resolvers or the check's own, optionally to an expected value.

The resolver's address is what the probe connects to, so it passes the manager's guard; the
records are only read, never connected to. A mismatch quotes at most a short excerpt of them.
"""

from __future__ import annotations

import dns.asyncresolver
import dns.rdatatype

from connections_app.connection_manager import ConnectionManager
from connections_app.errors import ErrorCategory
from connections_app.probes.result import ProbeResult, excerpt
from connections_app.probes.timing import Stopwatch
from connections_app.targets import split_resolver

RECORD_TYPES = ("A", "AAAA", "CNAME", "MX", "TXT")


async def probe_dns(check, manager: ConnectionManager) -> ProbeResult:
    resolver = dns.asyncresolver.Resolver(configure=not check.dns_resolver)
    if check.dns_resolver:
        host, port = split_resolver(check.dns_resolver)
        resolver.nameservers, resolver.port = [host], port
    for nameserver in resolver.nameservers:
        manager.guard.check(str(nameserver))
    resolver.lifetime = check.timeout
    clock = Stopwatch()
    answer = await resolver.resolve(check.target, check.dns_record_type, search=False)
    latency = clock.ms()
    values = [record_text(record) for record in answer]
    expected = check.dns_expected.strip()
    if expected and not any(_same(value, expected) for value in values):
        found = excerpt(", ".join(values), 80)
        return ProbeResult.failure(
            ErrorCategory.UNKNOWN,
            f"{check.dns_record_type} {check.target}: {found}; expected {expected}",
            latency,
        )
    return ProbeResult.success(latency)


def record_text(record) -> str:
    """A record as people write it: an address, a name without its final dot, ``10 mx.host``
    for MX, the joined strings of a TXT record."""
    if record.rdtype == dns.rdatatype.TXT:
        return b"".join(record.strings).decode("utf-8", errors="replace")
    if record.rdtype == dns.rdatatype.MX:
        return f"{record.preference} {record.exchange.to_text().rstrip('.')}"
    return record.to_text().rstrip(".")


def _same(value: str, expected: str) -> bool:
    """Names compare without case or final dot; an MX matches by its host alone, too."""
    value, expected = value.rstrip(".").lower(), expected.rstrip(".").lower()
    return value == expected or value.partition(" ")[2] == expected
