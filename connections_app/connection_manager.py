"""Pooled HTTP sessions with timeouts, retries and counters. Make one and share it: every task
of a runner shares its aiohttp pool, every thread its requests pool.

Async (the probes use the raw session: a probe reports a failure, it does not retry it)::

    async with ConnectionManager(config) as conn:
        response = await conn.request("GET", url, timeout=2)  # retried, body already read
        data = await response.json()
        async with conn.get_connection() as session:  # the shared aiohttp.ClientSession
            async with session.get(url) as response:  # raw use: pool and timeouts, no retries
                data = await response.json()

Sync::

    with ConnectionManager(ConnectionConfig(connect_timeout=2, read_timeout=5)) as conn:
        session = conn.get_sync_connection()  # the shared requests.Session, retries built in
        data = session.get(url).json()
        conn.release_sync_connection()

Leaving the ``with`` / ``async with`` block closes every socket the manager opened. Errors
propagate unchanged: callers classify them with ``errors.classify``.
"""

from __future__ import annotations

import contextlib
import functools
import socket
import ssl
import threading
import weakref
from collections import Counter
from collections.abc import AsyncIterator, Callable, Collection
from dataclasses import dataclass
from types import SimpleNamespace, TracebackType
from typing import Any, TypedDict

import aiohttp
import requests
from aiohappyeyeballs import AddrInfoType
from aiohttp.abc import AbstractResolver
from aiohttp.resolver import DefaultResolver
from requests.adapters import HTTPAdapter
from urllib3 import PoolManager, Timeout
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool

from connections_app import __version__
from connections_app.guard import AddressGuard, GuardedResolver
from connections_app.http_retry import IDEMPOTENT_METHODS, RETRY_STATUSES, HttpRetry
from connections_app.retry import HTTP as HTTP_RETRY
from connections_app.retry import RetryPolicy

DEFAULT_USER_AGENT = f"connection-health/{__version__}"


@dataclass(frozen=True)
class ConnectionConfig:
    """How a ``ConnectionManager`` connects; every field is checked when the config is made.

    Fields:
        connect_timeout: seconds to open a connection.
        read_timeout: seconds to wait for each read from the server.
        total_timeout: seconds one try may take from start to last byte (a retry starts anew).
        pool_per_host: connections kept per host.
        pool_total: connections in all; the sync path keeps ``pool_total // pool_per_host`` host
            pools of ``pool_per_host`` each.
        retry: backoff and number of retries (each try is bounded by the timeouts above).
        retry_statuses: answers retried (idempotent methods only).
        retry_methods: methods retried; only idempotent ones are accepted.
        max_retry_after: the longest ``Retry-After`` honoured, in seconds.
        verify_tls: check server certificates.
        user_agent: the ``User-Agent`` header of every request.
    """

    connect_timeout: float = 5.0
    read_timeout: float = 10.0
    total_timeout: float = 30.0
    pool_per_host: int = 10
    pool_total: int = 100
    retry: RetryPolicy = HTTP_RETRY
    retry_statuses: Collection[int] = RETRY_STATUSES
    retry_methods: Collection[str] = IDEMPOTENT_METHODS
    max_retry_after: float = 30.0
    verify_tls: bool = True
    user_agent: str = DEFAULT_USER_AGENT

    def __post_init__(self) -> None:
        for name in ("connect_timeout", "read_timeout", "total_timeout"):
            value = getattr(self, name)
            _require(_is_number(value) and value > 0, name, value, "a number above 0")
        _require(_is_count(self.pool_per_host, 1), "pool_per_host", self.pool_per_host, "1 or more")
        _require(
            _is_count(self.pool_total, self.pool_per_host),
            "pool_total",
            self.pool_total,
            "an int of at least pool_per_host",
        )
        self._check_retry()
        object.__setattr__(self, "retry_statuses", _statuses(self.retry_statuses))
        object.__setattr__(self, "retry_methods", _methods(self.retry_methods))
        _require(
            _is_number(self.max_retry_after) and self.max_retry_after >= 0,
            "max_retry_after",
            self.max_retry_after,
            "a number, 0 or more",
        )
        _require(isinstance(self.verify_tls, bool), "verify_tls", self.verify_tls, "a bool")
        agent = self.user_agent
        _require(
            isinstance(agent, str) and agent.strip() != "" and not {"\r", "\n"} & set(agent),
            "user_agent",
            agent,
            "a non-empty one-line str",
        )

    def _check_retry(self) -> None:
        _require(isinstance(self.retry, RetryPolicy), "retry", self.retry, "a RetryPolicy")
        _require(
            self.retry.attempts is not None,
            "retry",
            self.retry,
            "a RetryPolicy with a number of attempts (a request must end)",
        )

    def http_retry(self) -> HttpRetry:
        return HttpRetry(
            policy=self.retry,
            methods=frozenset(self.retry_methods),
            statuses=frozenset(self.retry_statuses),
            max_retry_after=self.max_retry_after,
        )

    def client_timeout(self, total: float | None = None) -> aiohttp.ClientTimeout:
        """aiohttp's timeout; a shorter ``total`` for one request also shortens the others."""
        total = self.total_timeout if total is None else total
        return aiohttp.ClientTimeout(
            total=total,
            sock_connect=min(self.connect_timeout, total),
            sock_read=min(self.read_timeout, total),
        )

    def urllib3_timeout(self) -> Timeout:
        return Timeout(
            connect=self.connect_timeout, read=self.read_timeout, total=self.total_timeout
        )


