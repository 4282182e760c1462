"""The classifier, fed real failures from real sockets, files and servers."""

import socket
import sqlite3
import ssl
import struct
import threading

import pytest
import requests

from connections_app.errors import DATABASE_TRANSIENT, ErrorCategory, Severity, classify
from tests.conftest import refusing_port


def raised(func) -> BaseException:
    try:
        func()
    except BaseException as exc:
        return exc
    raise AssertionError("expected an exception")


@pytest.fixture
def resetting_server():
    """Accepts one connection and resets it (SO_LINGER 0) without answering."""
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]

    def serve():
        conn, _ = server.accept()
        conn.recv(1024)
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield port
    thread.join(timeout=5)
    server.close()


@pytest.fixture
def silent_server():
    """Accepts connections and never answers."""
    server = socket.create_server(("127.0.0.1", 0))
    yield server.getsockname()[1]
    server.close()


def test_refused_port():
    port = refusing_port()
    exc = raised(lambda: socket.create_connection(("127.0.0.1", port), timeout=2))
    assert classify(exc) is ErrorCategory.REFUSED
    wrapped = raised(lambda: requests.get(f"http://127.0.0.1:{port}/", timeout=2))
    assert classify(wrapped) is ErrorCategory.REFUSED


def test_reset_connection(resetting_server):
    exc = raised(lambda: requests.get(f"http://127.0.0.1:{resetting_server}/", timeout=5))
    assert classify(exc) is ErrorCategory.RESET


def test_timeout(silent_server):
    exc = raised(lambda: requests.get(f"http://127.0.0.1:{silent_server}/", timeout=0.2))
    assert classify(exc) is ErrorCategory.TIMEOUT


def test_dns_failure():
    exc = raised(lambda: socket.getaddrinfo("no-such-host.invalid", 80))
    assert classify(exc) is ErrorCategory.DNS


def test_tls_to_a_plain_port(silent_server):
    # A TLS handshake against something that answers plain text fails as TLS.
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]

    def answer():
        conn, _ = server.accept()
        conn.recv(1024)
        conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
        conn.close()

    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    context = ssl.create_default_context()
    exc = raised(
        lambda: context.wrap_socket(
            socket.create_connection(("127.0.0.1", port)), server_hostname="localhost"
        )
    )
    thread.join(timeout=5)
    server.close()
    assert classify(exc) is ErrorCategory.TLS


def test_sqlite_locked(tmp_path):
    path = tmp_path / "locked.sqlite3"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("create table t (x)")
    holder.execute("begin immediate")
    other = sqlite3.connect(path, timeout=0.01, isolation_level=None)
    exc = raised(lambda: other.execute("begin immediate"))
    holder.close()
    other.close()
    assert classify(exc) is ErrorCategory.DB_LOCKED


def test_sqlite_cannot_open_is_not_a_lost_connection(tmp_path):
    exc = raised(lambda: sqlite3.connect(tmp_path / "missing-dir" / "db.sqlite3"))
    assert classify(exc) not in DATABASE_TRANSIENT


def test_syntax_error_is_not_a_connection_problem(tmp_path):
    conn = sqlite3.connect(tmp_path / "x.sqlite3")
    exc = raised(lambda: conn.execute("selekt 1"))
    conn.close()
    assert classify(exc) is ErrorCategory.UNKNOWN


def test_postgres_unreachable_and_terminated(postgres_url):
    import psycopg

    port = refusing_port()
    exc = raised(lambda: psycopg.connect(f"host=127.0.0.1 port={port} connect_timeout=2"))
    assert classify(exc) is ErrorCategory.DB_DISCONNECTED
    with (
        psycopg.connect(postgres_url, autocommit=True) as victim,
        psycopg.connect(postgres_url, autocommit=True) as killer,
    ):
        killer.execute("select pg_terminate_backend(%s)", (victim.info.backend_pid,))
        exc = raised(lambda: victim.execute("select 1"))
        assert classify(exc) is ErrorCategory.DB_DISCONNECTED
        syntax = raised(lambda: killer.execute("selekt 1"))
        assert classify(syntax) is ErrorCategory.UNKNOWN


def test_http_status_errors():
    response = requests.Response()
    response.status_code = 503
    assert classify(requests.HTTPError(response=response)) is ErrorCategory.HTTP_5XX
    response.status_code = 404
    assert classify(requests.HTTPError(response=response)) is ErrorCategory.HTTP_4XX


def test_every_category_has_traits():
    for category in ErrorCategory:
        assert isinstance(category.severity, Severity)
        assert isinstance(category.retryable, bool)
    assert not ErrorCategory.CLIENT_GONE.retryable
    assert ErrorCategory.DB_LOCKED.retryable
