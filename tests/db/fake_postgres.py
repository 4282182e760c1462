"""A loopback server that answers every PostgreSQL connection attempt with one fixed reply.

It speaks just enough of the protocol for the answers a real server gives while it starts up
or to a client without a password, which the test server (trust auth, always up) never
gives: it declines SSL and GSS encryption, reads the startup packet, sends its reply and
hangs up.
"""

from __future__ import annotations

import socket
import struct
import threading

#: The request codes of SSLRequest and GSSENCRequest (in place of a protocol version).
ENCRYPTION_REQUESTS = {80877103, 80877104}
#: AuthenticationCleartextPassword: the server asks for a password.
PASSWORD_REQUEST = b"R" + struct.pack("!II", 8, 3)
#: Seconds any one read or accept may block.
TIMEOUT = 5


def fatal(sqlstate: str, message: str) -> bytes:
    """An ErrorResponse of severity FATAL, as a server sends it to end a connection attempt."""
    fields = [(b"S", "FATAL"), (b"V", "FATAL"), (b"C", sqlstate), (b"M", message)]
    body = b"".join(code + value.encode() + b"\0" for code, value in fields) + b"\0"
    return b"E" + struct.pack("!I", len(body) + 4) + body


class FakePostgres:
    """``with FakePostgres(reply) as server:`` listens on 127.0.0.1:``server.port``."""

    def __init__(self, reply: bytes) -> None:
        self.reply = reply
        self.attempts = 0  # connection attempts answered
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.05)  # so that the loop sees the stop flag
        self.port = self._listener.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> FakePostgres:
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        self._thread.join(TIMEOUT)
        self._listener.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            with client:
                client.settimeout(TIMEOUT)
                self._answer(client)

    def _answer(self, client: socket.socket) -> None:
        for _ in range(3):  # at most SSLRequest, GSSENCRequest, then the startup packet
            packet = _read_packet(client)
            if packet is None:
                return
            if struct.unpack("!I", packet[:4])[0] in ENCRYPTION_REQUESTS:
                client.sendall(b"N")
                continue
            self.attempts += 1
            client.sendall(self.reply)
            return


def _read_packet(client: socket.socket) -> bytes | None:
    """One length-prefixed packet without its length, or None when the client hung up."""
    head = _read_exactly(client, 4)
    if head is None:
        return None
    return _read_exactly(client, struct.unpack("!I", head)[0] - 4)


def _read_exactly(client: socket.socket, size: int) -> bytes | None:
    data = b""
    while len(data) < size:
        chunk = client.recv(size - len(data))
        if not chunk:
            return None
        data += chunk
    return data
