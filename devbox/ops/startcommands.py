"""A devcontainer.json's postCreateCommand / postStartCommand, run in the box as its user.

onCreateCommand and updateContentCommand run with postCreateCommand, before it (the spec's
order); the entries of a command's object form run one after the other, not in parallel, so
their output reads in order. A failing command is a warning, not a failure: the box is up.
"""

from __future__ import annotations

import shlex

from devbox.box.resolved import Resolved
from devbox.box.state import Box
from devbox.engine.base import Engine
from devbox.ops.afterstart import Event, box_user
from devbox.ops.reporter import Reporter
from devbox.profile.model import StartCommand


def argv_of(command: StartCommand) -> list[str]:
    """The command's argv: a string through /bin/sh -c, an array as it is."""
    if command.shell is not None:
        return ["/bin/sh", "-c", command.shell]
    return list(command.argv or ())


def run(engine: Engine, box: Box, resolved: Resolved, reporter: Reporter, event: Event) -> list[str]:
    """Run postCreateCommand (on a new container) and postStartCommand (on every start)."""
    profile = resolved.profile
    warnings: list[str] = []
    commands: list[StartCommand] = []
    if event == "created":
        warnings += [f"{note} ({profile.path})" for note in profile.notes]
        commands += profile.post_create
    if event in ("created", "started"):
        commands += profile.post_start
    default_user = box_user(resolved)
    for command in commands:
        argv = argv_of(command)
        shown = command.shell if command.shell is not None else shlex.join(argv)
        reporter.step(f"{command.name}: {shown}")
        user = command.user or default_user
        code, output = engine.exec(
            box.id, argv, user=user, on_line=reporter.build_line, workdir=resolved.spec.workdir or ""
        )
        if code != 0:
            last = next((line for line in reversed(output.splitlines()) if line.strip()), "")
            warnings.append(
                f"{command.name} failed (exit {code}{': ' + last if last else ''}); the box is up: "
                f"fix it and run it again with devbox exec {resolved.spec.box} -- {shlex.join(argv)}"
            )
    return warnings
