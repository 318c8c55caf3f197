"""The error family every layer raises, and the exit codes the CLI maps them to.

Only `cli` turns these into output and an exit status; the layers below raise and never print.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum


class ExitCode(IntEnum):
    """Exit statuses of the `devbox` command (documented in docs/cli.md)."""

    OK = 0
    ERROR = 1  # an operation failed (engine, I/O)
    INVALID = 2  # bad input: profile, policy file, flags; nothing was touched
    REFUSED = 3  # valid input that the lab policy does not allow; nothing was touched
    INTERRUPTED = 130


@dataclass(frozen=True)
class Origin:
    """Where a value came from: a file position, or a command-line flag."""

    source: str
    line: int | None = None
    column: int | None = None

    def __str__(self) -> str:
        if self.line is None:
            return self.source
        return f"{self.source}:{self.line}:{self.column or 1}"


@dataclass(frozen=True)
class Problem:
    """One located mistake in the user's input, with the fix when we know it."""

    origin: Origin
    message: str
    hint: str | None = None


class DevboxError(Exception):
    """An error the user can act on: a message, an optional hint, an exit code."""

    exit_code: ExitCode = ExitCode.ERROR

    def __init__(self, message: str, hint: str | None = None, details: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.details = details  # e.g. a failed box's last log lines, shown verbatim


class InvalidInput(DevboxError):
    """One or more problems in a profile, policy file or flag, all reported together."""

    exit_code = ExitCode.INVALID

    def __init__(self, message: str, problems: list[Problem], hint: str | None = None) -> None:
        super().__init__(message, hint)
        self.problems = problems


class PolicyRefusal(DevboxError):
    """A valid request that breaks a rule of the lab policy."""

    exit_code = ExitCode.REFUSED

    def __init__(self, message: str, problems: list[Problem], policy_path: str) -> None:
        if policy_path.startswith("("):  # no policy file: only devbox's own, fixed rules apply
            hint = "devbox refuses this with or without a lab policy"
        else:
            hint = f"the rules are in {policy_path}; ask your lab admin to change them"
        super().__init__(message, hint)
        self.problems = problems
        self.policy_path = policy_path


def unexpected(exc: Exception) -> DevboxError:
    """A bug, not a user's mistake: one screen naming it instead of a long traceback."""
    text = str(exc).strip().splitlines()
    first = text[0][:200] if text else ""
    return DevboxError(
        f"devbox failed unexpectedly: {type(exc).__name__}{': ' + first if first else ''}",
        "run it again with `devbox --debug ...` for the traceback, and report it with that output",
    )
