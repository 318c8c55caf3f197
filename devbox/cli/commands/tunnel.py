"""`devbox tunnel`: a box's ports on this machine; `devbox proxy`: ssh's ProxyCommand for a box.

A box's ports stay on its server's 127.0.0.1. For a box on another server, `tunnel` forwards
them over ssh to free ports here and prints the Jupyter URL with the local port. For a box on
this machine there is nothing to forward: its URL already works here, and `tunnel` says so.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypedDict

import typer

from devbox.cli.app import HostOpt, JsonOpt, NameArg, app, handles_errors
from devbox.errors import DevboxError, EngineUnreachable

if TYPE_CHECKING:
    from devbox.access.tunnel import Forward
    from devbox.ops.hosts import Host
    from devbox.settings import Settings

INFO_TIMEOUT = 30.0  # `info` re-reads the box's log on the server: seconds, not milliseconds


class TunnelPortJson(TypedDict):
    """One forwarded port: where it answers here, and where on the box's server."""

    name: str
    container: int
    local: str
    local_port: int
    remote: str
    remote_port: int


class TunnelJson(TypedDict):
    """`tunnel --json`: printed once the forwards answer (a foreground tunnel then keeps running).

    `local` is true for a box on this machine: nothing is forwarded, `ports` are its own.
    `stop` is the command that ends a --background tunnel (null otherwise).
    """

    name: str
    host: str
    local: bool
    background: bool
    jupyter_url: str | None
    ports: list[TunnelPortJson]
    stop: str | None


@app.command("tunnel")
@handles_errors
def tunnel(
    name: NameArg = "default",
    port: Annotated[
        list[str] | None,
        typer.Option(
            "--port", "-p", help="Only this port: NAME or NAME=LOCALPORT; repeatable (default: all)."
        ),
    ] = None,
    host: HostOpt = None,
    background: Annotated[
        bool, typer.Option("--background", help="Keep the tunnel after this command returns.")
    ] = False,
    stop: Annotated[bool, typer.Option("--stop", help="End the box's --background tunnel.")] = False,
    json_output: JsonOpt = False,
) -> None:
    """Forward a box's ports to free ports on this machine and print its Jupyter URL there."""
    from devbox import settings
    from devbox.access import tunnel as fwd
    from devbox.cli import onhost
    from devbox.ops import reach

    caller = settings.from_environment()
    wanted = fwd.parse_wanted(port or [])
    server = onhost.target(caller, name, host)
    if server is None:
        _local(caller, name, wanted, json_output)
        return
    control = reach.control_socket(server, name)
    if stop:
        _stop(server, name, control, json_output)
        return
    info = _remote_info(server, name)
    ports = fwd.published_ports(info.get("ports") or {})
    forwards = fwd.plan(ports, wanted, name)
    url = _jupyter_url(info, forwards)
    if background:
        _start_background(server, forwards, control)
        _show(
            _tunnel_json(name, server.name, False, True, url, forwards, _stop_command(name, server)),
            json_output,
        )
        return
    _foreground(server, name, forwards, url, json_output)


def _stop_command(name: str, server: Host) -> str:
    return f"devbox tunnel {name} --host {server.name} --stop"


def _remote_info(server: Host, name: str) -> dict[str, Any]:
    """The box's `info --json` on its server; an error unless it runs."""
    from devbox.ops import remote

    # --host local: with a home shared with the server, its devbox reads the same boxes.yaml and
    # would send `info` on to the box's server, itself, again and again.
    info = remote.run_json(server, ["info", name, "--host", "local", "--json"], INFO_TIMEOUT)
    if not isinstance(info, dict):
        raise DevboxError(
            f"{server.name} answered `info {name}` with no box", "check devbox there: devbox doctor"
        )
    if info.get("status") != "running":
        raise DevboxError(
            f"box '{name}' on {server.name} is {info.get('status') or 'not running'}",
            f"start it: devbox up {name}",
        )
    return info


