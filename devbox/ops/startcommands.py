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
from devbox.profile.devcontainer_out import expand_container_env, uses_container_env
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
    env = _box_env(engine, box, commands)
    for command in commands:
        written = argv_of(command)
        shown = command.shell if command.shell is not None else shlex.join(written)
        argv = [expand_container_env(word, env) for word in written]
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


def _box_env(engine: Engine, box: Box, commands: list[StartCommand]) -> dict[str, str]:
    """The box's environment (its image's and its own), read only when a command uses
    ${containerEnv:…}: the spec substitutes those before the command runs."""
    if not any(uses_container_env(word) for command in commands for word in argv_of(command)):
        return {}
    full = engine.inspect(box.id)
    return dict(full.config.env) if full is not None and full.config is not None else {}
