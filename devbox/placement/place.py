"""Creating a box where it may go: the policy's per-user sums, then GPUs no other box holds.

On one host, `up`s check the per-user sums, pick GPUs and create under a host-wide flock
(hostlock.py), which the kernel releases when its holder dies. Each `up` then looks again
after creating its labelled container: where two boxes claim a GPU, the one the engine
created first keeps it (gpus.losing_to) and the other removes its container and tries the
GPUs still free. That second check is the guard for clients on other hosts sharing one
engine (docs/gpus.md).
"""

from __future__ import annotations

import random
import time

from devbox import hostlock
from devbox.box import labels, spec
from devbox.box.resolved import Resolved
from devbox.box.state import Box
from devbox.engine.docker.engine import DockerEngine as Engine
from devbox.placement import gpus, usage
from devbox.placement.gpus import NoFreeGpu
from devbox.policy.rules import Limits
from devbox.profile.model import GpuRequest

ATTEMPTS = 8


def _asked_gpus(request: GpuRequest, inventory: list[gpus.Gpu] | None) -> int:
    if request.kind == "count":
        return request.count
    if request.kind == "devices":
        return len(request.devices)
    if request.kind == "all":
        return len(inventory or [])
    return 0


def create(
    engine: Engine, resolved: Resolved, env: dict[str, str], extra_labels: dict[str, str]
) -> tuple[str, spec.ContainerSpec]:
    """Create (not start) the box; returns its id and the spec with the GPUs it got."""
    wanted = resolved.spec
    inventory, limited = _constraints(resolved)
    if not limited and not inventory:
        # No sums to keep and no inventory to reserve from: the engine attaches what the
        # request says (or explains that it has no GPU runtime). No listing, no lock.
        return engine.create(wanted, env, extra_labels), wanted
    # Within this host the lock serialises check-and-create, so no two `up`s both pass a
    # per-user limit or pick the same GPU. The engine's Created time alone cannot order
    # them: it is set before a new container becomes visible to others, so a later-visible
    # box can carry the earlier time. The verification below stays as the guard for
    # clients on other hosts sharing this engine.
    with hostlock.held(f"gpus {engine.host}"):
        everyone = _admit(engine, resolved, inventory, limited)
        if not inventory:
            return engine.create(wanted, env, extra_labels), wanted
        declared = inventory[0].declared
        for _ in range(ATTEMPTS):
            ids = gpus.allocate(wanted.gpus, inventory, gpus.holdings(everyone, exclude=wanted.name))
            chosen = spec.with_gpus(wanted, ids, declared)
            box_id = engine.create(chosen, {**env, "NVIDIA_VISIBLE_DEVICES": ",".join(ids)}, extra_labels)
            try:
                everyone = engine.list_boxes(None)
                winner = _winner_over(engine, box_id, ids, everyone)
            except BaseException:
                engine.remove(box_id)
                raise
            if winner is None:
                return box_id, chosen
            engine.remove(box_id)
            time.sleep(random.uniform(0.02, 0.2))  # let the rivals settle before looking again
            everyone = [b for b in engine.list_boxes(None) if b.id != box_id]
    held = gpus.holdings(everyone, exclude=wanted.name)
    raise NoFreeGpu(
        f"no free GPU after {ATTEMPTS} tries: other boxes kept taking them",
        f"held: {gpus.holders_text(held)}; devbox gpus shows who holds what",
    )


def _constraints(resolved: Resolved) -> tuple[list[gpus.Gpu] | None, bool]:
    """The GPU inventory to reserve from (None: no GPUs asked, or none known), and whether
    the policy has per-user limits to keep."""
    wanted = resolved.spec
    inventory = gpus.inventory(resolved.settings.environ) if wanted.gpus.kind != "none" else None
    return inventory, resolved.policy.limits != Limits()


def _admit(engine: Engine, resolved: Resolved, inventory: list[gpus.Gpu] | None, limited: bool) -> list[Box]:
    """Every box on the engine, after checking the owner's per-user limits against them."""
    everyone = engine.list_boxes(None)
    if limited:
        wanted = resolved.spec
        usage.check(
            resolved.policy,
            wanted.owner,
            everyone,
            wanted.name,
            _asked_gpus(wanted.gpus, inventory),
            wanted.nano_cpus or 0,
            wanted.memory or 0,
        )
    return everyone


def check_fits(engine: Engine, resolved: Resolved) -> None:
    """Raise what `create` would for limits or GPUs, creating nothing.

    `rebuild` asks before it removes the old box, so a rebuild that cannot get GPUs leaves
    the old box as it was. The old box, having the same name, does not count against itself.
    """
    inventory, limited = _constraints(resolved)
    if not limited and not inventory:
        return
    everyone = _admit(engine, resolved, inventory, limited)
    if inventory:
        gpus.allocate(resolved.spec.gpus, inventory, gpus.holdings(everyone, exclude=resolved.spec.name))


def _winner_over(engine: Engine, box_id: str, ids: tuple[str, ...], everyone: list[Box]) -> Box | None:
    mine = next((b for b in everyone if b.id == box_id), None)
    if mine is None:
        return None
    rivals = [b for b in everyone if b.id != box_id and set(gpus.held_ids(b)) & set(ids)]
    if not rivals:
        return None
    created = {b.id: engine.created_ns(b.id) for b in [mine, *rivals]}
    return gpus.losing_to(mine, ids, rivals, created)


def check_restart(engine: Engine, resolved: Resolved, box: Box) -> None:
    """Before a stopped box starts again: its GPUs must still be free, and the limits hold."""
    everyone = engine.list_boxes(None)
    ids = tuple(g for g in box.gpus if g.isdecimal())
    taken = {i: b for i, b in gpus.holdings(everyone, exclude=box.container).items() if i in ids}
    if taken:
        holders = "; ".join(f"GPU {i}: {gpus.describe_holder(b)}" for i, b in sorted(taken.items()))
        raise NoFreeGpu(
            f"box '{box.name}' had GPU {', '.join(taken)}, which another box took while it was stopped",
            f"held: {holders}. `devbox rebuild {box.name}` gives it free GPUs",
        )
    usage.check(
        resolved.policy,
        box.owner,
        everyone,
        box.container,
        len(ids),
        int(box.labels.get(labels.CPUS, "0") or 0),
        int(box.labels.get(labels.MEMORY, "0") or 0),
    )
