"""The box commands: up, ls, info, down, rebuild, switch, logs, exec."""

from __future__ import annotations

import os
import shutil
import sys
from typing import Annotated

import typer

from devbox.cli import shared
from devbox.cli.app import (
    CpusOpt,
    EnvOpt,
    GpusOpt,
    ImageOpt,
    JsonOpt,
    MemoryOpt,
    NameArg,
    PortOpt,
    ProfileArg,
    ShmOpt,
    VolumeOpt,
    app,
    handles_errors,
    overrides,
    stderr,
    stdout,
)
from devbox.errors import DevboxError, ExitCode


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
) -> None:
    """Start your box (creating it if needed), wait until it is ready, print how to reach it."""
    flags = overrides(image, gpus, shm_size, cpus, memory, port, volume, env)
    shared.up(profile, flags, recreate, keep_failed, json_output)


@app.command("ls")
@handles_errors
def ls(
    all_users: Annotated[bool, typer.Option("--all", "-a", help="Everyone's boxes, not just yours.")] = False,
    json_output: JsonOpt = False,
    owner: Annotated[str | None, typer.Option("--owner", help="Only this owner's boxes.")] = None,
    gpu: Annotated[str | None, typer.Option("--gpu", help="Only the box holding this GPU.")] = None,
) -> None:
    """List your boxes (or everyone's with --all)."""
    from devbox.cli import fast

    fast.ls(all_users, json_output, owner, gpu)


@app.command()
@handles_errors
def info(name: NameArg = "default", json_output: JsonOpt = False) -> None:
    """Show a box and how to reach it (credentials re-read from its log)."""
    from devbox import engine
    from devbox.ops import lifecycle

    settings = shared.caller()
    shared.show(
        lifecycle.info(
            engine.connect(), settings.owner, name, shared.container(settings, name), settings.user_config_dir
        ),
        json_output,
    )


@app.command()
@handles_errors
def down(
    name: NameArg = "default",
    purge: Annotated[bool, typer.Option("--purge", help="Also delete the box's named volumes.")] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask before deleting volumes.")] = False,
    json_output: JsonOpt = False,
) -> None:
    """Stop and remove a box. Its named volumes are kept unless --purge."""
    from devbox import engine
    from devbox.ops import lifecycle
    from devbox.ui import panels

    settings = shared.caller()
    eng = engine.connect()
    container = shared.container(settings, name)
    doomed: list[str] = []
    if purge:
        doomed = lifecycle.box_volumes(eng, settings.owner, name, container)
        if doomed and not yes:
            if not sys.stdin.isatty():
                refusal = DevboxError(
                    f"--purge would delete {', '.join(doomed)} and there is no terminal to confirm",
                    "add --yes to delete them, or drop --purge to keep your data",
                )
                refusal.exit_code = ExitCode.INVALID  # a missing flag: nothing was touched
                raise refusal
            stderr().print(f"This deletes the data in: [bold]{', '.join(doomed)}[/]")
            if not typer.confirm("Delete these volumes for good?", default=False):
                raise typer.Exit(1)
    result = lifecycle.down(eng, settings.owner, name, container, doomed, settings.user_config_dir)
    if json_output:
        shared.print_json(panels.down_json(result))
    else:
        panels.down_summary(stdout(), result, name)


@app.command()
@handles_errors
def rebuild(
    name: NameArg = "default",
    pull: Annotated[bool, typer.Option("--pull", help="Pull the image again.")] = False,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Build without the layer cache.")] = False,
    json_output: JsonOpt = False,
) -> None:
    """Re-read the profile, refresh the image, replace the container. Volumes are kept."""
    from devbox import engine
    from devbox.ops import lifecycle, resolve

    settings = shared.caller()
    eng = engine.connect()
    # The box remembers which file it came from; fall back to looking the name up.
    resolved = resolve.resolve(shared.box_profile(eng, settings, name) or name, settings)
    with shared.reporter(json_output) as reporter:
        result = lifecycle.rebuild(eng, resolved, reporter, pull=pull, no_cache=no_cache)
    shared.show(result, json_output)


@app.command()
@handles_errors
def switch(profile: ProfileArg, json_output: JsonOpt = False) -> None:
    """Stop your other running boxes (their data stays), then `up` this one."""
    from devbox import engine
    from devbox.ops import lifecycle

    resolved = shared.resolve(profile, shared.caller())
    eng = engine.connect()
    with shared.reporter(json_output) as reporter:
        stopped, result = lifecycle.switch(eng, resolved, reporter)
    if stopped and not json_output:
        stderr().print(f"stopped: {', '.join(stopped)} (start again with devbox up NAME)")
    if json_output:
        from devbox.ui.plain import report_json

        shared.print_json({**report_json(result), "stopped": stopped})
    else:
        shared.show(result, json_output)


@app.command()
@handles_errors
def logs(
    name: NameArg = "default",
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing new lines.")] = False,
    tail: Annotated[str, typer.Option("--tail", "-n", help="Only the last N lines.")] = "all",
) -> None:
    """Print a box's log."""
    from devbox import engine

    settings = shared.caller()
    eng = engine.connect()
    box = eng.find(shared.container(settings, name), settings.owner)
    if box is None:
        raise DevboxError(f"no box named '{name}'", "devbox ls shows your boxes")
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
) -> None:
    """Run a command in a box: devbox exec NAME -- CMD ARGS…"""
    if command and command[0] == "--":
        command = command[1:]  # with interspersed args off, click keeps the separator
    if not command:
        raise DevboxError("no command given", f"devbox exec {name} -- CMD ARGS…")
    from devbox import engine
    from devbox.box import spec
    from devbox.engine.docker import decode

    settings = shared.caller()
    eng = engine.connect()
    info = eng.inspect_own(shared.container(settings, name), settings.owner)
    if info is None:
        raise DevboxError(f"no box named '{name}'", "devbox ls shows your boxes")
    box = decode.from_inspect(info)
    if not box.running:
        raise DevboxError(f"box '{name}' is {box.status}", f"start it: devbox up {name}")
    # A devbox-image box starts as root and runs as its user: exec as that user too, so what
    # the command writes into /workspace is the caller's on the host, not root's.
    env = dict(e.split("=", 1) for e in (info.get("Config") or {}).get("Env") or [] if "=" in e)
    user = spec.protocol_user(env) or ""
    docker_cli = shutil.which("docker")
    if docker_cli:
        # The docker CLI gives a real terminal (-t) and stdin; it honours DOCKER_HOST like we do.
        flags = ["-it"] if sys.stdin.isatty() and sys.stdout.isatty() else ["-i"]
        flags += ["-u", user] if user else []
        os.execv(docker_cli, ["docker", "exec", *flags, box.id, *command])
    code, output = eng.exec(box.id, command, user=user)
    sys.stdout.write(output)
    raise typer.Exit(code)
