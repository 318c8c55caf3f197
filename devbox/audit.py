"""Lab mode's audit trail: what each command did, one JSON line each, in a root-owned log.

The verbs `note` what they touched (box, owner, GPUs) as they go; the lab helper writes
one line when the command ends, whatever the outcome (allowed, refused and why, failed).
Outside lab mode notes are collected and never written.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

_notes: dict[str, Any] = {}
_before_exec: list[Callable[[int], None]] = []


def note(**fields: Any) -> None:
    """Remember facts about this command for its audit line (later notes win)."""
    _notes.update({k: v for k, v in fields.items() if v is not None})


def notes() -> dict[str, Any]:
    """What has been noted so far."""
    return dict(_notes)


def at_exec(action: Callable[[int], None]) -> None:
    """Run `action(exit status)` if this process is about to be replaced by another program (ssh,
    docker exec) or to end at once (a closed stdout), skipping the usual way out."""
    _before_exec.append(action)


def exec_now(status: int = 0) -> None:
    """Called just before an exec or an abrupt end: the audit line must be written while we still can."""
    while _before_exec:
        _before_exec.pop(0)(status)


def line(**fields: Any) -> str:
    """One audit record as a JSON line: time first, then the fields, then the notes."""
    record = {"time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **fields, **notes()}
    return json.dumps(record, sort_keys=False, default=str) + "\n"


def append(path: Path, text: str) -> None:
    """Append `text` to the log at `path` (root-only folder 0700, file 0600), in one write.

    O_APPEND makes concurrent writers' lines whole; O_NOFOLLOW refuses a planted symlink.
    """
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, text.encode("utf-8", "replace"))
    finally:
        os.close(fd)
