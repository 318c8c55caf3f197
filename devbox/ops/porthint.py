"""When a fixed host port is taken: where to change it, and a free port to change it to."""

from __future__ import annotations

import socket

from devbox.box.resolved import Resolved
from devbox.engine.base import BoxFailed


def explain(error: BoxFailed, resolved: Resolved) -> BoxFailed:
    """A taken fixed port: name the profile line to change and a port that is free now."""
    for port in resolved.profile.ports:
        if port.host is not None and f"host port {port.host} " in error.message:
            free = _free_port_near(port.host, resolved.policy.bind_address)
            example = f'e.g. {port.name}: "{free}:{port.container}", ' if free else ""
            return BoxFailed(
                f"host port {port.host} (ports: {port.name}) is already taken",
                f"change it at {port.origin}, {example}"
                f"or write {port.name}: {port.container} to let the engine pick a free port",
            )
    return error


def _free_port_near(port: int, address: str) -> int | None:
    """The next port above `port` that nothing listens on here (a suggestion, not a promise)."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    for candidate in range(port + 1, min(port + 50, 65536)):
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            try:
                probe.bind((address, candidate))
            except OSError:
                continue
            return candidate
    return None
