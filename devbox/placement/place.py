"""Creating a box where it may go: the policy's per-user sums, then GPUs no other box holds.

On one host, `up`s check the per-user sums, pick GPUs and create under a host-wide flock
(hostlock.py), which the kernel releases when its holder dies. Each `up` then looks again
after creating its labelled container: where two boxes claim a GPU, the one the engine
created first keeps it (gpus.losing_to) and the other removes its container and tries the
GPUs still free. That second check is the guard for clients on other hosts sharing one
engine (docs/gpus.md).
"""

from __future__ import annotations

import contextlib
import random
import time
from typing import TYPE_CHECKING

from devbox import hostlock
from devbox.box import labels, spec
from devbox.box.resolved import Resolved
from devbox.box.state import Box
from devbox.engine.base import Engine
from devbox.placement import gpus, usage
from devbox.placement.gpus import NoFreeGpu
from devbox.policy.rules import Limits
from devbox.profile.model import GpuRequest

if TYPE_CHECKING:
    from devbox.placement import inventory as host

ATTEMPTS = 8


def _asked_gpus(request: GpuRequest, inventory: list[host.Gpu] | None) -> int:
    if request.kind == "count":
        return request.count
    if request.kind == "devices":
        return len(request.devices)
    if request.kind == "all":
        return len(inventory or [])
    return 0


def create(
    engine: Engine,
    resolved: Resolved,
    env: dict[str, str],
    extra_labels: dict[str, str],
    notes: list[str] | None = None,
) -> tuple[str, spec.ContainerSpec]:
    """Create (not start) the box; returns its id and the spec with the GPUs it got.

    `notes` gets a warning for each GPU given although something outside devbox uses it.
    """
    wanted = resolved.spec
    inventory, limited = _constraints(resolved)
    # gpus: none is NVIDIA_VISIBLE_DEVICES=void in the spec itself (box/spec.py).
    if wanted.gpus.kind != "none" and inventory and not inventory[0].declared:
        # Declared GPUs have no driver to match.
        _check_cuda(engine, resolved, env)
    # Read before the lock: nvidia-smi takes a while on a busy host, and the lock is shared.
    apps = _compute_apps(resolved, inventory)
    if not limited and not inventory:
        # No GPUs asked (a GPU request without an inventory was refused above) and no sums
        # to keep: no listing, no lock.
        return engine.create(wanted, env, extra_labels), wanted
    # Within this host the lock serialises check-and-create, so no two `up`s both pass a
    # per-user limit or pick the same GPU. The engine's Created time alone cannot order
    # them: it is set before a new container becomes visible to others, so a later-visible
    # box can carry the earlier time. The verification below stays as the guard for
    # clients on other hosts sharing this engine.
    # Holders only list and create (a second or so); wait no longer than the box would be
    # given to get ready, but long enough for a queue of concurrent `up`s.
    wait = max(10.0, resolved.profile.ready_timeout)
    what = f"devbox up {wanted.name}: placing it"
    with hostlock.engine_lock(engine.host, resolved.settings.user_config_dir, what, timeout=wait):
        everyone = _admit(engine, resolved, inventory, limited)
        if not inventory:
            return engine.create(wanted, env, extra_labels), wanted
        declared = inventory[0].declared
        for _ in range(ATTEMPTS):
            held = gpus.holdings(everyone, exclude=wanted.name)
            busy = _busy(resolved, inventory, apps, everyone, held)
            ids = gpus.allocate(wanted.gpus, inventory, held, busy)
            chosen = spec.with_gpus(wanted, ids, declared)
            box_id = engine.create(chosen, {**env, "NVIDIA_VISIBLE_DEVICES": ",".join(ids)}, extra_labels)
            try:
                everyone = engine.list_boxes(None)
                winner = _winner_over(engine, box_id, ids, everyone)
            except BaseException:
                # The error that got here is the one to show, not one from cleaning up after it.
                with contextlib.suppress(Exception):
                    engine.remove(box_id)
                raise
            if winner is None:
                if notes is not None:
                    notes.extend(gpus.busy_warnings(ids, busy))
                return box_id, chosen
            engine.remove(box_id)
            time.sleep(random.uniform(0.02, 0.2))  # let the rivals settle before looking again
            everyone = [b for b in engine.list_boxes(None) if b.id != box_id]
    held = gpus.holdings(everyone, exclude=wanted.name)
    raise NoFreeGpu(
        f"no free GPU after {ATTEMPTS} tries: other boxes kept taking them",
        f"held: {gpus.holders_text(held)}; devbox gpus shows who holds what",
    )


