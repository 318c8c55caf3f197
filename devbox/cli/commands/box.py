"""The box commands: up, ls, info, down, rebuild, switch, logs, exec."""

from __future__ import annotations

import os
import shutil
import sys
from typing import Annotated

import typer

from devbox.cli import shared
from devbox.cli.app import (
    AllHostsOpt,
    CpusOpt,
    EnvOpt,
    GpusOpt,
    HostOpt,
    ImageOpt,
    JsonOpt,
    MemoryOpt,
    NameArg,
    PortOpt,
    ProfileArg,
    Progress,
    ProgressOpt,
    ShmOpt,
    TimeoutOpt,
    VolumeOpt,
    app,
    handles_errors,
    overrides,
    stderr,
    stdout,
)
from devbox.errors import InvalidInput, Origin, Problem


@app.command()
@handles_errors
def up(
    profile: ProfileArg = "default",
    image: ImageOpt = None,
    gpus: GpusOpt = None,
    shm_size: ShmOpt = None,
    cpus: CpusOpt = None,
    memory: MemoryOpt = None,
    port: PortOpt = None,
    volume: VolumeOpt = None,
    env: EnvOpt = None,
    recreate: Annotated[bool, typer.Option("--recreate", help="Replace the box even if it runs.")] = False,
    keep_failed: Annotated[
        bool, typer.Option("--keep-failed", help="Keep a box that fails to start.")
    ] = False,
    json_output: JsonOpt = False,
    progress: ProgressOpt = Progress.auto,
    host: Annotated[
        str | None,
        typer.Option(
            "--host",
            help="The server to make it on: a name (devbox hosts), auto (one with free GPUs), or local.",
        ),
    ] = None,
    no_wait: Annotated[
        bool, typer.Option("--no-wait", help="Slurm: return once the job is queued (status pending).")
    ] = False,
    wait_timeout: Annotated[
        float | None,
        typer.Option("--wait-timeout", help="Slurm: cancel the job if it still pends after SECONDS.", min=0),
    ] = None,
) -> None:
    """Start your box (creating it if needed), wait until it is ready, print how to reach it."""
    flags = overrides(image, gpus, shm_size, cpus, memory, port, volume, env)
    shared.up(profile, flags, recreate, keep_failed, json_output, progress, host, no_wait, wait_timeout)


@app.command("ls")
@handles_errors
def ls(
    all_users: Annotated[bool, typer.Option("--all", "-a", help="Everyone's boxes, not just yours.")] = False,
    json_output: JsonOpt = False,
    owner: Annotated[str | None, typer.Option("--owner", help="Only this owner's boxes.")] = None,
    gpu: Annotated[str | None, typer.Option("--gpu", help="Only the box holding this GPU.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only the box names, one a line.")] = False,
    all_hosts: AllHostsOpt = False,
    timeout: TimeoutOpt = 10.0,
    host: Annotated[str | None, typer.Option("--host", help="The boxes on this server.")] = None,
) -> None:
    """List your boxes (or everyone's with --all)."""
    if host is not None and not all_hosts:
        from devbox.cli import onhost

        settings = shared.caller()
        server = onhost.server(settings, host)
        if server is not None:
            onhost.ls(server, all_users, json_output, owner, gpu, quiet)
            return
    if all_hosts:
        from devbox.cli import allhosts

        code = allhosts.ls(shared.caller(), all_users, json_output, owner, gpu, quiet, timeout)
        if code:
            raise typer.Exit(code)
        return
    from devbox.cli import fast

    fast.ls(all_users, json_output, owner, gpu, quiet)


@app.command()
@handles_errors
def info(name: NameArg = "default", json_output: JsonOpt = False, host: HostOpt = None) -> None:
    """Show a box and how to reach it (credentials re-read from its log)."""
    from devbox import engine
    from devbox.cli import onhost
    from devbox.ops import boxes

    settings = shared.caller()
    elsewhere = onhost.target(settings, name, host, node=False)
    if elsewhere is not None:
        onhost.info(settings, elsewhere, name, json_output)
        return
    eng = engine.connect()
    result = boxes.info(eng, shared.caller(), name)
    shared.show(result, json_output, eng.host)


@app.command()
@handles_errors
def down(
    name: NameArg = "default",
    purge: Annotated[bool, typer.Option("--purge", help="Also delete the box's named volumes.")] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask before deleting volumes.")] = False,
    json_output: JsonOpt = False,
    host: HostOpt = None,
) -> None:
    """Stop and remove a box. Its named volumes are kept unless --purge."""
    from devbox import engine
    from devbox.box.spec import container_name
    from devbox.cli import onhost
    from devbox.ops import boxes, lifecycle

    settings = shared.caller()
    elsewhere = onhost.target(settings, name, host, node=False)
    if elsewhere is not None:
        code = onhost.down(settings, elsewhere, name, purge, yes, json_output)
        if code:
            raise typer.Exit(code)
        return
    owner, name = boxes.target(settings, name, "stop and remove")
    eng = engine.connect()
    container = container_name(owner, name)
    doomed: list[str] = []
    if purge:
        doomed = lifecycle.box_volumes(eng, owner, name, container)
        if doomed and not yes:
            if not sys.stdin.isatty():
                # A missing flag: invalid input, and nothing was touched.
                raise InvalidInput(
                    f"--purge would delete {', '.join(doomed)} and there is no terminal to confirm",
                    [Problem(Origin("--purge"), "needs --yes without a terminal")],
                    "add --yes to delete them, or drop --purge to keep your data",
                )
            stderr().print(f"This deletes the data in: [bold]{', '.join(doomed)}[/]")
            # On stderr, beside the list: stdout holds only the result (the JSON document).
            if not typer.confirm("Delete these volumes for good?", default=False, err=True):
                raise typer.Exit(1)
    result = lifecycle.down(eng, owner, name, container, doomed, settings.user_config_dir)
    if json_output:
        from devbox.ui.to_json import down_json, print_json

        print_json(down_json(result, name, owner, eng.host))
    else:
        from devbox.ui import panels

        panels.down_summary(stdout(), result, name)


