"""What the terminal on the other end allows: styles, spinners. Standard library only.

Every output honours the same three facts: is the stream a terminal, is NO_COLOR set
(https://no-color.org: any non-empty value), is TERM `dumb`. Without a capable terminal
devbox prints plain text: no escape sequences, no spinner.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import IO, Any

PROGRESS_MODES = ("auto", "plain", "quiet")


def no_color(environ: Mapping[str, str] | None = None) -> bool:
    """NO_COLOR is set to something, or TERM is dumb: print no escape sequences at all."""
    env = os.environ if environ is None else environ
    return bool(env.get("NO_COLOR")) or env.get("TERM") == "dumb"


def is_terminal(stream: IO[Any] | None) -> bool:
    """The stream is a terminal (a closed or odd stream is not)."""
    try:
        return stream is not None and stream.isatty()
    except (AttributeError, ValueError, OSError):
        return False


def styled(stream: IO[Any] | None, environ: Mapping[str, str] | None = None) -> bool:
    """Bold and colours may be written to `stream`."""
    return is_terminal(stream) and not no_color(environ)


def animated(stream: IO[Any] | None, environ: Mapping[str, str] | None = None) -> bool:
    """A spinner may redraw lines on `stream`: a terminal, no NO_COLOR, not TERM=dumb.

    A spinner moves the cursor with escape sequences, so NO_COLOR (which asks for none at
    all, as `devbox` documents it) gets plain step lines instead.
    """
    return styled(stream, environ)
