"""A small Docker Engine API client: JSON calls and byte streams over the engine's socket.

Why not docker-py for everything: importing it costs ~120 ms (requests, urllib3) on every
command, more than `docker ps` takes in total. The hot path (inspect, list, create, start,
logs, volumes, exec) is plain REST over a Unix socket, which the standard library does in
~10 ms of imports. docker-py remains the transport for engines this client cannot reach
itself (ssh://, TLS) and does pulls (registry auth) and builds (context tarballs).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import struct
from collections.abc import Iterator
from typing import Any, Protocol
from urllib.parse import quote, urlencode, urlsplit

from devbox.engine.base import EngineUnavailable

DEFAULT_HOST = "unix:///var/run/docker.sock"


class ApiError(Exception):
    """The engine answered with an HTTP error; `message` is its explanation."""

    def __init__(self, status: int, message: str, from_docker: bool = True) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message
        self.from_docker = from_docker  # Docker explains errors in JSON; other servers do not


def unreachable(host: str, exc: BaseException) -> EngineUnavailable:
    """The error for an engine that does not answer (or refuses the caller)."""
    if isinstance(exc, PermissionError) or "Permission denied" in str(exc):
        return EngineUnavailable(
            f"permission denied on the Docker socket ({host})",
            "add yourself to the docker group (sudo usermod -aG docker $USER) and log in again",
        )
    if "(docker context " in host:
        return EngineUnavailable(
            f"cannot reach the Docker engine at {host}",
            "is dockerd running there? docker context ls shows your contexts; "
            "pick another with DOCKER_CONTEXT=NAME or docker context use NAME",
        )
    return EngineUnavailable(
        f"cannot reach the Docker engine at {host}",
        "is dockerd running? start it (sudo systemctl start docker), "
        "or point DOCKER_HOST at a running engine",
    )


def not_docker(host: str, exc: BaseException) -> EngineUnavailable:
    """The error for an answer no Docker engine gives: not JSON, or broken off midway."""
    return EngineUnavailable(
        f"{host} answered, but not as a Docker engine does (the answer broke off or is not JSON: {exc})",
        "is it a Docker engine, and still running? point DOCKER_HOST at a running engine "
        "(docker context ls shows yours)",
    )


def _raise_for_status(response: Response) -> None:
    """An ApiError for an HTTP error, with Docker's explanation (its JSON `message`)."""
    if response.status < 400:
        return
    raw = response.read()
    try:
        message = str(json.loads(raw)["message"])
    except (ValueError, TypeError, KeyError):
        raise ApiError(response.status, raw.decode(errors="replace").strip()[:200], False) from None
    raise ApiError(response.status, message)


class Response(Protocol):
    """What a transport returns: a status, the body at once, or the body as it comes."""

    status: int

    def read(self) -> bytes:
        """The whole body."""

    def chunks(self) -> Iterator[bytes]:
        """The body in pieces as they arrive."""

    def close(self) -> None:
        """Drop the connection."""


class Transport(Protocol):
    """Sends one request."""

    def open(
        self,
        method: str,
        path: str,
        body: bytes | None,
        timeout: float | None,
        content_type: str = "application/json",
    ) -> Response:
        """Send the request; return the response with its body unread."""


