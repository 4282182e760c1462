"""Which addresses a check may connect to: the one guard every probe's connection passes.

Refused always: link-local addresses (169.254.0.0/16, fe80::/10: where cloud metadata
services answer) and the AWS metadata address fd00:ec2::254, in any spelling (IPv4-mapped
IPv6, decimal, hex, octal: an address is normalised the way the OS would read it before it is
judged). Private ranges are refused with ``CHECK_DENY_PRIVATE``, loopback (and the unspecified
address, which Linux connects to the local host) with ``CHECK_DENY_LOOPBACK``.

The guard judges the address actually connected to, not the name in the target: after DNS
(``GuardedResolver``) and again when the socket is made (``AddressGuard.check`` in the
``ConnectionManager``'s socket factory), so a name that resolves to a refused address, an IP
literal or a redirect never gets a socket.
"""

from __future__ import annotations

import errno
import functools
import ipaddress
import socket
from dataclasses import dataclass

from aiohttp.abc import AbstractResolver, ResolveResult

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_METADATA_V6 = ipaddress.IPv6Address("fd00:ec2::254")
# What socket.inet_aton accepts besides dotted decimal: "2852039166", "0xa9fea9fe", "0251.0376..".
_NUMERIC_HOST = set("0123456789abcdefxABCDEFX.")


class BlockedAddress(OSError):
    """A connection the guard refused before any socket was made; the message names the rule."""

    def __init__(self, message: str) -> None:
        # An errno, so wrappers that print ``strerror`` (aiohttp) print the rule.
        super().__init__(errno.EACCES, message)


def normalise(host: str) -> IPAddress | None:
    """The address ``host`` spells, however it spells it; None for a name."""
    host = host.strip().removeprefix("[").removesuffix("]").partition("%")[0]
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        ip = _legacy_ipv4(host)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def _legacy_ipv4(host: str) -> ipaddress.IPv4Address | None:
    """``2852039166``, ``0xa9fea9fe``, ``169.254.43518``: what inet_aton (and so connect) reads."""
    if not host or not set(host) <= _NUMERIC_HOST or not host[0].isdigit():
        return None
    try:
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except OSError:
        return None


@dataclass(frozen=True)
class AddressGuard:
    deny_private: bool = False
    deny_loopback: bool = False

    @classmethod
    def from_settings(cls) -> AddressGuard:
        from django.conf import settings

        return cls(
            deny_private=getattr(settings, "CHECK_DENY_PRIVATE", False),
            deny_loopback=getattr(settings, "CHECK_DENY_LOOPBACK", False),
        )

    def refusal(self, host: str) -> str | None:
        """Why a check may not connect to ``host`` (an address in any spelling), or None."""
        return _refusal(self, host)

    def check(self, host: str) -> None:
        """Raise ``BlockedAddress`` when ``host`` is refused."""
        reason = self.refusal(host)
        if reason:
            raise BlockedAddress(reason)

    def _rule(self, ip: IPAddress) -> str | None:
        if ip.is_link_local or ip == _METADATA_V6:
            return "link-local or a cloud metadata address (always refused)"
        if self.deny_loopback and (ip.is_loopback or ip.is_unspecified):
            return "a loopback address (refused by CHECK_DENY_LOOPBACK)"
        if self.deny_private and ip.is_private and not (ip.is_loopback or ip.is_unspecified):
            return "a private address (refused by CHECK_DENY_PRIVATE)"
        return None


@functools.lru_cache(maxsize=4096)
def _refusal(guard: AddressGuard, host: str) -> str | None:
    """``guard.refusal(host)``, remembered: every probe asks it of its target's host, and the
    answer depends only on the two (the guard is frozen). Parsing the address each time was
    2 % of a runner's event loop."""
    ip = normalise(host)
    if ip is None:
        return None  # a name: judged by the addresses it resolves to
    rule = guard._rule(ip)
    return f"{ip} is {rule}: checks may not connect to it" if rule else None


class GuardedResolver(AbstractResolver):
    """Another resolver's answers without the refused addresses; BlockedAddress when none is
    left. aiohttp asks it for every host it connects to, redirects included."""

    def __init__(self, guard: AddressGuard, inner: AbstractResolver) -> None:
        self.guard = guard
        self._inner = inner

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        self.guard.check(host)  # a decimal or hex spelling the resolver would turn into an IP
        literal = normalise(host)
        if literal is not None:  # an address needs no lookup (aiohttp skips us for these)
            return [_answer(host, str(literal), port)]
        answers = await self._inner.resolve(host, port, family=family)
        allowed = [a for a in answers if self.guard.refusal(a["host"]) is None]
        if not allowed and answers:
            self.guard.check(answers[0]["host"])
        return allowed

    async def close(self) -> None:
        await self._inner.close()


def _answer(host: str, address: str, port: int) -> ResolveResult:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    return ResolveResult(hostname=host, host=address, port=port, family=family, proto=0, flags=0)
