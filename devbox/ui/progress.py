"""Progress on stderr while devbox works: a spinner with the box's last log line, pull bars."""

from __future__ import annotations

from types import TracebackType
from typing import TYPE_CHECKING

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, DownloadColumn, Progress, TaskID, TextColumn
from rich.status import Status

if TYPE_CHECKING:
    from devbox.engine.base import PullEvent


class RichReporter:
    """The `Reporter` for people: one spinner line, and a bar per layer while pulling."""

    def __init__(self, console: Console, enabled: bool = True) -> None:
        self.console = console
        self.enabled = enabled
        self._step = ""
        self._status: Status | None = None
        self._pull: Progress | None = None
        self._layers: dict[str, TaskID] = {}

    def __enter__(self) -> RichReporter:
        if self.enabled:
            self._status = self.console.status("", spinner="dots")
            self._status.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._end_pull()
        if self._status:
            self._status.stop()

    def step(self, text: str) -> None:
        """Show the new phase."""
        self._end_pull()
        self._step = text
        if self._status:
            self._status.update(f"[bold]{escape(text)}[/]")

    def log_line(self, line: str) -> None:
        """Show the box's last log line under the phase."""
        if self._status:
            width = max(20, self.console.width - 8)
            self._status.update(f"[bold]{escape(self._step)}[/]\n  [dim]{escape(line[:width])}[/]")

    def build_line(self, line: str) -> None:
        """Stream build output (dimmed) above the spinner."""
        if self.enabled and line.strip():
            self.console.print(f"[dim]{escape(line)}[/]", highlight=False)

    def pull_event(self, event: PullEvent) -> None:
        """One bar per layer, fed by the engine's pull events."""
        if not self.enabled:
            return
        layer, total = event.layer, event.total
        if not layer or total is None:
            return
        if self._pull is None:
            if self._status:
                self._status.stop()
            self._pull = Progress(
                TextColumn("{task.description}"), BarColumn(), DownloadColumn(), console=self.console
            )
            self._pull.start()
        if layer not in self._layers:
            self._layers[layer] = self._pull.add_task(layer, total=total)
        self._pull.update(self._layers[layer], completed=event.current or 0, total=total)

    def _end_pull(self) -> None:
        if self._pull is not None:
            self._pull.stop()
            self._pull = None
            self._layers.clear()
            if self._status:
                self._status.start()