def _compute_apps(resolved: Resolved, inventory: list[host.Gpu] | None) -> list[host.ComputeApp]:
    """Processes using the GPUs (none asked, or declared GPUs: none to ask the driver about)."""
    if not inventory or inventory[0].declared:
        return []
    from devbox.placement import inventory as host

    return host.compute_apps(resolved.settings.environ)


def _constraints(resolved: Resolved) -> tuple[list[host.Gpu] | None, bool]:
    """The GPU inventory to reserve from (None: no GPUs asked), and whether the policy has
    per-user limits to keep. GPUs asked on a host whose GPUs devbox cannot see: refused."""
    wanted = resolved.spec
    inventory = (
        gpus.require_inventory(resolved.settings.environ, resolved.policy)
        if wanted.gpus.kind != "none"
        else None
    )
    return inventory, resolved.policy.limits != Limits()


def _busy(
    resolved: Resolved,
    inventory: list[host.Gpu],
    apps: list[host.ComputeApp],
    everyone: list[Box],
    held: dict[str, Box],
) -> dict[str, gpus.Busy]:
    threshold = resolved.policy.gpu_busy_memory_mib
    return gpus.outside_use(inventory, apps, {b.id for b in everyone}, held, threshold)


def _check_cuda(engine: Engine, resolved: Resolved, env: dict[str, str]) -> None:
    """Refuse an image that needs a newer CUDA than the driver gives, before anything exists."""
    from devbox.placement import cuda
    from devbox.placement import inventory as host

    image = resolved.spec.image
    image_env = engine.image_env(image) or {}
    need = cuda.image_need(image_env, engine.image_labels(image) or {})
    if need is None or cuda.disabled(image_env, env):
        return
    driver = host.driver(resolved.settings.environ, resolved.policy)
    if driver is not None and driver.cuda is not None:  # unknown: the NVIDIA runtime still checks
        cuda.check(need, driver.cuda, driver.version, image)


def _admit(engine: Engine, resolved: Resolved, inventory: list[host.Gpu] | None, limited: bool) -> list[Box]:
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
    if inventory and not inventory[0].declared:
        _check_cuda(engine, resolved, dict(resolved.spec.env))
    if not limited and not inventory:
        return
    everyone = _admit(engine, resolved, inventory, limited)
    if inventory:
        held = gpus.holdings(everyone, exclude=resolved.spec.name)
        apps = _compute_apps(resolved, inventory)
        gpus.allocate(resolved.spec.gpus, inventory, held, _busy(resolved, inventory, apps, everyone, held))


def _winner_over(engine: Engine, box_id: str, ids: tuple[str, ...], everyone: list[Box]) -> Box | None:
    mine = next((b for b in everyone if b.id == box_id), None)
    if mine is None:
        return None
    rivals = [b for b in everyone if b.id != box_id and set(gpus.held_ids(b)) & set(ids)]
    if not rivals:
        return None
    created = {b.id: engine.created_ns(b.id) for b in [mine, *rivals]}
    return gpus.losing_to(mine, ids, rivals, created)


def start_checked(engine: Engine, resolved: Resolved, box: Box) -> None:
    """Start a stopped box again: its GPUs still free and the limits still kept, checked and
    started under the engine lock, so no concurrent `up` takes those GPUs in between.

    Every start of an existing box goes through here (`up` of a stopped box, a switch or a
    replacement putting a box back): a start is a placement too.
    """
    if not any(g.isdecimal() for g in box.gpus) and resolved.policy.limits == Limits():
        engine.start(box.id)  # nothing to hold or to count: no lock
        return
    what = f"devbox: starting {box.name} again"
    wait = max(10.0, resolved.profile.ready_timeout)
    with hostlock.engine_lock(engine.host, resolved.settings.user_config_dir, what, timeout=wait):
        check_restart(engine, resolved, box)
        engine.start(box.id)


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
