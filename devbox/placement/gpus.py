"""GPUs as a reserved resource: who holds what, what is busy outside devbox, and allocation.

Pure core (holdings, outside use, allocate, conflicts) plus `inventory()`, which reads
DEVBOX_GPU_INVENTORY or runs nvidia-smi (inventory.py). Who holds a GPU is read from the
engine's labels (devbox.gpus on boxes that are created, running, restarting or paused), never
from a local file that could drift. docs/gpus.md explains the create-then-verify protocol that
keeps concurrent `devbox up`s from sharing a GPU.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from devbox.box.state import Box
from devbox.errors import NoCapacity, NotFound, Refused
from devbox.profile.model import GpuRequest

if TYPE_CHECKING:
    # Reading the inventory (nvidia-smi, its parsers) is imported when GPUs are asked for:
    # most boxes ask for none, and `up` is timed.
    from devbox.placement import inventory as host
    from devbox.placement.inventory import Gpu
    from devbox.policy.rules import Policy

# States in which a box keeps its GPUs: a created box is about to start, a paused one resumes.
HOLDING_STATES = ("created", "running", "restarting", "paused")


class NoFreeGpu(NoCapacity):
    """The GPUs asked for are held by other boxes (or do not exist): kind no-capacity."""


class NoSuchGpu(NotFound):
    """A GPU index or UUID this host does not have: no box going down would make it appear."""


class MoreGpusThanHost(Refused):
    """A count larger than the host's GPUs: waiting would never help, so not no-capacity."""


class NoGpuInventory(Refused):
    """GPUs were asked for on a host whose GPUs devbox cannot see: it hands out none unchecked."""


@dataclass(frozen=True)
class Busy:
    """A GPU in use by something that is no devbox box: its compute processes, memory used."""

    processes: int
    memory_used: int | None  # MiB, as nvidia-smi reports for the whole GPU

    def describe(self) -> str:
        """ "20990 MiB used, 1 process"."""
        memory = f"{self.memory_used} MiB used" if self.memory_used is not None else "memory n/a"
        return f"{memory}, {self.processes} process{'' if self.processes == 1 else 'es'}"


def inventory(environ: Mapping[str, str], policy: Policy | None = None) -> list[Gpu] | None:
    """The host's GPUs: declared (variable, else `policy`), else from nvidia-smi; None when neither is."""
    from devbox.placement import inventory as host

    return host.read(environ, policy).gpus


def require_inventory(environ: Mapping[str, str], policy: Policy | None = None) -> list[Gpu]:
    """The host's GPUs for a box that asks for some; refused when devbox cannot see them.

    Fail closed: a request sent unchecked would skip the holders and hand out GPUs others hold.
    """
    from devbox.placement import inventory as host

    reading = host.read(environ, policy)
    if reading.gpus is None:
        raise NoGpuInventory(
            f"devbox cannot see this host's GPUs ({reading.why_not}), so it hands none out",
            "install the NVIDIA driver so that nvidia-smi works, or declare the GPUs "
            "(DEVBOX_GPU_INVENTORY=8, or gpu_inventory: 8 in the policy); or start the box "
            "without GPUs: --gpus none",
        )
    return reading.gpus


def outside_use(
    gpus: list[Gpu],
    apps: list[host.ComputeApp],
    box_ids: set[str],
    held: Mapping[str, Box],
    busy_memory_mib: int,
) -> dict[str, Busy]:
    """GPU index → its use by anything but devbox boxes.

    Busy: compute processes whose cgroup names no box's container, or, on a GPU no box holds,
    more memory used than `busy_memory_mib` beyond what boxes' own processes account for
    (a process in another PID namespace is not always listed). Declared GPUs are bookkeeping:
    never busy.
    """
    by_uuid = {g.uuid: g for g in gpus if not g.declared}
    outside: dict[str, int] = {}
    ours: dict[str, int] = {}
    for app in apps:
        gpu = by_uuid.get(app.gpu_uuid)
        if gpu is None:
            continue
        if app.container is not None and app.container in box_ids:
            ours[gpu.index] = ours.get(gpu.index, 0) + (app.memory or 0)
        else:
            outside[gpu.index] = outside.get(gpu.index, 0) + 1
    busy = {}
    for gpu in by_uuid.values():
        processes = outside.get(gpu.index, 0)
        used = gpu.memory_used
        unexplained = used is not None and used - ours.get(gpu.index, 0) > busy_memory_mib
        if processes or (gpu.index not in held and unexplained):
            busy[gpu.index] = Busy(processes, used)
    return busy


def busy_text(busy: Mapping[str, Busy]) -> str:
    """ "GPU 0 (20990 MiB used, 1 process); GPU 3 (...)"."""
    return "; ".join(f"GPU {i} ({b.describe()})" for i, b in sorted(busy.items(), key=lambda x: int(x[0])))


