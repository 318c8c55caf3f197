"""The typer app, the options commands share, and the one place errors become output."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, ParamSpec, TypeVar

import typer

from devbox import __version__
from devbox.cli import shared
from devbox.errors import DevboxError, ExitCode, unexpected

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

_state = {"debug": False}
P = ParamSpec("P")
R = TypeVar("R")


def handles_errors(command: Callable[P, R]) -> Callable[P, R]:
    """Turn devbox's errors into one screen on stderr and the error's exit code.

    Every command is wrapped, so this is the one place errors become output; tracebacks
    only with --debug.
    """

    @functools.wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except DevboxError as exc:
            if _state["debug"]:
                raise
            from devbox.ui import console

            console.error(stderr(), exc)
            raise typer.Exit(int(exc.exit_code)) from None
        except KeyboardInterrupt:
            stderr().print("interrupted")
            raise typer.Exit(int(ExitCode.INTERRUPTED)) from None
        except Exception as exc:
            # typer's own control flow (Exit, Abort, usage errors) comes from typer or click,
            # depending on typer's version: pass it on.
            if _state["debug"] or type(exc).__module__.split(".")[0] in ("typer", "click"):
                raise
            from devbox.ui import console

            console.error(stderr(), unexpected(exc))
            raise typer.Exit(int(ExitCode.ERROR)) from None

    return wrapper


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
    _state["debug"] = debug


stdout = shared.stdout
stderr = shared.stderr


ImageOpt = Annotated[str | None, typer.Option("--image", help="Use this image instead.")]
GpusOpt = Annotated[str | None, typer.Option("--gpus", help="all | none | N | 0,3")]
ShmOpt = Annotated[str | None, typer.Option("--shm-size", help="Size of /dev/shm, e.g. 8g.")]
CpusOpt = Annotated[str | None, typer.Option("--cpus", help="CPU quota, e.g. 4 or 0.5.")]
MemoryOpt = Annotated[str | None, typer.Option("--memory", help="Memory limit, e.g. 16g.")]
PortOpt = Annotated[list[str] | None, typer.Option("-p", "--port", help="NAME=PORT or NAME=HOST:PORT.")]
VolumeOpt = Annotated[list[str] | None, typer.Option("-v", "--volume", help="SOURCE:TARGET[:ro].")]
EnvOpt = Annotated[list[str] | None, typer.Option("-e", "--env", help="KEY=VALUE (or KEY from here).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON.")]
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
