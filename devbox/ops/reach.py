"""Reaching boxes wherever they run: the ssh command lines to a box's server, and the
`Host devbox-NAME` entries of `ssh-config` for this machine's boxes and remote ones.

Entries reach every box through `ProxyCommand devbox proxy NAME`, which
finds the box's current port when ssh connects, so neither a restart nor a laptop breaks
them; the box's public host key is pinned in devbox's known_hosts under HostKeyAlias.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from devbox.errors import DevboxError

if TYPE_CHECKING:
    from devbox.access.sshaccess import SshTarget
    from devbox.box.state import Box
    from devbox.engine.base import Engine
    from devbox.ops.hosts import Host
    from devbox.settings import Settings

REMOTE_TIMEOUT = 30.0  # a server's `ssh-config --json` / `info --json` re-read box logs there


def devbox_argv(host: Host, devbox_args: list[str], tty: bool = False) -> list[str]:
    """`ssh … HOST devbox ARGS` through the shared ControlMaster."""
    from devbox.ops import remote

    return remote.ssh_argv(host, [remote.REMOTE_DEVBOX, *devbox_args], tty=tty)


def ssh_base(host: Host) -> list[str]:
    """`ssh … HOST` with no remote command: tunnels put their own options in front."""
    from devbox.ops import remote

    return remote.ssh_argv(host, [])


def control_socket(host: Host, box: str) -> Path:
    """The control socket of the background tunnel to `box` on `host` (in the ControlMaster folder)."""
    from devbox.access import tunnel
    from devbox.ops import remote

    folder = remote.control_dir()
    if folder is None:
        raise DevboxError(
            "no private folder for ssh's control sockets (XDG_RUNTIME_DIR, ~/.cache/devbox/ssh, /tmp)",
            "make ~/.cache/devbox/ssh writable, or run the tunnel in the foreground (without --background)",
        )
    return tunnel.control_socket(folder, host.name, box)


def ssh_port(engine: Engine, settings: Settings, name: str) -> tuple[str, int]:
    """(address, port) where the caller's running box `name` on this machine takes SSH now."""
    from devbox.access import tunnel
    from devbox.ops import boxes

    box = boxes.running_own(engine, settings, name, "log into")
    published = box.port("ssh")
    if published is None or not published.host:
        raise DevboxError(
            f"box '{name}' has no ssh port", "add ports: {ssh: 22} to its profile and rebuild it"
        )
    return tunnel.reachable_address(published.address), published.host


@dataclass(frozen=True)
class LocalEntry:
    """A box of this machine's engine, its ssh target and its `Host` entry."""

    box: Box
    target: SshTarget
    proxy_command: str
    block: str


@dataclass(frozen=True)
class RemoteEntry:
    """A box on server `host`: the server's `ssh-config --json` entry and the `Host` entry here."""

    host: str
    entry: dict[str, Any]
    block: str


@dataclass
class Entries:
    """What `ssh-config` writes; `unreachable` says which servers did not answer, and why."""

    engine_host: str | None = None
    local: list[LocalEntry] = field(default_factory=list)
    remote: list[RemoteEntry] = field(default_factory=list)
    unreachable: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    @property
    def blocks(self) -> list[str]:
        """Every `Host` entry, this machine's boxes first."""
        return [e.block for e in self.local] + [e.block for e in self.remote]


def ssh_entries(settings: Settings, devbox: list[str], only: str | None = None) -> Entries:
    """The entries of the caller's boxes with SSH: this machine's, and the remote ones devbox
    recorded. `only`: one server's boxes, all of them (recorded or not); `local`: this
    machine's. A server that does not answer is named in `unreachable`; its boxes are left
    out, the others' entries made."""
    from devbox.ops import hosts, sticky

    recorded = sticky.recorded(settings)
    by_server: dict[str, set[str]] = {}
    for box, where in sorted(recorded.items()):
        by_server.setdefault(where, set()).add(box)
    servers: dict[str, set[str] | None] = dict(by_server)
    local_only = only is not None and hosts.get(settings, only).local
    if only is not None:
        servers = {} if local_only else {only: None}
    found = Entries()
    if only is None or local_only:
        remote_names = set() if local_only else {b for b, h in recorded.items() if not _is_local(settings, h)}
        _local_entries(settings, devbox, found, remote_names, quiet=bool(servers) and only is None)
    if servers and settings.lab:
        # The lab helper runs as root: it never logs into other servers for a user.
        found.skipped.append(
            "lab mode: the boxes on other servers are left out here; "
            "devbox ssh-config --host NAME --write adds one server's (it runs as you)"
        )
        servers = {}
    for server_name, names in servers.items():
        server = hosts.get(settings, server_name)
        if server.slurm:
            _slurm_entries(settings, server, names, devbox, found)
        elif not server.local:
            _remote_entries(settings, server, names, devbox, found)
    return found


