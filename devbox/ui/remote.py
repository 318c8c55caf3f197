"""What other servers answered, for people: the devbox JSON of a remote box drawn as the
local panel, and the `--all-hosts` and `devbox hosts` tables with a HOST column.

The server sends its --json (ui/json.py's shapes); these functions read it back into the
result types the local views draw (Box, BoxReport, DownResult), so a remote box looks like a
local one, plus where it is and how to reach it from here: ports stay on the server's
127.0.0.1, so the Jupyter line is followed by `devbox tunnel NAME`. Tables use no rich.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from devbox.box.state import Box, MountInfo, Published
from devbox.ui import plain

if TYPE_CHECKING:
    from rich.console import Console

    from devbox.access.reports import BoxReport
    from devbox.ops.fanout import Outcome
    from devbox.ops.lifecycle import DownResult


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def box_from_json(data: dict[str, Any]) -> Box:
    """A Box from a box object of devbox's JSON (ls, up, info, a GPU's holder)."""
    ports = data.get("ports") or {}
    volumes = data.get("volumes") or []
    return Box(
        id=str(data.get("id", "")),
        container=str(data.get("container", "")),
        name=str(data.get("name", "")),
        owner=str(data.get("owner", "")),
        profile=str(data.get("profile", "")),
        image=str(data.get("image", "")),
        status=str(data.get("status", "")),
        status_text=str(data.get("uptime", "")),
        created=float(data.get("created") or 0),
        spec_hash="",
        gpus=tuple(str(g) for g in data.get("gpus") or []),
        ports=tuple(
            Published(str(name), int(p.get("container") or 0), _int(p.get("host_port")), p.get("address"))
            for name, p in ports.items()
            if isinstance(p, dict)
        ),
        mounts=tuple(
            MountInfo(str(v.get("type")), str(v.get("source")), str(v.get("target")), bool(v.get("readonly")))
            for v in volumes
            if isinstance(v, dict)
        ),
        started_at=_int(data.get("started")),
        labels={f"devbox.image.{k}": str(v) for k, v in (data.get("inside") or {}).items()},
        shm_size=_int(data.get("shm_size")),
        memory=_int(data.get("memory")),
        nano_cpus=_int(data.get("nano_cpus")),
        pids_limit=_int(data.get("pids_limit")),
    )


def _report(data: dict[str, Any]) -> BoxReport:
    from devbox.access.reports import BoxReport

    return BoxReport(box_from_json(data), str(data.get("action", "")))


def login_lines(data: dict[str, Any]) -> list[tuple[str, str]]:
    """(label, value) lines under the panel of a box on another server: how to reach it from here."""
    name = str(data.get("name", ""))
    lines: list[tuple[str, str]] = []
    jupyter, ssh = data.get("jupyter"), data.get("ssh")
    ports = [p for p in (data.get("ports") or {}) if p not in ("ssh",)]
    if isinstance(jupyter, dict):
        lines.append(("Jupyter", f"{jupyter.get('url')}  (on the server)"))
    if ports:
        lines.append(("tunnel", f"devbox tunnel {name}"))
    if isinstance(ssh, dict):
        password = f"   (password: {ssh['password']})" if ssh.get("password") else ""
        lines.append(("SSH", f"devbox ssh {name}{password}"))
    lines += [(str(k), str(v)) for k, v in (data.get("credentials") or {}).items()]
    return lines


def report_panel(out: Console, err: Console, data: dict[str, Any], host: str) -> None:
    """The `up`/`info`/`rebuild` panel of a box on `host`, from its JSON; warnings on stderr."""
    from rich.markup import escape

    from devbox.ui import panels

    panels.report_panel(out, err, _report(data), where=host)
    for label, value in login_lines(data):
        out.print(f"  [bold]{escape(label):<8}[/] {escape(value)}", soft_wrap=True, highlight=False)
    changes = [str(c) for c in data.get("changes") or []]
    for change in changes:
        err.print(f"[yellow]changed:[/] {escape(change)}")
    if changes:
        name = escape(str(data.get("name")))
        err.print(f"[yellow]the profile changed since this box was made: devbox rebuild {name}[/]")
    for warning in data.get("warnings") or []:
        err.print(f"[yellow]warning:[/] {escape(str(warning))}")


def down_result(data: dict[str, Any]) -> DownResult:
    """`down --json` read back."""
    from devbox.ops.lifecycle import DownResult

    return DownResult(
        container=str(data.get("container", "")),
        removed=bool(data.get("removed")),
        volumes_removed=tuple(str(v) for v in data.get("volumes_removed") or []),
        volumes_kept=tuple(str(v) for v in data.get("volumes_kept") or []),
        volumes_in_use=tuple(
            (str(v.get("name")), tuple(str(u) for u in v.get("used_by") or []))
            for v in data.get("volumes_in_use") or []
            if isinstance(v, dict)
        ),
    )


def failure(outcome: Outcome[Any]) -> str:
    """A host's row when it gave no answer: its error's kind and message."""
    error = outcome.error
    if error is None:
        return ""
    message = error.message.removeprefix(f"{outcome.host.name}: ")
    return f"{error.kind}: {message}"


def ls_table(outcomes: list[Outcome[Any]], show_owner: bool, bold_header: bool) -> str | None:
    """`ls --all-hosts`: every host's boxes, a host that failed as one row; None when nothing to show."""
    header = plain.box_rows([], show_owner)[0]
    rows: list[tuple[str, list[str] | str]] = []
    for outcome in outcomes:
        if outcome.error is not None:
            rows.append((outcome.host.name, failure(outcome)))
            continue
        boxes = [box_from_json(b) for b in outcome.value or [] if isinstance(b, dict)]
        rows += [(outcome.host.name, cells) for cells in plain.box_rows(boxes, show_owner)[1:]]
    return plain.host_table(header, rows, bold_header) if rows else None


