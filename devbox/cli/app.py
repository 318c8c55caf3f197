"""The typer app and the options commands share; errors become output in cli/errors.py."""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING, Annotated

import typer

from devbox import __version__
from devbox.cli import errors, shared
from devbox.ui import term

if TYPE_CHECKING:
    from devbox.profile.flags import Overrides

app = typer.Typer(
    name="devbox",
    help="Your own GPU dev container on a shared server, in one command.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,  # a traceback must never print secrets held in locals
    context_settings={"help_option_names": ["-h", "--help"]},
)

if term.no_color():
    # typer draws help and usage errors with its own rich console: no styles there either.
    from typer import rich_utils

    rich_utils.COLOR_SYSTEM = None

handles_errors = errors.handles_errors  # every command's one guard (cli/errors.py)


def _version(value: bool) -> None:
    if value:
        print(f"devbox {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks for errors.")] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    errors.state["debug"] = debug


stdout = shared.stdout
stderr = shared.stderr


ImageOpt = Annotated[str | None, typer.Option("--image", help="Use this image instead.")]
GpusOpt = Annotated[
    str | None, typer.Option("--gpus", help="all | none | N (a count) | device=0,3 (those GPUs)")
]
ShmOpt = Annotated[str | None, typer.Option("--shm-size", help="Size of /dev/shm, e.g. 8g.")]
CpusOpt = Annotated[str | None, typer.Option("--cpus", help="CPU quota, e.g. 4 or 0.5.")]
MemoryOpt = Annotated[str | None, typer.Option("--memory", help="Memory limit, e.g. 16g.")]
PortOpt = Annotated[list[str] | None, typer.Option("-p", "--port", help="NAME=PORT or NAME=HOST:PORT.")]
VolumeOpt = Annotated[list[str] | None, typer.Option("-v", "--volume", help="SOURCE:TARGET[:ro].")]
EnvOpt = Annotated[list[str] | None, typer.Option("-e", "--env", help="KEY=VALUE (or KEY from here).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON.")]
# Several servers (docs/hosts.md; cli/onhost.py).
HostOpt = Annotated[
    str | None,
    typer.Option(
        "--host",
        help="The server to act on (devbox hosts lists them); default: where the box was made, else here.",
    ),
]
AllHostsOpt = Annotated[bool, typer.Option("--all-hosts", help="Ask every host in parallel (a HOST column).")]
TimeoutOpt = Annotated[
    float, typer.Option("--timeout", min=0.1, help="Seconds each host has to answer (with --all-hosts).")
]


class Progress(StrEnum):
    """How long operations show their steps on stderr (--progress)."""

    auto = "auto"
    plain = "plain"
    quiet = "quiet"


ProgressOpt = Annotated[
    Progress,
    typer.Option(
        "--progress", help="auto: a spinner on a terminal, plain lines otherwise; plain; quiet: nothing."
    ),
]
ProfileArg = Annotated[str, typer.Argument(help="Profile name or path to a YAML file.")]
NameArg = Annotated[str, typer.Argument(help="Box name (the profile's name).")]


def overrides(
    image: str | None,
    gpus: str | None,
    shm_size: str | None,
    cpus: str | None,
    memory: str | None,
    port: list[str] | None,
    volume: list[str] | None,
    env: list[str] | None,
) -> Overrides:
    """The override flags as one value."""
    from devbox.profile.flags import Overrides

    return Overrides(image, gpus, shm_size, cpus, memory, port or [], volume or [], env or [])
