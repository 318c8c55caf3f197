"""Project-bound boxes: a box made from a project profile stays on its project folder.

A project profile's box records its folder (the `devbox.project` label). `up`, `rebuild`
and `switch` of that box run from another folder act on the recorded folder, as if run
from there, and say so: the folder you stand in never re-points a box silently.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from devbox import caller
from devbox.box import drift, labels
from devbox.profile import files
from devbox.profile.loader import looks_like_path

if TYPE_CHECKING:
    from devbox.box.spec import ContainerSpec
    from devbox.box.state import Box
    from devbox.engine.base import Engine
    from devbox.settings import Settings


@dataclass(frozen=True)
class Bound:
    """What to resolve: the profile reference, the settings to resolve it with, and the note
    to show when those are the box's recorded folder rather than the current one."""

    ref: str
    settings: Settings
    note: str | None = None


def recorded_folder(box: Box) -> str | None:
    """The project folder a box records (None: a library profile's box, or an older box)."""
    return box.labels.get(labels.PROJECT) or None


def _same_folder(a: str, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.realpath(a) == os.path.realpath(b)


def bind(box: Box | None, ref: str, settings: Settings) -> Bound:
    """Pure but for looking at files: `ref` as its box's recorded project folder sees it.

    Only a box name is redirected (a path names its file itself), only when the box records
    a folder that still exists and that is not the current folder's project. The recorded
    profile file is used when it still exists, else the name is looked up from that folder.
    """
    if box is None or looks_like_path(ref):
        return Bound(ref, settings)
    folder = recorded_folder(box)
    if folder is None:
        return Bound(ref, settings)
    with caller.rights(settings.caller):
        # As the caller (lab mode): whether a folder exists is theirs to learn, not root's.
        if not files.is_folder(folder) or _same_folder(folder, settings.cwd):
            return Bound(ref, settings)
        profile = box.profile if box.profile and files.is_file(box.profile) else ref
    note = f"acting on {box.name}'s project folder {folder} (recorded), not the current folder {settings.cwd}"
    return Bound(profile, dataclasses.replace(settings, cwd=Path(folder)), note)


def bound(engine: Engine, ref: str, settings: Settings) -> Bound:
    """`bind` for the caller's box named `ref`, looked up in `engine` (none: `ref` as it is)."""
    if looks_like_path(ref):
        return Bound(ref, settings)
    from devbox.box.spec import container_name

    return bind(engine.find(container_name(settings.owner, ref), settings.owner), ref, settings)


def repointed(old: Box | None, spec: ContainerSpec, cwd: Path) -> str | None:
    """What a rebuild re-pointed, to say so: a library profile's box rebuilt from another
    folder (its binds follow the current folder), or a box rebuilt from another project's
    profile given by path (`old`: the box before, in full view)."""
    if old is None:
        return None
    had, now = recorded_folder(old), spec.labels.get(labels.PROJECT)
    if had and now and had != now:
        # Rebuilt from another project's profile given by path: said, never silent.
        return f"box '{spec.box}' moved from project {had} to {now}: its binds are {now}'s now"
    if old.config is None:
        return None
    moved = drift.folder_moves(old.config, spec, str(cwd))
    if not moved:
        return None
    said = ", ".join(
        f"{target} now mounts {new} (the current folder), not {was}" for target, new, was, _ in moved
    )
    back = moved[0][3]
    return f"{said}: a library profile follows the folder devbox runs from; rebuild from {back} to go back"


def gone_hint(engine: Engine, ref: str, settings: Settings) -> str | None:
    """For a box name no profile answers to: the caller's box of that name records a project
    folder or profile file that is gone (moved, deleted); where it was, and what to do."""
    if looks_like_path(ref):
        return None
    from devbox.box.spec import container_name

    box = engine.find(container_name(settings.owner, ref), settings.owner)
    if box is None:
        return None
    with caller.rights(settings.caller):
        folder = recorded_folder(box)
        where = folder if folder and not files.is_folder(folder) else None
        where = where or (box.profile if box.profile and not files.is_file(box.profile) else None)
    if where is None:
        return None
    return (
        f"your box '{box.name}' was made from {where}, which is gone (moved?): run devbox up"
        f" {box.name} in the project's new folder (or give its profile's path), or devbox down {box.name}"
    )