@app.command()
@handles_errors
def rebuild(
    name: NameArg = "default",
    pull: Annotated[bool, typer.Option("--pull", help="Pull the image again.")] = False,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Build without the layer cache.")] = False,
    json_output: JsonOpt = False,
    progress: ProgressOpt = Progress.auto,
    host: HostOpt = None,
) -> None:
    """Re-read the profile, refresh the image, replace the container. Volumes are kept."""
    from devbox import engine
    from devbox.cli import onhost
    from devbox.ops import boxes, lifecycle, project, resolve
    from devbox.profile.loader import ProfileNotFound

    settings = shared.caller()
    elsewhere = onhost.target(settings, name, host, node=False)
    if elsewhere is not None:
        onhost.rebuild(settings, elsewhere, name, pull, no_cache, json_output, progress)
        return
    eng = engine.connect()
    # The box remembers its project folder and the file it came from; else the name is looked up.
    bound = project.bound(eng, name, settings)
    ref = bound.ref if bound.note else boxes.box_profile(eng, settings, name) or name
    try:
        resolved = resolve.resolve(ref, bound.settings)
    except ProfileNotFound as exc:
        exc.hint = project.gone_hint(eng, name, settings) or exc.hint  # its project moved
        raise
    before = eng.inspect(resolved.spec.name) if bound.note is None else None
    with shared.reporter(json_output, progress) as reporter:
        result = lifecycle.rebuild(eng, resolved, reporter, pull=pull, no_cache=no_cache)
    # A library profile's box follows the current folder: a rebuild elsewhere says it moved.
    moved = project.repointed(before, resolved.spec, settings.cwd)
    shared.show(shared.noted(result, bound.note or moved), json_output, eng.host)


@app.command()
@handles_errors
def switch(profile: ProfileArg, json_output: JsonOpt = False, progress: ProgressOpt = Progress.auto) -> None:
    """Stop your other running boxes (their data stays), then `up` this one."""
    from devbox import engine
    from devbox.ops import lifecycle

    resolved, note = shared.resolve_bound(profile, shared.caller())
    eng = engine.connect()
    with shared.reporter(json_output, progress) as reporter:
        stopped, result = lifecycle.switch(eng, resolved, reporter)
    result = shared.noted(result, note)
    if stopped and not json_output:
        stderr().print(f"stopped: {', '.join(stopped)} (start again with devbox up NAME)")
    if json_output:
        from devbox.ui.to_json import print_json, switch_json

        print_json(switch_json(result, eng.host, stopped))
    else:
        shared.show(result, json_output, eng.host)


@app.command()
@handles_errors
def logs(
    name: NameArg = "default",
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing new lines.")] = False,
    tail: Annotated[str, typer.Option("--tail", "-n", help="Only the last N lines.")] = "all",
    host: HostOpt = None,
) -> None:
    """Print a box's log."""
    from devbox import engine
    from devbox.cli import onhost
    from devbox.ops import boxes

    settings = shared.caller()
    elsewhere = onhost.target(settings, name, host)
    if elsewhere is not None:
        onhost.logs(elsewhere, name, follow, tail)
    eng = engine.connect()
    box = boxes.find_own(eng, settings, name, "read the log of")
    out = sys.stdout.buffer
    try:
        for chunk in eng.stream_logs(
            box.id, follow=follow, tail=int(tail) if tail.isdecimal() else "all", tty=box.tty
        ):
            out.write(chunk)
            out.flush()
    except KeyboardInterrupt:
        pass


@app.command("exec", context_settings={"allow_interspersed_args": False})
@handles_errors
def exec_(
    name: NameArg,
    command: Annotated[list[str], typer.Argument(help="The command, after --.")],
    host: HostOpt = None,
) -> None:
    """Run a command in a box: devbox exec NAME -- CMD ARGS…"""
    from devbox.cli import onhost

    if host is None:
        host, command = onhost.host_option(command)  # `exec NAME --host h2 -- CMD`
    if command and command[0] == "--":
        command = command[1:]  # with interspersed args off, click keeps the separator
    if not command:
        raise InvalidInput("no command given", hint=f"devbox exec {name} -- CMD ARGS…")
    from devbox import engine
    from devbox.ops import boxes

    settings = shared.caller()
    elsewhere = onhost.target(settings, name, host)
    if elsewhere is not None:
        onhost.exec_(elsewhere, name, command)
    eng = engine.connect()
    target = boxes.exec_target(eng, settings, name)
    box, user = target.box, target.user
    docker_cli = shutil.which("docker")
    if docker_cli:
        # The docker CLI gives a real terminal (-t) and stdin; it honours DOCKER_HOST like we do.
        flags = ["-it"] if sys.stdin.isatty() and sys.stdout.isatty() else ["-i"]
        flags += ["-u", user] if user else []
        from devbox import audit

        audit.exec_now()
        os.execv(docker_cli, ["docker", "exec", *flags, box.id, *command])
    code, output = eng.exec(box.id, command, user=user)
    sys.stdout.write(output)
    raise typer.Exit(code)