def _shown(value: Any, unit: str = "") -> str:
    return "n/a" if value is None else f"{value}{unit}"  # [N/A] is unknown, never 0


def gpu_cells(row: dict[str, Any]) -> list[str]:
    """One GPU of `gpus --json` as the `gpus` table's cells."""
    from devbox.placement.gpus import Busy, describe_holder

    holder = row.get("holder")
    busy = row.get("busy_outside")
    said = [describe_holder(box_from_json(holder))] if isinstance(holder, dict) else []
    if isinstance(busy, dict):
        use = Busy(int(busy.get("processes") or 0), busy.get("memory_used_mib"))
        said.append(f"busy (outside devbox): {use.describe()}")
    return [
        str(row.get("index")),
        str(row.get("model")),
        f"{_shown(row.get('memory_used_mib'))}/{_shown(row.get('memory_total_mib'))} MiB",
        _shown(row.get("utilization"), "%"),
        "; ".join(said) or "free",
        "declared" if row.get("declared") else "real",
    ]


GPU_HEADER = ["GPU", "NAME", "MEMORY", "UTIL", "HOLDER", "KIND"]


def gpus_table(outcomes: list[Outcome[Any]], bold_header: bool) -> str:
    """`gpus --all-hosts`: every host's GPUs, a host that failed as one row."""
    rows: list[tuple[str, list[str] | str]] = []
    for outcome in outcomes:
        if outcome.error is not None:
            rows.append((outcome.host.name, failure(outcome)))
        elif not outcome.value:
            rows.append((outcome.host.name, "no GPUs known there"))
        else:
            rows += [(outcome.host.name, gpu_cells(r)) for r in outcome.value if isinstance(r, dict)]
    return plain.host_table(GPU_HEADER, rows, bold_header)


def hosts_table(items: list[dict[str, Any]], bold_header: bool) -> str:
    """`devbox hosts`: one row per host (HostJson objects)."""
    rows: list[tuple[str, list[str] | str]] = []
    for item in items:
        total, free = item.get("gpus_total"), item.get("gpus_free")
        error = item.get("error")
        status = "ok" if error is None else f"{error.get('kind')}: {error.get('message')}"
        where = item.get("target") or "this machine"
        if item.get("port") is not None:
            where += f":{item['port']}"
        if item.get("kind") == "slurm":
            where = f"Slurm via {where}"
        rows.append(
            (
                str(item.get("host")),
                [
                    where,
                    str(item.get("version") or "-"),
                    f"{free}/{total}" if total is not None and free is not None else "-",
                    status,
                ],
            )
        )
    return plain.host_table(["TARGET", "DEVBOX", "GPUS FREE", "STATUS"], rows, bold_header)
