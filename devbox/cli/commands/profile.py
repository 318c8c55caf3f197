"""`devbox render` and `devbox profiles`: everything short of the engine."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from devbox.cli.app import (
    CpusOpt,
    EnvOpt,
    GpusOpt,
    HostOpt,
    ImageOpt,
    JsonOpt,
    MemoryOpt,
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
from devbox.errors import ExitCode, InvalidInput, Origin, Problem

if TYPE_CHECKING:
    from devbox.box.resolved import Resolved
    from devbox.ops.profiles import ProfileStatus

profiles_app = typer.Typer(help="List the profiles devbox can find, or check profile files.")
app.add_typer(profiles_app, name="profiles")


class RenderFormat(StrEnum):
    """Output forms of `devbox render`."""

    docker = "docker"
    json = "json"
    k8s = "k8s"


@app.command()
@handles_errors
def render(
    profile: ProfileArg = "default",
    format: Annotated[
        RenderFormat, typer.Option("--format", "-f", help="docker, json, or k8s (a Pod and its claims).")
    ] = RenderFormat.docker,
    image: ImageOpt = None,
    gpus: GpusOpt = None,
    shm_size: ShmOpt = None,
    cpus: CpusOpt = None,
    memory: MemoryOpt = None,
    port: PortOpt = None,
    volume: VolumeOpt = None,
    env: EnvOpt = None,
    json_output: JsonOpt = False,
    host: HostOpt = None,
) -> None:
    """Dry run: check a profile like `up` does, then print the `docker run` it implies."""
    import shlex

    from devbox import engine, settings
    from devbox.ops import resolve

    flags = overrides(image, gpus, shm_size, cpus, memory, port, volume, env)
    if host is not None and format is RenderFormat.k8s:
        raise InvalidInput(
            "--format k8s renders for a Kubernetes cluster, not for a server",
            [Problem(Origin("--host"), f"--host {host} with --format k8s")],
            "drop --host: the pod runs wherever the cluster's scheduler puts it",
        )
    if host is not None:
        from devbox.cli import onhost

        caller = settings.from_environment()
        elsewhere = onhost.target(caller, profile, host)  # --host only: a profile is no recorded box
        if elsewhere is not None:
            onhost.render(caller, elsewhere, profile, flags, json_output or format is RenderFormat.json)
            return
    resolved = resolve.resolve(profile, settings.from_environment(), flags, probe=_image_labels)
    if resolved.settings.lab and format is not RenderFormat.k8s:  # a pod gets no binds
        from devbox.ops import labbinds

        labbinds.verify(resolved)  # binds checked as the caller, as `up` would: nothing mounted
    for note in resolved.profile.notes:  # what a devcontainer.json gave that devbox skips
        stderr().print(f"note: {note}", style="dim", soft_wrap=True, markup=False)
    if resolved.spec.protocol:
        stderr().print(
            "note: devbox also copies an SSH key, a host key and a Jupyter token into this box before "
            f"starting it; {'a pod made by kubectl' if format is RenderFormat.k8s else 'a plain docker run'} "
            "cannot, so that box would make its own.",
            style="dim",
            soft_wrap=True,
        )
    if format is RenderFormat.k8s:
        _render_k8s(resolved, profile, json_output)
        return
    commands = engine.run_commands(resolved.spec)
    if json_output or format is RenderFormat.json:
        from devbox.ui import to_json

        to_json.print_json(to_json.render_json(resolved.spec, _engine_host(), commands))
        return
    if commands.build:
        print(shlex.join(commands.build))
    print(shlex.join(commands.run))


def _render_k8s(resolved: Resolved, profile: str, json_output: bool) -> None:
    """The Pod and claims on stdout (YAML, or a JSON List with --json); what is left out, on
    stderr too, so a `| kubectl apply -f -` still shows it."""
    from devbox.box import k8s

    result = k8s.manifests(resolved.spec, resolved.profile, resolved.context.uid, resolved.context.gid)
    for note in result.notes:
        stderr().print(f"warning: {note}", style="yellow", soft_wrap=True, markup=False)
    if json_output:
        from devbox.ui import to_json

        to_json.print_json(k8s.as_list(result))  # Kubernetes' own List shape: kubectl applies it
        return
    namespace = k8s.dns_label(resolved.spec.owner)
    header = f"devbox render {profile} --format k8s: kubectl apply -n {namespace} -f -"
    print(k8s.to_yaml(result, header), end="")


def _engine_host() -> str:
    """The engine `up` would use (DOCKER_HOST or the local socket); nothing is sent."""
    import os

    from devbox import engine
    from devbox.errors import DevboxError

    try:
        return engine.connect(timeout=3).host
    except DevboxError:
        return os.environ.get("DOCKER_HOST", "")


def _image_labels(image: str) -> dict[str, str] | None:
    """The image's labels if an engine answers quickly; render works without one too."""
    from devbox import engine
    from devbox.errors import DevboxError

    try:
        return engine.connect(timeout=3).image_labels(image)
    except DevboxError:
        return None


@profiles_app.callback(invoke_without_command=True)
@handles_errors
def profiles_list(ctx: typer.Context, json_output: JsonOpt = False) -> None:
    """List every profile found, where it comes from, and whether it is valid."""
    if ctx.invoked_subcommand is not None:
        return
    from devbox import settings
    from devbox.ops import profiles
    from devbox.ui import profiles as profile_view

    statuses = profiles.list_profiles(settings.from_environment())
    if json_output:
        from devbox.ui import to_json

        to_json.print_json(to_json.statuses_json(statuses))
    else:
        profile_view.profiles_table(stdout(), statuses)


@profiles_app.command("check")
@handles_errors
def profiles_check(
    files: Annotated[list[Path], typer.Argument(help="Profile files to validate.")],
    json_output: JsonOpt = False,
) -> None:
    """Validate profile files against the schema and the lab policy; exit 2 if any is invalid."""
    from devbox import settings
    from devbox.ops import profiles
    from devbox.ui import profiles as profile_view

    statuses = profiles.check_profiles(files, settings.from_environment())
    invalid = [s for s in statuses if not s.valid]
    if json_output:
        if invalid:
            raise _invalid(invalid, len(statuses))  # under --json: the one error object
        from devbox.ui import to_json

        to_json.print_json(to_json.statuses_json(statuses))
        return
    profile_view.profile_checks(stdout(), statuses)
    if invalid:
        raise typer.Exit(ExitCode.INVALID)


def _invalid(invalid: list[ProfileStatus], checked: int) -> InvalidInput:
    """One error for every invalid file: each problem names its file (a file without located
    problems, e.g. one that is missing, gets one naming it)."""
    problems = [p for s in invalid for p in s.problems]
    problems += [Problem(Origin(s.path), s.message) for s in invalid if not s.problems]
    names = ", ".join(Path(s.path).name for s in invalid)
    return InvalidInput(f"{len(invalid)} of {checked} profile files invalid: {names}", problems)
