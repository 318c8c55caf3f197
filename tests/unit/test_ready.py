"""The readiness probe: a published port counts as ready only once the server behind it answers."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest

from devbox.ops import ready

pytestmark = pytest.mark.real_sockets


def _serve(reply: bytes | None, after_s: float = 0.0) -> Iterator[int]:
    """A loopback server that resets connections for `after_s`, then answers `reply` to each."""
    server = socket.create_server(("127.0.0.1", 0))
    started = time.monotonic()
    stop = threading.Event()

    def loop() -> None:
        server.settimeout(0.05)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            with conn:
                if time.monotonic() - started < after_s or reply is None:
                    # What docker-proxy does while nothing listens inside the box: a reset.
                    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                    continue
                conn.recv(256)
                conn.sendall(reply)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:
        stop.set()
        thread.join()
        server.close()


@pytest.fixture
def late_http() -> Iterator[int]:
    yield from _serve(b"HTTP/1.1 302 Found\r\n\r\n", after_s=0.3)


@pytest.fixture
def resetting() -> Iterator[int]:
    yield from _serve(None)


def test_an_http_port_is_ready_once_it_answers_not_when_it_accepts(late_http: int) -> None:
    start = time.monotonic()
    assert ready.answers("127.0.0.1", late_http, ready.HTTP_REQUEST, b"HTTP/", start + 5)
    assert time.monotonic() - start >= 0.3  # the resets before it were not taken as ready


def test_a_port_that_only_resets_is_not_ready_by_the_deadline(resetting: int) -> None:
    start = time.monotonic()
    assert not ready.answers("127.0.0.1", resetting, ready.HTTP_REQUEST, b"HTTP/", start + 0.5)
    assert time.monotonic() - start < 3


def test_an_ssh_port_must_send_a_banner(late_http: int) -> None:
    # An HTTP server where SSH was promised is not an SSH server.
    assert not ready.answers("127.0.0.1", late_http, None, b"SSH-", time.monotonic() + 0.8)