class ConnectionStats(TypedDict):
    requests: int  # requests made by callers (a manager retry is not another request)
    failures: int  # requests that raised (an error status is an answer, not a failure)
    retries: int  # tries again by the manager's retry policy
    new_connections: int  # connections opened
    reused_connections: int  # requests sent on a pooled connection already used before
    open_connections: int  # sockets open now
    sessions_in_use: int  # get_sync_connection() not yet released + open get_connection() blocks
    sockets_made: int  # sockets the async path made (the guard refuses before making one)


class ConnectionManager:
    """One pooled ``requests.Session`` and one pooled ``aiohttp.ClientSession``, used together.

    Sync: ``get_sync_connection()`` hands out the manager's Session; every request through it
    has the config's (connect, read, total) timeout unless the caller passes one, and is retried
    by urllib3 following the config's policy.

    Async: enter with ``async with``. ``request(method, url, timeout=..., raise_for_status=...)``
    is the retrying helper; ``session`` / ``get_connection()`` give the raw ClientSession (its
    pool and timeouts, no retries beyond aiohttp's own single resend on a dropped keep-alive
    connection).

    Create one manager and pass it around: its tasks share the aiohttp pool; threads share the
    requests pool (thread-safe) and, as requests goes, its cookies. ``stats()`` counts both
    paths together.
    """

    def __init__(
        self,
        config: ConnectionConfig | None = None,
        *,
        guard: AddressGuard | None = None,
        resolver: AbstractResolver | None = None,
        ssl_context: ssl.SSLContext | None = None,
        traced: bool = True,
    ) -> None:
        """``guard``: the addresses refused (default: from the settings); ``resolver``: the DNS
        the guard wraps (default: aiohttp's); ``ssl_context``: the CAs trusted (default: the
        system's, or none checked when ``verify_tls`` is off). ``traced=False``: no aiohttp
        trace hooks on the async session, so ``stats()`` counts none of its raw requests and
        failures nor the connections it opens or reuses (a runner's probes, thousands a second:
        each traced request rebuilt its URL and awaited four hooks, about a tenth of the event
        loop's work)."""
        self.config = config or ConnectionConfig()
        self._guard = guard
        self._inner_resolver = resolver
        self._ssl_context = ssl_context
        self._traced = traced
        self._resolver: GuardedResolver | None = None
        self._retry = self.config.http_retry()
        self._tracker = _Tracker()
        self._lock = threading.Lock()
        self._sync_session: requests.Session | None = None
        self._async_session: aiohttp.ClientSession | None = None
        self._closed = False

    def __enter__(self) -> ConnectionManager:
        self._check_open()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    async def __aenter__(self) -> ConnectionManager:
        self._check_open()
        if self._async_session is not None:
            raise RuntimeError("this ConnectionManager is already entered with `async with`")
        self._async_session = self._new_async_session()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def get_sync_connection(self) -> requests.Session:
        """The manager's pooled Session (made on first use); give it back with release."""
        with self._lock:
            self._check_open()
            if self._sync_session is None:
                self._sync_session = self._new_sync_session()
            self._tracker.add("sync_in_use")
            return self._sync_session

    def release_sync_connection(self) -> None:
        """Count the Session as given back; its pooled connections stay open for reuse."""
        if not self._tracker.take("sync_in_use"):
            raise RuntimeError("release_sync_connection() without get_sync_connection()")

    @property
    def session(self) -> aiohttp.ClientSession:
        """The shared aiohttp session, for raw use (pool and timeouts apply, retries do not)."""
        self._check_open()
        if self._async_session is None:
            raise RuntimeError("enter the ConnectionManager with `async with` to use aiohttp")
        return self._async_session

    @contextlib.asynccontextmanager
    async def get_connection(self) -> AsyncIterator[aiohttp.ClientSession]:
        """The shared aiohttp session: leaving this block keeps it open (the manager closes it)."""
        session = self.session
        self._tracker.add("async_in_use")
        try:
            yield session
        finally:
            self._tracker.take("async_in_use")

    async def request(
        self,
        method: str,
        url: str,
        *,
        # aiohttp's own per-request timeout, passed through, not an asyncio deadline.
        timeout: float | aiohttp.ClientTimeout | None = None,  # noqa: ASYNC109
        raise_for_status: bool = False,
        **kwargs: Any,
    ) -> aiohttp.ClientResponse:
        """Send a request with the config's retries; return the response with its body read.

        ``timeout`` (seconds or a ClientTimeout) replaces the config's for this request only; like
        the config's, it bounds each try, so wrap the call in ``asyncio.timeout`` for a deadline
        over all the retries.
        Other keyword arguments go to ``aiohttp.ClientSession.request``. When retries run out on
        a retry status the last response is returned; ``raise_for_status=True`` raises
        ``aiohttp.ClientResponseError`` for any 4xx/5xx answer instead.
        """
        session = self.session
        if timeout is not None:
            kwargs["timeout"] = self._timeout(timeout)
        self._tracker.add("requests")
        try:
            response = await self._retry.request(
                session,
                method,
                url,
                on_retry=self._count_retry,
                trace_request_ctx=_MANAGED,
                **kwargs,
            )
            if raise_for_status:
                response.raise_for_status()
        except Exception:
            self._tracker.add("failures")
            raise
        return response

    def stats(self) -> ConnectionStats:
        return self._tracker.stats()

    @property
    def guard(self) -> AddressGuard:
        if self._guard is None:
            self._guard = AddressGuard.from_settings()
        return self._guard

    async def resolve(self, host: str, port: int) -> list[str]:
        """The addresses of ``host`` a check may connect to (``BlockedAddress`` if none)."""
        self._check_open()
        if self._resolver is None:  # it lives with the aiohttp session
            raise RuntimeError("enter the ConnectionManager with `async with` to resolve")
        answers = await self._resolver.resolve(host, port, family=socket.AF_UNSPEC)
        if not answers:
            raise socket.gaierror(socket.EAI_NONAME, f"no address for {host}")
        return [answer["host"] for answer in answers]

    def open_socket(self, addr_info: AddrInfoType) -> socket.socket:
        """A socket for one address, once the guard allows it; counted like aiohttp's."""
        self.guard.check(addr_info[4][0])
        return self._tracker.new_socket(addr_info)

    def close(self) -> None:
        """Close the sync pool; a manager entered with ``async with`` needs ``aclose()``."""
        if self._async_session is not None:
            raise RuntimeError("the aiohttp session is open: use `await aclose()` instead")
        self._close_sync()

    async def aclose(self) -> None:
        """Close both sessions; aiohttp waits here until its sockets are closed."""
        session, self._async_session = self._async_session, None
        resolver, self._resolver = self._resolver, None
        try:
            if session is not None:
                await session.close()
            if resolver is not None:
                await resolver.close()
        finally:
            self._close_sync()

    def _close_sync(self) -> None:
        with self._lock:
            session, self._sync_session = self._sync_session, None
            self._closed = True
        if session is not None:
            session.close()
            # A streamed response never read to the end keeps its connection out of the pool.
            self._tracker.close_sync_connections()

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("this ConnectionManager is closed")

    def _timeout(self, timeout: float | aiohttp.ClientTimeout) -> aiohttp.ClientTimeout:
        if isinstance(timeout, aiohttp.ClientTimeout):
            return timeout
        if not _is_number(timeout) or timeout <= 0:
            raise ValueError(f"timeout must be above 0 seconds, got {timeout!r}")
        return self.config.client_timeout(timeout)

    def _count_retry(self) -> None:
        self._tracker.add("retries")

    def _new_sync_session(self) -> requests.Session:
        config = self.config
        session = _TimeoutSession(
            config.urllib3_timeout(), self._tracker, self._retry, self._count_retry
        )
        # No retries inside urllib3: the session retries each send with the one loop.
        adapter = _CountingAdapter(
            self._tracker,
            pool_connections=config.pool_total // config.pool_per_host,
            pool_maxsize=config.pool_per_host,
        )
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        session.verify = config.verify_tls
        session.headers["User-Agent"] = config.user_agent
        # Like aiohttp: no proxies, .netrc credentials or CA bundles picked up from the
        # environment, so both paths reach the same server the same way.
        session.trust_env = False
        return session

    def _new_async_session(self) -> aiohttp.ClientSession:
        config = self.config
        self._resolver = GuardedResolver(self.guard, self._inner_resolver or DefaultResolver())
        tls: ssl.SSLContext | bool = config.verify_tls
        if self._ssl_context is not None and config.verify_tls:
            tls = self._ssl_context
        connector = aiohttp.TCPConnector(
            limit=config.pool_total,
            limit_per_host=config.pool_per_host,
            ssl=tls,
            resolver=self._resolver,
            socket_factory=self.open_socket,
        )
        return aiohttp.ClientSession(
            connector=connector,
            timeout=config.client_timeout(),
            headers={"User-Agent": config.user_agent},
            trace_configs=[self._tracker.trace_config()] if self._traced else None,
        )