def _slurm_entries(
    settings: Settings, cluster: Host, names: set[str] | None, devbox: list[str], found: Entries
) -> None:
    """A Slurm cluster's running boxes: each node's devbox says its entries (docs/slurm.md)."""
    from devbox.ops import slurm

    try:
        user, jobs = slurm.whoami_and_jobs(cluster)
        nodes = slurm.nodes(cluster)
    except DevboxError as exc:
        found.unreachable.append(f"{cluster.name} did not answer ({exc.message})")
        return
    for job in jobs:
        if job.user == user and job.node and job.state == "RUNNING" and (names is None or job.box in names):
            node = slurm.node_host(cluster, job.node, nodes)
            _remote_entries(settings, node, {str(job.box)}, devbox, found)


def _is_local(settings: Settings, host: str) -> bool:
    from devbox.ops import hosts

    try:
        return hosts.get(settings, host).local
    except DevboxError:
        return False  # a host no longer configured: its boxes are not this machine's


def _local_entries(
    settings: Settings, devbox: list[str], found: Entries, remote_names: set[str], quiet: bool
) -> None:
    """This machine's boxes; an engine that does not answer is fine when remote boxes exist
    (a laptop has no engine of its own)."""
    from devbox import engine
    from devbox.access import sshaccess
    from devbox.errors import EngineUnreachable
    from devbox.ops import boxes

    try:
        eng = engine.connect()
        targets = boxes.ssh_targets(eng, settings)
    except EngineUnreachable:
        if quiet:
            return
        raise
    found.engine_host = eng.host
    for box, target in targets:
        if box.name in remote_names:
            continue  # `devbox-NAME` means the remote box of that name: commands go there too
        proxy = sshaccess.proxy_command(devbox, box.name, "local")
        found.local.append(LocalEntry(box, target, proxy, target.config_block(box.name, proxy)))


def _remote_entries(
    settings: Settings, server: Host, names: set[str] | None, devbox: list[str], found: Entries
) -> None:
    """One server's boxes from its `ssh-config --host local --json`; their host keys pinned here."""
    from devbox.access import sshaccess, sshkeys
    from devbox.ops import remote

    try:
        doc = remote.run_json(server, ["ssh-config", "--host", "local", "--json"], REMOTE_TIMEOUT)
    except DevboxError as exc:
        found.unreachable.append(f"{server.name} did not answer ({exc.message})")
        return
    known_hosts = str(sshkeys.known_hosts_path(settings.user_config_dir))
    for entry in doc.get("entries", []) if isinstance(doc, dict) else []:
        name = entry.get("name")
        if names is not None and name not in names:
            continue
        public = entry.get("host_public_key")
        if not public:
            found.skipped.append(
                f"box '{name}' on {server.name}: its SSH host key is unknown (devbox ssh {name} still works)"
            )
            continue
        alias = sshaccess.remote_alias(str(entry["owner"]), str(name), server.name)
        sshkeys.record_host_key(settings.user_config_dir, alias, str(public))
        identity = entry.get("identity_file")
        # The server's key file, if this machine has it too (a shared home); else ssh's defaults.
        usable = str(identity) if identity and os.path.isfile(str(identity)) else None
        proxy = sshaccess.proxy_command(devbox, str(name), server.name)
        block = sshaccess.entry_block(str(name), str(entry["user"]), alias, known_hosts, usable, proxy)
        shown = {
            **entry,
            "host": server.name,
            "host_key_alias": alias,
            "known_hosts": known_hosts,
            "identity_file": usable,
            "proxy_command": proxy,
        }
        found.remote.append(RemoteEntry(server.name, shown, block))


def pin_remote(settings: Settings, host: str, report: Any) -> None:
    """After `up`/`rebuild` on server `host`: pin the box's new host key here (from its JSON
    report's `ssh.host_public_key`), so the box's ssh-config entry keeps working. A report
    without one (no ssh port, an image without devbox's host key) changes nothing."""
    from devbox.access import sshaccess, sshkeys

    ssh = report.get("ssh") if isinstance(report, dict) else None
    public = ssh.get("host_public_key") if isinstance(ssh, dict) else None
    owner, name = (report.get("owner"), report.get("name")) if isinstance(report, dict) else (None, None)
    if isinstance(public, str) and public and isinstance(owner, str) and isinstance(name, str):
        sshkeys.record_host_key(settings.user_config_dir, sshaccess.remote_alias(owner, name, host), public)
