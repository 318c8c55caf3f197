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
import errno
import functools
import json
import os
import re
import secrets
import stat
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from devbox import caller as lab_caller
from devbox.box.resolved import Resolved
from devbox.box.state import Box
from devbox.errors import DevboxError, Origin, PolicyRefusal, Problem, Refused
from devbox.labmode import BINDS_DIR
from devbox.policy import enforce

BINDS_LABEL = "devbox.binds"  # [{"pin": PATH, "source": CALLER'S PATH, "ro": BOOL}, ...]
# Pins are never bound from inside (or above) devbox's own folder: a bind of a parent into
# its child multiplies mounts.
_OWN_DIR = str(BINDS_DIR.parent)
_GEN_RE = re.compile(r"^[0-9a-f]{12}$")

_MS_RDONLY, _MS_NOSUID, _MS_NODEV, _MS_NOEXEC = 1, 2, 4, 8
_MS_REMOUNT, _MS_NOSYMFOLLOW, _MS_NOATIME, _MS_NODIRATIME = 32, 256, 1024, 2048
_MS_BIND, _MS_REC, _MS_STRICTATIME = 4096, 16384, 1 << 24
_ST_NOSYMFOLLOW, _ST_RELATIME = 8192, 4096
_MNT_DETACH, _UMOUNT_NOFOLLOW = 2, 8


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


@functools.cache
def _libc() -> Any:
    import ctypes  # here: only pinning needs it, and `check` runs for `render` too

    libc = ctypes.CDLL(None, use_errno=True)
    libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_void_p]
    libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
    return libc


def _mount(source: str | None, target: str, flags: int) -> None:
    import ctypes

    if _libc().mount(source.encode() if source else None, target.encode(), None, flags, None) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code), target)


def _unmount(target: str) -> bool:
    """Detach whatever is mounted at `target` (stacked mounts too); False if something stays."""
    import ctypes

    libc = _libc()
    for _ in range(16):
        if libc.umount2(target.encode(), _MNT_DETACH | _UMOUNT_NOFOLLOW) != 0:
            return ctypes.get_errno() in (errno.EINVAL, errno.ENOENT)
    return False


def _root_folder(path: Path) -> None:
    """`path` made if missing, and checked: a root-owned folder no one else may enter."""
    with contextlib.suppress(FileExistsError):
        os.mkdir(path, 0o700)
    info = os.lstat(path)
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != 0 or info.st_mode & 0o077:
        raise DevboxError(
            f"{path} is not a root-only folder", f"as root: rm -r {path} (devbox makes it again)"
        )


def _folders(owner: str, box: str) -> Path:
    """BINDS_DIR/owner/box, made root-only."""
    BINDS_DIR.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
    for path in (BINDS_DIR, BINDS_DIR / owner, BINDS_DIR / owner / box):
        _root_folder(path)
    return BINDS_DIR / owner / box


def _new_folder(owner: str, box: str) -> Path:
    """A fresh GEN folder for one container's pins."""
    for attempt in range(3):
        folder = _folders(owner, box) / secrets.token_hex(6)
        try:
            os.mkdir(folder, 0o700)
            return folder
        except FileNotFoundError:  # another box's release took the empty owner folder just now
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def _bind(fd: int, target: str, folder: bool, readonly: bool) -> None:
    """Mount the inode of `fd` at `target` (made here), never set-uid or device files through it."""
    if folder:
        os.mkdir(target, 0o700)
    else:
        os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600))
    source = f"/proc/self/fd/{fd}"  # the kernel follows it to the checked inode, no path walk
    flags = os.statvfs(source).f_flag
    _mount(source, target, _MS_BIND | _MS_REC)
    # A bind remount sets the mount's flags outright: keep the source's, add nosuid and nodev.
    keep = _MS_NOEXEC if flags & os.ST_NOEXEC else 0
    keep |= _MS_NOSYMFOLLOW if flags & _ST_NOSYMFOLLOW else 0
    keep |= _MS_NODIRATIME if flags & os.ST_NODIRATIME else 0
    if flags & os.ST_NOATIME:
        keep |= _MS_NOATIME
    elif not flags & _ST_RELATIME:
        keep |= _MS_STRICTATIME
    if readonly or flags & os.ST_RDONLY:
        keep |= _MS_RDONLY
    _mount(None, target, _MS_REMOUNT | _MS_BIND | _MS_NOSUID | _MS_NODEV | keep)


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
        folder = _new_folder(spec.owner, spec.box)
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