def _jupyter_url(info: dict[str, Any], forwards: list[Forward]) -> str | None:
    """The box's Jupyter URL through the tunnel (token kept), if Jupyter's port is forwarded."""
    from devbox.access import tunnel as fwd

    jupyter = info.get("jupyter")
    url = jupyter.get("url") if isinstance(jupyter, dict) else None
    remote_port = fwd.url_port(url) if isinstance(url, str) else None
    if not isinstance(url, str) or remote_port is None:
        return None
    return fwd.local_url(url, forwards, remote_port)


def _foreground(server: Host, name: str, forwards: list[Forward], url: str | None, json_output: bool) -> None:
    """ssh holding the forwards until Ctrl-C (exit 0), a SIGTERM or SIGHUP, or its own end (an error)."""
    from devbox.access import tunnel as fwd
    from devbox.ops import reach

    argv = fwd.foreground_argv(reach.ssh_base(server), forwards)
    # ssh's own messages (host key, authentication) go straight to the terminal.
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL)

    def ended(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, ended)
    try:
        if not fwd.wait_listening(forwards, lambda: proc.poll() is None):
            raise _ssh_failed(server, proc)
        _show(_tunnel_json(name, server.name, False, False, url, forwards, None), json_output)
        if not json_output:
            print("Ctrl-C ends the tunnel.", file=sys.stderr)
        proc.wait()
        raise _ssh_failed(server, proc)
    except KeyboardInterrupt:
        return  # Ctrl-C is how a foreground tunnel ends: exit 0
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait()


def _ssh_failed(server: Host, proc: subprocess.Popen[bytes]) -> DevboxError:
    if proc.poll() is None:
        proc.terminate()
        proc.wait()
        return EngineUnreachable(
            f"ssh to {server.name} did not open the forwards within 30 s",
            "check that `ssh` to it works; its messages are above",
        )
    return EngineUnreachable(
        f"the tunnel to {server.name} ended: ssh exited with status {proc.returncode}",
        "its messages are above; check that `ssh` to it works, then run devbox tunnel again",
    )


def _start_background(server: Host, forwards: list[Forward], control: Path) -> None:
    """A background master connection of its own holding the forwards (an old one is replaced)."""
    from devbox.access import tunnel as fwd
    from devbox.ops import reach

    base = reach.ssh_base(server)
    if _running(base, control):
        subprocess.run(fwd.stop_argv(base, control), capture_output=True, check=False)
    # ssh -f keeps its stderr open in the background: a file, not a pipe, or run() never returns.
    with tempfile.TemporaryFile() as errors:
        result = subprocess.run(
            fwd.background_argv(base, forwards, control),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=errors,
            check=False,
        )
        errors.seek(0)
        said = errors.read().decode(errors="replace").strip()
    if result.returncode != 0:
        raise EngineUnreachable(
            f"ssh to {server.name} could not open the tunnel (status {result.returncode})",
            said.splitlines()[-1] if said else "check that `ssh` to it works",
            details=tuple(said.splitlines()[-5:]),
        )


def _running(base: list[str], control: Path) -> bool:
    from devbox.access import tunnel as fwd

    if not os.path.exists(control):
        return False
    return subprocess.run(fwd.check_argv(base, control), capture_output=True, check=False).returncode == 0


def _stop(server: Host, name: str, control: Path, json_output: bool) -> None:
    from devbox.access import tunnel as fwd
    from devbox.errors import NotFound
    from devbox.ops import reach
    from devbox.ui import to_json

    base = reach.ssh_base(server)
    if not _running(base, control):
        raise NotFound(f"no background tunnel to box '{name}' on {server.name}")
    subprocess.run(fwd.stop_argv(base, control), capture_output=True, check=False)
    if json_output:
        to_json.print_json({"name": name, "host": server.name, "stopped": True})
    else:
        print(f"tunnel to {name} on {server.name} ended")


