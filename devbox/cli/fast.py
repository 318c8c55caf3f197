"""The commands that must start fast — top-level help and `ls` — without typer or rich.

`devbox --help` and `devbox ls` are what people type most; importing typer, rich and an
HTTP stack costs 10-30x the run time of `docker ps`. These paths use the standard library
only. A unit test keeps HELP in step with the commands typer registers.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from devbox import __version__

SUMMARY = "Your own GPU dev container on a shared server, in one command."
# (command, first line of its help) in the order `devbox --help` lists them.
COMMANDS = [
    ("up", "Start your box (creating it if needed), wait until it is ready, print how to reach it."),
    ("ls", "List your boxes (or everyone's with --all)."),
    ("info", "Show a box and how to reach it (credentials re-read from its log)."),
    ("down", "Stop and remove a box. Its named volumes are kept unless --purge."),
    ("rebuild", "Re-read the profile, refresh the image, replace the container. Volumes are kept."),
    ("switch", "Stop your other running boxes (their data stays), then `up` this one."),
    ("logs", "Print a box's log."),
    ("exec", "Run a command in a box: devbox exec NAME -- CMD ARGS…"),
    ("env", "The conda environments of a box: file, hash, last update, status (and why it failed)."),
    ("ssh", "Log into a box over SSH, checking the host key devbox recorded when it made the box."),
    (
        "ssh-config",
        "Print `Host devbox-NAME` entries for your boxes (for VS Code Remote-SSH), or --write them.",
    ),
    ("tunnel", "Forward a box's ports to free ports on this machine and print its Jupyter URL there."),
    ("proxy", "Relay stdin/stdout to a box's SSH port (ssh's ProxyCommand; ssh-config --write uses it)."),
    ("gpus", "Every GPU of the host: memory, utilisation, and which box (owner, since) holds it."),
    ("hosts", "The servers devbox knows (hosts:): reachable or not, their devbox version, GPUs free."),
    (
        "doctor",
        "Check the engine, socket, GPU runtime, GPUs, disk, /dev/shm, policy, lab mode; exit 1 on failure.",
    ),
    (
        "prune",
        "List stopped boxes, then remove them (their volumes are kept). --idle reports idle GPU holders.",
    ),
    ("policy", "Show the lab policy in force, or check a policy file."),
    (
        "lab",
        "Set lab mode up (root): users outside the docker group get what the policy allows, as themselves.",
    ),
    ("image", "Build the reference image devbox/devbox on this engine (the default profile's)."),
    ("render", "Dry run: check a profile like `up` does, then print the `docker run` it implies."),
    ("profiles", "List the profiles devbox can find, or check profile files."),
    ("version", "Print the versions of devbox, Python and the engine (if it answers within 2 s)."),
    (
        "completion",
        "Print the shell completion script for bash, zsh or fish (commands, options, profiles, boxes).",
    ),
    (
        "help",
        "Show a guide (cli, profiles, policy, lab, gpus, image) or a command's help; alone, list the guides.",
    ),
]
OPTIONS = [
    ("--debug", "Show tracebacks for errors."),
    ("--version", "Print the version."),
    ("-h, --help", "Show this message and exit."),
]
# `ls --all-hosts [--timeout S]`, `ls --host NAME` ask other servers: typer's command answers.
_LS_HOSTS = {"--all-hosts", "--timeout", "--host"}
_LS_FLAGS = {"--all", "-a", "--json", "--quiet", "-q"} | _LS_HOSTS


def help_text() -> str:
    """The top-level help."""
    from devbox.cli import examples

    width = max(len(name) for name, _ in COMMANDS + OPTIONS) + 2
    lines = ["Usage: devbox [OPTIONS] COMMAND [ARGS]...", "", f"  {SUMMARY}", "", "Commands:"]
    lines += [f"  {name:<{width}}{text}" for name, text in COMMANDS]
    lines += ["", "Options:"]
    lines += [f"  {name:<{width}}{text}" for name, text in OPTIONS]
    lines += ["", *examples.lines("")]
    lines += ["", "Run `devbox COMMAND --help` for a command's options, `devbox help` for the guides."]
    return "\n".join(lines)


def ls(
    all_users: bool, json_output: bool, owner: str | None = None, gpu: str | None = None, quiet: bool = False
) -> None:
    """`devbox ls`: one engine call, a plain table, names (-q) or JSON; --owner/--gpu filter everyone's."""
    from devbox import engine, settings
    from devbox.ops import boxes
    from devbox.ui import plain, term

    eng = engine.connect()
    listed = boxes.listing(eng, all_users, owner, gpu, lambda: settings.from_environment().owner)
    found, all_users = listed.boxes, listed.everyone
    if json_output:
        from devbox.ui.to_json import ls_box_json, print_json

        print_json([ls_box_json(b, eng.host) for b in found])
    elif quiet:
        sys.stdout.write("".join(f"{b.name}\n" for b in found))
    elif found:
        print(plain.table(plain.box_rows(found, all_users), bold_header=term.styled(sys.stdout)))
    else:
        print(plain.empty_message(all_users))


