"""Bind mounts of an open file descriptor, and detaching them: mount(2) and umount2(2) via ctypes.

Lab mode pins a bind source by the inode it checked (ops/labbinds.py): mounting
/proc/self/fd/N makes the kernel follow the descriptor, never a path a user could swap.
"""

from __future__ import annotations

import errno
import functools
import os
from typing import Any

_MS_RDONLY, _MS_NOSUID, _MS_NODEV, _MS_NOEXEC = 1, 2, 4, 8
_MS_REMOUNT, _MS_NOSYMFOLLOW, _MS_NOATIME, _MS_NODIRATIME = 32, 256, 1024, 2048
_MS_BIND, _MS_REC, _MS_STRICTATIME = 4096, 16384, 1 << 24
_ST_NOSYMFOLLOW, _ST_RELATIME = 8192, 4096
_MNT_DETACH, _UMOUNT_NOFOLLOW = 2, 8


@functools.cache
def _libc() -> Any:
    import ctypes  # here: only pinning needs it, and `check` runs for `render` too

    libc = ctypes.CDLL(None, use_errno=True)
    libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_void_p]
    libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
    return libc


def _mount(source: str | None, target: str, flags: int) -> None:
    import ctypes

    if _libc().mount(source.encode() if source else None, target.encode(), None, flags, None) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code), target)


def unmount(target: str) -> bool:
    """Detach whatever is mounted at `target` (stacked mounts too); False if something stays."""
    import ctypes

    libc = _libc()
    for _ in range(16):
        if libc.umount2(target.encode(), _MNT_DETACH | _UMOUNT_NOFOLLOW) != 0:
            return ctypes.get_errno() in (errno.EINVAL, errno.ENOENT)
    return False


def bind(fd: int, target: str, folder: bool, readonly: bool) -> None:
    """Mount the inode of `fd` at `target` (made here), never set-uid or device files through it."""
    if folder:
        os.mkdir(target, 0o700)
    else:
        os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600))
    source = f"/proc/self/fd/{fd}"  # the kernel follows it to the checked inode, no path walk
    flags = os.statvfs(source).f_flag
    _mount(source, target, _MS_BIND | _MS_REC)
    # A bind remount sets the mount's flags outright: keep the source's, add nosuid and nodev.
    keep = _MS_NOEXEC if flags & os.ST_NOEXEC else 0
    keep |= _MS_NOSYMFOLLOW if flags & _ST_NOSYMFOLLOW else 0
    keep |= _MS_NODIRATIME if flags & os.ST_NODIRATIME else 0
    if flags & os.ST_NOATIME:
        keep |= _MS_NOATIME
    elif not flags & _ST_RELATIME:
        keep |= _MS_STRICTATIME
    if readonly or flags & os.ST_RDONLY:
        keep |= _MS_RDONLY
    _mount(None, target, _MS_REMOUNT | _MS_BIND | _MS_NOSUID | _MS_NODEV | keep)
