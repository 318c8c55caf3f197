"""GPUs as a reserved resource: the inventory, who holds what, and allocation.

Pure core (parse, holdings, allocate, conflicts) plus `inventory()`, which reads
DEVBOX_GPU_INVENTORY or runs nvidia-smi. Who holds a GPU is read from the engine's labels
(devbox.gpus on boxes that are created, running, restarting or paused), never from a local
file that could drift. docs/gpus.md explains the create-then-verify protocol that keeps
concurrent `devbox up`s from sharing a GPU.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from devbox.box.state import Box
from devbox.errors import DevboxError
from devbox.profile.model import GpuRequest

SMI_QUERY = "index,uuid,name,memory.total,memory.used,utilization.gpu"
# States in which a box keeps its GPUs: a created box is about to start, a paused one resumes.
HOLDING_STATES = ("created", "running", "restarting", "paused")


@dataclass(frozen=True)
class Gpu:
    """One GPU of the host (memory in MiB, utilisation in %)."""

    index: str
    uuid: str
    name: str
    memory_total: int
    memory_used: int
    utilization: int
    declared: bool = False


class NoFreeGpu(DevboxError):
    """The GPUs asked for are held by other boxes (or do not exist)."""


def _int(text: str) -> int:
    try:
        return int(float(text.strip()))
    except ValueError:
        return 0  # nvidia-smi prints "[N/A]" on some boards


def parse_smi_csv(text: str, declared: bool = False) -> list[Gpu]:
    """Rows of `nvidia-smi --query-gpu=index,uuid,name,memory.total,memory.used,utilization.gpu
    --format=csv,noheader,nounits`."""
    import csv  # here, not at the top: most boxes ask for no GPU, and `up` is timed

    gpus = []
    for row in csv.reader(text.splitlines()):
        if len(row) < 6 or not row[0].strip().isdecimal():
            continue
        index, uuid, name = (c.strip() for c in row[:3])
        gpus.append(Gpu(index, uuid, name, _int(row[3]), _int(row[4]), _int(row[5]), declared))
    return gpus


def declared_inventory(value: str) -> list[Gpu]:
    """DEVBOX_GPU_INVENTORY: a count ("8") or the path of a CSV in nvidia-smi's format."""
    if value.strip().isdecimal():
        return [Gpu(str(i), f"GPU-declared-{i}", "declared GPU", 0, 0, 0, True) for i in range(int(value))]
    path = Path(value)
    if not path.is_file():
        raise DevboxError(
            f"DEVBOX_GPU_INVENTORY={value} is neither a count nor a file",
            "set it to a number of GPUs (8) or an nvidia-smi CSV file",
        )
    gpus = parse_smi_csv(path.read_text(), declared=True)
    if not gpus:
        # Silently meaning "no GPUs" would refuse every GPU box with a misleading message.
        raise DevboxError(
            f"DEVBOX_GPU_INVENTORY={value} lists no GPU",
            "each line: index, uuid, name, memory.total, memory.used, utilization.gpu "
            "(nvidia-smi --query-gpu=... --format=csv,noheader,nounits)",
        )
    return gpus


def inventory(environ: Mapping[str, str]) -> list[Gpu] | None:
    """The host's GPUs: declared, else from nvidia-smi; None when neither is available."""
    declared = environ.get("DEVBOX_GPU_INVENTORY")
    if declared:
        return declared_inventory(declared)
    import shutil
    import subprocess

    smi = shutil.which("nvidia-smi")
    if not smi:
        return None
    result = subprocess.run(
        [smi, f"--query-gpu={SMI_QUERY}", "--format=csv,noheader,nounits"],
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )
    return parse_smi_csv(result.stdout) if result.returncode == 0 else None


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


def allocate(request: GpuRequest, gpus: list[Gpu], held: dict[str, Box]) -> tuple[str, ...]:
    """The GPU indices to give a box; raises NoFreeGpu naming the holders."""
    by_key = {g.index: g for g in gpus} | {g.uuid: g for g in gpus}
    free = [g for g in gpus if g.index not in held]
    if request.kind == "count":
        if len(free) < request.count:
            raise NoFreeGpu(
                f"no free GPU: asked for {request.count}, {len(free)} of {len(gpus)} free",
                f"held: {holders_text(held)}" if held else "this host has fewer GPUs than that",
            )
        # Least used first: an idle GPU beats one another process is already loading.
        chosen = sorted(free, key=lambda g: (g.memory_used, g.utilization, int(g.index)))[: request.count]
        return tuple(sorted((g.index for g in chosen), key=int))
    if request.kind == "devices":
        unknown = [d for d in request.devices if d not in by_key]
        if unknown:
            known = ", ".join(g.index for g in gpus)
            raise NoFreeGpu(f"no GPU {', '.join(unknown)} on this host", f"GPUs here: {known}")
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
