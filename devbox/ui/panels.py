"""How boxes look to people: the `up`/`info` panel and the `down` summary (JSON: ui/json.py)."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table

from devbox import sizes
from devbox.access.reports import BoxReport
from devbox.box import drift
from devbox.box.state import Box
from devbox.ops.lifecycle import DownResult

_ACTIONS = {
    "created": "created",
    "started": "started again",
    "running": "already running",
    "recreated": "recreated",
    "rebuilt": "rebuilt",
}


def _quota(box: Box) -> str:
    parts = [
        f"shm {sizes.format_size(box.shm_size)}" if box.shm_size else "shm 64m (Docker default)",
        f"memory {sizes.format_size(box.memory)}" if box.memory else "memory unlimited",
        f"cpus {box.nano_cpus / 1e9:g}" if box.nano_cpus else "cpus unlimited",
        f"pids {box.pids_limit}" if box.pids_limit and box.pids_limit > 0 else "pids unlimited",
    ]
    return "  ".join(parts)


def report_panel(out: Console, err: Console, result: BoxReport, where: str | None = None) -> None:
    """The panel `up`, `info` and `rebuild` print, warnings on stderr; `where`: the host of a
    box on another server (ui/remote.py), named in the title."""
    box = result.box
    rows = Table.grid(padding=(0, 2))
    rows.add_column(style="bold")
    rows.add_column()
    rows.add_row("status", f"{box.status} ({_ACTIONS.get(result.action, result.action)})")
    inside = ", ".join(f"{k} {v}" for k, v in box.inside.items())
    rows.add_row("image", escape(box.image) + (f"  [dim]({escape(inside)})[/]" if inside else ""))
    rows.add_row("gpus", ", ".join(box.gpus) or "none")
    rows.add_row("quotas", _quota(box))
    for port in box.ports:
        if port.name not in ("jupyter", "ssh") and port.host:
            rows.add_row(escape(port.name), f"{port.address}:{port.host} → {port.container}")
    for i, mount in enumerate(box.mounts):
        flag = " (read-only)" if mount.readonly else ""
        rows.add_row("volumes" if i == 0 else "", f"{escape(mount.source)} → {escape(mount.target)}{flag}")
    title = f"[bold]{escape(box.owner)}/{escape(box.name)}[/]" + (f" on {escape(where)}" if where else "")
    out.print(Panel(rows, title=title, title_align="left", border_style="green" if box.running else "yellow"))
    # Credentials go below the panel, unboxed and unwrapped, so they copy cleanly.
    logins = []
    if result.jupyter:
        logins.append(("Jupyter", result.jupyter.url))
    if result.ssh:
        password = f"   (password: {result.ssh.password})" if result.ssh.password else ""
        logins.append(("SSH", f"devbox ssh {box.name}{password}"))
        logins.append(("", result.ssh.command))
    logins += list(result.custom.items())
    for label, value in logins:
        out.print(f"  [bold]{escape(label):<8}[/] {escape(value)}", soft_wrap=True, highlight=False)
    for change in result.changes:
        err.print(f"[yellow]changed:[/] {escape(change)}")
    if any(drift.CURRENT_FOLDER not in change for change in result.changes) and not any(
        drift.OTHER_PROJECT in change for change in result.changes
    ):
        err.print(
            f"[yellow]the profile changed since this box was made: devbox rebuild {escape(box.name)}[/]"
        )
    for warning in result.warnings:
        err.print(f"[yellow]warning:[/] {escape(warning)}")


def down_summary(out: Console, result: DownResult, name: str) -> None:
    """What `down` did, and what it kept."""
    if result.removed:
        out.print(f"removed box [bold]{escape(name)}[/] ({escape(result.container)})")
    else:
        out.print(f"no box named {escape(name)}: nothing to remove")
    for volume in result.volumes_removed:
        out.print(f"deleted volume {escape(volume)}")
    for volume, users in result.volumes_in_use:
        out.print(f"[yellow]kept volume {escape(volume)} (used by {escape(', '.join(users))})[/]")
    if result.volumes_kept:
        out.print(f"kept volumes (your data): {escape(', '.join(result.volumes_kept))}; --purge deletes them")
