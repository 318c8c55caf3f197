"""The box commands on another server: pick the host (--host, else where the box was made),
run `devbox … --json` there (ops/remote.py), show the answer here as the local command would.

Only reached with --host, --all-hosts, `devbox hosts`, or a box recorded in boxes.yaml: the
plain local commands never import this. No typer here: the fast `up` path comes here too.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NoReturn

from devbox.errors import DevboxError, InvalidInput, NotFound, Origin, Problem, Refused

if TYPE_CHECKING:
    from devbox.ops.hosts import Host
    from devbox.profile.flags import Overrides
    from devbox.settings import Settings

HOST_TIMEOUT_S = 10.0  # each host's time to answer a listing, `devbox hosts`
# `up --host auto` waits longer for the GPU survey: the box is what the user waits for, and a
# busy server (a queue of concurrent `up`s measured 6-17 s on 2 cores) is slow, not down.
SURVEY_TIMEOUT_S = 60.0
COMMAND_TIMEOUT_S = 120.0  # info, down, render on one host (up and rebuild: no limit)
AUTO = "auto"


def _refuse_in_lab(settings: Settings, host: Host, why: str) -> None:
    """The lab helper runs as root: it never logs into other servers for a user."""
    if settings.lab:
        raise Refused(
            f"{why} is on {host.name}: lab mode's helper does not reach other servers",
            f"name the host, so devbox runs as you: devbox COMMAND ... --host {host.name}",
        )


def _here(settings: Settings, host: Host) -> None:
    """A host named for this machine (`here: local`) on a lab-mode machine: the lab gate let the
    command pass (it cannot know the name), so it goes to the helper now, as `--host local`."""
    from devbox import labmode

    if host.name == "local" or settings.lab or os.geteuid() == 0 or not labmode.installed():
        return
    from devbox.cli import labgate

    argv = list(sys.argv[1:])
    for i, arg in enumerate(argv):
        if arg == "--host" and i + 1 < len(argv):
            argv[i + 1] = "local"
            break
        if arg.startswith("--host="):
            argv[i] = "--host=local"
            break
    labgate.redirect(argv)


def target(settings: Settings, name: str, host_opt: str | None, node: bool = True) -> Host | None:
    """Where a command about box `name` goes: --host, else the host boxes.yaml records for it;
    None for this machine (no --host and no record, or a `local` host). On a Slurm cluster: the
    node its job runs on, reached over ssh (`node`), else the cluster itself (info, down, rebuild)."""
    from devbox.ops import hosts, sticky

    if host_opt == AUTO:
        raise InvalidInput(
            "--host auto only places new boxes (devbox up)",
            [Problem(Origin("--host"), "auto: use a host's name here")],
            "devbox ls --all-hosts shows where each box is",
        )
    recorded = None
    if host_opt is None:
        recorded = sticky.host_of(settings, name)
        if recorded is None:
            return None
    try:
        host = hosts.get(settings, host_opt or str(recorded))
    except NotFound as exc:
        if recorded is None:
            raise
        raise NotFound(
            f"box {name} was made on {recorded} ({sticky.path(settings)}), and no host has that name now",
            f"name its host with --host; if that server is gone for good, delete the line "
            f"`{name}: {recorded}` in {sticky.path(settings)}",
        ) from exc
    if host.local:
        _here(settings, host)
        return None
    _refuse_in_lab(settings, host, f"box {name}" if recorded else "that host")
    if host.slurm and node:
        from devbox.cli import onslurm

        return onslurm.node_of(host, name)
    return host


def server(settings: Settings, name: str) -> Host | None:
    """The host `--host NAME` names, for a command about a server rather than a box (`ls`);
    None for this machine."""
    from devbox.ops import hosts

    host = hosts.get(settings, name)
    if host.local:
        _here(settings, host)
        return None
    _refuse_in_lab(settings, host, "that host")
    return host


def ls(
    host: Host, all_users: bool, json_output: bool, owner: str | None, gpu: str | None, quiet: bool
) -> None:
    """`devbox ls --host NAME`: your boxes (or everyone's) on that server, as `ls` shows them."""
    from devbox.ops import remote
    from devbox.ui import plain, term
    from devbox.ui import remote as view

    args = ["ls", "--json"] + ["--all"] * all_users
    args += ["--owner", owner] if owner is not None else []
    args += ["--gpu", gpu] if gpu is not None else []
    if host.slurm:
        from devbox.cli import onslurm

        onslurm.ls(host, all_users, json_output, owner, quiet)
        return
    data = _named(remote.run_json(host, args, COMMAND_TIMEOUT_S), host)
    found = [view.box_from_json(b) for b in data if isinstance(b, dict)] if isinstance(data, list) else []
    show_owner = all_users or owner is not None or gpu is not None
    if json_output:
        from devbox.ui.to_json import print_json

        print_json(data)
    elif quiet:
        sys.stdout.write("".join(f"{b.name}\n" for b in found))
    elif found:
        print(plain.table(plain.box_rows(found, show_owner), bold_header=term.styled(sys.stdout)))
    else:
        print(plain.empty_message(show_owner).replace("this engine", host.name))


def override_args(flags: Overrides, environ: dict[str, str] | Any) -> list[str]:
    """The override flags for the server's devbox. `-e KEY` takes KEY's value from here, as
    it means; everything else is passed as typed (paths are the server's)."""
    args: list[str] = []
    for option, value in (
        ("--image", flags.image),
        ("--gpus", flags.gpus),
        ("--shm-size", flags.shm_size),
        ("--cpus", flags.cpus),
        ("--memory", flags.memory),
    ):
        if value is not None:
            args += [option, value]
    for port in flags.ports:
        args += ["-p", port]
    for volume in flags.volumes:
        args += ["-v", volume]
    for env in flags.env:
        args += ["-e", env if "=" in env or env not in environ else f"{env}={environ[env]}"]
    return args


def _named(data: Any, host: Host) -> Any:
    """A box object (or a list of them) with `host` set to the host's name; GPU holders too."""
    items = data if isinstance(data, list) else [data]
    for item in items:
        if isinstance(item, dict):
            item["host"] = host.name
            if isinstance(item.get("holder"), dict):
                item["holder"]["host"] = host.name
    return data


def _progress(json_output: bool, progress: str) -> tuple[Any, bool]:
    """(the reporter, quiet): what `--progress` asks for, as the local command shows it."""
    from devbox.cli import shared
    from devbox.ops.reporter import QuietReporter

    steps = shared.reporter(json_output, progress)
    return steps, type(steps) is QuietReporter


def _relay(steps: Any, host: Host) -> Callable[[str], None]:
    """The server's progress lines into our reporter (its own `ready` is ours to say)."""

    def line(text: str) -> None:
        if text.strip() and text.strip() != "ready":
            steps.step(f"{host.name}: {text}")

    return line


def _show(data: Any, host: Host, json_output: bool) -> None:
    from devbox.cli import shared

    if json_output:
        from devbox.ui.to_json import print_json

        print_json(_named(data, host))
    else:
        from devbox.ui import remote as view

        view.report_panel(shared.stdout(), shared.stderr(), data, host.name)


def up(
    settings: Settings,
    host_opt: str,
    profile: str,
    flags: Overrides,
    recreate: bool,
    keep_failed: bool,
    json_output: bool,
    progress: str,
    no_wait: bool = False,
    wait_timeout: float | None = None,
) -> None:
    """`devbox up --host NAME|auto|local` (or a box recorded on a host)."""
    from devbox.cli import onslurm, shared
    from devbox.ops import hosts, remote, sticky

    if host_opt == AUTO and settings.lab:
        raise Refused(
            "lab mode's helper does not reach other servers", "run devbox up --host auto as yourself"
        )
    recorded = sticky.host_of(settings, profile) if host_opt == AUTO else None
    if recorded is not None:
        shared.stderr().print(
            f"{profile} lives on {recorded} (its volumes are there): up there", highlight=False
        )
        host_opt = recorded
    args = ["up", profile, *override_args(flags, settings.caller_environ), "--json"]
    args += ["--recreate"] * recreate + ["--keep-failed"] * keep_failed
    if host_opt != AUTO:
        host = hosts.get(settings, host_opt)
        if host.slurm:
            _refuse_in_lab(settings, host, "that host")
            waits = (no_wait, wait_timeout)
            onslurm.up(settings, host, profile, flags, recreate, keep_failed, json_output, progress, *waits)
            return
        onslurm.refuse_flags(no_wait, wait_timeout)
        if host.local:
            _here(settings, host)
            shared.up_here(profile, flags, recreate, keep_failed, json_output, progress)
            return
        _refuse_in_lab(settings, host, "that host")
    onslurm.refuse_flags(no_wait, wait_timeout)
    steps, quiet = _progress(json_output, progress)
    args += ["--progress", "quiet" if quiet else "plain"]
    with steps:
        if host_opt == AUTO:
            host, data, said = _auto(settings, profile, flags, args, steps)
        else:
            data = remote.run_json(host, args, None, progress=_relay(steps, host))
            said = None
    if isinstance(data, dict) and isinstance(data.get("name"), str):
        sticky.remember(settings, data["name"], host.name)
        from devbox.ops import reach

        reach.pin_remote(settings, host.name, data)  # a new box has a new host key
    if said and progress != "quiet":
        shared.stderr().print(said, highlight=False)
    _show(data, host, json_output)


def _auto(
    settings: Settings, profile: str, flags: Overrides, args: list[str], steps: Any
) -> tuple[Host, Any, str]:
    """`up --host auto`: survey every host's GPUs, draw one that fits, up there; the next on no-capacity."""
    from devbox.ops import autoplace, hosts, remote

    found = [h for h in hosts.load(settings).values() if not h.slurm]  # Slurm places its own
    if not found:
        raise NotFound(
            "no hosts to place the box on",
            f"name your servers in {hosts.user_file(settings)} (gpu2: ssh://gpu2) or the lab policy's hosts:",
        )
    steps.step(f"asking {len(found)} hosts for free GPUs")
    capacities = autoplace.survey(found, SURVEY_TIMEOUT_S)
    need = autoplace.need_from_flag(flags.gpus) if flags.gpus else None
    if need is None:
        # The profile lives on the servers: the first that answers says what it asks for.
        usable = [c.host for c in capacities if c.usable]
        if not usable:
            raise autoplace.nowhere(capacities, autoplace.GpuNeed(), [])
        render = ["render", profile, *override_args(flags, settings.caller_environ), "--format", "json"]
        need = autoplace.need_from_render(remote.run_json(usable[0], render, COMMAND_TIMEOUT_S))

    def retry(host: Host, exc: DevboxError) -> None:
        steps.step(f"{host.name}: {exc.kind}, trying another host")

    def up_on(host: Host) -> Any:
        steps.step(f"up on {host.name}")
        return remote.run_json(host, args, None, progress=_relay(steps, host))

    placed = autoplace.place(capacities, need, up_on, on_retry=retry)
    return placed.host, placed.result, placed.describe()


def info(settings: Settings, host: Host, name: str, json_output: bool) -> None:
    """`devbox info NAME` of a box on `host`."""
    from devbox.ops import remote

    if host.slurm:
        from devbox.cli import onslurm

        return onslurm.info(host, name, json_output)

    _show(remote.run_json(host, ["info", name, "--json"], COMMAND_TIMEOUT_S), host, json_output)


def rebuild(
    settings: Settings, host: Host, name: str, pull: bool, no_cache: bool, json_output: bool, progress: str
) -> None:
    """`devbox rebuild NAME` of a box on `host`."""
    from devbox.ops import remote

    if host.slurm:
        from devbox.cli import onslurm

        return onslurm.rebuild(settings, host, name, json_output, progress)

    steps, quiet = _progress(json_output, progress)
    args = ["rebuild", name, "--json", "--progress", "quiet" if quiet else "plain"]
    args += ["--pull"] * pull + ["--no-cache"] * no_cache
    with steps:
        data = remote.run_json(host, args, None, progress=_relay(steps, host))
    from devbox.ops import reach

    reach.pin_remote(settings, host.name, data)  # the new box has a new host key
    _show(data, host, json_output)


def down(settings: Settings, host: Host, name: str, purge: bool, yes: bool, json_output: bool) -> int:
    """`devbox down NAME` of a box on `host`; the record goes once it is gone. The exit code."""
    from devbox.cli import shared
    from devbox.ops import remote

    if host.slurm:
        from devbox.cli import onslurm

        return onslurm.down(settings, host, name, purge, json_output)

    if purge and not yes and not json_output and sys.stdin.isatty():
        # The server lists the volumes and asks, on this terminal.
        import subprocess

        remote.ensure_version(host, COMMAND_TIMEOUT_S)
        code = subprocess.call(
            remote.ssh_argv(host, [remote.REMOTE_DEVBOX, *remote.here(["down", name, "--purge"])], tty=True)
        )
        if code == 0:
            _forget(settings, name, host)
        return code
    args = ["down", name, "--json"] + ["--purge"] * purge + ["--yes"] * yes
    data = remote.run_json(host, args, COMMAND_TIMEOUT_S)
    _forget(settings, name, host)
    if json_output:
        from devbox.ui.to_json import print_json

        print_json(_named(data, host))
    else:
        from devbox.ui import panels
        from devbox.ui import remote as view

        panels.down_summary(shared.stdout(), view.down_result(data), f"{name} on {host.name}")
    return 0


def _forget(settings: Settings, name: str, host: Host) -> None:
    """Drop the record of `name` if it says `host` (a box of that name elsewhere keeps its own)."""
    from devbox.ops import sticky

    if sticky.host_of(settings, name) == host.name:
        sticky.forget(settings, name)


def _exec_ssh(host: Host, remote_args: list[str], tty: bool) -> NoReturn:
    """Become `ssh HOST devbox …`: the terminal, signals and exit status are the server's."""
    from devbox.ops import remote

    remote.ensure_version(host, COMMAND_TIMEOUT_S)
    argv = remote.ssh_argv(host, [remote.REMOTE_DEVBOX, *remote.here(remote_args)], tty=tty)
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execvp(argv[0], argv)
    except OSError as exc:
        raise DevboxError(f"cannot run ssh: {exc}", "install the OpenSSH client") from None


def logs(host: Host, name: str, follow: bool, tail: str) -> NoReturn:
    """`devbox logs NAME` of a box on `host`, streamed as it comes."""
    args = ["logs", name, "--tail", tail] + ["--follow"] * follow
    # A terminal on the server with -f, so Ctrl-C stops the server's devbox too.
    _exec_ssh(host, args, tty=follow and sys.stdin.isatty() and sys.stdout.isatty())


def exec_(host: Host, name: str, command: list[str]) -> NoReturn:
    """`devbox exec NAME -- CMD` in a box on `host`: interactive when this side is a terminal."""
    _exec_ssh(host, ["exec", name, "--", *command], tty=sys.stdin.isatty() and sys.stdout.isatty())


def host_option(command: list[str]) -> tuple[str | None, list[str]]:
    """(--host value, the rest) for options typed after NAME (`exec NAME --host h2 -- CMD`),
    which click leaves in the command when interspersed options are off."""
    if command[:1] == ["--host"] and len(command) >= 2:
        return command[1], command[2:]
    if command[:1] and command[0].startswith("--host="):
        return command[0].split("=", 1)[1], command[1:]
    return None, command


def render(settings: Settings, host: Host, profile: str, flags: Overrides, json_output: bool) -> None:
    """`devbox render PROFILE --host NAME`: the server checks its profile and policy."""
    import shlex

    from devbox.ops import remote

    args = ["render", profile, *override_args(flags, settings.caller_environ), "--format", "json"]
    data = remote.run_json(host, args, COMMAND_TIMEOUT_S, progress=lambda line: print(line, file=sys.stderr))
    if json_output:
        from devbox.ui.to_json import print_json

        print_json(_named(data, host))
        return
    if isinstance(data, dict):
        if data.get("docker_build"):
            print(shlex.join(data["docker_build"]))
        print(shlex.join(data.get("docker_run") or []))