# Marks the requests of ConnectionManager.request, which counts them itself.
_MANAGED = object()


class _Tracker:
    """The counters of one manager and weak references to its connections; thread-safe."""

    def __init__(self) -> None:
        self._counts: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._sync_connections: weakref.WeakSet[HTTPConnection] = weakref.WeakSet()
        self._sockets: weakref.WeakSet[socket.socket] = weakref.WeakSet()

    def add(self, key: str) -> None:
        with self._lock:
            self._counts[key] += 1

    def take(self, key: str) -> bool:
        """Count one down; False (and no change) when it is already 0."""
        with self._lock:
            if self._counts[key] == 0:
                return False
            self._counts[key] -= 1
            return True

    def sync_connection_opened(self, connection: HTTPConnection) -> None:
        with self._lock:
            self._counts["new_connections"] += 1
            self._sync_connections.add(connection)

    def new_socket(self, addr_info: AddrInfoType) -> socket.socket:
        """aiohttp's socket factory: the same socket, remembered to count the open ones."""
        family, type_, proto, _, _ = addr_info
        sock = socket.socket(family=family, type=type_, proto=proto)
        with self._lock:
            self._sockets.add(sock)
            self._counts["sockets_made"] += 1
        return sock

    def close_sync_connections(self) -> None:
        with self._lock:
            connections = [c for c in self._sync_connections if c.sock is not None]
        for connection in connections:
            connection.close()

    def stats(self) -> ConnectionStats:
        with self._lock:
            counts = self._counts.copy()
            open_sync = sum(1 for c in self._sync_connections if c.sock is not None)
            open_async = sum(1 for s in self._sockets if s.fileno() != -1)
        return ConnectionStats(
            requests=counts["requests"],
            failures=counts["failures"],
            retries=counts["retries"],
            new_connections=counts["new_connections"],
            reused_connections=counts["reused_connections"],
            open_connections=open_sync + open_async,
            sessions_in_use=counts["sync_in_use"] + counts["async_in_use"],
            sockets_made=counts["sockets_made"],
        )

    def trace_config(self) -> aiohttp.TraceConfig:
        trace = aiohttp.TraceConfig()
        trace.on_connection_create_end.append(self._count("new_connections"))
        trace.on_connection_reuseconn.append(self._count("reused_connections"))
        trace.on_request_start.append(self._count("requests", raw_only=True))
        trace.on_request_exception.append(self._count("failures", raw_only=True))
        return trace

    def _count(self, key: str, raw_only: bool = False) -> Callable[..., Any]:
        async def on_event(session: Any, context: SimpleNamespace, params: Any) -> None:
            if not (raw_only and context.trace_request_ctx is _MANAGED):
                self.add(key)

        return on_event


