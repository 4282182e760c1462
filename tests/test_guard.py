"""The guard: refused addresses never get a socket, whatever the kind, spelling or redirect.

Every refusal is proven twice: the manager made no socket for it, and an audit hook on
``socket.connect`` saw no connection to it. The hook also refuses any connection to an address
that is not loopback while these tests run, so a broken guard fails here without sending a
packet anywhere.
"""

from __future__ import annotations

import ipaddress
import select
import socket
import sys
import threading
from collections.abc import Iterator

import pytest
from aiohttp.abc import AbstractResolver

from connections_app.connection_manager import ConnectionManager
from connections_app.error_handler import reset_global_error_handler
from connections_app.guard import AddressGuard, normalise
from connections_app.models import HealthCheck
from connections_app.probes import run_probe

_connects: list[object] | None = None


def _audit(event: str, args: tuple) -> None:
    if event != "socket.connect" or _connects is None:
        return
    address = args[1]
    _connects.append(address)
    host = address[0] if isinstance(address, tuple) else None
    if host is None or not ipaddress.ip_address(host.partition("%")[0]).is_loopback:
        raise PermissionError(f"test safety net: no connection to {address!r}")


sys.addaudithook(_audit)


@pytest.fixture(autouse=True)
def connects() -> Iterator[list[object]]:
    """The addresses sockets connected to during the test (only loopback is let through)."""
    global _connects
    reset_global_error_handler()
    _connects = []
    try:
        yield _connects
    finally:
        _connects = None
        reset_global_error_handler()


class StaticResolver(AbstractResolver):
    """DNS for the test: each name maps to the addresses given, as a real resolver's answers."""

    def __init__(self, names: dict[str, list[str]]) -> None:
        self.names = names

    async def resolve(self, host, port=0, family=socket.AF_INET):
        if host not in self.names:
            raise OSError(f"StaticResolver knows no {host!r}")
        return [
            {
                "hostname": host,
                "host": address,
                "port": port,
                "family": socket.AF_INET6 if ":" in address else socket.AF_INET,
                "proto": 0,
                "flags": 0,
            }
            for address in self.names[host]
        ]

    async def close(self) -> None:
        pass


NAMES = {
    "metadata.test": ["169.254.169.254"],
    "mapped.test": ["::ffff:169.254.169.254"],
    "ec2v6.test": ["fd00:ec2::254"],
    "private.test": ["10.0.0.7"],
    "mixed.test": ["169.254.169.254", "127.0.0.1"],
}


def make(kind: str, target: str) -> HealthCheck:
    return HealthCheck(name="guarded", kind=kind, target=target, timeout=2)


async def probe(check: HealthCheck, guard: AddressGuard | None = None):
    manager = ConnectionManager(guard=guard or AddressGuard(), resolver=StaticResolver(NAMES))
    async with manager:
        result = await run_probe(check, manager)
        return result, manager.stats()["sockets_made"]


@pytest.mark.parametrize(
    ("spelling", "address"),
    [
        ("169.254.169.254", "169.254.169.254"),
        ("2852039166", "169.254.169.254"),
        ("0xa9fea9fe", "169.254.169.254"),
        ("0251.0376.0251.0376", "169.254.169.254"),
        ("169.254.43518", "169.254.169.254"),
        ("[::ffff:169.254.169.254]", "169.254.169.254"),
        ("::ffff:a9fe:a9fe", "169.254.169.254"),
        ("fe80::1%eth0", "fe80::1"),
        ("db.internal", None),
        ("1e100.net", None),
    ],
)
def test_it_reads_an_address_in_every_spelling_the_os_accepts(spelling, address):
    found = normalise(spelling)
    assert (str(found) if found else None) == address


@pytest.mark.parametrize(
    ("guard", "host", "words"),
    [
        (AddressGuard(), "169.254.169.254", "link-local"),
        (AddressGuard(), "fe80::1", "link-local"),
        (AddressGuard(), "fd00:ec2::254", "metadata"),
        (AddressGuard(), "10.1.2.3", None),
        (AddressGuard(), "127.0.0.1", None),
        (AddressGuard(deny_private=True), "10.1.2.3", "CHECK_DENY_PRIVATE"),
        (AddressGuard(deny_private=True), "fd12::1", "CHECK_DENY_PRIVATE"),
        (AddressGuard(deny_private=True), "127.0.0.1", None),
        (AddressGuard(deny_loopback=True), "127.0.0.1", "CHECK_DENY_LOOPBACK"),
        (AddressGuard(deny_loopback=True), "::1", "CHECK_DENY_LOOPBACK"),
        (AddressGuard(deny_loopback=True), "0.0.0.0", "CHECK_DENY_LOOPBACK"),
        (AddressGuard(deny_loopback=True), "10.1.2.3", None),
    ],
)
def test_each_rule_names_itself(guard, host, words):
    refusal = guard.refusal(host)
    assert (refusal is None) == (words is None), refusal
    if words:
        assert words in refusal


