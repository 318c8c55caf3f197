"""`devbox ssh` and `devbox ssh-config`: SSH into boxes with their recorded host keys."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from devbox.cli.app import NameArg, app, handles_errors, stdout
from devbox.errors import DevboxError

if TYPE_CHECKING:
    from devbox.access.sshaccess import SshTarget
    from devbox.box.state import Box
    from devbox.engine.docker.engine import DockerEngine as Engine
    from devbox.settings import Settings


def _target(engine: Engine, box: Box, settings: Settings) -> SshTarget | None:
    from devbox.access import credentials, reports

    found = credentials.scan(engine.log_lines(box.id, since=box.started_at, tty=box.tty)).ssh
    return reports.ssh_target(box, found.user if found and found.user else "root", settings.user_config_dir)


def _live_host_keys(host: str, port: int) -> set[str] | None:
    """The keys the box's sshd presents now ("type base64"), or None if ssh-keyscan is missing."""
    if not shutil.which("ssh-keyscan"):
        return None
    result = subprocess.run(
        ["ssh-keyscan", "-T", "5", "-p", str(port), host], capture_output=True, text=True, check=False
    )
    keys = set()
    for line in result.stdout.splitlines():
        parts = line.split()
        if len(parts) >= 3 and not line.startswith("#"):
            keys.add(f"{parts[1]} {parts[2]}")
    return keys


def _separator_came_first(name: str) -> bool:
    """True for `devbox ssh -- NAME-looking-word …`: no box name was given before the --."""
    import sys

    argv = sys.argv[1:]
    if "ssh" not in argv:
        return False
    rest = argv[argv.index("ssh") + 1 :]
    return len(rest) >= 2 and rest[0] == "--" and rest[1] == name


@app.command("ssh", context_settings={"allow_interspersed_args": False})
@handles_errors
def ssh(
    name: NameArg = "default",
    command: Annotated[
        list[str] | None, typer.Argument(help="A command to run instead of a shell, after --.")
    ] = None,
) -> None:
    """Log into a box over SSH, checking the host key devbox recorded when it made the box."""
    from devbox import engine, settings
    from devbox.access import sshkeys
    from devbox.box import spec

    if _separator_came_first(name):
        # `devbox ssh -- CMD`: click hands the first word of CMD to NAME; give it back.
        command, name = [name, *(command or [])], "default"

    caller = settings.from_environment()
    eng = engine.connect()
    box = eng.find(spec.container_name(caller.owner, name), caller.owner)
    if box is None:
        raise DevboxError(f"no box named '{name}'", "devbox ls shows your boxes")
    if not box.running:
        raise DevboxError(f"box '{name}' is {box.status}", f"start it: devbox up {name}")
    target = _target(eng, box, caller)
    if target is None:
        raise DevboxError(
            f"box '{name}' has no ssh port", "add ports: {ssh: 22} to its profile and rebuild it"
        )
    recorded = sshkeys.recorded_host_key(caller.user_config_dir, target.alias)
    live = _live_host_keys(target.host, target.port)
    if recorded and live is not None and recorded not in live:
        raise DevboxError(
            f"the SSH host key of box '{name}' changed since devbox made it; refusing to connect",
            f"if nobody changed it on purpose, something may be in between. "
            f"`devbox rebuild {name}` makes the box again with a new key devbox records",
        )
    argv = target.argv([a for a in command or [] if a != "--"] or None)
    ssh_binary = shutil.which("ssh")
    if ssh_binary is None:
        raise DevboxError("no ssh client found", "install openssh-client")
    os.execv(ssh_binary, argv)


@app.command("ssh-config")
@handles_errors
def ssh_config(
    write: Annotated[
        bool, typer.Option("--write", help="Write them to an include file referenced from ~/.ssh/config.")
    ] = False,
) -> None:
    """Print `Host devbox-NAME` entries for your boxes (for VS Code Remote-SSH), or --write them."""
    from devbox import engine, settings
    from devbox.access import sshaccess

    caller = settings.from_environment()
    eng = engine.connect()
    blocks = []
    for box in sorted(eng.list_boxes(caller.owner), key=lambda b: b.name):
        if box.running:
            full = eng.find(box.container, caller.owner)
            target = _target(eng, full, caller) if full else None
            if target:
                blocks.append(target.config_block(box.name))
    if not write:
        print("\n".join(blocks), end="")
        return
    include = caller.user_config_dir / "ssh_config"
    ssh_config_path = Path(caller.home) / ".ssh" / "config"
    sshaccess.write_config(ssh_config_path, include, blocks)
    stdout().print(f"{len(blocks)} box(es) in {include}, included from {ssh_config_path}", soft_wrap=True)
