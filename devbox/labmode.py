"""Lab mode's fixed places, its small config file, and the ownership checks it stands on.

Lab mode (docs/lab.md) is on when `/etc/devbox/lab.yaml` exists. Then a user who is not
root runs devbox through sudo and a root-owned helper; identity comes from the kernel,
the policy only from /etc/devbox, and the caller's environment never chooses the engine,
the policy or the owner. These paths are constants on purpose: a variable would be a door.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from devbox.errors import Origin, Problem, Refused

ETC_DIR = Path("/etc/devbox")
LAB_FILE = ETC_DIR / "lab.yaml"
POLICY_FILE = ETC_DIR / "policy.yaml"
PROFILES_DIR = ETC_DIR / "profiles"
SUDOERS_FILE = Path("/etc/sudoers.d/devbox")
HELPER = Path("/usr/local/libexec/devbox/devbox-lab")
AUDIT_LOG = Path("/var/log/devbox/audit.log")
BINDS_DIR = Path("/run/devbox/binds")

# What the caller's environment may not decide in lab mode: who they are, which policy,
# which engine, which GPUs exist. Each is ignored with a warning.
IGNORED_ENV = (
    "DEVBOX_USER",
    "DEVBOX_POLICY",
    "DEVBOX_LAB_DIR",
    "DEVBOX_GPU_INVENTORY",
    "DEVBOX_ENGINE_CLIENT",
    "DOCKER_HOST",
    "DOCKER_CONTEXT",
    "DOCKER_CONFIG",
    "DOCKER_CERT_PATH",
    "DOCKER_TLS_VERIFY",
)
# Presentation only: passed from the caller to the helper (sudo clears the environment).
PASSED_ENV = ("TERM", "NO_COLOR", "FORCE_COLOR", "COLUMNS", "LINES", "LANG", "LC_ALL", "LC_CTYPE")


def installed() -> bool:
    """True when lab mode is set up on this host (the lab file exists, whatever its state)."""
    return os.path.lexists(LAB_FILE)


def weak_reason(st: os.stat_result) -> str | None:
    """Why a file with lstat `st` is not root's alone (a non-root user could change it), or None."""
    if st.st_uid != 0:
        return f"is owned by uid {st.st_uid}, not root"
    if stat.S_ISLNK(st.st_mode):
        return None  # a symlink's mode means nothing; where it points is checked on its own
    writable = st.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
    if not writable or (stat.S_ISDIR(st.st_mode) and st.st_mode & stat.S_ISVTX):
        return None  # a sticky folder (/tmp) lets others add entries, not replace root's
    who = {stat.S_IWGRP: "its group", stat.S_IWOTH: "others"}.get(writable, "its group and others")
    return f"is writable by {who} (mode {stat.S_IMODE(st.st_mode):04o})"


def weak_spots(path: Path, parents: bool = True) -> list[str]:
    """Every way a non-root user could change what `path` says: it, and each folder above it.

    A missing path is fine (nothing to trust). Symlinks are followed as the kernel would,
    and the folders on the way are checked too.
    """
    found: list[str] = []
    try:
        real = Path(os.path.realpath(path, strict=True))
    except FileNotFoundError:
        return found
    except OSError as exc:
        return [f"{path}: cannot be checked ({exc.strerror})"]
    chain = [real, *real.parents] if parents else [real]
    for item in chain:
        try:
            why = weak_reason(item.lstat())
        except OSError as exc:
            why = f"cannot be checked ({exc.strerror})"
        if why:
            shown = str(item) if item == real and real == path else f"{item} (on the way to {path})"
            found.append(f"{shown} {why}")
    return found


def trusted_paths() -> list[Path]:
    """What lab mode trusts: its config, policy, lab profiles, sudoers drop-in and helper."""
    return [ETC_DIR, LAB_FILE, POLICY_FILE, PROFILES_DIR, SUDOERS_FILE, HELPER]


def check_sound() -> None:
    """Check that only root can change anything lab mode trusts.

    Refused (exit 3) with the fix otherwise: a policy a user can edit is no policy.
    """
    spots = [(path, spot) for path in trusted_paths() for spot in weak_spots(path)]
    if spots:
        raise Refused(
            f"lab mode is not sound: {len(spots)} place(s) a user other than root could change",
            "as root, for each place named: chown root:root PATH && chmod go-w PATH; then devbox lab status",
            problems=[Problem(Origin(str(path)), spot) for path, spot in spots],
        )
