"""`devbox env`: a box's conda environments as JSON, and as a table read from that JSON.

The table is drawn from the JSON shape, so a box on another server (its devbox answers
`env NAME --json`) looks the same as a local one.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from devbox.profile.files import shown
from devbox.ui.to_json import iso

if TYPE_CHECKING:
    from devbox.ops.condaenvs import EnvState
    from devbox.ui.json import EnvironmentJson, EnvironmentsJson


def to_json(box: str, states: list[EnvState]) -> EnvironmentsJson:
    """The `devbox env --json` document of `box`."""
    rows: list[EnvironmentJson] = [
        {
            "environment": s.name,
            "file": s.file,
            "hash": s.hash,
            "updated": int(s.updated) if s.updated is not None else None,
            "updated_iso": iso(s.updated),
            "status": s.status,
            "message": s.message,
            "installer": s.installer,
            "prefix": s.prefix,
            "kernel": s.kernel,
        }
        for s in states
    ]
    return {"name": box, "environments": rows}


def _ago(epoch: int | None, now: float) -> str:
    if epoch is None:
        return "-"
    seconds = max(0, int(now - epoch))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit} ago"
    return f"{seconds}s ago"


def table(data: EnvironmentsJson, now: float | None = None) -> str:
    """The environments as a plain table; a failed one's message under its row."""
    rows = data["environments"]
    if not rows:
        box = shown(data["name"])
        return f"box '{box}' has no environments (profile key environments:, devbox help environments)"
    now = time.time() if now is None else now
    head = ("ENVIRONMENT", "STATUS", "UPDATED", "HASH", "FILE")
    # Every text is escaped (files.shown): the records come from a volume the box's user
    # writes, and a crafted one must not move the cursor or retitle the terminal.
    cells = [
        (
            shown(r["environment"], 64),
            shown(r["status"], 16),
            _ago(r["updated"], now),
            shown(r["hash"] or "-", 64),
            shown(r["file"] or "-", 4096),
        )
        for r in rows
    ]
    widths = [max(len(str(c[i])) for c in [head, *cells]) for i in range(len(head) - 1)]
    lines = []
    for row, cell in zip([None, *rows], [head, *cells], strict=True):
        lines.append("  ".join(f"{v:<{widths[i]}}" for i, v in enumerate(cell[:-1])) + "  " + cell[-1])
        if row is not None and row["message"]:
            lines += [f"    {shown(line, 4096)}" for line in row["message"].splitlines()]
    return "\n".join(lines)
