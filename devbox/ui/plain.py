"""`devbox ls` output without rich: a plain aligned table (its JSON is in ui/json.py).

Kept free of rich and typer so `devbox ls` starts in a few tens of milliseconds.
"""

from __future__ import annotations

import os

from devbox.box.state import Box
from devbox.settings import bundled_profiles_dir


def short_path(path: str) -> str:
    """A profile path as people read it: bundled:NAME, ~/..., or as is."""
    bundled = str(bundled_profiles_dir())
    if path.startswith(bundled + "/"):
        return "bundled:" + path[len(bundled) + 1 :]
    home = os.path.expanduser("~")
    return "~" + path[len(home) :] if home != "/" and path.startswith(home + "/") else path


def _uptime(box: Box) -> str:
    return box.status_text[3:] if box.running and box.status_text.startswith("Up ") else "-"


def box_rows(found: list[Box], show_owner: bool) -> list[list[str]]:
    """The `ls` table as rows of cells, header first."""
    header = [
        "NAME",
        *(["OWNER"] if show_owner else []),
        "STATUS",
        "UPTIME",
        "IMAGE",
        "GPUS",
        "PORTS",
        "PROFILE",
    ]
    rows = [header]
    for box in found:
        ports = " ".join(f"{p.name}:{p.host}" for p in box.ports if p.host) or "-"
        rows.append(
            [
                box.name,
                *([box.owner] if show_owner else []),
                box.status,
                _uptime(box),
                box.image,
                ",".join(box.gpus) or "-",
                ports,
                short_path(box.profile),
            ]
        )
    return rows


def table(rows: list[list[str]], bold_header: bool) -> str:
    """Rows as left-aligned columns, two spaces apart."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows
    ]
    if bold_header:
        lines[0] = f"\x1b[1m{lines[0]}\x1b[0m"
    return "\n".join(lines)


def host_table(header: list[str], rows: list[tuple[str, list[str] | str]], bold_header: bool) -> str:
    """A table with a HOST column first (`--all-hosts`), rows in the order given: each is
    (host, cells), or (host, text) for a host without rows, its text across the other columns."""
    width = max(len(host) for host in ["HOST", *(host for host, _ in rows)])
    cells = [["HOST".ljust(width), *header]]
    cells += [[host.ljust(width), *row] for host, row in rows if not isinstance(row, str)]
    drawn = iter(table(cells, bold_header).split("\n"))
    out = [next(drawn)]
    for host, row in rows:
        out.append(f"{host.ljust(width)}  {row}".rstrip() if isinstance(row, str) else next(drawn))
    return "\n".join(out)


def empty_message(show_owner: bool) -> str:
    """What `ls` says when there is nothing to list."""
    if show_owner:
        return "no boxes on this engine"
    return "no boxes (of yours); `devbox up` starts one, `devbox ls --all` shows everyone's"
