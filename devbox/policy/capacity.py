"""What this host has (CPUs, physical memory), and the policy limits that ask for more than it.

A policy maximum becomes the quota of a box that sets none; one written for a bigger
machine (the example policy's `max_cpus: 16` on a 4-CPU host) must not become a quota
Docker refuses ("Range of CPUs is from 0.01 to 4.00"). So quotas are capped at what the
host has, and `devbox policy check` and `devbox doctor` say which limits exceed it. A
profile's own quota above what the host has is a located profile error (`quota_problems`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from devbox import sizes
from devbox.errors import Problem
from devbox.policy.rules import Limits
from devbox.profile.model import Profile


@dataclass(frozen=True)
class Capacity:
    """CPUs and bytes of memory of a host; None where unknown."""

    cpus: int | None = None
    memory: int | None = None


def local() -> Capacity:
    """This host's CPUs and physical memory (devbox runs beside its engine in the usual setup)."""
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # no sysconf (not Linux) or not those names
        memory = None
    return Capacity(os.cpu_count(), memory if memory and memory > 0 else None)


def cap_cpus(cpus: float | None, host: Capacity) -> float | None:
    """A policy's CPU maximum as a quota: no more than the host's CPUs."""
    if cpus is None or host.cpus is None:
        return cpus
    return min(cpus, float(host.cpus))


def cap_bytes(size: int | None, host: Capacity) -> int | None:
    """A policy's memory (or /dev/shm) maximum as a quota: no more than the host's memory."""
    if size is None or host.memory is None:
        return size
    return min(size, host.memory)


def over_host(limits: Limits, host: Capacity) -> list[str]:
    """A sentence for each limit above what `host` has (boxes get the host's amount instead)."""
    found = []
    if limits.max_cpus is not None and host.cpus is not None and limits.max_cpus > host.cpus:
        found.append(
            f"limits.max_cpus {limits.max_cpus:g} is more than this host's {host.cpus} CPUs: "
            f"a box that sets no cpus gets {host.cpus}"
        )
    for key, value in (("max_memory", limits.max_memory), ("max_shm_size", limits.max_shm_size)):
        if value is not None and host.memory is not None and value > host.memory:
            found.append(
                f"limits.{key} {sizes.format_size(value)} is more than this host's "
                f"{sizes.human_size(host.memory)} of memory: a box that sets none gets all of it"
            )
    return found


def quota_problems(profile: Profile, host: Capacity) -> list[Problem]:
    """The profile's own quotas the host cannot give (cpus above its CPUs, memory above its RAM),
    each at its key's line, with the fix: Docker would refuse them at create, less clearly."""
    problems: list[Problem] = []
    res = profile.resources
    if res.cpus is not None and host.cpus is not None and res.cpus > host.cpus:
        problems.append(
            Problem(
                profile.origins.get("resources.cpus") or profile.origin("resources"),
                f"resources.cpus {res.cpus:g} is more than this host's {host.cpus} CPUs",
                f"ask for at most cpus: {host.cpus} (or leave cpus: out: no CPU quota)",
            )
        )
    if res.memory is not None and host.memory is not None and res.memory > host.memory:
        # The fix is a size this host can give: its memory rounded down to a whole unit.
        most = sizes.format_size(host.memory // 2**30 * 2**30 or host.memory)
        problems.append(
            Problem(
                profile.origins.get("resources.memory") or profile.origin("resources"),
                f"resources.memory {sizes.format_size(res.memory)} is more than this host's "
                f"{sizes.human_size(host.memory)} of memory",
                f"ask for at most memory: {most} (or leave memory: out: no memory quota)",
            )
        )
    return problems


# Storage drivers that take `--storage-opt size=` (a cap on a box's writable layer). overlay2
# takes it only over xfs mounted with pquota; the others refuse the container at create.
_DISK_CAP_DRIVERS = ("devicemapper", "btrfs", "zfs", "windowsfilter")


def disk_cap_problem(driver: str, backing_fs: str) -> str | None:
    """Why the engine's storage cannot cap a box's disk (max_disk, resources.disk); None if it can."""
    if driver in _DISK_CAP_DRIVERS:
        return None
    if driver == "overlay2" and backing_fs == "xfs":
        return None  # if mounted with pquota, which only the engine's host can tell
    on = f" on {backing_fs}" if backing_fs else ""
    return (
        f"the storage driver {driver or '(unknown)'}{on} cannot cap a box's disk "
        "(Docker takes --storage-opt size= only on overlay2 over xfs with pquota, devicemapper, btrfs, zfs)"
    )
