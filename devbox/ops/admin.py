"""The lab admin's views: GPU holders, health checks (doctor), pruning stopped boxes."""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from devbox import sizes
from devbox.box.state import Box
from devbox.engine.base import Engine, EngineFacts, EngineUnavailable
from devbox.errors import DevboxError, InvalidInput, Origin, Problem
from devbox.placement import gpus, inventory
from devbox.policy import capacity, rules
from devbox.settings import Settings

Status = Literal["ok", "warn", "fail"]
NVIDIA_HOOK = "nvidia-container-runtime-hook"


def _policy_or_none(settings: Settings) -> rules.Policy | None:
    """The policy in force, for its gpu_inventory; None when it is broken (doctor reports that)."""
    try:
        return rules.load(settings)
    except DevboxError:
        return None


def _hook_path(settings: Settings) -> str:
    """Where dockerd would look for the hook: the caller's PATH and the system folders."""
    return ":".join([settings.environ.get("PATH", ""), "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin"])


@dataclass(frozen=True)
class GpuRow:
    """One GPU, the box holding it, and its use outside devbox (None: none seen)."""

    gpu: inventory.Gpu
    holder: Box | None
    busy: gpus.Busy | None = None


def gpu_rows(engine: Engine, settings: Settings) -> list[GpuRow] | None:
    """Every GPU with its holder and outside use; None when the host has no known GPUs."""
    found = inventory.read(settings.environ, _policy_or_none(settings)).gpus
    if found is None:
        return None
    boxes = engine.list_boxes(None)
    held = gpus.holdings(boxes)
    real = bool(found) and not found[0].declared
    apps = inventory.compute_apps(settings.environ) if real else []
    try:
        threshold = rules.load(settings).gpu_busy_memory_mib
    except DevboxError:
        threshold = rules.GPU_BUSY_MEMORY_MIB  # a broken policy is doctor's to report, not this view's
    busy = gpus.outside_use(found, apps, {b.id for b in boxes}, held, threshold)
    return [GpuRow(g, held.get(g.index), busy.get(g.index)) for g in found]


def gpu_driver(settings: Settings) -> inventory.Driver | None:
    """The NVIDIA driver's version and the CUDA version it supports (None: no driver to ask)."""
    return inventory.driver(settings.environ, _policy_or_none(settings))


@dataclass(frozen=True)
class Check:
    """One doctor check."""

    name: str
    status: Status
    detail: str
    fix: str = ""


def _engine_checks(engine: Engine, lab: bool = False) -> tuple[list[Check], EngineFacts | None]:
    checks = []
    try:
        facts = engine.facts()
    except EngineUnavailable as exc:
        return [Check("engine", "fail", exc.message, exc.hint or "")], None
    from devbox.engine import context_name

    named = context_name()
    where = f"{engine.host} (docker context {named})" if named else engine.host
    engine_is = f"{facts.product} {facts.version} (API {facts.api_version})"
    checks.append(Check("engine", "ok", f"{engine_is} at {where}"))
    if engine.host.startswith("unix://"):
        path = engine.host[len("unix://") :]
        ok = os.access(path, os.R_OK | os.W_OK)
        if lab:  # the helper runs as root: the socket is its, and the caller needs none of their own
            checks.append(Check("socket", "ok", f"{path} is reached through the lab helper (lab mode)"))
            return checks, facts
        checks.append(
            Check(
                "socket",
                "ok" if ok else "fail",
                f"{path} {'is' if ok else 'is not'} writable by you",
                "" if ok else "sudo usermod -aG docker $USER, then log in again",
            )
        )
    return checks, facts


def _gpu_checks(settings: Settings) -> tuple[Check, list[inventory.Gpu] | None]:
    """The `gpus` check (with the driver and CUDA versions), and the GPUs found."""
    policy = _policy_or_none(settings)  # read once: the inventory and the driver both ask it
    try:
        reading = inventory.read(settings.environ, policy)
    except DevboxError as exc:
        return Check("gpus", "fail", exc.message, exc.hint or ""), None
    found = reading.gpus
    if found is None:
        check = Check(
            "gpus",
            "warn",
            f"no GPUs to hand out: {reading.why_not} and DEVBOX_GPU_INVENTORY is unset",
            "install the NVIDIA driver, or declare GPUs: DEVBOX_GPU_INVENTORY=8",
        )
        return check, None
    if found and found[0].declared:
        where = "DEVBOX_GPU_INVENTORY or the policy's gpu_inventory"
        return Check("gpus", "ok", f"{len(found)} GPU(s) declared ({where})"), found
    driver = inventory.driver(settings.environ, policy)
    versions = (
        f"; driver {driver.version or 'unknown'}, CUDA {driver.cuda or 'unknown'}"
        if driver
        else "; driver and CUDA versions unknown"
    )
    status: Status = "ok" if found else "warn"
    return Check("gpus", status, f"{len(found)} GPU(s) visible to nvidia-smi{versions}"), found


