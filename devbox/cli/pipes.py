"""A closed stdout or stderr ends devbox quietly, the way it ends git and docker.

`devbox ls | head -1`: once `head` has its line it exits, and devbox's next write to the
pipe fails. Programs written in C or Go die of SIGPIPE there (the shell shows 141, stderr
stays empty). Python ignores SIGPIPE and raises BrokenPipeError instead, from wherever the
write happened, so without this it surfaced as "devbox failed unexpectedly ... report it".

We do not restore SIGPIPE's default for the whole process: devbox also writes to sockets
(the engine, SSH banners), and a peer closing one of those must stay an error with a
message, not a silent death. So, like Go's runtime, only a write to file descriptor 1 or 2
ends the process by SIGPIPE: `install` wraps sys.stdout and sys.stderr, and a broken pipe
there points the descriptor at /dev/null (nothing buffered is written again) and re-raises
SIGPIPE with its default action.
"""

from __future__ import annotations

import contextlib
import os
import sys
from typing import Any, NoReturn


def closed() -> NoReturn:
    """The reader of stdout or stderr went away: end now, as a SIGPIPE death (status 141)."""
    from devbox import audit

    audit.exec_now(128 + 13)  # lab mode: the audit line first
    devnull = os.open(os.devnull, os.O_WRONLY)
    for fd in (1, 2):
        with contextlib.suppress(OSError):
            os.dup2(devnull, fd)  # nothing buffered goes to the pipe again
    import signal

    if hasattr(signal, "SIGPIPE"):
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGPIPE)
    os._exit(128 + 13)  # no SIGPIPE (Windows), or it did not end us: the status a shell shows


class _Guarded:
    """A text or binary stream whose writes end the process quietly on a broken pipe."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def write(self, data: Any) -> int:
        """Write, or end the process if the reader is gone."""
        try:
            return int(self._stream.write(data))
        except BrokenPipeError:
            closed()

    def writelines(self, lines: Any) -> None:
        """Write each line, or end the process if the reader is gone."""
        try:
            self._stream.writelines(lines)
        except BrokenPipeError:
            closed()

    def flush(self) -> None:
        """Flush, or end the process if the reader is gone."""
        try:
            self._stream.flush()
        except BrokenPipeError:
            closed()

    @property
    def buffer(self) -> _Guarded:
        """The binary stream below (`devbox logs` writes bytes), guarded the same way."""
        return _Guarded(self._stream.buffer)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def install() -> None:
    """Guard sys.stdout and sys.stderr for the rest of this process."""
    if sys.stdout is not None and not isinstance(sys.stdout, _Guarded):
        sys.stdout = _Guarded(sys.stdout)
    if sys.stderr is not None and not isinstance(sys.stderr, _Guarded):
        sys.stderr = _Guarded(sys.stderr)
