"""The one place errors become output, for the fast paths and the typer commands alike.

Without --json: one screen on stderr (what went wrong, each located problem, the fix).
With --json: exactly one `{"error": {...}}` object on stdout (devbox.ui.json.ErrorJson),
stderr left to progress. Either way the exit code is the error kind's (devbox.errors).
Tracebacks only with --debug. No typer here: the fast paths use this too.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Sequence
from typing import ParamSpec, TypeVar

from devbox.errors import DevboxError, Interrupted, InvalidInput, unexpected

P = ParamSpec("P")
R = TypeVar("R")
# debug: set by the typer app's --debug; last_error: what `report` showed last (the lab
# helper's audit line); keep_process: the fast path returns instead of exiting early.
state: dict[str, object] = {"debug": False, "last_error": None, "keep_process": False}


def json_requested(argv: Sequence[str]) -> bool:
    """True when a command line asks for JSON: --json (or `render --format json`), before any --."""
    args = list(argv)
    args = args[: args.index("--")] if "--" in args else args
    if "--json" in args:
        return True
    if args[:1] == ["render"]:
        pairs = zip(args, [*args[1:], ""], strict=True)
        return "--format=json" in args or any(a in ("--format", "-f") and b == "json" for a, b in pairs)
    return False


def as_error(exc: BaseException) -> DevboxError:
    """Any exception as the DevboxError that reports it: a bug becomes one `failed` screen."""
    if isinstance(exc, DevboxError):
        return exc
    if isinstance(exc, Exception):
        return unexpected(exc)
    return Interrupted("interrupted")  # KeyboardInterrupt: Ctrl-C


def report(exc: BaseException, json_output: bool) -> int:
    """Show `exc` (JSON on stdout, or the screen on stderr) and return its exit code."""
    error = as_error(exc)
    state["last_error"] = error
    if json_output:
        from devbox.ui.to_json import error_json, print_json

        print_json(error_json(error))
    elif isinstance(error, Interrupted):
        print("interrupted", file=sys.stderr)
    else:
        from devbox.cli import shared
        from devbox.ui import console

        console.error(shared.stderr(), error)
    return int(error.exit_code)


def guarded(action: Callable[[], object], json_output: bool) -> int:
    """Run a fast-path command; its error is reported as the typer commands' are. Returns the exit code."""
    try:
        action()
    except (Exception, KeyboardInterrupt) as exc:
        return report(exc, json_output)
    return 0


def _passes_through(exc: BaseException) -> bool:
    """typer's own control flow (Exit, Abort, usage errors) comes from typer or click."""
    return type(exc).__module__.split(".")[0] in ("typer", "click")


def _wants_json(kwargs: dict[str, object]) -> bool:
    """The command's --json (or render's --format json); else whether the command line has it."""
    if "json_output" in kwargs or "format" in kwargs:
        return bool(kwargs.get("json_output")) or str(kwargs.get("format")) == "json"
    return json_requested(sys.argv[1:])


def handles_errors(command: Callable[P, R]) -> Callable[P, R]:
    """Wrap a typer command: its errors become output and the kind's exit code."""

    @functools.wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except (Exception, KeyboardInterrupt) as exc:
            if _passes_through(exc) or (state["debug"] and not isinstance(exc, KeyboardInterrupt)):
                raise
            import typer

            raise typer.Exit(report(exc, _wants_json(kwargs))) from None

    return wrapper


def run_app(app: Callable[..., object], argv: list[str]) -> None:
    """Run the typer app. Under --json, a usage error (an unknown option, a missing argument)
    is the error object too, kind invalid (exit 2), instead of typer's usage screen."""
    if not json_requested(argv):
        app(prog_name="devbox")  # standalone: typer prints usage errors and exits
        return
    try:
        code = app(prog_name="devbox", standalone_mode=False)
    except Exception as exc:
        if not _passes_through(exc):
            raise
        describe = getattr(exc, "format_message", None)
        message = str(describe() if callable(describe) else exc) or type(exc).__name__
        status = getattr(exc, "exit_code", 1)
        error = (
            InvalidInput(message, hint="devbox COMMAND --help lists its options")
            if status == 2
            else DevboxError(message)
        )
        sys.exit(report(error, True))
    sys.exit(code if isinstance(code, int) else 0)
