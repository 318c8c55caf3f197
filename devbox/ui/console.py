"""The error screen people read (rich); programs get JSON from ui/json.py instead."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape

from devbox.errors import DevboxError, Problem


def problem_lines(problems: list[Problem]) -> list[str]:
    """Each located problem and its fix, as rich markup lines."""
    lines = []
    for problem in problems:
        lines.append(f"  [bold]{escape(str(problem.origin))}[/]  {escape(problem.message)}")
        if problem.hint:
            lines.append(f"      [cyan]fix:[/] {escape(problem.hint)}")
    return lines


def error(console: Console, exc: DevboxError) -> None:
    """One screen: what went wrong, each located problem, and how to fix it."""
    lines = [f"[bold red]error:[/] {escape(exc.message)}"]
    lines += problem_lines(exc.problems)
    if exc.details:
        lines.append(f"[dim]last {len(exc.details)} lines of its log:[/]")
        lines += [f"  [dim]│[/] {escape(line)}" for line in exc.details]
    if exc.hint:
        lines.append(f"[cyan]hint:[/] {escape(exc.hint)}")
    console.print("\n".join(lines), highlight=False, soft_wrap=True)
