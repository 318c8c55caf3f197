"""Parsers for what a box may take from the host: `gpus:`, `shm_size:` and `resources:`."""

from __future__ import annotations

import math
import re
from typing import TYPE_CHECKING, Any

from devbox import sizes
from devbox.profile import files
from devbox.profile.model import GpuRequest
from devbox.profile.yamlsrc import KeyPath

if TYPE_CHECKING:
    from devbox.profile.fields import LayerParser

_GPU_ID_RE = re.compile(r"^(\d+|(GPU|MIG)-[0-9A-Za-z-]+)$")
# A size written without a unit below this is almost surely "8" meant as "8g", not 8 bytes.
_SMALLEST_BARE_SIZE = 1024**2
_BARE_NUMBER_RE = re.compile(r"^\s*[0-9.]+\s*(i?b)?\s*$", re.IGNORECASE)  # 8, 1.5, 8ib: no unit
_FEWEST_CPUS = 0.01
# Linux builds for at most 8192 CPUs (NR_CPUS with MAXSMP); Docker also refuses more than
# its host has, but that host is the engine's, known only at `up`.
MOST_CPUS = 8192
_MOST_GPUS = 1024
_LEAST_MEMORY = 6 * 1024**2
# The kernel's PID_MAX_LIMIT: pids.max refuses more ("invalid argument" when the box starts).
MOST_PIDS = 4 * 1024**2


def parse_gpus(raw: Any) -> GpuRequest | str:
    """A GpuRequest for any accepted form, or an error message."""
    if isinstance(raw, bool):
        return "gpus is all, none, a count or a list of GPU indices/UUIDs, not true/false"
    if isinstance(raw, int):
        if raw > _MOST_GPUS:
            return f"gpus: {raw} is more GPUs than a machine has"
        return (
            GpuRequest("count", count=raw)
            if raw > 0
            else GpuRequest("none")
            if raw == 0
            else "a GPU count cannot be negative"
        )
    if isinstance(raw, str):
        text = raw.strip().lower()
        if text in ("all", "none"):
            return GpuRequest(text)  # type: ignore[arg-type]
        if text.isdecimal():
            # A quoted number reads like CUDA_VISIBLE_DEVICES: "0" meaning GPU 0, not zero GPUs.
            # (--gpus N reaches here as a number: flags.py.)
            if len(text) > 6:
                return f"gpus: {text[:12]}… is more GPUs than a machine has"
            if int(text) == 0:
                return (
                    'gpus: "0" reads like CUDA_VISIBLE_DEVICES=0 but would mean no GPU: '
                    "for GPU 0 write gpus: [0], for one GPU gpus: 1, for none gpus: none"
                )
            return (
                f'gpus: "{text}" is text, not a number: for {text} GPU(s) write gpus: {text}, '
                f"for GPU {text} gpus: [{text}]"
            )
        if "," not in text and not _GPU_ID_RE.match(raw.strip()):
            return f"gpus: {raw!r} is not all, none, a count or a list of GPU indices/UUIDs"
        raw = [part.strip() for part in raw.split(",")]
    if isinstance(raw, list) and raw:
        ids = [str(item) for item in raw]
        bad = [
            i for i, item in zip(ids, raw, strict=True) if isinstance(item, bool) or not _GPU_ID_RE.match(i)
        ]
        if bad:
            return f"gpus: {bad[0]!r} is not a GPU index or UUID (GPU-…)"
        ids = [(i.lstrip("0") or "0") if i.isdecimal() else i for i in ids]  # 03 and 3 are one GPU
        if len(set(ids)) != len(ids):
            return "gpus: the same GPU is listed twice"
        return GpuRequest("devices", devices=tuple(ids))
    return "gpus is all, none, a count (2) or a list of GPU indices/UUIDs ([0, 3])"


def parse_gpu_key(p: LayerParser, raw: Any, path: KeyPath) -> GpuRequest | None:
    result = parse_gpus(raw)
    if isinstance(result, str):
        p.fail(path, result, "e.g. gpus: all | none | 2 | [0, 3]")
        return None
    return result


def parse_size_key(p: LayerParser, raw: Any, path: KeyPath) -> int | None:
    """A docker size in bytes; a bare number under 1 MiB is refused as a likely missing unit."""
    size = sizes.parse_size(raw)
    shown = files.shown(repr(raw) if isinstance(raw, str) else str(raw), 60)
    if size is None:
        p.fail(path, f"{path[-1]}: {shown} is not a size", "a number with b, k, m or g: 8g, 512m")
    elif size > sizes.MAX_SIZE:
        p.fail(path, f"{path[-1]}: {shown} is more than Docker can take (8 EiB)", "e.g. 8g")
        return None
    elif size < _SMALLEST_BARE_SIZE and _BARE_NUMBER_RE.match(str(raw)):
        p.fail(path, f"{path[-1]}: {raw} means {raw} bytes", f"write the unit: {raw}g or {raw}m")
        return None
    return size


def _number(raw: Any) -> float | None:
    """A finite number from YAML or a flag; inf and nan are not quotas."""
    if isinstance(raw, bool):
        return None
    try:
        number = float(raw) if isinstance(raw, (int, float, str)) else None
    except (ValueError, OverflowError):
        return None
    return number if number is not None and math.isfinite(number) else None


def parse_resources(p: LayerParser, raw: Any, path: KeyPath) -> dict[str, Any] | None:
    spec = p.mapping(raw, path, "resources")
    if spec is None:
        return None
    p.known_keys(spec, path, ("cpus", "memory", "pids", "disk"))
    result: dict[str, Any] = {}
    if "cpus" in spec:
        cpus = _number(spec["cpus"])
        if cpus is None or cpus <= 0:
            p.fail(
                (*path, "cpus"),
                f"cpus must be a positive number, not {files.shown(repr(spec['cpus']), 40)}",
                "e.g. cpus: 4 or 0.5",
            )
        elif cpus < _FEWEST_CPUS:
            # Docker refuses quotas under 0.01 CPU, and one that rounds to 0 means "no limit".
            p.fail((*path, "cpus"), f"cpus {spec['cpus']!r} is below Docker's smallest quota", "cpus: 0.01")
        elif cpus > MOST_CPUS:
            p.fail(
                (*path, "cpus"),
                f"cpus {files.shown(str(spec['cpus']), 40)} is more CPUs than Linux runs on ({MOST_CPUS})",
                "ask for what the box needs, e.g. cpus: 4",
            )
        else:
            result["cpus"] = cpus
    if "memory" in spec:
        memory = parse_size_key(p, spec["memory"], (*path, "memory"))
        if memory is not None and memory < _LEAST_MEMORY:
            p.fail(
                (*path, "memory"), f"memory {spec['memory']!r} is below Docker's 6 MiB minimum", "memory: 6m"
            )
        elif memory is not None:
            result["memory"] = memory
    if "pids" in spec:
        pids = _number(spec["pids"])
        if pids is None or pids < 1 or pids != int(pids):
            p.fail(
                (*path, "pids"),
                f"pids must be a positive whole number, not {files.shown(repr(spec['pids']), 40)}",
                "e.g. pids: 4096",
            )
        elif pids > MOST_PIDS:
            p.fail(
                (*path, "pids"),
                f"pids {files.shown(str(spec['pids']), 40)} is more than the kernel allows ({MOST_PIDS})",
                "e.g. pids: 4096",
            )
        else:
            result["pids"] = int(pids)
    if "disk" in spec:
        disk = parse_size_key(p, spec["disk"], (*path, "disk"))
        if disk is not None:
            result["disk"] = disk
    return result
