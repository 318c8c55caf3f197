"""Reaching a box on another server: port forwards over ssh, and the byte relay of `devbox proxy`.

A box's ports stay on its server's 127.0.0.1. `devbox tunnel` forwards them to free ports on
this machine (`ssh -N -L`), and `ssh-config` entries reach the box's sshd through
`ProxyCommand devbox proxy NAME`, which relays stdin/stdout to the box's current ssh port.
Everything here is pure except `free_port`, `wait_listening` and `relay`, which touch sockets.

The ssh command lines take `base`: the full `ssh … TARGET` argv for the server (ops.remote
builds it, with the user's ControlMaster options). Options added here go right after "ssh",
before the defaults, because ssh keeps the first value it is given for each option.
"""

from __future__ import annotations

import hashlib
import os
import select
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from devbox.errors import DevboxError, InvalidInput, NotFound

LOOPBACK = "127.0.0.1"
CHUNK = 65536


@dataclass(frozen=True)
class RemotePort:
    """One port of a box as its server publishes it (info --json's `ports`)."""

    name: str
    container: int
    address: str  # where it listens on the box's server
    port: int


@dataclass(frozen=True)
class Forward:
    """One box port forwarded to a port on this machine."""

    name: str
    container: int
    remote_address: str
    remote_port: int
    local_port: int
    local_address: str = LOOPBACK

    def spec(self) -> str:
        """The `-L` argument: LOCAL_ADDRESS:LOCAL_PORT:REMOTE_ADDRESS:REMOTE_PORT."""
        return f"{self.local}:{self.remote}"

    @property
    def local(self) -> str:
        """Where the port answers on this machine, e.g. 127.0.0.1:53211."""
        return f"{_bracket(self.local_address)}:{self.local_port}"

    @property
    def remote(self) -> str:
        """Where the port answers on the box's server."""
        return f"{_bracket(self.remote_address)}:{self.remote_port}"


def _bracket(address: str) -> str:
    """An IPv6 address in brackets (ssh -L and URLs need them), anything else as is."""
    return f"[{address}]" if ":" in address and not address.startswith("[") else address


def reachable_address(address: str | None) -> str:
    """The address to connect to on the box's server: a port on every interface answers on loopback."""
    if address == "::":
        return "::1"
    return LOOPBACK if address in (None, "", "0.0.0.0") else str(address)


def published_ports(ports: Mapping[str, Mapping[str, object]]) -> list[RemotePort]:
    """The published ports of an info/up `--json` `ports` object (unpublished ones are skipped)."""
    found = []
    for name, port in ports.items():
        host_port = port.get("host_port")
        container = port.get("container")
        if isinstance(host_port, int) and host_port > 0 and isinstance(container, int):
            address = port.get("address")
            found.append(RemotePort(name, container, reachable_address(str(address or "")), host_port))
    return found


def parse_wanted(values: list[str]) -> list[tuple[str, int | None]]:
    """`--port` values: NAME (or the box's container port number), optionally =LOCALPORT."""
    wanted = []
    for value in values:
        name, sep, local = value.partition("=")
        if not name or (sep and not (local.isdigit() and 0 < int(local) < 65536)):
            raise InvalidInput(
                f"--port {value}: expected NAME or NAME=LOCALPORT (e.g. jupyter or jupyter=8888)"
            )
        wanted.append((name, int(local) if sep else None))
    return wanted


def choose(
    ports: list[RemotePort], wanted: list[tuple[str, int | None]], box: str
) -> list[tuple[RemotePort, int | None]]:
    """The ports asked for by name or container port (every published one when none), each
    with the local port asked for (None: any). NotFound names the ports the box has."""
    chosen: list[tuple[RemotePort, int | None]] = [] if wanted else [(p, None) for p in ports]
    for name, local in wanted:
        match = next((p for p in ports if name in (p.name, str(p.container))), None)
        if match is None:
            known = ", ".join(p.name for p in ports) or "none"
            raise NotFound(f"box '{box}' publishes no port '{name}'", f"its published ports: {known}")
        chosen.append((match, local))
    if not chosen:
        raise NotFound(f"box '{box}' publishes no port", "add ports: {jupyter: 8888} to its profile")
    return chosen


def plan(
    ports: list[RemotePort],
    wanted: list[tuple[str, int | None]],
    box: str,
    pick: Callable[[], int] | None = None,
) -> list[Forward]:
    """The forwards to make (see `choose`), each to a free local port unless one was given."""
    pick = pick or free_port
    for p, local in choose(ports, wanted, box):
        if local is not None and not port_free(local):
            raise DevboxError(
                f"port {local} is in use on this machine",
                f"pick another (--port {p.name}={local + 1}), or leave out ={local} for a free one",
            )
    return [
        Forward(p.name, p.container, p.address, p.port, local or pick())
        for p, local in choose(ports, wanted, box)
    ]


