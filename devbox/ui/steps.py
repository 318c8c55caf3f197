"""Progress for a stderr that is no terminal (a log, a pipe): plain lines, no rich."""

from __future__ import annotations

import sys

from devbox.ops.reporter import QuietReporter


class PlainReporter(QuietReporter):
    """For a stderr that is no terminal (a log, a pipe): no spinner, build output as lines."""

    def build_line(self, line: str) -> None:
        """Print a build output line as it comes."""
        if line.strip():
            print(line, file=sys.stderr, flush=True)
