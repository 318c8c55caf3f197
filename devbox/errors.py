"""The error family every layer raises, its kinds, and the exit codes the CLI maps them to.

Only `cli` turns these into output and an exit status; the layers below raise and never print.
Every error has a `kind`: a stable word that `--json` output carries and that decides the exit
code. Raise the class of the kind you mean (`NotFound`, `NoCapacity`, ...); a plain
`DevboxError` is `failed`.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Literal

Kind = Literal[
    "failed", "invalid", "refused", "no-capacity", "not-found", "engine-unreachable", "interrupted"
]


class ExitCode(IntEnum):
    """Exit statuses of the `devbox` command, one per error kind (documented in docs/cli.md)."""

    OK = 0
    ERROR = 1  # failed: the box or the engine failed (or devbox itself did)
    INVALID = 2  # bad input: profile, policy file, flags; nothing was touched
    REFUSED = 3  # valid input that the lab policy (or a rule of devbox) does not allow; nothing touched
    NO_CAPACITY = 4  # allowed, but not now: no free GPU, a per-user limit your boxes already use up
    NOT_FOUND = 5  # no such box, profile or file
    ENGINE_UNREACHABLE = 6  # the engine does not answer, or is no Docker engine
    INTERRUPTED = 130


EXIT_CODES: dict[Kind, ExitCode] = {
    "failed": ExitCode.ERROR,
    "invalid": ExitCode.INVALID,
    "refused": ExitCode.REFUSED,
    "no-capacity": ExitCode.NO_CAPACITY,
    "not-found": ExitCode.NOT_FOUND,
    "engine-unreachable": ExitCode.ENGINE_UNREACHABLE,
    "interrupted": ExitCode.INTERRUPTED,
}


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
    """An error the user can act on: a message, an optional hint, located problems, a kind."""

    kind: Kind = "failed"

    def __init__(
        self,
        message: str,
        hint: str | None = None,
        details: tuple[str, ...] = (),
        problems: list[Problem] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.details = details  # e.g. a failed box's last log lines, shown verbatim
        self.problems: list[Problem] = problems or []

    @property
    def exit_code(self) -> ExitCode:
        """The exit status of this error's kind."""
        return EXIT_CODES[self.kind]


class InvalidInput(DevboxError):
    """One or more problems in a profile, policy file, flag or setting, all reported together."""

    kind: Kind = "invalid"

    def __init__(self, message: str, problems: list[Problem] | None = None, hint: str | None = None) -> None:
        super().__init__(message, hint, problems=problems)


class PolicyRefusal(DevboxError):
    """A valid request that breaks a rule of the lab policy."""

    kind: Kind = "refused"

    def __init__(self, message: str, problems: list[Problem], policy_path: str) -> None:
        if policy_path.startswith("("):  # no policy file: only devbox's own, fixed rules apply
            hint = "devbox refuses this with or without a lab policy"
        else:
            hint = f"the rules are in {policy_path}; ask your lab admin to change them"
        super().__init__(message, hint, problems=problems)
        self.policy_path = policy_path


class Refused(DevboxError):
    """A request devbox will not carry out, whatever the policy: e.g. acting on another owner's box."""

    kind: Kind = "refused"


class NoCapacity(DevboxError):
    """Allowed, but not now: no free GPU, or a per-user limit that running boxes already use up.

    Freeing something (another box going down) makes the same request succeed.
    """

    kind: Kind = "no-capacity"


class NotFound(DevboxError):
    """No box, profile or file of the name given."""

    kind: Kind = "not-found"


class EngineUnreachable(DevboxError):
    """The container engine does not answer (or what answers is no engine)."""

    kind: Kind = "engine-unreachable"


class Interrupted(DevboxError):
    """The user stopped devbox (Ctrl-C)."""

    kind: Kind = "interrupted"


def unexpected(exc: Exception) -> DevboxError:
    """A bug, not a user's mistake: one screen naming it instead of a long traceback."""
    text = str(exc).strip().splitlines()
    first = text[0][:200] if text else ""
    return DevboxError(
        f"devbox failed unexpectedly: {type(exc).__name__}{': ' + first if first else ''}",
        "run it again with `devbox --debug ...` for the traceback, and report it with that output",
    )
