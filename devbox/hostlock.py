"""A lock shared by every devbox process on this host, for one engine.

flock(2) on a file in /tmp: the kernel drops it when its holder exits, however it exits, so
a crashed `devbox up` can never leave GPUs locked. Everyone may open the file read-only,
which is all flock needs, so boxes of different users serialise on it.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager

from devbox.errors import DevboxError


def path_for(name: str) -> str:
    """The lock file for `name` (an engine address, say)."""
    digest = hashlib.sha256(name.encode()).hexdigest()[:16]
    # /tmp itself, not the caller's TMPDIR: every user's devbox must meet at the same file.
    return os.path.join("/tmp", f"devbox-{digest}.lock")


def _open(path: str) -> int:
    # Open an existing file without O_CREAT: with fs.protected_regular, O_CREAT on another
    # user's file in sticky /tmp is refused even though the file exists.
    while True:
        try:
            return os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            pass
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            continue  # another process made it just now: open that one
        os.fchmod(fd, 0o644)  # the creator's umask must not lock other users out
        return fd


@contextmanager
def held(name: str, timeout: float = 120) -> Iterator[None]:
    """Hold the host-wide lock `name` for the duration of the block."""
    path = path_for(name)
    fd = _open(path)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise DevboxError(
                        f"another devbox process has held {path} for {timeout:g} s",
                        "it may be hung: find it with `fuser " + path + "` and stop it",
                    ) from None
                time.sleep(0.02)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock
