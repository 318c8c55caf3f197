"""How long operations report progress: the protocol the verbs call, and a silent reporter."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from devbox.engine.base import PullEvent


class Reporter(Protocol):
    """Where long operations report progress."""

    def step(self, text: str) -> None:
        """A new phase began (pulling, creating, waiting)."""

    def log_line(self, line: str) -> None:
        """The box printed a line while devbox waits for it."""

    def pull_event(self, event: PullEvent) -> None:
        """A step of an image pull (a layer's status, bytes where a bar moves)."""

    def build_line(self, line: str) -> None:
        """A line of `docker build` output."""


class QuietReporter:
    """A reporter that shows nothing (for --json and tests)."""

    def __enter__(self) -> QuietReporter:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def step(self, text: str) -> None:
        """Ignored."""

    def log_line(self, line: str) -> None:
        """Ignored."""

    def pull_event(self, event: PullEvent) -> None:
        """Ignored."""

    def build_line(self, line: str) -> None:
        """Ignored."""
