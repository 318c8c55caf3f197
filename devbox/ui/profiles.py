"""`devbox profiles`: the table of profiles found, and check results (JSON: ui/json.py)."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from devbox.ops.profiles import ProfileStatus
from devbox.ui.console import problem_lines


def profiles_table(console: Console, statuses: list[ProfileStatus]) -> None:
    """The table of `devbox profiles`."""
    if not statuses:
        console.print("no profiles found; create .devbox/NAME.yaml (devbox help profiles)")
        return
    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in ("NAME", "FROM", "STATUS", "PATH"):
        table.add_column(column)
    for status in statuses:
        if status.shadowed_by:
            state = "[dim]shadowed[/]"
        elif status.valid:
            state = "[green]valid[/]"
        else:
            state = f"[red]invalid[/] ({len(status.problems) or 1})"
        table.add_row(status.name, status.scope, state, escape(status.path))
    console.print(table)
    invalid = [s for s in statuses if not s.valid and not s.shadowed_by]
    if invalid:
        console.print(f"\n{len(invalid)} invalid: run [bold]devbox profiles check PATH[/] to see why")


def profile_checks(console: Console, statuses: list[ProfileStatus]) -> None:
    """Per-file verdicts of `devbox profiles check`, problems listed under each."""
    for status in statuses:
        if status.valid:
            console.print(f"[green]ok[/]      {escape(status.path)}", highlight=False)
            continue
        console.print(f"[red]invalid[/] {escape(status.path)}: {escape(status.message)}", highlight=False)
        if status.problems:
            console.print("\n".join(problem_lines(status.problems)), highlight=False, soft_wrap=True)
