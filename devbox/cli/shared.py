"""Pieces the typer commands and the fast paths share; no typer, and rich only when drawing."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console

    from devbox.access.reports import BoxReport
    from devbox.box.resolved import Resolved
    from devbox.engine.docker.engine import DockerEngine as Engine
    from devbox.ops.reporter import QuietReporter
    from devbox.profile.flags import Overrides
    from devbox.settings import Settings
    from devbox.ui.progress import RichReporter


def stdout() -> Console:
    """The console for results (rich is imported only when something is printed)."""
    from rich.console import Console

    return Console(emoji=False)


def stderr() -> Console:
    """The console for progress, warnings and errors."""
    from rich.console import Console

    return Console(stderr=True, emoji=False)


def print_json(data: object) -> None:
    """Exactly one JSON document on stdout."""
    print(json.dumps(data, indent=2, default=str))


def reporter(json_output: bool) -> RichReporter | QuietReporter:
    """Progress on stderr; with --json only where a person watches it (rich costs ~50 ms)."""
    if not sys.stderr.isatty():
        # A spinner shows nothing in a log; skipping it also skips importing rich.progress.
        from devbox.ops.reporter import QuietReporter
        from devbox.ui.steps import PlainReporter

        return QuietReporter() if json_output else PlainReporter()
    from devbox.ui.progress import RichReporter

    return RichReporter(stderr())


def show(result: BoxReport, json_output: bool) -> None:
    """A box report as the panel, or as the one JSON object."""
    if json_output:
        from devbox.ui.plain import report_json

        print_json(report_json(result))
    else:
        from devbox.ui import panels

        panels.report_panel(stdout(), stderr(), result)


def caller() -> Settings:
    """The caller's settings, from the environment."""
    from devbox import settings

    return settings.from_environment()


def container(settings: Settings, name: str) -> str:
    """The container of the caller's box `name`."""
    from devbox.box.spec import container_name

    return container_name(settings.owner, name)


def resolve(profile: str, settings: Settings, flags: Overrides | None = None) -> Resolved:
    """The profile `profile` names; failing that, the file one of your boxes of that name came from.

    So `devbox up NAME` restarts a box made from a path (devbox up ../x/NAME.yaml) by name.
    """
    from devbox import engine
    from devbox.errors import DevboxError
    from devbox.ops import resolve
    from devbox.profile.loader import ProfileNotFound

    try:
        return resolve.resolve(profile, settings, flags)
    except ProfileNotFound:
        try:
            remembered = box_profile(engine.connect(), settings, profile)
        except DevboxError:
            remembered = None  # no engine, or not yours: the profile error says more
        if remembered is None:
            raise
        return resolve.resolve(remembered, settings, flags)


def box_profile(eng: Engine, settings: Settings, name: str) -> str | None:
    """The profile file the caller's box `name` was made from, if the box and file still exist."""
    from pathlib import Path

    box = eng.find(container(settings, name), settings.owner)
    return box.profile if box and Path(box.profile).is_file() else None


def up(profile: str, flags: Overrides, recreate: bool, keep_failed: bool, json_output: bool) -> None:
    """`devbox up`, whichever parser read the command line."""
    from devbox import engine
    from devbox.ops import lifecycle

    resolved = resolve(profile, caller(), flags)
    eng = engine.connect()
    with reporter(json_output) as progress:
        result = lifecycle.up(eng, resolved, progress, recreate=recreate, keep_failed=keep_failed)
    show(result, json_output)