def _ls_args(argv: list[str]) -> tuple[bool, bool, str | None, str | None, bool] | None:
    """(all, json, owner, gpu, quiet) for a plain `ls` command line; None for anything else."""
    if argv[:1] != ["ls"]:
        return None
    flags: set[str] = set()
    values: dict[str, str] = {}
    rest = argv[1:]
    while rest:
        arg = rest.pop(0)
        name, sep, value = arg.partition("=")
        if name in ("--owner", "--gpu"):
            if not sep:
                if not rest:
                    return None
                value = rest.pop(0)
            values[name] = value
        elif name in _LS_HOSTS:
            return None
        elif arg in _LS_FLAGS:
            flags.add(arg)
        else:
            return None  # help, typos: typer explains
    return (
        "--all" in flags or "-a" in flags,
        "--json" in flags,
        values.get("--owner"),
        values.get("--gpu"),
        "--quiet" in flags or "-q" in flags,
    )


_LS_HOSTS_FLAGS = {
    "--all": "all_users",
    "-a": "all_users",
    "--json": "json_output",
    "--quiet": "quiet",
    "-q": "quiet",
    "--all-hosts": "all_hosts",
}


def _ls_hosts_args(argv: list[str]) -> dict[str, Any] | None:
    """Keyword arguments of allhosts.ls for a plain `ls --all-hosts` line; None for anything else.

    Without typer too: it is timed against the same fan-out of bare `ssh HOST docker ps`."""
    if argv[:1] != ["ls"] or "--all-hosts" not in argv:
        return None
    values: dict[str, Any] = {"all_users": False, "json_output": False, "owner": None, "gpu": None}
    values |= {"quiet": False, "timeout": 10.0, "all_hosts": True}
    rest = argv[1:]
    while rest:
        arg = rest.pop(0)
        name, sep, value = arg.partition("=")
        if name in ("--owner", "--gpu", "--timeout"):
            if not sep:
                if not rest:
                    return None
                value = rest.pop(0)
            if name == "--timeout":
                try:
                    values["timeout"] = float(value)
                except ValueError:
                    return None
                if not 0.1 <= values["timeout"] < float("inf"):
                    return None  # typer names the range
            else:
                values[name[2:]] = value
        elif arg in _LS_HOSTS_FLAGS:
            values[_LS_HOSTS_FLAGS[arg]] = True
        else:
            return None  # --host with --all-hosts, help, typos: typer explains
    return values


