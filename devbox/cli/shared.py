"""Pieces the typer commands and the fast paths share; no typer, and rich only when drawing."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path

    from rich.console import Console

    from devbox.access.reports import BoxReport
    from devbox.box.resolved import Resolved
    from devbox.ops.reporter import QuietReporter
    from devbox.profile.flags import Overrides
    from devbox.settings import Settings
    from devbox.ui.progress import RichReporter


def stdout() -> Console:
    """The console for results (rich is imported only when something is printed)."""
    return _console(stderr=False)


def stderr() -> Console:
    """The console for progress, warnings and errors."""
    return _console(stderr=True)


def _console(stderr: bool) -> Console:
    """A rich console that writes no escape sequence under NO_COLOR or TERM=dumb."""
    from rich.console import Console

    from devbox.ui import term

    # rich alone drops colours for NO_COLOR but still writes bold; no colour system writes no styles.
    return Console(stderr=stderr, emoji=False, color_system=None if term.no_color() else "auto")


def reporter(json_output: bool, progress: str = "auto") -> RichReporter | QuietReporter:
    """Progress on stderr as --progress asks: auto, plain or quiet.

    auto: a spinner on a terminal (not TERM=dumb); elsewhere one plain line per step, or
    nothing with --json. plain: those lines even on a terminal. quiet: nothing.
    """
    from devbox.ui import term

    if progress == "auto" and term.animated(sys.stderr):
        from devbox.ui.progress import RichReporter

        return RichReporter(stderr())
    # A spinner shows nothing in a log; skipping it also skips importing rich.progress.
    from devbox.ops.reporter import QuietReporter

    if progress == "quiet" or (progress == "auto" and json_output):
        return QuietReporter()
    from devbox.ui.steps import PlainReporter

    return PlainReporter()


def show(result: BoxReport, json_output: bool, host: str) -> None:
    """A box report (of a box on engine `host`) as the panel, or as the one JSON object."""
    if json_output:
        from devbox.ui.to_json import print_json, report_json

        print_json(report_json(result, host))
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
    return resolve_bound(profile, settings, flags)[0]


def resolve_bound(
    profile: str, settings: Settings, flags: Overrides | None = None
) -> tuple[Resolved, str | None]:
    """`resolve`, from the project folder your box `profile` records if it has one (ops/project.py),
    with the note that says so (None when it acted on the current folder)."""
    from devbox import engine
    from devbox.errors import DevboxError
    from devbox.ops import project

    try:
        bound = project.bound(engine.connect(), profile, settings)
    except DevboxError:
        bound = project.Bound(profile, settings)  # no engine: the later connect says so
    # A flag's relative path is the shell's, wherever the box's project is.
    return _resolve(bound.ref, bound.settings, flags, settings.cwd), bound.note


def _resolve(
    profile: str, settings: Settings, flags: Overrides | None, flags_cwd: Path | None = None
) -> Resolved:
    from devbox import engine
    from devbox.errors import DevboxError
    from devbox.ops import boxes, resolve
    from devbox.profile.loader import ProfileNotFound

    try:
        return resolve.resolve(profile, settings, flags, flags_cwd=flags_cwd)
    except ProfileNotFound as exc:
        from devbox.ops import project

        try:
            eng = engine.connect()
            remembered = boxes.box_profile(eng, settings, profile)
            gone = project.gone_hint(eng, profile, settings) if remembered is None else None
        except DevboxError:
            remembered = gone = None  # no engine, or not yours: the profile error says more
        if remembered is None:
            if gone:
                exc.hint = gone  # the box's project moved: more use than "profiles you have"
            raise
        return resolve.resolve(remembered, settings, flags, flags_cwd=flags_cwd)


def up(
    profile: str,
    flags: Overrides,
    recreate: bool,
    keep_failed: bool,
    json_output: bool,
    progress: str = "auto",
    host: str | None = None,
    no_wait: bool = False,
    wait_timeout: float | None = None,
) -> None:
    """`devbox up`, whichever parser read the command line: here, or on `host` (another server,
    `auto`, `local`, a Slurm cluster), or on the host boxes.yaml records for a box of that name.
    `no_wait`, `wait_timeout`: a Slurm host's queue (refused elsewhere)."""
    settings = caller()
    if host is None and (settings.user_config_dir / "boxes.yaml").is_file():
        # Only once a box was made on another server: one stat otherwise.
        from devbox.ops import sticky

        host = sticky.host_of(settings, profile)
    if host is not None:
        from devbox.cli import onhost

        onhost.up(
            settings,
            host,
            profile,
            flags,
            recreate,
            keep_failed,
            json_output,
            progress,
            no_wait,
            wait_timeout,
        )
        return
    if no_wait or wait_timeout is not None:
        from devbox.cli import onslurm

        onslurm.refuse_flags(no_wait, wait_timeout)
    up_here(profile, flags, recreate, keep_failed, json_output, progress, settings)


def up_here(
    profile: str,
    flags: Overrides,
    recreate: bool,
    keep_failed: bool,
    json_output: bool,
    progress: str = "auto",
    settings: Settings | None = None,
) -> None:
    """`devbox up` on this machine's engine."""
    from devbox import engine
    from devbox.ops import lifecycle

    resolved, note = resolve_bound(profile, settings or caller(), flags)
    eng = engine.connect()
    with reporter(json_output, progress) as steps:
        result = lifecycle.up(eng, resolved, steps, recreate=recreate, keep_failed=keep_failed)
    show(noted(result, note), json_output, eng.host)


def noted(result: BoxReport, note: str | None) -> BoxReport:
    """The report with `note` (acting on the recorded project folder) first among its warnings."""
    if note is None:
        return result
    from dataclasses import replace

    return replace(result, warnings=(note, *result.warnings))
