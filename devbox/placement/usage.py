"""The policy's per-user limits summed over the user's live boxes (read from their labels).

Pure: boxes and the new box's asks in, located refusals out.
"""

from __future__ import annotations

from devbox import sizes
from devbox.box import labels
from devbox.box.state import Box
from devbox.errors import NoCapacity, Origin, Problem
from devbox.placement.gpus import HOLDING_STATES, held_ids
from devbox.policy.rules import Policy


def _int_label(box: Box, key: str) -> int:
    value = box.labels.get(key, "")
    return int(value) if value.isdecimal() else 0


def check(
    policy: Policy, owner: str, boxes: list[Box], container: str, gpus: int, nano_cpus: int, memory: int
) -> None:
    """Refuse a new box of `owner` that would take them over a limit (NoCapacity, with each limit)."""
    live = [b for b in boxes if b.owner == owner and b.status in HOLDING_STATES and b.container != container]
    lim = policy.limits
    used_gpus = sum(len(held_ids(b)) for b in live)
    used_cpus = sum(_int_label(b, labels.CPUS) for b in live)
    used_memory = sum(_int_label(b, labels.MEMORY) for b in live)
    names = ", ".join(sorted(b.name for b in live)) or "none"
    problems: list[Problem] = []

    def refuse(rule: str, text: str) -> None:
        where = policy.origins.get(f"limits.{rule}") or Origin(policy.source)
        problems.append(
            Problem(where, text, f"stop one of your boxes first (yours: {names}): devbox down NAME")
        )

    if lim.max_boxes_per_user is not None and len(live) + 1 > lim.max_boxes_per_user:
        refuse(
            "max_boxes_per_user",
            f"max_boxes_per_user = {lim.max_boxes_per_user}: {owner} already runs {len(live)}",
        )
    if lim.max_gpus_per_user is not None and gpus and used_gpus + gpus > lim.max_gpus_per_user:
        refuse(
            "max_gpus_per_user",
            f"max_gpus_per_user = {lim.max_gpus_per_user}: {owner} holds {used_gpus} GPU(s), "
            f"asks for {gpus} more",
        )
    if lim.max_cpus is not None and nano_cpus and (used_cpus + nano_cpus) / 1e9 > lim.max_cpus:
        refuse(
            "max_cpus",
            f"max_cpus = {lim.max_cpus:g}: {owner} uses {used_cpus / 1e9:g} CPUs, "
            f"asks for {nano_cpus / 1e9:g} more",
        )
    if lim.max_memory is not None and memory and used_memory + memory > lim.max_memory:
        limit, used, asked = (sizes.format_size(v) for v in (lim.max_memory, used_memory or 0, memory))
        refuse("max_memory", f"max_memory = {limit}: {owner} uses {used}, asks for {asked} more")
    if problems:
        # Allowed on its own (the policy check passed), but not next to the boxes running now:
        # no capacity, not a refusal. The same request succeeds once one of them is down.
        raise NoCapacity(
            f"{owner} has reached a per-user limit of the lab policy",
            f"the limits count your running boxes; they are set in {policy.source}",
            problems=problems,
        )
