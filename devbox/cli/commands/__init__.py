"""The full typer app: importing the command modules (one per group of commands) registers them.

Each command's summary (the first line of its help) comes from fast.COMMANDS, which the
typer-free `devbox --help` prints too, and its --help ends with its examples (examples.py):
one place for each text. A unit test keeps the docstrings' first lines equal to them.
"""

from __future__ import annotations

from devbox.cli import examples, fast
from devbox.cli.app import app
from devbox.cli.commands import admin, box, env, hosts, image, lab, meta, profile, ssh, tunnel

__all__ = ["admin", "app", "box", "env", "hosts", "image", "lab", "meta", "profile", "ssh", "tunnel"]


def _name(info: object) -> str:
    """The name a typer CommandInfo registers under (typer derives it like this)."""
    name = getattr(info, "name", None)
    callback = getattr(info, "callback", None)
    return str(name or getattr(callback, "__name__", "").replace("_", "-"))


def _epilog(command: str) -> str | None:
    # A command without examples still runs (a unit test insists that each has them).
    return examples.epilog(command) if command in examples.EXAMPLES else None


def _texts() -> None:
    summaries = dict(fast.COMMANDS)
    app.info.epilog = examples.epilog("")
    for command in app.registered_commands:
        name = _name(command)
        command.help = summaries[name]
        command.epilog = _epilog(name)
    for group in app.registered_groups:
        name = str(group.name)
        group.help = summaries[name]
        group.epilog = _epilog(name)
        for sub in group.typer_instance.registered_commands if group.typer_instance else []:
            sub.epilog = _epilog(f"{name} {_name(sub)}")


_texts()