# `devbox up`'s options, read without typer (~35 ms): it is the command people wait on, and
# timed against `docker run`. A unit test keeps these equal to the typer command's options.
UP_VALUES = {
    "--image": "image",
    "--gpus": "gpus",
    "--shm-size": "shm_size",
    "--cpus": "cpus",
    "--memory": "memory",
    "--progress": "progress",
    "--host": "host",  # another server: shared.up hands it to cli/onhost.py
    "--wait-timeout": "wait_timeout",  # a Slurm host's queue (cli/onslurm.py)
}
UP_LISTS = {"-p": "port", "--port": "port", "-v": "volume", "--volume": "volume", "-e": "env", "--env": "env"}
UP_FLAGS = {
    "--recreate": "recreate",
    "--keep-failed": "keep_failed",
    "--json": "json_output",
    "--no-wait": "no_wait",
}


def _up_args(argv: list[str]) -> dict[str, Any] | None:
    """Keyword arguments of shared.up for a plain `up` command line; None for anything else."""
    if argv[:1] != ["up"]:
        return None
    values: dict[str, Any] = {"profile": None, "port": [], "volume": [], "env": []}
    flags = dict.fromkeys(UP_FLAGS.values(), False)
    rest = argv[1:]
    while rest:
        arg = rest.pop(0)
        name, sep, value = arg.partition("=") if arg.startswith("--") else (arg, "", "")
        if name in UP_VALUES or name in UP_LISTS:
            if not sep:
                if not rest:
                    return None
                value = rest.pop(0)
            if name == "--progress" and value not in ("auto", "plain", "quiet"):
                return None  # typer names the choices (a unit test keeps these equal)
            if name == "--wait-timeout" and not _seconds(value):
                return None  # typer says what a number is
            if name in UP_VALUES:
                values[UP_VALUES[name]] = value
            else:
                values[UP_LISTS[name]].append(value)
        elif arg in UP_FLAGS:
            flags[UP_FLAGS[arg]] = True
        elif not arg.startswith("-") and values["profile"] is None:
            values["profile"] = arg
        else:
            return None  # --help, typos, a second positional: typer explains
    from devbox.profile.flags import Overrides

    overrides = Overrides(
        values.get("image"),
        values.get("gpus"),
        values.get("shm_size"),
        values.get("cpus"),
        values.get("memory"),
        values["port"],
        values["volume"],
        values["env"],
    )
    return {
        "profile": values["profile"] or "default",
        "flags": overrides,
        "progress": values.get("progress", "auto"),
        "host": values.get("host"),
        "wait_timeout": float(values["wait_timeout"]) if "wait_timeout" in values else None,
        **flags,
    }


def _seconds(text: str) -> bool:
    """True for a number of seconds typer's --wait-timeout takes (a float, at least 0)."""
    try:
        return float(text) >= 0
    except ValueError:
        return False


def run(argv: list[str]) -> int | None:
    """Handle `argv` if it is one of the fast commands; None means "ask typer"."""
    if argv in ([], ["--help"], ["-h"]):
        print(help_text())
        return 0
    if argv == ["--version"]:
        print(f"devbox {__version__}")
        return 0
    if argv[0] in ("version", "completion", "help", "__complete"):
        from devbox.cli import meta

        return meta.run(argv)
    from devbox.cli import errors

    parsed = _ls_args(argv)
    if parsed is not None:
        return errors.guarded(lambda: ls(*parsed), json_output=parsed[1])
    hosts_args = _ls_hosts_args(argv)
    if hosts_args is not None:
        status = [0]

        def every_host() -> None:
            from devbox import settings
            from devbox.cli import allhosts

            status[0] = allhosts.ls(settings.from_environment(), **hosts_args)

        return errors.guarded(every_host, json_output=hosts_args["json_output"]) or status[0]
    up_args = _up_args(argv)
    if up_args is not None:
        from devbox.cli import shared

        code = errors.guarded(lambda: shared.up(**up_args), json_output=up_args["json_output"])
        # Skip interpreter teardown (a few hundred modules, the log reader thread): ~20 ms of a
        # command timed against `docker run`. Everything devbox writes is flushed here.
        sys.stdout.flush()
        sys.stderr.flush()
        if errors.state["keep_process"]:
            return code  # the lab helper writes its audit line after the command
        os._exit(code)
    return None
