"""Names of the labels devbox puts on containers and volumes; Docker holds all state in them."""

from __future__ import annotations

import json

PREFIX = "devbox."
OWNER = "devbox.owner"
BOX = "devbox.box"
PROFILE = "devbox.profile"
SPEC_HASH = "devbox.box.spec-hash"
GPUS = "devbox.placement.gpus"
VERSION = "devbox.version"
SSH_HOSTKEY = "devbox.ssh-hostkey"  # the box's public host key (devbox made it; not a secret)
PROTOCOL = "devbox.protocol"  # on an image: it follows the devbox image protocol (docs/image.md)
GPUS_DECLARED = "devbox.placement.gpus-declared"  # "1": the GPUs come from DEVBOX_GPU_INVENTORY, not a driver
CPUS = "devbox.cpus"  # nano-CPUs asked for, summed for the policy's per-user limits
MEMORY = "devbox.memory"  # bytes asked for, likewise
HELPER = "devbox.helper"  # on a short-lived container devbox runs for itself (never a box)
PORTS = "devbox.ports"  # jupyter:8888,ssh:22: names of the published ports, for ls and info
BACKEND = "devbox.backend"  # the engine backend that made the box ("docker")
BINDS = "devbox.binds"  # lab mode: JSON [{"pin", "source", "ro"}]: each pinned bind and the caller's path
PROJECT = "devbox.project"  # the folder a project profile's box is bound to (its relative binds)
SLURM_JOB = "devbox.slurm_job"  # the Slurm job a box was made in: its Epilog removes the box
NETWORK = "devbox.network"  # "1" on a network devbox made for one owner's boxes (lab mode)


def pinned_sources(box_labels: dict[str, str]) -> dict[str, str]:
    """Lab mode's pinned binds (ops/labbinds.py): pin path → the caller's path, the one people see."""
    try:
        pins = json.loads(box_labels.get(BINDS) or "[]")
        return {
            p["pin"]: p["source"]
            for p in pins
            if isinstance(p.get("pin"), str) and isinstance(p.get("source"), str)
        }
    except (ValueError, TypeError, AttributeError):
        return {}


def box_selector(owner: str | None = None) -> list[str]:
    """Label filters (`docker ps --filter label=…`) that select devbox boxes, optionally one owner's."""
    return [f"{OWNER}={owner}"] if owner else [OWNER]
