"""Profile listing and checks: `devbox profiles` and `profiles --check` (no engine)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from devbox import caller
from devbox.errors import DevboxError, Problem
from devbox.ops.resolve import resolve
from devbox.profile import files, loader
from devbox.settings import Settings


@dataclass(frozen=True)
class ProfileStatus:
    """A profile file and whether it loads cleanly (under the policy in force)."""

    name: str
    path: str
    scope: str
    valid: bool
    shadowed_by: str | None = None
    problems: list[Problem] = field(default_factory=list)
    message: str = ""


def _status(ref: loader.ProfileRef, settings: Settings, shadowed_by: str | None) -> ProfileStatus:
    try:
        resolve(str(ref.path), settings)
    except DevboxError as exc:
        problems = getattr(exc, "problems", [])
        return ProfileStatus(ref.name, str(ref.path), ref.scope, False, shadowed_by, problems, exc.message)
    return ProfileStatus(ref.name, str(ref.path), ref.scope, True, shadowed_by)


def list_profiles(settings: Settings) -> list[ProfileStatus]:
    """Every profile devbox can find, in lookup order; later ones of a name are shadowed."""
    winners: dict[str, str] = {}
    result = []
    with caller.rights(settings.caller):  # lab mode: only the folders the caller may list
        refs = list(loader.discover(settings))
    for ref in refs:
        shadowed_by = winners.get(ref.name)
        winners.setdefault(ref.name, str(ref.path))
        result.append(_status(ref, settings, shadowed_by))
    return result


def check_profiles(paths: list[Path], settings: Settings) -> list[ProfileStatus]:
    """Validate profile files (and the policy they must satisfy), as an admin's CI would."""
    result = []
    for path in paths:
        absolute = path if path.is_absolute() else settings.cwd / path
        with caller.rights(settings.caller):  # lab mode: whether it exists is the caller's to see
            found = files.is_file(str(absolute))  # never raises: a 300-byte name is "no file" too
            real = absolute.resolve() if found else absolute
        if not found:
            result.append(ProfileStatus(path.name, str(path), "path", False, message=f"no file {path}"))
            continue
        ref = loader.ProfileRef(absolute.stem, real, "path")
        result.append(_status(ref, settings, None))
    return result