def busy_warnings(ids: tuple[str, ...], busy: Mapping[str, Busy]) -> list[str]:
    """A warning for each GPU given to a box although something outside devbox uses it."""
    return [
        f"GPU {i} is busy outside devbox ({busy[i].describe()}): the box shares it with "
        "processes devbox did not start"
        for i in ids
        if i in busy
    ]


def held_ids(box: Box) -> tuple[str, ...]:
    """The GPU indices a box holds (its label lists them once allocated)."""
    if box.status not in HOLDING_STATES:
        return ()
    return tuple(g for g in box.gpus if g.isdecimal())


def holdings(boxes: list[Box], exclude: str | None = None) -> dict[str, Box]:
    """GPU index → the box holding it (`exclude`: a container name to leave out)."""
    held: dict[str, Box] = {}
    for box in boxes:
        if box.container != exclude:
            for index in held_ids(box):
                held[index] = box
    return held


def describe_holder(box: Box) -> str:
    """ "bob/train (since 2026-11-23 10:02)"."""
    from datetime import datetime

    since = datetime.fromtimestamp(box.created).strftime("%Y-%m-%d %H:%M") if box.created else "?"
    return f"{box.owner}/{box.name} (since {since})"


def holders_text(held: dict[str, Box]) -> str:
    by_box: dict[str, list[str]] = {}
    for index, box in sorted(held.items(), key=lambda item: int(item[0])):
        by_box.setdefault(describe_holder(box), []).append(index)
    return "; ".join(f"GPU {','.join(ids)}: {who}" for who, ids in by_box.items())


def allocate(
    request: GpuRequest, gpus: list[Gpu], held: dict[str, Box], busy: Mapping[str, Busy] | None = None
) -> tuple[str, ...]:
    """The GPU indices to give a box; raises NoFreeGpu naming the holders.

    A count never takes a GPU that is `busy` outside devbox; named GPUs and `all` may (the
    caller warns: busy_warnings), as the user asked for those very GPUs.
    """
    busy = busy or {}
    by_key = {g.index: g for g in gpus} | {g.uuid: g for g in gpus}
    unheld = [g for g in gpus if g.index not in held]
    free = [g for g in unheld if g.index not in busy]
    if request.kind == "count":
        if request.count > len(gpus):
            raise MoreGpusThanHost(
                f"asked for {request.count} GPUs, and this host has {len(gpus)}",
                f"ask for at most gpus: {len(gpus)}",
            )
        if len(free) < request.count:
            reasons = [f"held: {holders_text(held)}"] if held else []
            reasons += [f"busy outside devbox: {busy_text(busy)}"] if busy else []
            raise NoFreeGpu(
                f"no free GPU: asked for {request.count}, {len(free)} of {len(gpus)} free",
                "; ".join(reasons),
            )
        # Least used first: an idle GPU beats one another process is already loading.
        chosen = sorted(free, key=lambda g: (g.memory_used or 0, g.utilization or 0, int(g.index)))
        return tuple(sorted((g.index for g in chosen[: request.count]), key=int))
    if request.kind == "devices":
        unknown = [d for d in request.devices if d not in by_key]
        if unknown:
            known = ", ".join(g.index for g in gpus)
            raise NoSuchGpu(f"no GPU {', '.join(unknown)} on this host", f"GPUs here: {known}")
        wanted = [by_key[d].index for d in request.devices]
        taken = {i: held[i] for i in wanted if i in held}
        if taken:
            raise NoFreeGpu(f"GPU {', '.join(taken)} is held by another box", f"held: {holders_text(taken)}")
        return tuple(wanted)
    if request.kind == "all":
        if held:
            raise NoFreeGpu(
                f"gpus: all needs every GPU, but {len(held)} of {len(gpus)} are held",
                f"held: {holders_text(held)}; ask for a count instead (gpus: {len(free)})",
            )
        return tuple(g.index for g in gpus)
    return ()


def losing_to(
    mine: Box, ids: tuple[str, ...], others: list[Box], created_ns: Mapping[str, int]
) -> Box | None:
    """The box that keeps one of `ids` instead of `mine`, if any.

    Every `up` creates its container labelled with the GPUs it picked, then looks again:
    of two boxes holding the same GPU, the one the engine created first keeps it (ties: the
    smaller id). Each process reaches the same verdict from the engine's own data.
    """
    my_key = (created_ns[mine.id], mine.id)
    for other in others:
        overlaps = other.id != mine.id and set(held_ids(other)) & set(ids)
        if overlaps and (created_ns.get(other.id, 0), other.id) < my_key:
            return other
    return None
