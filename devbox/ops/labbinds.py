"""Lab mode's bind mounts: each source opened as the caller, checked, then pinned where the engine looks.

devbox runs as root in lab mode (docs/lab.md) and the engine follows paths as root: a bind
source given by path would be resolved by the engine later, as root, through whatever
symlinks the caller planted meanwhile. So each source is opened once (O_PATH) with the
caller's rights, symlinks resolved as they see them; that descriptor is checked (a folder or
a regular file they may read, and write unless `:ro`; its real path under their home, the
project folder or an `allowed_mounts` root, and not forbidden), and then bind-mounted onto
`/run/devbox/binds/OWNER/BOX/GEN/I` (root-only folders). The engine is given that path: what
it mounts is the inode that was checked, whatever happens to the caller's path afterwards.

GEN is fresh for every container, so a replacement box never touches the pins of the box it
replaces (which runs again if the new one fails). The label `devbox.binds` records each pin
with the caller's path, for display and to pin again when a stopped box starts.

A missing source is made as the caller (where Docker would make it as root), only when every
bind passed its checks and the folder it goes in is one they may write and may mount from.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from devbox import caller as lab_caller
from devbox import mounts
from devbox.box.resolved import Resolved
from devbox.box.state import Box
from devbox.errors import DevboxError, Origin, PolicyRefusal, Problem, Refused
from devbox.labmode import BINDS_DIR
from devbox.ops.labpins import (  # re-exported: the verbs release pins through this module
    BINDS_LABEL,
    folders_of,
    forget,
    new_folder,
    pins_of,
    release,
    release_folder,
    remove_entry,
    shown_sources,
    unpin,
)
from devbox.policy import enforce

__all__ = [
    "BINDS_LABEL",
    "Checked",
    "check",
    "close",
    "folders_of",
    "forget",
    "pin",
    "pins_of",
    "release",
    "release_folder",
    "repin",
    "shown_sources",
    "unpin",
    "verify",
]

# Pins are never bound from inside (or above) devbox's own folder: a bind of a parent into
# its child multiplies mounts.
_OWN_DIR = str(BINDS_DIR.parent)


@dataclass(frozen=True)
class Checked:
    """A bind source that passed: the descriptor pinning it (None: missing, `pin` makes it)."""

    index: int  # its place in the spec's mounts
    source: str  # the caller's path, as the profile gives it
    real: str  # where it leads, as the caller sees it
    readonly: bool
    fd: int | None
    folder: bool  # a folder (a missing source becomes one), else a regular file


class _Refusal(Exception):
    """Why one source is refused (becomes a located Problem)."""


@dataclass(frozen=True)
class _Rules:
    roots: tuple[str, ...]
    forbidden: tuple[str, ...]
    home: str


def _rules(resolved: Resolved) -> _Rules:
    """Where the caller's binds may come from: their home, the project folder, allowed_mounts.

    The project folder (a project profile's, else the working folder) counts only when the
    caller owns it: devbox run from /usr or / must not make /usr or / theirs to mount.
    """
    settings, policy = resolved.settings, resolved.policy
    who = settings.caller
    assert who is not None
    profile_dir = Path(resolved.profile.path).parent
    project = profile_dir.parent if profile_dir.name == ".devbox" else settings.cwd
    roots: list[str] = []
    with lab_caller.rights(who):
        home = os.path.realpath(who.home)
        roots.append(home)
        with contextlib.suppress(OSError):
            real = os.path.realpath(project, strict=True)
            if os.stat(real).st_uid == who.uid:
                roots.append(real)
    roots += [os.path.realpath(root) for root in policy.allowed_mounts]
    return _Rules(
        tuple(r for r in dict.fromkeys(roots) if r != "/"), (*policy.forbidden_mounts, _OWN_DIR), home
    )


def _shown(path: str, home: str) -> str:
    return "~" + path[len(home) :] if path == home or path.startswith(home + "/") else path


def _leads(source: str, real: str, rules: _Rules) -> str:
    """The profile's entry and where it leads, as refusals name them: `~/sock → /run/docker.sock`."""
    entry = _shown(source, rules.home)
    return entry if real == source else f"{entry} → {real}"


def _place(real: str, rules: _Rules, source: str) -> None:
    """Refuse a real path outside the caller's roots, or one that exposes a forbidden path."""
    leads = _leads(source, real, rules)
    if not any(real == root or real.startswith(root.rstrip("/") + "/") for root in rules.roots):
        raise _Refusal(f"{leads} is outside your home, the project folder and the policy's allowed_mounts")
    for forbidden in rules.forbidden:
        if enforce.mount_is_forbidden(real, forbidden):
            raise _Refusal(f"{leads} exposes {forbidden}, which may not be mounted")


def _real(fd: int) -> str:
    real = os.readlink(f"/proc/self/fd/{fd}")
    if not real.startswith("/") or real.endswith(" (deleted)"):
        raise _Refusal(f"it leads to {real}, which is not a path on this host")
    return real


def _inspect(fd: int, rules: _Rules, source: str) -> tuple[str, bool]:
    """(real path, is a folder) of the open source `fd`, or _Refusal: where it is, what it is."""
    real = _real(fd)
    _place(real, rules, source)
    mode = os.fstat(fd).st_mode
    if not (stat.S_ISDIR(mode) or stat.S_ISREG(mode)):
        kind = "no folder or file"
        if stat.S_ISSOCK(mode):
            kind = "a socket"
        elif stat.S_ISBLK(mode) or stat.S_ISCHR(mode):
            kind = "a device"
        raise _Refusal(f"{_leads(source, real, rules)} is {kind}: only folders and files may be mounted")
    return real, stat.S_ISDIR(mode)


def _access(fd: int, folder: bool, readonly: bool, real: str) -> None:
    """Under the caller's rights: may they read (and write, unless read-only) what `fd` is."""
    want = os.R_OK | (os.X_OK if folder else 0)
    if not os.access(f"/proc/self/fd/{fd}", want, effective_ids=True):
        raise _Refusal(f"you cannot read {real}")
    if not readonly and not os.access(f"/proc/self/fd/{fd}", os.W_OK, effective_ids=True):
        raise _Refusal(f"you cannot write to {real}: mount it read-only (add :ro)")


def _open(path: str) -> int:
    try:
        return os.open(path, os.O_PATH | os.O_CLOEXEC)
    except PermissionError:
        raise _Refusal(f"you cannot reach {path}: permission denied on the way") from None


def _check_one(resolved: Resolved, rules: _Rules, index: int, source: str, readonly: bool) -> Checked:
    """One source, opened and judged as the caller; a missing one by the folder it would go in."""
    who = resolved.settings.caller
    entry = _shown(source, rules.home)
    fd = None
    try:
        with lab_caller.rights(who):
            try:
                fd = _open(source)
            except (FileNotFoundError, NotADirectoryError):
                return _check_missing(resolved, rules, index, source, readonly)
            except OSError as exc:
                raise _Refusal(f"{entry}: {exc.strerror or exc}") from None
        real, folder = _inspect(fd, rules, source)
        with lab_caller.rights(who):
            _access(fd, folder, readonly, real)
        return Checked(index, source, real, readonly, fd, folder)
    except BaseException:
        if fd is not None:
            os.close(fd)
        raise


def _check_missing(resolved: Resolved, rules: _Rules, index: int, source: str, readonly: bool) -> Checked:
    """A missing source: the nearest folder above it must be one the caller may write and mount from."""
    entry = _shown(source, rules.home)
    above, tail = os.path.dirname(source), [os.path.basename(source)]
    while True:
        try:
            fd = os.open(above, os.O_PATH | os.O_CLOEXEC)  # still under the caller's rights
            break
        except (FileNotFoundError, NotADirectoryError):
            tail.insert(0, os.path.basename(above))
            above = os.path.dirname(above)
        except OSError as exc:
            raise _Refusal(f"{entry}: {exc.strerror or exc}") from None
    try:
        if not stat.S_ISDIR(os.fstat(fd).st_mode):
            raise _Refusal(f"{entry} does not exist, and {above} is no folder to make it in")
        real = os.path.join(_real(fd), *tail)
        _place(real, rules, source)
        if not os.access(f"/proc/self/fd/{fd}", os.W_OK | os.X_OK, effective_ids=True):
            raise _Refusal(f"{entry} does not exist, and you cannot make it in {above}")
    finally:
        os.close(fd)
    return Checked(index, source, real, readonly, None, True)


def _binds(resolved: Resolved) -> list[tuple[int, str, bool, Origin]]:
    volumes = resolved.profile.volumes
    return [
        (i, m.source, m.readonly, volumes[i].origin if i < len(volumes) else Origin(resolved.profile.path))
        for i, m in enumerate(resolved.spec.mounts)
        if m.type == "bind"
    ]


def _judge(resolved: Resolved, wanted: list[tuple[int, str, bool, Origin]]) -> list[Checked]:
    """Every source checked; PolicyRefusal naming each refused one (nothing is kept open then)."""
    rules = _rules(resolved)
    checked: list[Checked] = []
    problems: list[Problem] = []
    for index, source, readonly, origin in wanted:
        try:
            checked.append(_check_one(resolved, rules, index, source, readonly))
        except _Refusal as exc:
            problems.append(Problem(origin, str(exc), "mount a folder of yours, or ask your lab admin"))
        except BaseException:
            close(checked)
            raise
    if problems:
        close(checked)
        count = f"{len(problems)} bind mount" + ("s" if len(problems) > 1 else "")
        raise PolicyRefusal(
            f"lab mode refuses {count} of profile '{resolved.profile.name}'", problems, resolved.policy.source
        )
    return checked


def check(resolved: Resolved) -> list[Checked]:
    """In lab mode, every bind source of the spec opened and checked as the caller (else []).

    No side effect: nothing is made or mounted. The caller must `close` (or `pin`) the result.
    """
    if not resolved.settings.lab:
        return []
    return _judge(resolved, _binds(resolved))


def close(checked: list[Checked]) -> None:
    """Close the descriptors `check` opened."""
    for item in checked:
        if item.fd is not None:
            with contextlib.suppress(OSError):
                os.close(item.fd)


def verify(resolved: Resolved) -> None:
    """`check` for a dry run (`devbox render`): refuse what `up` would refuse, keep nothing open."""
    close(check(resolved))


# --- pinning -------------------------------------------------------------------------------


def _made(resolved: Resolved, item: Checked) -> Checked:
    """A missing source made as the caller, then opened and checked like any other."""
    rules = _rules(resolved)
    with lab_caller.rights(resolved.settings.caller):
        try:
            os.makedirs(item.source, exist_ok=True)
        except OSError as exc:
            raise _Refusal(f"cannot make {_shown(item.source, rules.home)}: {exc.strerror or exc}") from None
    return _check_one(resolved, rules, item.index, item.source, item.readonly)


def _mount_each(resolved: Resolved, checked: list[Checked], target_of: Callable[[Checked], str]) -> None:
    """Mount each checked source at `target_of(item)`; missing ones are made first.

    The descriptors of `checked` stay open (whoever checked closes them); those opened
    here for a source made just now are closed here.
    """
    for item in checked:
        made = None
        try:
            if item.fd is None:
                made = _made(resolved, item)
            current = made or item
            assert current.fd is not None
            _replace_pin(current, target_of(item))
        except _Refusal as exc:
            origin = Origin(resolved.profile.path)
            raise PolicyRefusal(str(exc), [Problem(origin, str(exc))], resolved.policy.source) from None
        except OSError as exc:
            raise DevboxError(
                f"cannot pin the bind mount {item.source}: {exc.strerror or exc}",
                "lab mode mounts through the root helper; is devbox running through sudo?",
            ) from None
        finally:
            if made is not None:
                close([made])


def pin(resolved: Resolved, checked: list[Checked]) -> Resolved:
    """Mount each checked source on a fresh pin folder; the spec then names the pins.

    The spec hash stays that of the caller's paths (as with the GPUs placement picks), and
    the label `devbox.binds` records them. Closes every descriptor of `checked`; on any
    failure nothing stays mounted.
    """
    try:
        if not checked:
            return resolved
        spec = resolved.spec
        folder = new_folder(spec.owner, spec.box)
        try:
            _mount_each(resolved, checked, lambda item: str(folder / str(item.index)))
        except BaseException:
            release_folder(str(folder))
            raise
    finally:
        close(checked)
    pins: list[dict[str, Any]] = [
        {"pin": str(folder / str(c.index)), "source": c.source, "ro": c.readonly} for c in checked
    ]
    mounts = list(spec.mounts)
    for item, entry in zip(checked, pins, strict=True):
        mounts[item.index] = replace(mounts[item.index], source=entry["pin"])
    labels = {**spec.labels, BINDS_LABEL: json.dumps(pins)}
    return replace(resolved, spec=replace(spec, mounts=tuple(mounts), labels=labels))


def repin(resolved: Resolved, box: Box) -> None:
    """Before a stopped box starts: check its sources again as the caller and pin them anew.

    Its container names the pins it was made with; after a reboot (/run is emptied) or a
    folder moved since, they are mounted again from what the caller's paths lead to now.
    """
    if not resolved.settings.lab:
        return
    pins = pins_of(box.labels)
    expected = f"{BINDS_DIR}/{resolved.spec.owner}/{box.name}/"
    if any(not p["pin"].startswith(expected) for p in pins) or (
        not pins and any(m.type == "bind" for m in box.mounts)
    ):
        raise Refused(
            f"box '{box.name}' was not made in lab mode: its bind mounts were never checked",
            f"devbox up --recreate {resolved.profile.path} makes it anew, checked",
        )
    origins = {v.source: v.origin for v in resolved.profile.volumes}
    wanted = [
        (i, p["source"], bool(p.get("ro")), origins.get(p["source"], Origin(resolved.profile.path)))
        for i, p in enumerate(pins)
    ]
    checked = _judge(resolved, wanted)
    try:
        _mount_each(resolved, checked, lambda item: pins[item.index]["pin"])
    finally:
        close(checked)


def _replace_pin(item: Checked, target: str) -> None:
    """Mount `item` at `target`, keeping a mount there of the very same inode (a running box's)."""
    assert item.fd is not None
    with contextlib.suppress(OSError):
        now, want = os.stat(target), os.fstat(item.fd)
        if (now.st_dev, now.st_ino) == (want.st_dev, want.st_ino):
            return
    folder = Path(target).parent
    new_folder(folder.parent.parent.name, folder.parent.name, folder.name)
    if not mounts.unmount(target):
        raise DevboxError(f"cannot unmount the old pin {target}", f"as root: umount -l {target}")
    remove_entry(target)
    mounts.bind(item.fd, target, item.folder, item.readonly)
