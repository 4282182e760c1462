"""DNS checks against a resolver the test starts (dnslib's server on a loopback port)."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
from django.core.exceptions import ValidationError
from dnslib.server import DNSServer
from dnslib.zoneresolver import ZoneResolver

from connections_app.connection_manager import ConnectionManager
from connections_app.guard import AddressGuard
from connections_app.models import HealthCheck
from connections_app.probes import run_probe

ZONE = """
api.test.   60 IN A     10.1.2.3
api.test.   60 IN AAAA  fd00::1
www.test.   60 IN CNAME api.test.
test.       60 IN MX    10 mail.test.
test.       60 IN TXT   "v=spf1 -all"
"""


@pytest.fixture(scope="module")
def resolver() -> Iterator[str]:
    """The address of a DNS server answering for the zone above, over UDP on loopback."""
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    server = DNSServer(ZoneResolver(ZONE), address="127.0.0.1", port=port)
    server.start_thread()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.stop()
        server.server.server_close()


def make(name: str, record_type: str = "A", **fields) -> HealthCheck:
    values = {"name": "dns", "kind": "dns", "target": name, "timeout": 2}
    return HealthCheck(**(values | {"dns_record_type": record_type} | fields))


async def probe(check: HealthCheck, guard: AddressGuard | None = None):
    async with ConnectionManager(guard=guard or AddressGuard()) as manager:
        return await run_probe(check, manager)


@pytest.mark.parametrize(
    ("name", "record_type", "expected"),
    [
        ("api.test", "A", "10.1.2.3"),
        ("api.test", "A", ""),
        ("api.test", "AAAA", "fd00::1"),
        ("www.test", "CNAME", "api.test"),
        ("www.test", "CNAME", "API.test."),
        ("test", "MX", "mail.test"),
        ("test", "MX", "10 mail.test"),
        ("test", "TXT", "v=spf1 -all"),
    ],
)
async def test_a_record_with_the_expected_value_passes(resolver, name, record_type, expected):
    check = make(name, record_type, dns_resolver=resolver, dns_expected=expected)
    result = await probe(check)
    assert result.ok, result


async def test_a_different_value_fails_naming_what_was_found(resolver):
    result = await probe(make("api.test", dns_resolver=resolver, dns_expected="10.9.9.9"))
    assert (result.ok, result.error_category) == (False, "unknown")
    assert result.error_message == "A api.test: 10.1.2.3; expected 10.9.9.9"


async def test_a_name_that_does_not_exist_is_dns(resolver):
    result = await probe(make("nope.test", dns_resolver=resolver))
    assert (result.ok, result.error_category) == (False, "dns"), result


async def test_a_type_with_no_record_is_dns(resolver):
    result = await probe(make("api.test", "MX", dns_resolver=resolver))
    assert (result.ok, result.error_category) == (False, "dns"), result


async def test_a_resolver_that_does_not_answer_is_a_timeout():
    # A UDP port nobody reads: bound here and never read, so no ICMP "unreachable" either.
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind(("127.0.0.1", 0))
    try:
        address = f"127.0.0.1:{silent.getsockname()[1]}"
        result = await probe(make("api.test", dns_resolver=address, timeout=0.5))
    finally:
        silent.close()
    assert (result.ok, result.error_category) == (False, "timeout"), result


async def test_a_resolver_the_guard_refuses_is_never_asked(resolver):
    result = await probe(make("api.test", dns_resolver="169.254.169.253"))
    assert (result.ok, result.error_category) == (False, "blocked")
    result = await probe(make("api.test", dns_resolver=resolver), AddressGuard(deny_loopback=True))
    assert (result.ok, result.error_category) == (False, "blocked")


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("fields", "field", "words"),
    [
        ({"target": "10.0.0.1"}, "target", "resolves a name"),
        ({"target": "bad name.test"}, "target", "contains a space"),
        ({"target": "api.test", "dns_resolver": "dns.google"}, "dns_resolver", "IP address"),
        ({"target": "api.test", "dns_resolver": "127.0.0.1:0"}, "dns_resolver", "port"),
        ({"target": "api.test", "dns_resolver": "169.254.169.253"}, "dns_resolver", "link-local"),
        ({"target": "api.test", "dns_record_type": "PTR"}, "dns_record_type", "valid choice"),
    ],
)
def test_each_bad_dns_field_gets_one_message(fields, field, words):
    check = make("api.test")
    for name, value in fields.items():
        setattr(check, name, value)
    with pytest.raises(ValidationError) as caught:
        check.full_clean()
    errors = caught.value.message_dict
    assert list(errors) == [field] and words in errors[field][0], errors