def doctor(engine: Engine, settings: Settings) -> list[Check]:
    """Everything devbox needs from this host, each ok / warn / fail with its fix."""
    checks, facts = _engine_checks(engine, settings.lab)
    gpu_checks = _gpu_checks(settings)
    found = gpu_checks[1]
    if facts is not None:
        if "nvidia" in facts.runtimes:
            checks.append(Check("gpu runtime", "ok", "the nvidia runtime is registered"))
        elif facts.cdi_dirs:
            checks.append(Check("gpu runtime", "ok", f"CDI devices from {', '.join(facts.cdi_dirs)}"))
        elif engine.host.startswith("unix://") and shutil.which(NVIDIA_HOOK, path=_hook_path(settings)):
            # The toolkit without a registered runtime: dockerd finds this hook on its PATH at
            # start and serves --gpus through its own nvidia device driver (docker info is silent).
            checks.append(Check("gpu runtime", "ok", f"{NVIDIA_HOOK} installed: Docker's --gpus support"))
        else:
            declared = bool(found and found[0].declared)
            checks.append(
                Check(
                    "gpu runtime",
                    # Declared GPUs are bookkeeping (no device request): no runtime needed yet.
                    "warn" if declared else "fail",
                    "no NVIDIA runtime or CDI devices; the GPUs here are declared "
                    "(DEVBOX_GPU_INVENTORY), so boxes get them as bookkeeping, without devices"
                    if declared
                    else "no NVIDIA runtime or CDI devices: boxes with gpus: cannot get GPUs",
                    "install the NVIDIA Container Toolkit, then `nvidia-ctk runtime configure "
                    "--runtime=docker` and restart dockerd (or use --gpus none)",
                )
            )
        root = facts.storage_root
        if root and engine.host.startswith("unix://") and Path(root).exists():
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
    checks.append(gpu_checks[0])
    try:
        lab = rules.load(settings)
    except DevboxError as exc:
        checks.append(Check("policy", "fail", exc.message, f"devbox policy check {settings.policy_path}"))
        lab = None
    if lab is not None:
        checks.append(Check("policy", "ok", lab.source))
        checks += [
            Check("policy limit", status, text, fix) for status, text, fix in policy_warnings(lab, facts)
        ]
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
    return checks + lab_checks(engine)


def lab_checks(engine: Engine) -> list[Check]:
    """Lab mode: off, on and sound, or on and changeable by a user (fail); who can step around it."""
    from devbox.ops import labcheck

    found = labcheck.status(engine=engine.host)
    return [Check(name, status, detail, fix) for name, status, detail, fix in labcheck.doctor_checks(found)]


def policy_warnings(lab: rules.Policy, facts: EngineFacts | None) -> list[tuple[Status, str, str]]:
    """(status, what, fix) for each limit this host cannot honour: more CPUs or memory than it
    has (boxes get the host's amount), or a disk cap its storage driver cannot set (every
    box would be refused: fail). `facts` None: the engine was not asked."""
    found: list[tuple[Status, str, str]] = [
        ("warn", text, "lower it to what this host has, or keep it for bigger hosts sharing the file")
        for text in capacity.over_host(lab.limits, capacity.local())
    ]
    if lab.limits.max_disk is not None:
        if facts is None:
            found.append(
                (
                    "warn",
                    "limits.max_disk: the engine was not asked whether it can cap disks",
                    "devbox doctor",
                )
            )
        elif (problem := capacity.disk_cap_problem(facts.storage_driver, facts.backing_fs)) is not None:
            fix = "remove limits.max_disk, or give Docker a data root on xfs mounted with pquota"
            found.append(("fail", f"limits.max_disk is set but {problem}: every box would be refused", fix))
    return found


def parse_age(text: str) -> float:
    """ "7d", "12h", "30m", "45s" → seconds."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
    if len(text) < 2 or text[-1] not in units or not text[:-1].isdecimal():
        raise InvalidInput(
            f"--older-than {text!r} is not an age",
            [Problem(Origin("--older-than"), "not an age")],
            "e.g. 7d, 12h, 30m",
        )
    return int(text[:-1]) * units[text[-1]]


# A box that was made but has not started yet may be an `up` still at work (files copied in,
# volumes handed over): not prunable until it has stayed unstarted this long.
STARTING_S = 600


def prunable(engine: Engine, owner: str | None, older_than: float) -> list[Box]:
    """Stopped boxes (exited, dead, or never started for STARTING_S) created more than
    `older_than` seconds ago. Never an old box a rebuild set aside (NAME.replaced): it goes
    back if the new one fails."""
    from devbox.ops.replace import is_set_aside  # only prune needs it, not doctor

    now = time.time()
    return [
        b
        for b in engine.list_boxes(owner)
        if b.status in ("exited", "created", "dead")
        and b.created <= now - older_than
        and not (b.status == "created" and b.created > now - STARTING_S)
        and not is_set_aside(b.container)
    ]


def idle(engine: Engine, settings: Settings) -> list[tuple[Box, tuple[str, ...]]]:
    """Running boxes whose every GPU shows 0 % utilisation now (a snapshot; report only)."""
    by_index = {g.index: g for g in gpus.inventory(settings.environ, _policy_or_none(settings)) or []}
    found = []
    for box in engine.list_boxes(None):
        ids = gpus.held_ids(box)
        if box.running and ids and all(i in by_index and by_index[i].utilization == 0 for i in ids):
            found.append((box, ids))
    return found
