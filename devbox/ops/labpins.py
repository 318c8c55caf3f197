"""Lab mode's pins after they are made: their folders, what a box's label says of them, releasing them.

Each box's pins live in /run/devbox/binds/OWNER/BOX/GEN/ (root-only folders, GEN fresh per
container); the label `devbox.binds` records each pin with the caller's path. Releasing
unmounts first and only then removes the empty entries: nothing is ever deleted through a
mount. Used by ops/labbinds.py (making pins) and the verbs that remove boxes.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import secrets
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from devbox import mounts
from devbox.box.state import Box
from devbox.errors import DevboxError
from devbox.labmode import BINDS_DIR

BINDS_LABEL = "devbox.binds"  # [{"pin": PATH, "source": CALLER'S PATH, "ro": BOOL}, ...]
_GEN_RE = re.compile(r"^[0-9a-f]{12}$")


@contextlib.contextmanager
def _tree_locked() -> Iterator[None]:
    """Making a box's folders and removing empty ones, one process at a time.

    Without it `up` of box a and `down` of box b of one owner race: b's release removes the
    owner folder once empty, between a's making it and making a's folder in it (seen in CI).
    Only root makes or removes these folders; anyone else gets no lock and needs none.
    """
    try:
        fd = os.open(BINDS_DIR.parent / "binds.lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    except OSError:
        yield
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _root_folder(path: Path) -> None:
    """`path` made if missing, and checked: a root-owned folder no one else may enter."""
    with contextlib.suppress(FileExistsError):
        os.mkdir(path, 0o700)
    info = os.lstat(path)
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != 0 or info.st_mode & 0o077:
        raise DevboxError(
            f"{path} is not a root-only folder", f"as root: rm -r {path} (devbox makes it again)"
        )


def new_folder(owner: str, box: str, name: str | None = None) -> Path:
    """A GEN folder for one container's pins: a fresh one, or `name` (made if missing)."""
    BINDS_DIR.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
    with _tree_locked():
        for path in (BINDS_DIR, BINDS_DIR / owner, BINDS_DIR / owner / box):
            _root_folder(path)
        folder = BINDS_DIR / owner / box / (name or secrets.token_hex(6))
        try:
            os.mkdir(folder, 0o700)
        except FileExistsError:
            if name is None:
                raise
    return folder


def _remove_empty(paths: tuple[str | Path, ...]) -> None:
    """rmdir each in turn (a GEN, its box's, its owner's folder), stopping at the first not empty."""
    with _tree_locked():
        for path in paths:
            try:
                os.rmdir(path)
            except OSError:
                break


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
            and pin_folder(entry["pin"]) is not None
        ):
            return []
    return pins


def shown_sources(box_labels: dict[str, str]) -> dict[str, str]:
    """Pin path → the caller's path, to show people what they mounted (not /run/devbox/...)."""
    return {p["pin"]: p["source"] for p in pins_of(box_labels)}


def pin_folder(pin_path: str) -> str | None:
    """The GEN folder of a pin path BINDS_DIR/OWNER/BOX/GEN/I, or None for anything else."""
    path = Path(pin_path)
    if len(path.parts) != len(BINDS_DIR.parts) + 4 or path.parents[3] != BINDS_DIR:
        return None
    if not _GEN_RE.match(path.parent.name) or not path.name.isdecimal():
        return None
    if any(part in (".", "..") for part in path.parts) or str(path) != pin_path:
        return None
    return str(path.parent)


# --- releasing -----------------------------------------------------------------------------


def remove_entry(path: str) -> None:
    """Remove an unmounted pin: rmdir or unlink, never recursively (that would go through a mount)."""
    try:
        info = os.lstat(path)
        (os.rmdir if stat.S_ISDIR(info.st_mode) else os.unlink)(path)
    except OSError:
        pass  # still mounted (EBUSY) or gone: left as it is


def release_folder(folder: str) -> None:
    """Unmount and remove one GEN folder of pins (and the box's and owner's folders if empty)."""
    if pin_folder(f"{folder}/0") is None:
        return
    try:
        entries = os.listdir(folder)
    except OSError:
        return
    for name in entries:
        if mounts.unmount(f"{folder}/{name}"):
            remove_entry(f"{folder}/{name}")
    _remove_empty((folder, os.path.dirname(folder), os.path.dirname(os.path.dirname(folder))))


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
    _remove_empty((base, base.parent))


def _generations(box_labels: dict[str, str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(f for p in pins_of(box_labels) if (f := pin_folder(p["pin"]))))


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