def pins_of(box_labels: dict[str, str]) -> list[dict[str, Any]]:
    """The pins a box's label records (each checked to be devbox's own path); [] if none or garbled."""
    try:
        pins = json.loads(box_labels.get(BINDS_LABEL) or "[]")
    except ValueError:
        return []
    if not isinstance(pins, list):
        return []
    for entry in pins:
        if not (
            isinstance(entry, dict)
            and isinstance(entry.get("pin"), str)
            and isinstance(entry.get("source"), str)
            and _pin_folder(entry["pin"]) is not None
        ):
            return []
    return pins


def shown_sources(box_labels: dict[str, str]) -> dict[str, str]:
    """Pin path → the caller's path, to show people what they mounted (not /run/devbox/...)."""
    return {p["pin"]: p["source"] for p in pins_of(box_labels)}


def _pin_folder(pin_path: str) -> str | None:
    """The GEN folder of a pin path BINDS_DIR/OWNER/BOX/GEN/I, or None for anything else."""
    path = Path(pin_path)
    if len(path.parts) != len(BINDS_DIR.parts) + 4 or path.parents[3] != BINDS_DIR:
        return None
    if not _GEN_RE.match(path.parent.name) or not path.name.isdecimal():
        return None
    if any(part in (".", "..") for part in path.parts) or str(path) != pin_path:
        return None
    return str(path.parent)


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
    _folders(folder.parent.parent.name, folder.parent.name)
    with contextlib.suppress(FileExistsError):
        os.mkdir(folder, 0o700)
    if not _unmount(target):
        raise DevboxError(f"cannot unmount the old pin {target}", f"as root: umount -l {target}")
    _remove_entry(target)
    _bind(item.fd, target, item.folder, item.readonly)


# --- releasing -----------------------------------------------------------------------------


def _remove_entry(path: str) -> None:
    """Remove an unmounted pin: rmdir or unlink, never recursively (that would go through a mount)."""
    try:
        info = os.lstat(path)
        (os.rmdir if stat.S_ISDIR(info.st_mode) else os.unlink)(path)
    except OSError:
        pass  # still mounted (EBUSY) or gone: left as it is


def release_folder(folder: str) -> None:
    """Unmount and remove one GEN folder of pins (and the box's and owner's folders if empty)."""
    if _pin_folder(f"{folder}/0") is None:
        return
    try:
        entries = os.listdir(folder)
    except OSError:
        return
    for name in entries:
        if _unmount(f"{folder}/{name}"):
            _remove_entry(f"{folder}/{name}")
    for path in (folder, os.path.dirname(folder), os.path.dirname(os.path.dirname(folder))):
        try:
            os.rmdir(path)
        except OSError:
            break


def release(owner: str, box: str, keep: tuple[str, ...] = ()) -> None:
    """Unmount and remove the pins of `owner`'s box `box`, but for the GEN folders in `keep`.

    For `down`, a failed create and prune; idempotent, and a no-op where there is nothing
    (or nothing this process may see: outside lab mode, /run/devbox/binds is root's).
    """
    base = BINDS_DIR / owner / box
    try:
        generations = os.listdir(base)
    except OSError:
        return
    for name in generations:
        if str(base / name) not in keep:
            release_folder(str(base / name))
    for path in (base, base.parent):
        try:
            os.rmdir(path)
        except OSError:
            break


def _generations(box_labels: dict[str, str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(f for p in pins_of(box_labels) if (f := _pin_folder(p["pin"]))))


def folders_of(box: Box) -> tuple[str, ...]:
    """The GEN folders a box's pins live in."""
    return _generations(box.labels)


def unpin(box_labels: dict[str, str]) -> None:
    """Release the pins these labels record (a box's, or a spec's that never became one)."""
    for folder in _generations(box_labels):
        release_folder(folder)


def forget(box: Box) -> None:
    """Release the pins of a box just removed (only its own: a replacement has others)."""
    unpin(box.labels)
