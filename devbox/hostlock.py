"""Locks between devbox processes on this host, on files no other local user can jam.

flock(2): the kernel drops a lock when its holder exits, however it exits, so a crashed
`devbox up` never leaves anything locked. Two kinds (the threat model is in docs/gpus.md):

- `engine_lock`: one per engine, shared by everyone who uses it, so two users' `up`s never
  pick the same GPU. A file in /tmp (the one folder every user shares) named after the
  engine, in the group of the engine's socket with no access for anyone else: only people
  who can use the engine (root anyway, through it) can open it, so only they can hold it.
- `user_lock`: one person's own (one box's `up`, making their login key), in a folder of
  their config dir that only they can write.

Whatever stands at a lock's path is opened with O_NOFOLLOW | O_NONBLOCK (a FIFO or a link
planted there cannot hang or redirect us) and must be a regular file with one link, owned
as above; anything else is refused at once, naming its owner. A lock held too long is
reported with its holder: the pid (from /proc/locks) and what the holder wrote into the
file when it took it.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import pwd
import stat
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from devbox.errors import DevboxError

SHARED_DIR = "/tmp"  # not the caller's TMPDIR: every user's devbox must meet at the same file
_OPEN = os.O_RDWR | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_POLL_S = 0.05
_MADE_JUST_NOW_S = 2.0  # how long another user's new lock file may still be closed to us


class LockRefused(DevboxError):
    """What stands at a lock's path is not a lock file devbox may trust."""


def _digest(name: str) -> str:
    return hashlib.sha256(name.encode("utf-8", "surrogateescape")).hexdigest()[:16]


def engine_lock_path(host: str) -> str:
    """The shared lock file of the engine at `host` (one socket, however its path is spelt)."""
    if host.startswith("unix://"):
        host = "unix://" + os.path.realpath(host[len("unix://") :])
    return os.path.join(_shared_dir(), f"devbox-engine-{_digest(host)}.lock")


def _shared_dir() -> str:
    """Where engine locks live: /tmp, or in lab mode a root-only folder.

    In lab mode every devbox process runs as root (users through the helper), and a lock in
    /tmp could be made first by any user, jamming everyone's `up` (it must not be theirs).
    """
    from devbox import labmode

    if not labmode.installed():
        return SHARED_DIR
    folder = labmode.BINDS_DIR.parent / "locks"
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = os.lstat(folder)
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != 0:
        what = f"(lab mode's lock folder) is {_kind(info.st_mode)} of {_user(info.st_uid)}"
        raise _refuse(str(folder), what)
    if stat.S_IMODE(info.st_mode) != 0o700:
        os.chmod(folder, 0o700)  # made by an older devbox, or with parents' default mode
    return str(folder)


def engine_group(host: str) -> int | None:
    """The group of the engine's Unix socket (those who may use it); None for other engines."""
    if not host.startswith("unix://"):
        return None
    try:
        return os.stat(host[len("unix://") :]).st_gid
    except (OSError, ValueError):
        return None


def _user(uid: int) -> str:
    try:
        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:
        return f"uid {uid}"


def _owner_of(path: str) -> str:
    try:
        return _user(os.lstat(path).st_uid)
    except OSError:
        return "someone"


def _kind(mode: int) -> str:
    kinds = ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISLNK, "a symbolic link"), (stat.S_ISDIR, "a folder"))
    return next((name for test, name in kinds if test(mode)), "not a regular file")


def _refuse(path: str, why: str) -> LockRefused:
    return LockRefused(
        f"the lock file {path} {why}: devbox will not use it",
        f"nothing but devbox should make files there; look at it (ls -l {path}), then remove it",
    )


def _check(fd: int, path: str, trusted: tuple[int, ...], group: int | None) -> None:
    """Refuse (closing `fd`) anything but a one-link regular file owned as the lock's kind asks."""
    info = os.fstat(fd)
    why = None
    if not stat.S_ISREG(info.st_mode):
        why = f"is {_kind(info.st_mode)}, made by {_user(info.st_uid)}"
    elif info.st_nlink != 1:
        why = f"has {info.st_nlink} names (a hard link, made by {_user(info.st_uid)})"
    elif info.st_uid not in trusted and (group is None or info.st_gid != group):
        why = f"belongs to {_user(info.st_uid)}"
    elif info.st_mode & 0o007 or (group is None and info.st_mode & 0o070):
        why = f"may be opened by others (mode {stat.filemode(info.st_mode)}, owner {_user(info.st_uid)})"
    if why is not None:
        os.close(fd)
        raise _refuse(path, why)