class _TimeoutSession(requests.Session):
    """A Session that counts its requests, gives each one a timeout when the caller did not,
    and retries each send by the manager's rules."""

    def __init__(
        self, timeout: Timeout, tracker: _Tracker, rules: HttpRetry, on_retry: Callable[[], None]
    ) -> None:
        super().__init__()
        self._default_timeout = timeout
        self._tracker = tracker
        self._rules = rules
        self._on_retry = on_retry

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> Any:
        self._tracker.add("requests")
        try:
            return super().request(method, url, *args, **kwargs)
        except Exception:
            self._tracker.add("failures")
            raise

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        # send(), not request(): redirects and direct send() calls go through here too.
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = self._default_timeout
        send_once = functools.partial(requests.Session.send, self, request, **kwargs)
        return self._rules.send(send_once, request.method or "GET", on_retry=self._on_retry)


class _CountingAdapter(HTTPAdapter):
    def __init__(self, tracker: _Tracker, **kwargs: Any) -> None:
        self._tracker = tracker  # before super().__init__, which calls init_poolmanager
        super().__init__(**kwargs)

    def init_poolmanager(
        self, connections: int, maxsize: int, block: bool = False, **kw: Any
    ) -> None:
        super().init_poolmanager(connections, maxsize, block, **kw)
        self.poolmanager = _CountingPoolManager(
            self._tracker, num_pools=connections, maxsize=maxsize, block=block, **kw
        )