def free_port(address: str = LOOPBACK) -> int:
    """A port nobody listens on now: the kernel picks it when binding to port 0.

    ssh binds it a moment later; `ExitOnForwardFailure=yes` turns the rare race into an error.
    """
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.bind((address, 0))
        return int(probe.getsockname()[1])


def port_free(port: int, address: str = LOOPBACK) -> bool:
    """True when nothing listens on `port` here (a port asked for by --port NAME=PORT)."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((address, port))
        except OSError:
            return False
    return True


def rewrite_url(url: str, address: str, port: int) -> str:
    """`url` pointing at address:port instead, path, query (the token) and fragment kept."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, f"{_bracket(address)}:{port}", parts.path, parts.query, parts.fragment))


def local_url(url: str, forwards: list[Forward], remote_port: int) -> str | None:
    """The box's URL through the forward of `remote_port`, or None if that port is not forwarded."""
    forward = next((f for f in forwards if f.remote_port == remote_port), None)
    return rewrite_url(url, forward.local_address, forward.local_port) if forward else None


def url_port(url: str) -> int | None:
    """The port a URL names (None without one)."""
    try:
        return urlsplit(url).port
    except ValueError:
        return None


def _with(base: list[str], options: list[str]) -> list[str]:
    """`base` (ssh … TARGET) with `options` first: ssh keeps the first value of each option."""
    return [base[0], *options, *base[1:]]


def _forwards(forwards: list[Forward]) -> list[str]:
    return [arg for f in forwards for arg in ("-L", f.spec())]


def foreground_argv(base: list[str], forwards: list[Forward]) -> list[str]:
    """ssh holding the forwards until it is stopped (Ctrl-C).

    Its own connection, not the shared ControlMaster: a `-N` mux client hands its forwards to the
    master and exits at once, and the master drops them when ControlPersist runs out (measured).
    """
    options = [
        "-N",
        "-o",
        "ControlMaster=no",
        "-o",
        "ControlPath=none",
        "-o",
        "ExitOnForwardFailure=yes",
        "-o",
        "ServerAliveInterval=30",
    ]
    return _with(base, [*options, *_forwards(forwards)])


def background_argv(base: list[str], forwards: list[Forward], control: Path) -> list[str]:
    """A master connection of its own, in the background, holding the forwards until `stop_argv`.

    Not the shared master: that one exits when idle for ControlPersist, taking the forwards
    with it; this one has no persist timeout and a control socket of its own to stop it by.
    """
    options = [
        "-f",
        "-N",
        "-M",
        "-S",
        str(control),
        "-o",
        "ControlPersist=no",
        "-o",
        "ExitOnForwardFailure=yes",
        "-o",
        "ServerAliveInterval=30",
    ]
    return _with(base, [*options, *_forwards(forwards)])


def check_argv(base: list[str], control: Path) -> list[str]:
    """`ssh -O check` of a background tunnel: exit 0 while it runs."""
    return _with(base, ["-S", str(control), "-O", "check"])


def stop_argv(base: list[str], control: Path) -> list[str]:
    """`ssh -O exit`: ends a background tunnel and its forwards."""
    return _with(base, ["-S", str(control), "-O", "exit"])


def control_socket(folder: Path, host: str, box: str) -> Path:
    """The control socket of the background tunnel to `box` on `host`.

    Hashed: a Unix socket path must stay under ~104 bytes whatever the names' lengths.
    """
    digest = hashlib.sha256(f"{host}\0{box}".encode()).hexdigest()[:16]
    return folder / f"tunnel-{digest}"


def wait_listening(forwards: list[Forward], alive: Callable[[], bool], timeout: float = 30.0) -> bool:
    """True once every local port of `forwards` accepts connections; False if `alive()` turns
    False (ssh exited) or `timeout` passes first."""
    deadline = time.monotonic() + timeout
    pending = list(forwards)
    while pending and time.monotonic() < deadline:
        if not alive():
            return False
        forward = pending[0]
        try:
            with socket.create_connection((forward.local_address, forward.local_port), timeout=0.5):
                pending.pop(0)
        except OSError:
            time.sleep(0.05)
    return not pending


def relay(sock: socket.socket, in_fd: int, out_fd: int) -> None:
    """Copy bytes both ways between `sock` and the in/out descriptors until the socket ends.

    End of input half-closes the socket (the peer still answers); the socket's end of data
    ends the relay. One select loop, no threads: ssh writes and reads these pipes promptly.
    """
    reading: list[socket.socket | int] = [sock, in_fd]
    while True:
        ready, _, _ = select.select(reading, [], [])
        if sock in ready:
            data = sock.recv(CHUNK)
            if not data:
                return
            _write_all(out_fd, data)
        if in_fd in ready:
            data = os.read(in_fd, CHUNK)
            if data:
                sock.sendall(data)
            else:
                reading.remove(in_fd)
                sock.shutdown(socket.SHUT_WR)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def connect(address: str, port: int, timeout: float = 10.0) -> socket.socket:
    """A TCP connection to the box's published port (blocking once connected)."""
    sock = socket.create_connection((address, port), timeout=timeout)
    sock.settimeout(None)
    return sock
