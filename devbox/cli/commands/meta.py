"""`devbox version`, `completion` and `help` as typer commands (their --help, typos, `help COMMAND`).

Their plain forms are answered by meta.run before typer is imported; these call the same code.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import typer

from devbox.cli import meta
from devbox.cli.app import JsonOpt, app, handles_errors
from devbox.errors import NotFound


class Shell(StrEnum):
    """Shells `devbox completion` writes a script for."""

    bash = "bash"
    zsh = "zsh"
    fish = "fish"


@app.command()
@handles_errors
def version(json_output: JsonOpt = False) -> None:
    """Print the versions of devbox, Python and the engine (if it answers within 2 s)."""
    meta.version(json_output)


@app.command()
@handles_errors
def completion(shell: Annotated[Shell, typer.Argument(help="bash, zsh or fish.")]) -> None:
    """Print the shell completion script for bash, zsh or fish (commands, options, profiles, boxes)."""
    meta.completion(shell.value)


@app.command("help")
@handles_errors
def help_(
    ctx: typer.Context,
    topic: Annotated[str | None, typer.Argument(help="A topic, or a command.")] = None,
) -> None:
    """Show a guide (cli, profiles, policy, lab, gpus, image) or a command's help; alone, list the guides."""
    if topic is None or meta.help_topic(topic):
        if topic is None:
            meta.help_topic(None)
        return
    root = ctx.find_root()
    group = root.command
    command = group.get_command(root, topic) if isinstance(group, typer.core.TyperGroup) else None
    if command is None:
        from devbox.ui import topics

        raise NotFound(
            f"no help topic or command '{topic}'",
            f"topics: {', '.join(topics.TOPICS)}; commands: devbox --help",
        )
    with command.make_context(str(topic), ["--help"], parent=root):
        pass  # --help prints the command's help and exits