class _CountingPoolManager(PoolManager):
    """Pools whose connections report to the tracker (urllib3 keeps no totals across pools)."""

    def __init__(self, tracker: _Tracker, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._tracker = tracker

    def _new_pool(
        self, scheme: str, host: str, port: int, request_context: dict[str, Any] | None = None
    ) -> HTTPConnectionPool:
        pool = super()._new_pool(scheme, host, port, request_context)
        pool.ConnectionCls = _CountedHTTPSConnection if scheme == "https" else _CountedConnection
        pool.conn_kw["tracker"] = self._tracker
        return pool


class _CountedConnection(HTTPConnection):
    def __init__(self, *args: Any, tracker: _Tracker, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._tracker = tracker
        self._requests_sent = 0

    def connect(self) -> None:
        super().connect()
        self._tracker.sync_connection_opened(self)

    def request(self, *args: Any, **kwargs: Any) -> None:
        # Plain HTTP connects inside request(), so "already used" is the honest test of reuse.
        self._requests_sent += 1
        if self._requests_sent > 1:
            self._tracker.add("reused_connections")
        super().request(*args, **kwargs)

    def close(self) -> None:
        self._requests_sent = 0
        super().close()


class _CountedHTTPSConnection(_CountedConnection, HTTPSConnection):
    pass


def _require(condition: bool, field: str, value: object, rule: str) -> None:
    if not condition:
        raise ValueError(f"ConnectionConfig.{field} must be {rule}, got {value!r}")


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_count(value: object, minimum: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= minimum


def _statuses(value: object) -> frozenset[int]:
    valid = _is_collection(value) and all(_is_count(s, 100) and s <= 599 for s in value)
    _require(valid, "retry_statuses", value, "a collection of HTTP status codes (100-599)")
    return frozenset(value)


def _methods(value: object) -> frozenset[str]:
    valid = _is_collection(value) and all(isinstance(m, str) for m in value)
    _require(valid, "retry_methods", value, "a collection of method names")
    methods = frozenset(m.upper() for m in value)
    # Retrying a POST or PATCH whose answer was lost may repeat the write it made.
    _require(methods <= IDEMPOTENT_METHODS, "retry_methods", value, "idempotent methods only")
    return methods


def _is_collection(value: object) -> bool:
    return isinstance(value, Collection) and not isinstance(value, str | bytes)