@pytest.mark.parametrize(
    "target",
    [
        "http://169.254.169.254/latest/meta-data/",
        "http://2852039166/",
        "http://[::ffff:169.254.169.254]/",
        "http://[fd00:ec2::254]/",
        "http://metadata.test/",
        "http://mapped.test/",
        "https://ec2v6.test/",
    ],
)
async def test_http_to_a_metadata_address_is_blocked_before_any_socket(target, connects):
    result, sockets = await probe(make("http", target))
    assert (result.ok, result.error_category) == (False, "blocked"), result
    assert "may not connect" in result.error_message
    assert sockets == 0 and connects == []


@pytest.mark.parametrize(
    "target", ["169.254.169.254:80", "[fe80::1]:22", "metadata.test:80", "ec2v6.test:443"]
)
async def test_tcp_to_a_metadata_address_is_blocked_before_any_socket(target, connects):
    result, sockets = await probe(make("tcp", target))
    assert (result.ok, result.error_category) == (False, "blocked"), result
    assert "always refused" in result.error_message
    assert sockets == 0 and connects == []


async def test_a_name_with_a_refused_and_an_allowed_address_uses_only_the_allowed_one(connects):
    with listening() as (port, _):
        result, sockets = await probe(make("tcp", f"mixed.test:{port}"))
    assert result.ok, result
    assert sockets == 1 and connects == [("127.0.0.1", port)]


async def test_a_redirect_from_loopback_to_a_metadata_address_is_blocked(http_target, connects):
    target = http_target.url("/redirect?to=http://169.254.169.254/latest/meta-data/")
    result, sockets = await probe(make("http", target))
    assert (result.ok, result.error_category) == (False, "blocked"), result
    assert sockets == 1 and connects == [("127.0.0.1", http_target.port)]
    assert http_target.hits["/redirect?to=http://169.254.169.254/latest/meta-data/"] == 1


async def test_deny_private_refuses_a_name_that_resolves_to_a_private_address(connects):
    guard = AddressGuard(deny_private=True)
    for check in (make("tcp", "private.test:5432"), make("http", "http://private.test/")):
        result, sockets = await probe(check, guard)
        assert (result.error_category, sockets) == ("blocked", 0), result
        assert "CHECK_DENY_PRIVATE" in result.error_message
    assert connects == []


@pytest.mark.django_db
async def test_deny_loopback_from_the_settings_opens_no_connection(settings, http_target, connects):
    settings.CHECK_DENY_LOOPBACK = True
    with listening() as (port, listener):
        for check in (make("tcp", f"127.0.0.1:{port}"), make("http", http_target.url("/ok"))):
            async with ConnectionManager() as manager:
                result = await run_probe(check, manager)
                assert manager.stats()["sockets_made"] == 0
            assert (result.ok, result.error_category) == (False, "blocked"), result
            assert "CHECK_DENY_LOOPBACK" in result.error_message
        assert select.select([listener], [], [], 0)[0] == []  # nothing waits to be accepted
    assert connects == [] and http_target.hits == {}


async def test_redis_to_a_unix_socket_or_a_metadata_name_is_blocked(connects):
    for target in ("unix:///run/redis.sock", "redis://metadata.test:6379/0"):
        result, sockets = await probe(make("redis", target))
        assert (result.error_category, sockets) == ("blocked", 0), result
    assert connects == []


async def test_a_banner_comes_back_as_a_short_excerpt_only(connects):
    banner = b"SSH-2.0-OpenSSH_9.6 " + b"z" * 2000 + b"\r\n\r\n"
    with listening(answer=banner) as (port, _):
        result, _ = await probe(make("http", f"http://127.0.0.1:{port}/"))
    assert not result.ok
    assert len(result.error_message) < 250 and "z" * 200 not in result.error_message


class listening:
    """A loopback listener (``as (port, sock)``); with ``answer``, a thread accepts once, reads
    the request and sends it."""

    def __init__(self, answer: bytes | None = None) -> None:
        self.answer = answer
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> tuple[int, socket.socket]:
        if self.answer is not None:
            self.thread.start()
        return self.sock.getsockname()[1], self.sock

    def _serve(self) -> None:
        self.sock.settimeout(5)
        try:
            conn, _ = self.sock.accept()
        except OSError:
            return
        with conn:
            conn.settimeout(5)
            try:
                conn.recv(4096)
                conn.sendall(self.answer or b"")
            except OSError:
                pass

    def __exit__(self, *exc: object) -> None:
        self.sock.close()
        if self.thread.is_alive():
            self.thread.join(5)
