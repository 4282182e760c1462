"""A real HTTP server on a loopback address, in a background thread, for tests and benchmarks.

Routes (any method):
    /ok              200 JSON {"ok": true}
    /status/<code>   an empty answer with that status
    /slow/<seconds>  200 JSON after that many seconds (at most ``MAX_SLOW``, sooner if stopped)
    /stall           accepts the request and answers nothing until the server stops
    /reset           sends half a status line, then resets the connection (RST, SO_LINGER 0)
    /flaky/<n>       503 with ``Retry-After`` (query ``retry_after``, default 0) for the first
                     n calls of that exact path and query, 200 JSON after
    /body            200 text "hello healthy world"
    /chunked         the same text in two chunks, 50 ms apart
    /loop            302 to itself, forever: a redirect loop
    /switch/<name>   the status set by ``target.switch(name, status)`` (200 until set): a
                     target that goes down and comes back when a test says so; the status
                     may also be "reset" (as /reset) or "slow:<seconds>" (200 that late)
    /redirect        302 to the query's ``to`` (``/redirect?to=/ok``)
    /echo            200 JSON of what was sent: method, headers, body (text)
    /json            200 JSON {"status": "ok", "db": {"ok": true, "lag": 3}, "items": [1, 2]}
    /banner          200 with a 1000-character body that is not HTTP-friendly text
    /hook/<name>     a webhook receiver: answers as ``target.hook(name, *answers, delay=s)``
                     says, one answer per request (a status, ``(status, headers)`` or
                     ``"stall"``), then 200; ``target.received(name)`` lists every request
                     (its Idempotency-Key, JSON body, headers and the status it was answered)

``HttpTarget(tls=True)`` serves HTTPS with a fresh self-signed certificate for its address;
clients trust it through ``target.ca_file`` (or ``target.client_ssl_context()``).
``cert_days`` is how long the certificate has left (1 by default; below 0: already expired).

``target.hits`` counts requests per path and query as sent ("/ok", "/flaky/2?key=a").

Use it as a context manager, ``with HttpTarget() as target: target.url("/ok")``, or through the
``http_target`` fixture: registered for every test by ``pytest_plugins`` in tests/conftest.py.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
import struct
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType

import pytest
from aiohttp import web

MAX_SLOW = 30.0
BODY = "hello healthy world"
_START_TIMEOUT = 10.0
# A reset must reach the client at once, not after a graceful FIN: linger on, for 0 seconds.
_LINGER_RESET = struct.pack("ii", 1, 0)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class HttpTarget:
    """An aiohttp server with its own event loop in a daemon thread, on a free loopback port."""

    def __init__(
        self, host: str = "127.0.0.1", tls: bool = False, cert_days: float = 1, port: int = 0
    ) -> None:
        if host not in ("127.0.0.1", "::1"):
            raise ValueError(f"HttpTarget serves loopback addresses only, got {host!r}")
        self.host = host
        self.tls = tls
        self.cert_days = cert_days
        self._cert_dir: tempfile.TemporaryDirectory[str] | None = None
        self._family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._hits: Counter[str] = Counter()
        self._switches: dict[str, int] = {}
        self._hooks: dict[str, tuple[list, float]] = {}
        self._received: dict[str, list[dict]] = {}
        self._hits_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: web.Server | None = None
        self._stopping: asyncio.Event | None = None
        self._started = threading.Event()
        self._error: BaseException | None = None
        self.port = port

    def __enter__(self) -> HttpTarget:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> HttpTarget:
        server_ssl = self._server_ssl_context() if self.tls else None
        listener = socket.socket(self._family, socket.SOCK_STREAM)
        listener.bind((self.host, self.port))
        self.port = listener.getsockname()[1]
        self._thread = threading.Thread(
            target=self._run,
            args=(listener, server_ssl),
            name=f"http-target-{self.port}",
            daemon=True,
        )
        self._thread.start()
        if not self._started.wait(_START_TIMEOUT) or self._error is not None:
            self.stop()
            raise RuntimeError(f"HttpTarget did not start: {self._error!r}")
        return self

    def stop(self) -> None:
        """Stop serving: stalled and slow requests end, every socket closes, the thread joins."""
        if self._thread is None:
            return
        if self._loop is not None and self._stopping is not None and not self._loop.is_closed():
            try:
                self._loop.call_soon_threadsafe(self._stopping.set)
            except RuntimeError:  # the loop closed between the check and the call
                pass
        self._thread.join(_START_TIMEOUT)
        if self._thread.is_alive():
            raise RuntimeError("HttpTarget thread did not stop")
        self._thread = None
        if self._cert_dir is not None:
            self._cert_dir.cleanup()

    def url(self, path: str, scheme: str | None = None) -> str:
        """The URL of ``path``; ``scheme`` defaults to what the server speaks."""
        scheme = scheme or ("https" if self.tls else "http")
        host = f"[{self.host}]" if self._family == socket.AF_INET6 else self.host
        return f"{scheme}://{host}:{self.port}{path}"

    @property
    def ca_file(self) -> Path:
        """The certificate (PEM) a client trusts to verify this server; TLS targets only."""
        if self._cert_dir is None:
            raise RuntimeError("ca_file exists only for a started HttpTarget(tls=True)")
        return Path(self._cert_dir.name) / "cert.pem"

    def client_ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_file))

    @property
    def hits(self) -> Counter[str]:
        """A copy of the request counts so far, by path and query."""
        with self._hits_lock:
            return Counter(self._hits)

    def open_connections(self) -> int:
        """Connections the server holds open now, read on the server's own loop.

        Reading there (not from this thread) means a connection counted as gone has its socket
        closed too: asyncio closes it in the same callback that reports the loss.
        """
        if self._loop is None or self._server is None:
            return 0
        server = self._server

        async def count() -> int:
            return len(server.connections)

        return asyncio.run_coroutine_threadsafe(count(), self._loop).result(_START_TIMEOUT)

    def wait_idle(self, timeout: float = 5.0) -> None:
        """Wait until clients have closed every connection (they close asynchronously)."""
        for _ in range(int(timeout / 0.01)):
            if self.open_connections() == 0:
                return
            time.sleep(0.01)
        raise AssertionError(f"{self.open_connections()} connection(s) still open after {timeout}s")

    def _server_ssl_context(self) -> ssl.SSLContext:
        self._cert_dir = tempfile.TemporaryDirectory(prefix="http-target-")
        key_file = Path(self._cert_dir.name) / "key.pem"
        _write_self_signed(self.host, self.ca_file, key_file, self.cert_days)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.ca_file, key_file)
        return context

    # The server side: everything below runs on the target's own thread and loop.

    def _run(self, listener: socket.socket, server_ssl: ssl.SSLContext | None) -> None:
        try:
            asyncio.run(self._serve(listener, server_ssl))
        except BaseException as exc:  # reported to start(); a test thread must never die silently
            self._error = exc
            self._started.set()
            listener.close()

    async def _serve(self, listener: socket.socket, server_ssl: ssl.SSLContext | None) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        # A client that gives up on /stall or /slow must free its server side at once.
        runner = web.AppRunner(
            self._app(), access_log=None, shutdown_timeout=0.5, handler_cancellation=True
        )
        await runner.setup()
        self._server = runner.server
        try:
            await web.SockSite(runner, listener, ssl_context=server_ssl).start()
            self._started.set()
            await self._stopping.wait()
        finally:
            await runner.cleanup()

    def _app(self) -> web.Application:
        app = web.Application(middlewares=[self._count])
        routes = {
            "/ok": self._ok,
            "/status/{code:\\d{3}}": self._status,
            "/slow/{seconds:[0-9.]+}": self._slow,
            "/stall": self._stall,
            "/reset": self._reset,
            "/flaky/{n:\\d+}": self._flaky,
            "/body": self._body,
            "/chunked": self._chunked,
            "/loop": self._redirect_loop,
            "/switch/{name}": self._switched,
            "/redirect": self._redirect,
            "/echo": self._echo,
            "/json": self._json,
            "/banner": self._banner,
            "/hook/{name}": self._hook,
        }
        for path, handler in routes.items():
            app.router.add_route("*", path, handler)
        return app

    @web.middleware
    async def _count(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        with self._hits_lock:
            self._hits[request.path_qs] += 1
        return await handler(request)

    def switch(self, name: str, status: int | str) -> None:
        """Make ``/switch/<name>`` answer ``status`` from now on (or reset, or answer late)."""
        self._switches[name] = status

    async def _switched(self, request: web.Request) -> web.Response:
        status = self._switches.get(request.match_info["name"], 200)
        if status == "reset":
            return await self._reset(request)
        if isinstance(status, str) and status.startswith("slow:"):
            await self._until_stopping(min(float(status.removeprefix("slow:")), MAX_SLOW))
            return web.json_response({"slow": status})
        return web.Response(status=status)

    def hook(self, name: str, *answers: int | str | tuple, delay: float = 0.0) -> None:
        """Make ``/hook/<name>`` answer ``answers`` in turn (then 200), each after ``delay``."""
        with self._hits_lock:
            self._hooks[name] = (list(answers), delay)

    def received(self, name: str) -> list[dict]:
        """The requests ``/hook/<name>`` got, in order (a stalled one with status None)."""
        with self._hits_lock:
            return [dict(r) for r in self._received.get(name, [])]

    def delivered(self, name: str) -> list[str]:
        """The Idempotency-Keys of the requests answered 2xx, in order."""
        return [r["key"] for r in self.received(name) if r["status"] and r["status"] < 300]

    async def _hook(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        record = {
            "key": request.headers.get("Idempotency-Key"),
            "headers": dict(request.headers),
            "body": await request.json(),
            "status": None,
        }
        with self._hits_lock:
            answers, delay = self._hooks.get(name, ([], 0.0))
            answer = answers.pop(0) if answers else 200
            self._received.setdefault(name, []).append(record)
        if answer == "stall":
            await self._until_stopping(None)
            return web.Response(status=503, text="stopping")
        if delay:
            await self._until_stopping(delay)
        status, headers = answer if isinstance(answer, tuple) else (answer, {})
        with self._hits_lock:
            record["status"] = status
        return web.json_response({"status": status}, status=status, headers=headers)

    async def _ok(self, request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    async def _status(self, request: web.Request) -> web.Response:
        return web.Response(status=int(request.match_info["code"]))

    async def _slow(self, request: web.Request) -> web.Response:
        seconds = min(float(request.match_info["seconds"]), MAX_SLOW)
        await self._until_stopping(seconds)
        return web.json_response({"slept": seconds})

    async def _stall(self, request: web.Request) -> web.Response:
        await self._until_stopping(None)
        return web.Response(status=503, text="stopping")

    async def _reset(self, request: web.Request) -> web.Response:
        transport = request.transport
        assert transport is not None
        transport.get_extra_info("socket").setsockopt(
            socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET
        )
        # Half a status line: the client is mid-response when the RST arrives.
        transport.write(b"HTTP/1.1 200")
        transport.abort()
        # aiohttp takes a cancelled handler as "the client went away": nothing more to write.
        raise asyncio.CancelledError

    async def _flaky(self, request: web.Request) -> web.Response:
        with self._hits_lock:
            calls = self._hits[request.path_qs]
        if calls <= int(request.match_info["n"]):
            retry_after = request.query.get("retry_after", "0")
            return web.Response(status=503, headers={"Retry-After": retry_after})
        return web.json_response({"ok": True, "calls": calls})

    async def _redirect_loop(self, request: web.Request) -> web.Response:
        raise web.HTTPFound("/loop")

    async def _redirect(self, request: web.Request) -> web.Response:
        return web.Response(status=302, headers={"Location": request.query["to"]})

    async def _echo(self, request: web.Request) -> web.Response:
        body = await request.text()
        headers = dict(request.headers)
        return web.json_response({"method": request.method, "headers": headers, "body": body})

    async def _json(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "db": {"ok": True, "lag": 3}, "items": [1, 2]})

    async def _banner(self, request: web.Request) -> web.Response:
        return web.Response(text="SSH-2.0-OpenSSH_9.6 secret banner " + "x" * 966)

    async def _body(self, request: web.Request) -> web.Response:
        return web.Response(text=BODY)

    async def _chunked(self, request: web.Request) -> web.StreamResponse:
        """BODY in two chunks, the second after a pause: a reader must not stop at the first."""
        response = web.StreamResponse()
        response.enable_chunked_encoding()
        await response.prepare(request)
        half = len(BODY) // 2
        await response.write(BODY[:half].encode())
        await self._until_stopping(0.05)
        await response.write(BODY[half:].encode())
        await response.write_eof()
        return response

    async def _until_stopping(self, seconds: float | None) -> None:
        assert self._stopping is not None
        try:
            await asyncio.wait_for(self._stopping.wait(), seconds)
        except TimeoutError:
            pass


def _write_self_signed(host: str, cert_file: Path, key_file: Path, days: float = 1) -> None:
    """A certificate for ``host`` with ``days`` left (expired below 0) that is its own CA, as
    real clients can verify it."""
    # cryptography comes with daphne (through autobahn); imported here, as only TLS needs it.
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "connection-health test target")])
    now = datetime.now(UTC)
    public = key.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=max(0, -days) + 1))
        .not_valid_after(now + timedelta(days=days))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(host))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


@pytest.fixture(name="http_target")
def http_target_fixture() -> Iterator[HttpTarget]:
    """A started ``HttpTarget`` on 127.0.0.1, stopped after the test."""
    with HttpTarget() as target:
        yield target
