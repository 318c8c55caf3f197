"""Progress as plain lines on stderr, one per step, as docker and compose print in CI logs."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from devbox.ops.reporter import QuietReporter

if TYPE_CHECKING:
    from devbox.engine.base import PullEvent

# Pull events that only move a progress bar; the other ones (Pulling fs layer, Pull complete,
# Digest, Status) are printed, as `docker pull` prints them without a terminal.
_BAR_ONLY = ("Downloading", "Extracting", "Waiting", "Verifying Checksum")


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


class PlainReporter(QuietReporter):
    """For a stderr that is no terminal (a log, a pipe) or --progress plain: no spinner.

    One line per step (`creating devbox-alice-default`, `waiting for jupyter URL, ssh login`),
    build output and pull statuses as lines, and `ready` once the operation succeeded. The
    box's own log lines are not repeated (`devbox logs` shows them).
    """

    def __enter__(self) -> PlainReporter:
        return self

    def __exit__(self, *exc: object) -> None:
        if not exc or exc[0] is None:
            _say("ready")

    def step(self, text: str) -> None:
        """Print the new phase."""
        _say(text)

    def build_line(self, line: str) -> None:
        """Print a build output line as it comes."""
        if line.strip():
            _say(line)

    def pull_event(self, event: PullEvent) -> None:
        """Print a pull status that is not a progress bar tick."""
        if event.status and event.total is None and not event.status.startswith(_BAR_ONLY):
            _say(f"{event.layer}: {event.status}" if event.layer else event.status)
