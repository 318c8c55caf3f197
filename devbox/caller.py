"""Who is asking, from the kernel, and doing things with their rights (lab mode).

In lab mode devbox runs as root through sudo. The caller is the uid sudo reports,
checked against the passwd database and against the sudo process itself; it never comes
from a variable the caller could set. Reading the caller's files happens with the caller's
effective uid, gid and groups (`rights`), so the kernel decides what they may read, with
symlinks resolved as they see them.
"""

from __future__ import annotations

import grp
import importlib.abc
import os
import pwd
import sys
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devbox.errors import Refused


@dataclass(frozen=True)
class Caller:
    """A user of the host: login name, uid, primary gid, every group, home folder."""

    name: str
    uid: int
    gid: int
    groups: tuple[int, ...]
    home: Path

    def in_group(self, group: str) -> bool:
        """True when the caller is a member of group `group` (primary or supplementary)."""
        try:
            gid = grp.getgrnam(group).gr_gid
        except KeyError:
            return False
        return gid in self.groups or gid == self.gid

    def matches(self, names: tuple[str, ...]) -> bool:
        """True when any of `names` is the caller's login or (as `@group` or a group name) a group of theirs.

        The policy's `admins:` lists users and groups; a name that is both is read as either.
        """
        for name in names:
            bare = name.removeprefix("@")
            if (not name.startswith("@") and bare == self.name) or self.in_group(bare):
                return True
        return False


def from_uid(uid: int) -> Caller:
    """The account of `uid` in the passwd database, with all its groups."""
    entry = pwd.getpwuid(uid)
    groups = tuple(sorted(set(os.getgrouplist(entry.pw_name, entry.pw_gid))))
    return Caller(entry.pw_name, entry.pw_uid, entry.pw_gid, groups, Path(entry.pw_dir))


def _process_uids(pid: int) -> tuple[int, str, int] | None:
    """(real uid, command name, parent pid) of process `pid`, from /proc; None if gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    fields = dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)
    try:
        return int(fields["Uid"].split()[0]), fields["Name"].strip(), int(fields["PPid"])
    except (KeyError, ValueError, IndexError):
        return None


def _started_by_sudo(uid: int) -> bool:
    """True when an ancestor of this process is sudo run by `uid` (its real uid is the caller's).

    sudo is set-uid root: its real uid stays the invoking user's. Walking a few parents up
    covers sudo's monitor process (use_pty) between it and us.
    """
    pid = os.getppid()
    for _ in range(4):
        found = _process_uids(pid)
        if found is None:
            return False
        real_uid, name, parent = found
        if name == "sudo" and real_uid == uid:
            return True
        if parent <= 1:
            return False
        pid = parent
    return False


def from_sudo(environ: Mapping[str, str]) -> Caller:
    """The user who ran sudo to start this (root) process.

    SUDO_UID and SUDO_USER are set by sudo, which clears what the caller exported; both must
    name the same passwd entry, and the sudo process above us must run for that uid. Anything
    else is refused: a root shell that exports SUDO_UID is root, not the user it names.
    """
    text_uid, user = environ.get("SUDO_UID", ""), environ.get("SUDO_USER", "")
    if os.geteuid() != 0 or not text_uid.isdecimal() or not user:
        raise Refused("the lab helper runs only through sudo", "run devbox as yourself: devbox COMMAND")
    uid = int(text_uid)
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        raise Refused(f"sudo names user {user!r}, who is not in the passwd database") from None
    if entry.pw_uid != uid or uid == 0:
        raise Refused(f"sudo's SUDO_UID ({uid}) and SUDO_USER ({user}) disagree", "run devbox as yourself")
    if not _started_by_sudo(uid):
        raise Refused("the lab helper was not started by sudo for its caller", "run devbox as yourself")
    return from_uid(uid)


_lock = threading.RLock()
_depth = [0]  # nesting of `rights` blocks: only the outermost switches
_acting: list[Caller] = []  # the caller whose rights are in force, while they are


def _switch(to: Caller | None, groups: list[int]) -> None:
    """Effective ids to `to` (with its groups), or back to root (with `groups`) when None."""
    if to is None:
        os.seteuid(0)
        os.setegid(0)
        os.setgroups(groups)
    else:
        os.setgroups(list(to.groups))
        os.setegid(to.gid)
        os.seteuid(to.uid)


class _RootLoader(importlib.abc.Loader):
    """A module loader that loads as root: the interpreter's own files need not be the caller's."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def create_module(self, spec: Any) -> Any:
        with _as_root():
            return self._inner.create_module(spec)

    def exec_module(self, module: Any) -> None:
        with _as_root():
            self._inner.exec_module(module)


class _RootImports:
    """Imports inside a `rights` block happen as root.

    devbox imports lazily; a module first needed while acting as the caller would otherwise
    be read with their rights, and fail where the interpreter lives somewhere they cannot
    read (pyenv under /root). The code imported is root's own, from the helper's -I path.
    """

    def find_spec(self, name: str, path: Any, target: Any = None) -> Any:
        if not _acting:
            return None
        with _as_root():
            for finder in sys.meta_path:
                if finder is self or not hasattr(finder, "find_spec"):
                    continue
                spec = finder.find_spec(name, path, target)
                if spec is not None:
                    break
            else:
                return None
        if spec.loader is not None and hasattr(spec.loader, "exec_module"):
            spec.loader = _RootLoader(spec.loader)
        return spec


@contextmanager
def _as_root() -> Iterator[None]:
    """Root's effective ids inside a `rights` block (for imports), the caller's again after."""
    if not _acting or os.geteuid() == 0:
        yield
        return
    who = _acting[-1]
    _switch(None, _saved_groups[-1])
    try:
        yield
    finally:
        _switch(who, [])


_saved_groups: list[list[int]] = []


@contextmanager
def rights(caller: Caller | None) -> Iterator[None]:
    """Act with the caller's effective uid, gid and groups inside the block; root again after.

    The real uid stays 0, so root comes back at the end. Reentrant (an inner block is a
    no-op), and a no-op when `caller` is None or the process is not root (then it already
    is the caller). Modules imported inside the block are still read as root.
    """
    if caller is None or os.getuid() != 0:
        yield
        return
    with _lock:
        if _depth[0] == 0:
            if not any(isinstance(f, _RootImports) for f in sys.meta_path):
                sys.meta_path.insert(0, _RootImports())
            _saved_groups.append(os.getgroups())
            _switch(caller, [])
            _acting.append(caller)
        _depth[0] += 1
        try:
            yield
        finally:
            _depth[0] -= 1
            if _depth[0] == 0:
                _acting.pop()
                _switch(None, _saved_groups.pop())


def become(caller: Caller | None) -> None:
    """Turn this process into the caller for good (before exec'ing a program for them, e.g. ssh).

    Groups first, then gid, then uid: after setuid nothing can be changed back. A no-op
    outside lab mode.
    """
    if caller is None or os.getuid() != 0:
        return
    os.setgroups(list(caller.groups))
    os.setgid(caller.gid)
    os.setuid(caller.uid)
    os.environ["HOME"] = str(caller.home)
    os.environ["USER"] = os.environ["LOGNAME"] = caller.name