def _open_existing_or_new(path: str, mode: int) -> tuple[int, bool]:
    """(fd, made) for the file at `path`: the one there, or a new one this call made."""
    # Another user's devbox makes a shared lock file 0600 and only then opens it to the group
    # (so nobody opens it before its group is right): while it is that new, EACCES is that
    # moment, not a hostile file. Measured: two users' first `up`s on a fresh engine hit it
    # in about half of the tries. A file that stays closed is refused after this wait.
    opening_until = time.monotonic() + _MADE_JUST_NOW_S
    while True:
        try:
            # No O_CREAT first: with fs.protected_regular, O_CREAT on another user's file in
            # sticky /tmp is refused even though the file exists.
            return os.open(path, _OPEN), False
        except FileNotFoundError:
            pass
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise _refuse(path, f"is a symbolic link, made by {_owner_of(path)}") from None
            if exc.errno == errno.EACCES and time.monotonic() < opening_until:
                time.sleep(_POLL_S / 5)
                continue
            if exc.errno == errno.EACCES:
                raise _refuse(path, f"cannot be opened by you: it belongs to {_owner_of(path)}") from None
            raise _refuse(
                path, f"cannot be opened ({exc.strerror}); it belongs to {_owner_of(path)}"
            ) from None
        try:
            return os.open(path, _OPEN | os.O_CREAT | os.O_EXCL, mode), True
        except FileExistsError:
            continue  # another process made it just now: open that one


def _open_engine_file(path: str, group: int) -> int:
    opening_until = time.monotonic() + _MADE_JUST_NOW_S
    while True:
        fd, made = _open_existing_or_new(path, 0o600)  # nobody else may open it before it is shared
        info = os.fstat(fd)
        # Not yet shared, and so never opened by anyone but its maker (and root).
        unshared = stat.S_ISREG(info.st_mode) and info.st_nlink == 1 and not info.st_mode & 0o077
        if made or (unshared and info.st_uid == os.getuid()):
            # Ours to share: new, or left 0600 by a devbox of ours killed before it shared it.
            _share(fd, path, group, made)
        elif unshared and time.monotonic() < opening_until:
            # Another user's devbox made it a moment ago and is about to share it (root opens
            # it despite the 0600 and sees it first): wait as _open_existing_or_new does.
            os.close(fd)
            time.sleep(_POLL_S / 5)
            continue
        _check(fd, path, (0, os.getuid()), group)
        return fd


def _share(fd: int, path: str, group: int, made: bool) -> None:
    """Give the lock file at `fd` to the engine's group, 0660 (closing it, and removing it when
    this call made it, if that is not allowed)."""
    try:
        os.fchown(fd, -1, group)
        os.fchmod(fd, 0o660)  # the engine's users, whatever the creator's umask
    except OSError:
        os.close(fd)
        if made:
            os.unlink(path)
        raise DevboxError(
            f"cannot share the GPU lock {path} with the engine's other users",
            f"you use the engine but are not in its socket's group (gid {group}); "
            "ask the admin to add you: usermod -aG docker $USER",
        ) from None


def _private_folder(folder: Path) -> str:
    """`folder` made (0700) if missing; refused unless it is the caller's own, writable by them only."""
    try:
        # The config dir above it is made 0700 too, as devbox makes it for its keys.
        folder.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        folder.mkdir(exist_ok=True, mode=0o700)
        info = os.lstat(folder)
    except OSError as exc:
        raise DevboxError(
            f"cannot make devbox's lock folder {folder}: {exc.strerror}", "check DEVBOX_CONFIG_DIR or HOME"
        ) from None
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o022:
        raise _refuse(str(folder), f"(a lock folder) is {_kind(info.st_mode)} of {_user(info.st_uid)}")
    return str(folder)


