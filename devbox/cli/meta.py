"""`devbox version`, `completion`, `help` and the hidden `__complete`, without typer.

fast.run hands these here; a form this does not know (a typo, --help) goes to the typer
commands in commands/meta.py, which call the same functions.
"""

from __future__ import annotations

import sys
from typing import Any

from devbox import __version__

NAMES = frozenset({"version", "completion", "help", "__complete"})
# `devbox version` asks the engine its version, but never waits longer than this for it.
ENGINE_TIMEOUT_S = 2.0


def engine_version() -> dict[str, Any] | None:
    """The engine's host, version and API version; None if it does not answer in time."""
    from devbox import engine

    try:
        eng = engine.connect(timeout=ENGINE_TIMEOUT_S)
        facts = eng.facts()
    except Exception:  # no engine, a slow one, no Docker at all: version still answers
        return None
    return {
        "host": eng.host,
        "product": facts.product,
        "version": facts.version,
        "api_version": facts.api_version,
    }


def version(json_output: bool) -> None:
    """Print devbox's version, Python's, and the engine's when it answers."""
    import platform

    python, found = platform.python_version(), engine_version()
    if json_output:
        from devbox.ui.to_json import print_json  # the one JSON printer; shape: ui/json.py VersionJson

        print_json({"version": __version__, "python": python, "engine": found})
        return
    print(f"devbox {__version__}")
    print(f"python {python}")
    if found:
        print(f"engine {found['product']} {found['version']} (API {found['api_version']}) at {found['host']}")
    else:
        print("engine not reachable (devbox doctor says why)")


def completion(shell: str) -> None:
    """Print the completion script for `shell`."""
    from devbox.cli import complete

    sys.stdout.write(complete.SCRIPTS[shell])


def help_topic(topic: str | None) -> bool:
    """Print the topic list, or topic `topic`; False when there is no such topic."""
    from devbox.ui import topics

    if topic is None:
        print(topics.listing())
        return True
    text = topics.text(topic)
    if text is None:
        return False
    sys.stdout.write(text if text.endswith("\n") else text + "\n")
    return True


def run(argv: list[str]) -> int | None:
    """Answer `argv` if it is a plain form of these commands; None means "ask typer"."""
    name, rest = argv[0], argv[1:]
    if name == "__complete":
        from devbox.cli import complete

        return complete.complete(rest)
    if name == "version" and rest in ([], ["--json"]):
        version(rest == ["--json"])
        return 0
    if name == "completion" and len(rest) == 1 and rest[0] in ("bash", "zsh", "fish"):
        completion(rest[0])
        return 0
    if name == "help" and len(rest) <= 1 and not (rest and rest[0].startswith("-")):
        return 0 if help_topic(rest[0] if rest else None) else None
    return None
