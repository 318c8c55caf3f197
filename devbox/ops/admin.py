"""The lab admin's views: GPU holders, health checks (doctor), pruning stopped boxes."""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from devbox import sizes
from devbox.box.state import Box
from devbox.engine.base import EngineUnavailable
from devbox.engine.docker.engine import DockerEngine as Engine
from devbox.errors import DevboxError
from devbox.placement import gpus
from devbox.policy import rules
from devbox.settings import Settings

Status = Literal["ok", "warn", "fail"]


@dataclass(frozen=True)
class GpuRow:
    """One GPU and the box holding it."""

    gpu: gpus.Gpu
    holder: Box | None


def gpu_rows(engine: Engine, settings: Settings) -> list[GpuRow] | None:
    """Every GPU with its holder; None when the host has no known GPUs."""
    inventory = gpus.inventory(settings.environ)
    if inventory is None:
        return None
    held = gpus.holdings(engine.list_boxes(None))
    return [GpuRow(g, held.get(g.index)) for g in inventory]


@dataclass(frozen=True)
class Check:
    """One doctor check."""

    name: str
    status: Status
    detail: str
    fix: str = ""


def _engine_checks(engine: Engine) -> tuple[list[Check], dict[str, Any] | None]:
    checks = []
    try:
        version = engine.version()
    except EngineUnavailable as exc:
        return [Check("engine", "fail", exc.message, exc.hint or "")], None
    checks.append(
        Check(
            "engine",
            "ok",
            f"Docker {version.get('Version')} (API {version.get('ApiVersion')}) at {engine.host}",
        )
    )
    if engine.host.startswith("unix://"):
        path = engine.host[len("unix://") :]
        ok = os.access(path, os.R_OK | os.W_OK)
        checks.append(
            Check(
                "socket",
                "ok" if ok else "fail",
                f"{path} {'is' if ok else 'is not'} writable by you",
                "" if ok else "sudo usermod -aG docker $USER, then log in again",
            )
        )
    return checks, engine.system_info()


def doctor(engine: Engine, settings: Settings) -> list[Check]:
    """Everything devbox needs from this host, each ok / warn / fail with its fix."""
    checks, info = _engine_checks(engine)
    if info is not None:
        runtimes = info.get("Runtimes") or {}
        cdi = info.get("CDISpecDirs") or []
        if isinstance(runtimes, dict) and "nvidia" in runtimes:
            checks.append(Check("gpu runtime", "ok", "the nvidia runtime is registered"))
        elif cdi:
            checks.append(Check("gpu runtime", "ok", f"CDI devices from {', '.join(str(d) for d in cdi)}"))
        else:
            checks.append(
                Check(
                    "gpu runtime",
                    "fail",
                    "no NVIDIA runtime or CDI devices: boxes with gpus: cannot get GPUs",
                    "install the NVIDIA Container Toolkit, then `nvidia-ctk runtime configure "
                    "--runtime=docker` and restart dockerd (or use --gpus none)",
                )
            )
        root = str(info.get("DockerRootDir") or "/var/lib/docker")
        if engine.host.startswith("unix://") and Path(root).exists():
            free = shutil.disk_usage(root).free
            status: Status = "fail" if free < 2 * 1024**3 else "warn" if free < 20 * 1024**3 else "ok"
            checks.append(
                Check(
                    "disk",
                    status,
                    f"{sizes.human_size(free)} free for images in {root}",
                    "" if status == "ok" else "docker image prune; or move DockerRootDir to a bigger disk",
                )
            )
    try:
        inventory = gpus.inventory(settings.environ)
    except DevboxError as exc:
        checks.append(Check("gpus", "fail", exc.message, exc.hint or ""))
        inventory = []
    if inventory is None:
        checks.append(
            Check(
                "gpus",
                "warn",
                "no nvidia-smi and no DEVBOX_GPU_INVENTORY: no GPUs to hand out",
                "install the NVIDIA driver, or declare GPUs: DEVBOX_GPU_INVENTORY=8",
            )
        )
    elif inventory:
        kind = "declared (DEVBOX_GPU_INVENTORY)" if inventory[0].declared else "visible to nvidia-smi"
        checks.append(Check("gpus", "ok", f"{len(inventory)} GPU(s) {kind}"))
    try:
        lab = rules.load(settings)
    except DevboxError as exc:
        checks.append(Check("policy", "fail", exc.message, f"devbox policy check {settings.policy_path}"))
        lab = None
    if lab is not None:
        checks.append(Check("policy", "ok", lab.source))
        shm = lab.defaults.values.get("shm_size") if lab.defaults else None
        if shm and shm >= 1024**3:
            checks.append(Check("default shm", "ok", f"policy default shm_size {sizes.format_size(shm)}"))
        else:
            checks.append(
                Check(
                    "default shm",
                    "warn",
                    "boxes without shm_size get Docker's 64 MB /dev/shm",
                    "add defaults: {shm_size: 8g} to the policy file",
                )
            )
    return checks


def parse_age(text: str) -> float:
    """ "7d", "12h", "30m", "45s" → seconds."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
    if len(text) < 2 or text[-1] not in units or not text[:-1].isdecimal():
        raise DevboxError(f"--older-than {text!r} is not an age", "e.g. 7d, 12h, 30m")
    return int(text[:-1]) * units[text[-1]]


def prunable(engine: Engine, owner: str | None, older_than: float) -> list[Box]:
    """Stopped boxes (exited or never started) created more than `older_than` seconds ago."""
    cutoff = time.time() - older_than
    return [
        b
        for b in engine.list_boxes(owner)
        if b.status in ("exited", "created", "dead") and b.created <= cutoff
    ]


def idle(engine: Engine, settings: Settings) -> list[tuple[Box, tuple[str, ...]]]:
    """Running boxes whose every GPU shows 0 % utilisation now (a snapshot; report only)."""
    inventory = {g.index: g for g in gpus.inventory(settings.environ) or []}
    found = []
    for box in engine.list_boxes(None):
        ids = gpus.held_ids(box)
        if box.running and ids and all(i in inventory and inventory[i].utilization == 0 for i in ids):
            found.append((box, ids))
    return found