def _flock_holders(fd: int) -> list[int]:
    """Pids holding a flock on the file of `fd`, from /proc/locks (empty where unknown)."""
    info = os.fstat(fd)
    key = f"{os.major(info.st_dev):02x}:{os.minor(info.st_dev):02x}:{info.st_ino}"
    try:
        with open("/proc/locks", encoding="ascii", errors="replace") as handle:
            lines = handle.read().splitlines()
    except OSError:
        return []
    pids = []
    for line in lines:
        fields = line.split()
        # "1: FLOCK  ADVISORY  WRITE 1234 08:01:5678 0 EOF"; waiters have "->" after the number.
        if len(fields) >= 6 and fields[1] == "FLOCK" and fields[5] == key and fields[4].isdecimal():
            pids.append(int(fields[4]))
    return pids


def _command_of(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            words = handle.read(400).split(b"\0")
        owner = _user(os.stat(f"/proc/{pid}").st_uid)
    except OSError:
        return "a process that is gone or hidden"
    return f"{owner}: {' '.join(w.decode(errors='replace') for w in words if w)[:120]}"


def holder(fd: int) -> str:
    """Who holds the lock on `fd`'s file: pid, user and what they are doing, as far as known."""
    try:
        recorded = os.pread(fd, 1024, 0).decode("utf-8", "replace").splitlines()
    except OSError:
        recorded = []
    pid_text, user, what = ([*recorded, "", "", ""])[:3]
    pids = _flock_holders(fd)
    if pids and pid_text == str(pids[0]):
        return f"pid {pids[0]} ({user}: {what})"
    if pids:
        return f"pid {pids[0]} ({_command_of(pids[0])})"
    if pid_text.isdecimal():
        return f"pid {pid_text} ({user}: {what}), as it wrote when it took the lock"
    return "a process this system does not name"


def _record(fd: int, what: str) -> None:
    """Write who holds the lock now into its file, for anyone who has to wait."""
    try:
        login = pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        login = f"uid {os.getuid()}"
    text = f"{os.getpid()}\n{login}\n{' '.join(what.split())[:200]}\n".encode()
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, text, 0)
    except OSError:
        pass  # only a courtesy to whoever waits; /proc/locks still names us


@contextmanager
def _holding(fd: int, path: str, what: str, timeout: float, deadline: float | None) -> Iterator[None]:
    try:
        start = time.monotonic()
        give_up = start + timeout if deadline is None else min(start + timeout, deadline)
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                now = time.monotonic()
                if now >= give_up:
                    raise DevboxError(
                        f"waited {now - start:.1f} s for the lock {path}: {holder(fd)} holds it",
                        "if that process is hung, stop it (kill PID); devbox never holds it for long",
                    ) from None
                time.sleep(_POLL_S)
            except OSError as exc:  # ENOLCK on a file system without locks, say
                raise DevboxError(f"cannot lock {path}: {exc.strerror}") from None
        _record(fd, what)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


@contextmanager
def engine_lock(
    host: str, user_folder: Path, what: str, timeout: float = 120, deadline: float | None = None
) -> Iterator[None]:
    """Hold the lock every user of the engine at `host` shares (GPU placement, per-user sums).

    For an engine reached other than by a local socket (ssh://, tcp://) no group says who
    shares it: the lock is then the caller's own (`user_folder`), and the check after
    creating (docs/gpus.md) is what keeps two users' boxes off one GPU.
    `deadline` (time.monotonic()): never wait past it, whatever `timeout` says.
    """
    group = engine_group(host)
    if group is None:
        with user_lock(f"engine {host}", user_folder, what, timeout, deadline):
            yield
        return
    path = engine_lock_path(host)
    with _holding(_open_engine_file(path, group), path, what, timeout, deadline):
        yield


@contextmanager
def user_lock(
    name: str, user_folder: Path, what: str, timeout: float = 120, deadline: float | None = None
) -> Iterator[None]:
    """Hold the caller's own lock `name`, kept in `user_folder`/locks (their devbox config dir)."""
    folder = _private_folder(user_folder / "locks")
    path = os.path.join(folder, f"{_digest(name)}.lock")
    fd, _ = _open_existing_or_new(path, 0o600)
    _check(fd, path, (os.getuid(),), None)
    with _holding(fd, path, what, timeout, deadline):
        yield
