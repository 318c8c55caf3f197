"""What `up`, `info` and `rebuild` tell people: credentials rewritten to the host side."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from devbox.access import credentials, sshkeys
from devbox.access.sshaccess import SshTarget
from devbox.box import labels, state
from devbox.engine.base import Engine
from devbox.errors import DevboxError

TOKEN_FILE = "/run/devbox/jupyter_token"  # where a devbox-protocol box keeps the token devbox made
IDENTITY_LABEL = "devbox.ssh-identity"  # the private key file to log in with (a path, not a key)


@dataclass(frozen=True)
class SshAccess:
    """How to log into the box from the host."""

    target: SshTarget
    password: str | None
    hostkey: str | None

    @property
    def command(self) -> str:
        """The ssh command line that verifies the recorded host key."""
        return self.target.command_line()


@dataclass(frozen=True)
class BoxReport:
    """A box and how to reach it."""

    box: state.Box
    action: str
    jupyter: credentials.JupyterLogin | None = None
    ssh: SshAccess | None = None
    custom: dict[str, str] = field(default_factory=dict)
    changes: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()


def display_address(address: str | None) -> str:
    """The address to print: a box published on every interface is reachable on loopback.

    On "::" the engine may listen on IPv6 only, so the IPv6 loopback is the one that answers.
    """
    if address == "::":
        return "::1"
    return "127.0.0.1" if address in (None, "", "0.0.0.0") else str(address)


def token_via_exec(engine: Engine, box: state.Box) -> str | None:
    """Ask the box when its log hides the token: devbox's token file, else the server itself."""
    attempts = [["cat", TOKEN_FILE]] if labels.SSH_HOSTKEY in box.labels else []
    attempts += [
        ["jupyter", "server", "list", "--json"],
        ["python3", "-m", "jupyter_server", "list", "--json"],
        ["jupyter", "notebook", "list", "--json"],
        ["python3", "-m", "notebook", "list", "--json"],
    ]
    for argv in attempts:
        try:
            code, output = engine.exec(box.id, argv)
        except DevboxError:
            continue
        if code != 0:
            continue
        if argv[0] == "cat":
            return output.strip() or None
        for line in output.splitlines():
            try:
                token = json.loads(line).get("token")
            except (ValueError, AttributeError):
                continue
            if token:
                return str(token)
    return None


def ssh_target(box: state.Box, user: str, config_dir: Path) -> SshTarget | None:
    """The ssh target of a box with a published `ssh` port; files the box's host key if needed."""
    published = box.port("ssh")
    if not published or not published.host:
        return None
    alias = sshkeys.host_alias(box.owner, box.name)
    hostkey = box.labels.get(labels.SSH_HOSTKEY)
    if hostkey and sshkeys.recorded_host_key(config_dir, alias) is None:
        # Made from another config dir (or the file was lost): the label holds the public key.
        sshkeys.record_host_key(config_dir, alias, hostkey)
    identity = box.labels.get(IDENTITY_LABEL)
    return SshTarget(
        display_address(published.address),
        published.host,
        user,
        alias,
        str(sshkeys.known_hosts_path(config_dir)),
        identity if identity and os.path.isfile(identity) else None,
    )


def report(
    engine: Engine,
    box: state.Box,
    found: credentials.Credentials,
    action: str,
    env: dict[str, str],
    config_dir: Path,
    token: str | None = None,
) -> BoxReport:
    """Credentials rewritten to the host side: published address and port, the real token."""
    warnings: list[str] = []
    jupyter = None
    if found.jupyter:
        published = box.port("jupyter") or next(
            (p for p in box.ports if p.container == found.jupyter.port), None
        )
        if published and published.host:
            if found.jupyter.token_hidden:
                token = token or env.get("JUPYTER_TOKEN") or token_via_exec(engine, box)
            jupyter = found.jupyter.for_host(display_address(published.address), published.host, token)
            if jupyter.auth == "none":
                where = f"{jupyter.host}:{jupyter.port}"
                warnings.append(f"Jupyter has no authentication: anyone who can reach {where} can run code")
            elif jupyter.token_hidden:
                warnings.append("Jupyter's token was set through the environment and could not be read back")
    ssh = None
    if found.ssh:
        target = ssh_target(box, found.ssh.user or "root", config_dir)
        if target:
            ssh = SshAccess(target, found.ssh.password, found.ssh.hostkey)
            if found.ssh.password:
                warnings.append(
                    "this box logs in with a password; SSH keys are safer (ssh: {password: false})"
                )
    return BoxReport(box, action, jupyter, ssh, dict(found.custom), warnings=tuple(warnings))