class _RawResponse:
    """An HTTP/1.1 response read straight off the socket (chunked, sized, or until close)."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._file = sock.makefile("rb")
        status_line = self._file.readline()
        parts = status_line.split()
        if len(parts) < 2 or not parts[1].isdigit():
            sock.close()
            raise OSError(f"the engine answered {status_line[:80]!r}, not HTTP")
        self.status = int(parts[1])
        headers: dict[str, str] = {}
        while (line := self._file.readline()) not in (b"\r\n", b"\n", b""):
            key, _, value = line.decode("latin-1").partition(":")
            headers[key.strip().lower()] = value.strip()
        self._chunked = headers.get("transfer-encoding", "").lower() == "chunked"
        length = headers.get("content-length")
        self._length = int(length) if length is not None and length.isdecimal() else None

    def read(self) -> bytes:
        return b"".join(self.chunks())

    def chunks(self) -> Iterator[bytes]:
        try:
            yield from self._body()
        except OSError:
            return  # a dropped stream ends like EOF; the caller checks the container's state
        finally:
            self._file.close()
            self._sock.close()

    def _body(self) -> Iterator[bytes]:
        if self._chunked:
            while size_line := self._file.readline():
                size = int(size_line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    return
                yield self._file.read(size)
                self._file.readline()  # the CRLF after each chunk
        elif self._length is not None:
            remaining = self._length
            while remaining > 0 and (data := self._file.read1(min(65536, remaining))):
                remaining -= len(data)
                yield data
        else:
            while data := self._file.read1(65536):  # a hijacked raw stream: until the engine closes
                yield data

    def close(self) -> None:
        # shutdown (not just close) wakes a thread blocked reading this socket.
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()


class SocketTransport:
    """HTTP/1.1 over the engine's Unix socket, or plain TCP (tcp://host:port without TLS).

    Hand-rolled rather than http.client, whose import (email parsing, ssl) alone costs
    about as long as `docker ps` runs.
    """

    def __init__(self, host: str) -> None:
        self.host = host
        parts = urlsplit(host)
        self._unix = parts.path if parts.scheme == "unix" else None
        self._tcp = (parts.hostname or "localhost", parts.port or 2375)

    def open(
        self,
        method: str,
        path: str,
        body: bytes | None,
        timeout: float | None,
        content_type: str = "application/json",
    ) -> Response:
        if self._unix is not None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(timeout)
            sock.connect(self._unix)
        else:
            sock = socket.create_connection(self._tcp, timeout=timeout)
        head = [f"{method} {path} HTTP/1.1", "Host: docker", "Connection: close"]
        if body is not None:
            head += [f"Content-Type: {content_type}", f"Content-Length: {len(body)}"]
        sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + (body or b""))
        return _RawResponse(sock)


def can_reach_directly(host: str) -> bool:
    """True when the standard library can talk to `host` (no TLS, no SSH)."""
    tls = os.environ.get("DOCKER_TLS_VERIFY") or os.environ.get("DOCKER_CERT_PATH")
    return host.startswith("unix://") or (host.startswith("tcp://") and not tls)


class DockerAPI:
    """Engine API calls with JSON in and out; errors raised as ApiError.

    An engine that does not answer, or stops answering midway, is EngineUnavailable from every
    call, never a bare OSError or JSON error: the verbs and their cleanup tell it apart that way.
    """

    def __init__(self, transport: Transport, timeout: float = 60, host: str = "the engine") -> None:
        self.transport = transport
        self.timeout = timeout
        self.host = host

    @staticmethod
    def path(template: str, *names: str, **query: Any) -> str:
        """A request path with quoted names and a query string (filters JSON-encoded)."""
        path = template.format(*(quote(n, safe="") for n in names))
        params = {k: json.dumps(v) if isinstance(v, dict) else v for k, v in query.items() if v is not None}
        return f"{path}?{urlencode(params)}" if params else path

    def _open(
        self, method: str, path: str, data: bytes | None, timeout: float | None, content_type: str
    ) -> Response:
        try:
            response = self.transport.open(method, path, data, timeout, content_type)
            _raise_for_status(response)
        except OSError as exc:
            raise unreachable(self.host, exc) from None
        return response

    def _read(self, response: Response) -> bytes:
        try:
            return response.read()
        except OSError as exc:
            raise unreachable(self.host, exc) from None

    def call(self, method: str, path: str, body: Any = None) -> Any:
        """One request; the decoded JSON answer (None when the engine sends no body)."""
        raw = self.raw(method, path, body)
        try:
            return json.loads(raw) if raw.strip() else None
        except ValueError as exc:  # also what a body cut short by a dying engine gives
            raise not_docker(self.host, exc) from None

    def raw(self, method: str, path: str, body: Any = None) -> bytes:
        """One request; the answer's bytes."""
        data = json.dumps(body).encode() if body is not None else None
        return self._read(self._open(method, path, data, self.timeout, "application/json"))

    def put_tar(self, path: str, tar: bytes) -> None:
        """Upload a tar archive (PUT /containers/{id}/archive)."""
        self._read(self._open("PUT", path, tar, self.timeout, "application/x-tar"))

    def stream(self, method: str, path: str, body: Any = None) -> Response:
        """A response to read as a stream (no read timeout: logs may be quiet for long)."""
        data = json.dumps(body).encode() if body is not None else None
        return self._open(method, path, data, None, "application/json")


def demux(chunks: Iterator[bytes]) -> Iterator[bytes]:
    """Payloads of a multiplexed stdout/stderr stream (containers without a TTY)."""
    buffer = b""
    for chunk in chunks:
        buffer += chunk
        while len(buffer) >= 8:
            (size,) = struct.unpack(">I", buffer[4:8])
            if len(buffer) < 8 + size:
                break
            yield buffer[8 : 8 + size]
            buffer = buffer[8 + size :]
