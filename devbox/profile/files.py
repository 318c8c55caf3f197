"""Looking at the user's files without ever raising: paths from profiles, flags and policies.

A path typed by a person can be anything: a component over the 255 bytes a file name may
have, a NUL byte, `~nobody/`, a file the caller may not read. `Path.is_file()` and friends
raise OSError or ValueError on several of those; here each becomes a sentence for a located
problem instead.

`path_problem` (why a text cannot be a path) lives in settings, which checks the folders
the environment names with it; it is re-exported here with the rest.
"""

from __future__ import annotations

import os
import pwd
import stat
from dataclasses import dataclass
from typing import Literal

from devbox.settings import path_problem

# What a profile, policy or env file may weigh; the largest real one is a few KiB.
MAX_TEXT_FILE = 1024**2


def expand_user(text: str, home: str) -> str:
    """`~` and `~/x` to `home`, `~name/x` to that user's home; raise ValueError for an unknown name."""
    if not text.startswith("~"):
        return text
    name, slash, rest = text[1:].partition("/")
    if not name:
        return home + slash + rest
    try:
        other = pwd.getpwnam(name).pw_dir
    except (KeyError, ValueError, UnicodeEncodeError):
        raise ValueError(f"~{name} names no user on this host") from None
    return other + slash + rest


Kind = Literal["file", "folder", "other", "missing"]


@dataclass(frozen=True)
class Look:
    """What is at a path: its kind, or why it could not be looked at (`error`)."""

    kind: Kind
    error: str | None = None


def look(path: str) -> Look:
    """What `path` is (following symlinks); an unusable path or a denied look is an `error`."""
    problem = path_problem(path)
    if problem is not None:
        return Look("missing", f"the path {problem}")
    try:
        mode = os.stat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        return Look("missing")
    except OSError as exc:
        return Look("missing", exc.strerror or str(exc))
    if stat.S_ISREG(mode):
        return Look("file")
    if stat.S_ISDIR(mode):
        return Look("folder")
    return Look("other")


def is_file(path: str) -> bool:
    """True for a regular file (or a link to one) that can be looked at; never raises."""
    return look(path).kind == "file"


def is_folder(path: str) -> bool:
    """True for a folder (or a link to one) that can be looked at; never raises."""
    return look(path).kind == "folder"


def read_text(path: str, limit: int = MAX_TEXT_FILE) -> str:
    """The UTF-8 text of a regular file; raise ValueError saying why it cannot be had.

    Opened without blocking and checked to be a regular file before reading: a FIFO or a
    device at the path would otherwise hang devbox or feed it without end.
    """
    problem = path_problem(path)
    if problem is not None:
        raise ValueError(f"the path {problem}")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise ValueError(f"cannot be read ({exc.strerror or exc})") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ValueError("is not a regular file")
        if info.st_size > limit:
            raise ValueError(f"is {info.st_size} bytes, more than the {limit} devbox reads")
        with os.fdopen(fd, "rb", closefd=False) as handle:
            data = handle.read(limit + 1)
    except OSError as exc:
        raise ValueError(f"cannot be read ({exc.strerror or exc})") from None
    finally:
        os.close(fd)
    if len(data) > limit:
        raise ValueError(f"is more than the {limit} bytes devbox reads")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"is not UTF-8 text (byte {exc.start + 1})") from None


def shown(text: str, limit: int = 240) -> str:
    """`text` fit for one line of a message: control characters escaped, long text cut."""
    if any(ord(c) < 32 or ord(c) == 127 or 0xD800 <= ord(c) <= 0xDFFF for c in text):
        text = repr(text)[1:-1]
    return text if len(text) <= limit else text[: limit - 1] + "…"


__all__ = [
    "MAX_TEXT_FILE",
    "Look",
    "expand_user",
    "is_file",
    "is_folder",
    "look",
    "path_problem",
    "read_text",
    "shown",
]
