"""`devbox ssh` and `devbox ssh-config`: SSH into boxes with their recorded host keys."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Annotated

import typer

from devbox.cli.app import JsonOpt, NameArg, app, handles_errors, stdout
from devbox.errors import DevboxError


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
    from devbox.ops import boxes

    if _separator_came_first(name):
        # `devbox ssh -- CMD`: click hands the first word of CMD to NAME; give it back.
        command, name = [name, *(command or [])], "default"

    caller = settings.from_environment()
    target = boxes.ssh_login(engine.connect(), caller, name)
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
    from devbox import audit
    from devbox import caller as lab_caller

    audit.exec_now()
    lab_caller.become(caller.caller)  # lab mode: ssh runs as the caller, with their keys and config
    os.execv(ssh_binary, argv)


@app.command("ssh-config")
@handles_errors
def ssh_config(
    write: Annotated[
        bool, typer.Option("--write", help="Write them to an include file referenced from ~/.ssh/config.")
    ] = False,
    json_output: JsonOpt = False,
) -> None:
    """Print `Host devbox-NAME` entries for your boxes (for VS Code Remote-SSH), or --write them."""
    from devbox import engine, settings
    from devbox.access import sshaccess
    from devbox.ops import boxes
    from devbox.ui import to_json

    caller = settings.from_environment()
    eng = engine.connect()
    blocks = []
    entries = []
    for box, target in boxes.ssh_targets(eng, caller):
        blocks.append(target.config_block(box.name))
        entries.append(to_json.ssh_entry_json(box, eng.host, target))
    include = caller.user_config_dir / "ssh_config"
    ssh_config_path = Path(caller.home) / ".ssh" / "config"
    if write:
        from devbox import caller as lab_caller

        with lab_caller.rights(caller.caller):  # the caller's files, written as the caller
            sshaccess.write_config(ssh_config_path, include, blocks)
    if json_output:
        written = (str(include), str(ssh_config_path)) if write else (None, None)
        to_json.print_json(to_json.ssh_config_json(entries, *written))
    elif not write:
        print("\n".join(blocks), end="")
    else:
        stdout().print(f"{len(blocks)} box(es) in {include}, included from {ssh_config_path}", soft_wrap=True)