def _local(caller: Settings, name: str, wanted: list[tuple[str, int | None]], json_output: bool) -> None:
    """A box on this machine: its ports already answer here; show them, forward nothing."""
    from devbox import engine
    from devbox.access import tunnel as fwd
    from devbox.ops import boxes

    eng = engine.connect()
    report = boxes.info(eng, caller, name)
    ports = [
        fwd.RemotePort(p.name, p.container, fwd.reachable_address(p.address), p.host)
        for p in report.box.ports
        if p.host
    ]
    # The same port on both sides: nothing is forwarded (a NAME=LOCALPORT asked for is moot).
    same = [
        fwd.Forward(p.name, p.container, p.address, p.port, p.port, p.address)
        for p, _ in fwd.choose(ports, wanted, name)
    ]
    url = report.jupyter.url if report.jupyter else None
    if not json_output:
        print(f"box '{name}' runs on this machine: its ports already answer here, no tunnel needed")
    _show(_tunnel_json(name, eng.host, True, False, url, same, None), json_output)


def _tunnel_json(
    name: str,
    host: str,
    local: bool,
    background: bool,
    url: str | None,
    forwards: list[Forward],
    stop: str | None,
) -> TunnelJson:
    ports: list[TunnelPortJson] = [
        {
            "name": f.name,
            "container": f.container,
            "local": f.local,
            "local_port": f.local_port,
            "remote": f.remote,
            "remote_port": f.remote_port,
        }
        for f in forwards
    ]
    return {
        "name": name,
        "host": host,
        "local": local,
        "background": background,
        "jupyter_url": url,
        "ports": ports,
        "stop": stop,
    }


def _show(doc: TunnelJson, json_output: bool) -> None:
    from devbox.ui import to_json

    if json_output:
        to_json.print_json(doc)
        return
    lines = []
    if doc["jupyter_url"]:
        lines.append(f"jupyter  {doc['jupyter_url']}")
    if doc["ports"] and not doc["local"]:
        width = max(len(p["name"]) for p in doc["ports"])
        lines.append(f"{'port':<{width}}  {'here':<21}  on {doc['host']}")
        lines += [f"{p['name']:<{width}}  {p['local']:<21}  {p['remote']}" for p in doc["ports"]]
    elif doc["ports"]:
        width = max(len(p["name"]) for p in doc["ports"])
        lines += [f"{p['name']:<{width}}  {p['local']}" for p in doc["ports"]]
    if doc["stop"]:
        lines.append(f"runs in the background; end it with: {doc['stop']}")
    print("\n".join(lines), flush=True)


def _relay_local(caller: Settings, name: str) -> None:
    """Relay stdin/stdout to the ssh port of the caller's box on this machine."""
    from devbox import engine
    from devbox.access import tunnel as fwd
    from devbox.ops import reach

    address, port = reach.ssh_port(engine.connect(), caller, name)
    try:
        sock = fwd.connect(address, port)
    except OSError as exc:
        raise DevboxError(f"box '{name}' does not answer on its ssh port {port}: {exc}") from None
    with sock:
        fwd.relay(sock, sys.stdin.fileno(), sys.stdout.fileno())


@app.command("proxy")
@handles_errors
def proxy(name: NameArg, host: HostOpt = None) -> None:
    """Relay stdin/stdout to a box's SSH port (ssh's ProxyCommand; ssh-config --write uses it)."""
    from devbox import settings
    from devbox.cli import onhost
    from devbox.ops import reach

    caller = settings.from_environment()
    server = onhost.target(caller, name, host)
    if server is None:
        _relay_local(caller, name)
        return
    # The server's devbox relays to the box there; this process becomes that ssh (stdio passes through).
    argv = reach.devbox_argv(server, ["proxy", name, "--host", "local"])
    sys.stdout.flush()
    os.execvp(argv[0], argv)
