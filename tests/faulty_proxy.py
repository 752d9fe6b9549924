"""A fault-injecting HTTP/1.1 proxy on 127.0.0.1, between a client and a real S3 endpoint (SeaweedFS in the tests).

Each request, independently, is answered by the proxy itself with a fraction ``fault_rate`` of the time: half of
those get an S3 ``503 SlowDown``, the other half a TCP reset (RST, no response). Every other request is relayed
byte for byte to the upstream over a connection kept per client connection. :meth:`FaultyProxy.stop` closes the
listener for good: later connections are refused, as from an endpoint that disappeared.

    with FaultyProxy(seaweed.s3_port, fault_rate=0.05) as proxy:
        options = seaweed.storage_options() | {"client_kwargs": {"endpoint_url": proxy.endpoint_url, ...}}

Faults are injected before the request reaches the upstream, so that a retried PUT never runs twice there. Only
what S3 clients send is supported: ``Content-Length`` or chunked bodies, ``Expect: 100-continue``.
"""

from __future__ import annotations

import contextlib
import random
import socket
import struct
import threading
from collections import Counter
from typing import BinaryIO

__all__ = ["FaultyProxy"]

_SLOW_DOWN = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code>'
    b"<Message>Please reduce your request rate.</Message></Error>"
)


class _Closed(Exception):
    """The peer closed the connection between messages."""


def _read_head(stream: BinaryIO) -> bytes:
    """The start line and headers, up to and including the blank line."""
    lines = []
    while True:
        line = stream.readline(65537)
        if not line:
            if lines:
                raise ConnectionError("connection closed inside a message head")
            raise _Closed
        lines.append(line)
        if line in (b"\r\n", b"\n"):
            return b"".join(lines)


def _headers(head: bytes) -> dict[str, str]:
    fields = {}
    for line in head.split(b"\r\n")[1:]:
        if b":" in line:
            name, value = line.split(b":", 1)
            fields[name.strip().lower().decode("latin-1")] = value.strip().decode("latin-1")
    return fields


def _read_body(stream: BinaryIO, headers: dict[str, str]) -> bytes:
    """The body as sent (chunked bodies keep their framing, so they are relayed unchanged)."""
    if "chunked" in headers.get("transfer-encoding", "").lower():
        parts = []
        while True:
            size_line = stream.readline(65537)
            parts.append(size_line)
            size = int(size_line.split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:
                while True:  # trailers, then the blank line
                    trailer = stream.readline(65537)
                    parts.append(trailer)
                    if trailer in (b"\r\n", b"\n", b""):
                        return b"".join(parts)
            parts.append(stream.read(size + 2))
    length = int(headers.get("content-length", "0") or 0)
    return stream.read(length) if length else b""


def _response_has_body(method: str, status: int) -> bool:
    return method != "HEAD" and status >= 200 and status not in (204, 304)


class FaultyProxy:
    """The proxy; see the module docstring.

    Args:
        upstream_port: the real endpoint's port on 127.0.0.1.
        fault_rate: the fraction of requests answered with a fault (0 relays everything).
        seed: for the fault draws, so that a run's fault sequence is reproducible.

    Attributes:
        counts: ``requests``, ``relayed``, ``503`` and ``reset`` so far (a test asserts faults did happen).
    """

    def __init__(self, upstream_port: int, *, fault_rate: float = 0.05, seed: int = 0) -> None:
        self.upstream_port = upstream_port
        self.fault_rate = fault_rate
        self.counts: Counter[str] = Counter()
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._stopped = threading.Event()
        self._connections: set[socket.socket] = set()
        self._acceptor = threading.Thread(target=self._accept, name="faulty-proxy", daemon=True)

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FaultyProxy:
        self._listener.listen(64)
        self._acceptor.start()
        return self

    def stop(self) -> None:
        """Close the listener and every open connection: the endpoint is gone (connections are refused)."""
        self._stopped.set()
        self._listener.close()
        with self._lock:
            connections, self._connections = self._connections, set()
        for conn in connections:
            _close_quietly(conn)
        self._acceptor.join(timeout=5)

    def __enter__(self) -> FaultyProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _accept(self) -> None:
        while not self._stopped.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # the listener was closed by stop()
            with self._lock:
                self._connections.add(client)
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _draw(self) -> str | None:
        """'503', 'reset' or None (relay), counted."""
        with self._lock:
            self.counts["requests"] += 1
            roll = self._random.random()
            fault = None if roll >= self.fault_rate else ("503" if roll < self.fault_rate / 2 else "reset")
            self.counts[fault or "relayed"] += 1
            return fault

    def _serve(self, client: socket.socket) -> None:
        upstream: socket.socket | None = None
        try:
            reader = client.makefile("rb")
            while not self._stopped.is_set():
                head = _read_head(reader)
                headers = _headers(head)
                if headers.get("expect", "").lower() == "100-continue":
                    client.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
                    head = (
                        b"".join(
                            line + b"\r\n"
                            for line in head.split(b"\r\n")[:-2]
                            if not line.lower().startswith(b"expect:")
                        )
                        + b"\r\n"
                    )
                body = _read_body(reader, headers)
                fault = self._draw()
                if fault == "reset":
                    client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    return  # closing with linger 0 sends RST
                if fault == "503":
                    client.sendall(
                        b"HTTP/1.1 503 Slow Down\r\nContent-Type: application/xml\r\n"
                        + f"Content-Length: {len(_SLOW_DOWN)}\r\n\r\n".encode()
                        + _SLOW_DOWN
                    )
                    continue
                if upstream is None:
                    upstream = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=60)
                    upstream_reader = upstream.makefile("rb")
                upstream.sendall(head + body)
                method = head.split(b" ", 1)[0].decode("latin-1")
                self._relay_response(upstream_reader, client, method)
        except (_Closed, OSError, ValueError):
            pass  # the client or the upstream went away, or stop() closed the socket
        finally:
            with self._lock:
                self._connections.discard(client)
            _close_quietly(client)
            if upstream is not None:
                _close_quietly(upstream)

    @staticmethod
    def _relay_response(upstream: BinaryIO, client: socket.socket, method: str) -> None:
        while True:  # 1xx interim responses come before the final one
            head = _read_head(upstream)
            status = int(head.split(b" ", 2)[1])
            headers = _headers(head)
            body = _read_body(upstream, headers) if _response_has_body(method, status) else b""
            client.sendall(head + body)
            if status >= 200:
                return


def _close_quietly(sock: socket.socket) -> None:
    """Shut the connection down, then close: ``close()`` alone leaves it open while a reader made by
    ``makefile()`` still holds the socket, and a client would keep talking to an endpoint that is 'gone'."""
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()
