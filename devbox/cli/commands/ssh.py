"""`devbox ssh` and `devbox ssh-config`: SSH into boxes with their recorded host keys."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn, cast

import typer

from devbox.cli.app import HostOpt, JsonOpt, NameArg, app, handles_errors, stderr, stdout
from devbox.errors import DevboxError, ExitCode

if TYPE_CHECKING:
    from devbox.ops.hosts import Host
    from devbox.settings import Settings
    from devbox.ui.json import SshEntryJson


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
    argv = sys.argv[1:]
    if "ssh" not in argv:
        return False
    rest = argv[argv.index("ssh") + 1 :]
    return len(rest) >= 2 and rest[0] == "--" and rest[1] == name


def _host_option(command: list[str]) -> tuple[str | None, list[str]]:
    """`devbox ssh NAME --host H [-- CMD]`: an option after NAME lands in CMD (interspersed
    options are off so that CMD's own options pass through); take --host back from there."""
    if command[:1] == ["--host"] and len(command) >= 2:
        return command[1], command[2:]
    if command[:1] and command[0].startswith("--host="):
        return command[0].partition("=")[2], command[1:]
    return None, command


@app.command("ssh", context_settings={"allow_interspersed_args": False})
@handles_errors
def ssh(
    name: NameArg = "default",
    command: Annotated[
        list[str] | None, typer.Argument(help="A command to run instead of a shell, after --.")
    ] = None,
    host: HostOpt = None,
) -> None:
    """Log into a box over SSH, checking the host key devbox recorded when it made the box."""
    from devbox import engine, settings
    from devbox.access import sshkeys
    from devbox.cli import onhost
    from devbox.ops import boxes

    if _separator_came_first(name):
        # `devbox ssh -- CMD`: click hands the first word of CMD to NAME; give it back.
        command, name = [name, *(command or [])], "default"
    late_host, command = _host_option(command or [])
    host = host or late_host

    caller = settings.from_environment()
    words = [a for a in command if a != "--"]
    server = onhost.target(caller, name, host)
    if server is not None:
        _ssh_through(caller, server, name, words)
    target = boxes.ssh_login(engine.connect(), caller, name)
    recorded = sshkeys.recorded_host_key(caller.user_config_dir, target.alias)
    live = _live_host_keys(target.host, target.port)
    if recorded and live is not None and recorded not in live:
        raise DevboxError(
            f"the SSH host key of box '{name}' changed since devbox made it; refusing to connect",
            f"if nobody changed it on purpose, something may be in between. "
            f"`devbox rebuild {name}` makes the box again with a new key devbox records",
        )
    _exec(caller, target.argv(words or None))


def _ssh_through(caller: Settings, server: Host, name: str, words: list[str]) -> NoReturn:
    """A box on another server: `ssh -t SERVER devbox ssh NAME -- CMD`. The server's devbox
    logs in with the key it put into the box and checks the host key it recorded there, so
    this machine needs neither (docs/hosts.md, "Reaching boxes")."""
    from devbox.ops import reach

    interactive = not words and sys.stdin.isatty()
    # --host local: the server's devbox must not follow a boxes.yaml it shares with this client.
    remote_args = ["ssh", "--host", "local", name, *(["--", *words] if words else [])]
    _exec(caller, reach.devbox_argv(server, remote_args, tty=interactive))


def _exec(caller: Settings, argv: list[str]) -> NoReturn:
    ssh_binary = shutil.which(argv[0])
    if ssh_binary is None:
        raise DevboxError("no ssh client found", "install openssh-client")
    from devbox import audit
    from devbox import caller as lab_caller

    audit.exec_now()
    lab_caller.become(caller.caller)  # lab mode: ssh runs as the caller, with their keys and config
    os.execv(ssh_binary, argv)


def devbox_command() -> list[str]:
    """How ssh's ProxyCommand runs this devbox: an absolute path, whatever PATH says then.

    `python -m devbox` (a checkout) runs as this interpreter with this package's folder first;
    the lab helper (argv[0] is a bare "devbox") names the `devbox` on PATH.
    """
    script = sys.argv[0]
    if os.path.basename(script) == "devbox" and os.path.isfile(script):
        return [os.path.abspath(script)]
    module_run = os.path.basename(script) == "__main__.py"
    found = None if module_run else shutil.which("devbox")
    if found:
        return [os.path.abspath(found)]
    package_parent = str(Path(__file__).resolve().parents[3])
    return ["env", f"PYTHONPATH={package_parent}", sys.executable, "-m", "devbox"]


@app.command("ssh-config")
@handles_errors
def ssh_config(
    write: Annotated[
        bool, typer.Option("--write", help="Write them to an include file referenced from ~/.ssh/config.")
    ] = False,
    host: Annotated[
        str | None, typer.Option("--host", help="Only the boxes on this server (local: this machine's).")
    ] = None,
    json_output: JsonOpt = False,
) -> None:
    """Print `Host devbox-NAME` entries for your boxes (for VS Code Remote-SSH), or --write them."""
    from devbox import settings
    from devbox.access import sshaccess
    from devbox.ops import reach
    from devbox.ui import to_json

    caller = settings.from_environment()
    found = reach.ssh_entries(caller, devbox_command(), host)
    for problem in found.unreachable:
        stderr().print(f"warning: {problem}; its boxes are left out", soft_wrap=True, highlight=False)
    for note in found.skipped:
        stderr().print(f"warning: {note}", soft_wrap=True, highlight=False)
    host_name = found.engine_host or ""
    entries = [to_json.ssh_entry_json(e.box, host_name, e.target, e.proxy_command) for e in found.local]
    entries += [cast("SshEntryJson", e.entry) for e in found.remote]
    include = caller.user_config_dir / "ssh_config"
    ssh_config_path = Path(caller.home) / ".ssh" / "config"
    written_count = len(found.blocks)
    if write:
        from devbox import caller as lab_caller

        with lab_caller.rights(caller.caller):  # the caller's files, written as the caller
            blocks = found.blocks
            if host is not None and include.is_file():
                # One server's entries are rewritten; the other servers' stay as they were.
                names = {e.box.name for e in found.local} | {str(e.entry["name"]) for e in found.remote}
                blocks += sshaccess.other_entries(include.read_text(), host, names)
            sshaccess.write_config(ssh_config_path, include, blocks)
            written_count = len(blocks)
    if json_output:
        written = (str(include), str(ssh_config_path)) if write else (None, None)
        to_json.print_json(to_json.ssh_config_json(entries, *written))
    elif not write:
        print("\n".join(found.blocks), end="")
    else:
        stdout().print(
            f"{written_count} box(es) in {include}, included from {ssh_config_path}", soft_wrap=True
        )
    if found.unreachable:
        raise typer.Exit(int(ExitCode.ENGINE_UNREACHABLE))
