"""Waiting for a box to be ready: its log says every credential its ports promise.

`wait_ready` follows the log until the Jupyter URL, ssh line and custom patterns appeared,
the box exits (BoxExited, with its last lines), or the profile's deadline passes (NotReady).
"""

from __future__ import annotations

import socket
import time

from devbox.access import credentials, reports
from devbox.box.resolved import Resolved
from devbox.box.state import Box
from devbox.engine.base import Engine
from devbox.errors import DevboxError
from devbox.ops.reporter import Reporter
from devbox.profile.model import Profile

EXIT_LOG_LINES = 30
# With nothing to wait for, watch this long for a box that dies at once before calling it up.
NOTHING_EXPECTED_GRACE_S = 1.0


class BoxExited(DevboxError):
    """The box stopped before it was ready."""


class NotReady(DevboxError):
    """The box runs but did not print its credentials in time."""


def scanner(profile: Profile) -> credentials.LogScanner:
    """A log scanner expecting what this profile's ports promise (jupyter, ssh)."""
    names = {p.name for p in profile.ports}
    return credentials.LogScanner("jupyter" in names, "ssh" in names, profile.credentials)


def printed(engine: Engine, box: Box, profile: Profile) -> credentials.LogScanner:
    """A scanner fed with what a running box printed in this run (an earlier run had other tokens)."""
    found = scanner(profile)
    for line in engine.log_lines(box.id, since=box.started_at, tty=box.tty):
        found.feed(line)
    return found


def wait_ready(
    engine: Engine, box_id: str, resolved: Resolved, reporter: Reporter, since: float | None, tty: bool
) -> tuple[Box, credentials.Credentials]:
    """Follow the log until every expected credential appeared, the box exits, or the deadline."""
    profile = resolved.profile
    watching = scanner(profile)
    reporter.step(f"waiting for {', '.join(watching.missing()) or 'the box to settle'}")
    start = time.monotonic()
    deadline = start + profile.ready_timeout
    waiting = not watching.ready
    if not waiting:
        deadline = min(deadline, start + NOTHING_EXPECTED_GRACE_S)
    follower = engine.follow(box_id, since, tty=tty)
    try:
        for line in follower.lines(deadline):
            if line is None:
                continue
            watching.feed(line)
            reporter.log_line(watching.last_line)
            if waiting and watching.ready:
                break
    finally:
        follower.close()
    box = engine.inspect(box_id)
    if box is None or not box.running:
        code = box.exit_code if box else None
        tail = tuple(engine.log_lines(box_id, tail=EXIT_LOG_LINES, tty=box.tty)) if box else ()
        raise BoxExited(f"box '{profile.name}' exited with code {code} before it was ready", details=tail)
    if not watching.ready:
        missing = ", ".join(watching.missing())
        raise NotReady(
            f"box '{profile.name}' did not print its {missing} within {profile.ready_timeout:g} s",
            f"it is still running (devbox logs {profile.name}); if it is slow, raise ready.timeout",
        )
    # The log line alone can come first: Jupyter Server 2.21 prints its URL a few milliseconds
    # before it accepts connections, and a URL that resets the first request is not ready.
    for port_name, expected, says, protocol in (
        ("jupyter", watching.expect_jupyter, HTTP_REQUEST, b"HTTP/"),
        ("ssh", watching.expect_ssh, None, b"SSH-"),
    ):
        port = box.port(port_name)
        if not (expected and port and port.host):
            continue
        if not answers(reports.display_address(port.address), port.host, says, protocol, deadline):
            raise NotReady(
                f"box '{profile.name}' printed its {port_name} login, but port {port.host} does not answer",
                f"it is still running: devbox logs {profile.name}",
            )
    return box, watching.found


# What a Jupyter server answers without a token, touching nothing (a redirect or a 403).
HTTP_REQUEST = b"HEAD / HTTP/1.0\r\n\r\n"


def answers(address: str, port: int, request: bytes | None, protocol: bytes, deadline: float) -> bool:
    """True once the published port answers in `protocol` (an SSH banner, an HTTP status line).

    A port the engine publishes accepts connections before the server inside does, so only
    an answer proves the server is there.
    """
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((address, port), timeout=2) as conn:
                if request:
                    conn.sendall(request)
                if conn.recv(64).startswith(protocol):
                    return True
        except OSError:
            pass
        time.sleep(0.05)
    return False
