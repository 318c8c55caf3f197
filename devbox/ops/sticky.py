"""Which host each of your remote boxes lives on: ~/.config/devbox/boxes.yaml (mode 0600).

A box's named volumes live on one server, so once `up --host` made it there, later commands
without --host go there too. The client writes the record after a remote `up` succeeds and
drops it on `down`; a box not recorded is local. One `box: host` line each (a YAML mapping,
read here without a YAML parser); concurrent clients of one user take a lock and replace the
file whole, so no update is lost and no reader sees half a file.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from devbox.settings import Settings

BOXES_FILE = "boxes.yaml"
_LINE_RE = re.compile(r"^([a-zA-Z0-9][a-zA-Z0-9_.-]*):\s*([a-zA-Z0-9][a-zA-Z0-9_.-]*)\s*$")
_HEADER = "# devbox: the host each of your remote boxes lives on (written by devbox up/down)\n"


def path(settings: Settings) -> Path:
    """The record file."""
    return settings.user_config_dir / BOXES_FILE


def _read(file: Path) -> dict[str, str]:
    try:
        text = file.read_text(encoding="utf-8", errors="replace")
    except (FileNotFoundError, NotADirectoryError):
        return {}
    except OSError:
        return {}  # unreadable: as if nothing were recorded (boxes are then local)
    found = {}
    for line in text.splitlines():
        match = _LINE_RE.match(line)
        if match:
            found[match[1]] = match[2]
    return found


def recorded(settings: Settings) -> dict[str, str]:
    """Every recorded box → host."""
    return _read(path(settings))


def host_of(settings: Settings, box: str) -> str | None:
    """The host `box` was made on, or None (a local box, or one devbox never made remotely).

    `box` may be a profile's path (`up ./exp1.yaml`): its box is named after the file.
    """
    file = path(settings)
    if not file.exists():  # the common case: one stat, nothing read
        return None
    if "/" in box or box.endswith((".yaml", ".yml")):
        box = os.path.splitext(os.path.basename(box))[0]
    return _read(file).get(box)


def _update(settings: Settings, box: str, host: str | None) -> None:
    import fcntl

    file = path(settings)
    if host is None and not file.exists():
        return
    file.parent.mkdir(parents=True, exist_ok=True)
    lock_fd = os.open(str(file) + ".lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(lock_fd, fcntl.LOCK_EX)
        found = _read(file)
        if host is None:
            if found.pop(box, None) is None:
                return
        else:
            if found.get(box) == host:
                return
            found[box] = host
        temp = file.with_name(f".{BOXES_FILE}.{os.getpid()}")
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(_HEADER + "".join(f"{name}: {where}\n" for name, where in sorted(found.items())))
        os.replace(temp, file)
    finally:
        os.close(lock_fd)  # releases the lock


def remember(settings: Settings, box: str, host: str) -> None:
    """Record that `box` lives on `host` (after a remote `up` succeeded)."""
    _update(settings, box, host)


def forget(settings: Settings, box: str) -> None:
    """Drop `box`'s record (after `down`, or an `up` here)."""
    _update(settings, box, None)
