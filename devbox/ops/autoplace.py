"""`up --host auto`: ask every host for its GPUs at once, then `up` on one that fits.

Among the hosts with enough free GPUs one is drawn at random, weighted by its free GPUs:
clients starting at the same moment spread out instead of all picking the emptiest host.
The server still decides (its lock and policy): a host that answers `no-capacity` (someone
else was faster) or cannot be reached is dropped and the next is drawn from the rest.
Any other error (an invalid profile, a policy refusal) would be the same everywhere and ends
the placement. The client holds no state: allocation stays on the servers.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from devbox.errors import DevboxError, EngineUnreachable, NoCapacity
from devbox.ops import fanout, remote
from devbox.ops.hosts import Host

T = TypeVar("T")
# Errors after which another host may still take the box.
_NEXT_HOST = (NoCapacity, EngineUnreachable)


@dataclass(frozen=True)
class GpuNeed:
    """The GPUs a box asks for: kind none, all, count (`count`) or devices (`devices`)."""

    kind: str = "none"
    count: int = 0
    devices: tuple[str, ...] = ()

    def describe(self) -> str:
        """As a user writes it: "2 GPUs", "GPUs 0,3", "all GPUs", "no GPU"."""
        if self.kind == "count":
            return f"{self.count} GPU{'s' if self.count != 1 else ''}"
        if self.kind == "devices":
            return f"GPU {','.join(self.devices)}"
        return "all GPUs" if self.kind == "all" else "no GPU"


def need_from_flag(text: str) -> GpuNeed | None:
    """The need `--gpus TEXT` states, read as `up` reads it; None when unclear (the server decides)."""
    value = text.strip().lower()
    if value.isdecimal():
        return GpuNeed("count", int(value)) if int(value) > 0 else None
    if value in ("all", "none"):
        return GpuNeed(value)
    if value.startswith("device="):
        return GpuNeed("devices", devices=tuple(p.strip() for p in value.split("=", 1)[1].split(",")))
    return None


def need_from_render(data: Any) -> GpuNeed:
    """The need in `render --format json`'s `gpu_request`."""
    request = data.get("gpu_request") if isinstance(data, dict) else None
    if not isinstance(request, dict):
        return GpuNeed()
    kind = str(request.get("kind", "none"))
    count = request.get("count")
    devices = tuple(str(d) for d in request.get("devices") or [])
    return GpuNeed(kind, count if isinstance(count, int) else 0, devices)


@dataclass(frozen=True)
class Capacity:
    """A host's GPUs as its `gpus --json` showed them; `error` set: it cannot be used now."""

    host: Host
    total: int = 0
    free: int = 0  # GPUs no box holds and nothing outside devbox uses
    free_ids: frozenset[str] = frozenset()  # their indices and UUIDs
    error: DevboxError | None = None

    @property
    def usable(self) -> bool:
        """True when the host answered."""
        return self.error is None

    def fits(self, need: GpuNeed) -> bool:
        """True when the free GPUs can take `need` (the server checks again)."""
        if not self.usable:
            return False
        if need.kind == "count":
            return self.free >= need.count
        if need.kind == "all":
            return self.total > 0 and self.free == self.total
        if need.kind == "devices":
            return all(d in self.free_ids for d in need.devices)
        return True

    def describe(self) -> str:
        """ "3 of 4 GPUs were free", or what went wrong."""
        if self.error is not None:
            return self.error.message
        return f"{self.free} of {self.total} GPUs were free" if self.total else "no GPUs"


def capacity(outcome: fanout.Outcome[Any]) -> Capacity:
    """A host's capacity from its `gpus --json` outcome. A host whose devbox answers but knows
    no GPUs (kind failed: nothing declared, no driver) has none, and can take a box without."""
    error = outcome.error
    if error is not None:
        if isinstance(error, EngineUnreachable) or error.kind in ("refused", "interrupted"):
            return Capacity(outcome.host, error=error)
        return Capacity(outcome.host)
    rows = outcome.value if isinstance(outcome.value, list) else []
    free = [
        row
        for row in rows
        if isinstance(row, dict) and row.get("holder") is None and row.get("busy_outside") is None
    ]
    ids = frozenset(str(row.get(key)) for row in free for key in ("index", "uuid"))
    return Capacity(outcome.host, total=len(rows), free=len(free), free_ids=ids)


def survey(hosts: Sequence[Host], timeout: float) -> list[Capacity]:
    """Every host's capacity, asked in parallel (`gpus --json`)."""
    outcomes = fanout.fan_out(hosts, lambda h: remote.run_json(h, ["gpus", "--json"], timeout), timeout)
    return [capacity(o) for o in outcomes]


@dataclass
class Placement(Generic[T]):
    """Where the box went, what `up` there answered, and the hosts tried before."""

    host: Host
    result: T
    capacity: Capacity
    tried: list[tuple[Host, DevboxError]] = field(default_factory=list)

    def describe(self) -> str:
        """ "placed on h2 (3 of 4 GPUs were free)"."""
        return f"placed on {self.host.name} ({self.capacity.describe()})"


def draw(candidates: list[Capacity], need: GpuNeed, rng: random.Random) -> Capacity:
    """One candidate at random, weighted by its free GPUs (equal weights for a box without GPUs)."""
    weights = [max(1, c.free) if need.kind != "none" else 1 for c in candidates]
    return rng.choices(candidates, weights=weights, k=1)[0]


def place(
    capacities: list[Capacity],
    need: GpuNeed,
    up: Callable[[Host], T],
    rng: random.Random | None = None,
    on_retry: Callable[[Host, DevboxError], None] | None = None,
) -> Placement[T]:
    """`up(host)` on a host that fits `need`, drawn as `draw` does; a host that answers
    no-capacity or cannot be reached is dropped and the next drawn. NoCapacity when no host
    took it (EngineUnreachable when none could be reached)."""
    rng = rng or random.Random()
    candidates = [c for c in capacities if c.fits(need)]
    tried: list[tuple[Host, DevboxError]] = []
    while candidates:
        chosen = draw(candidates, need, rng)
        candidates.remove(chosen)
        try:
            result = up(chosen.host)
        except _NEXT_HOST as exc:
            tried.append((chosen.host, exc))
            if on_retry is not None:
                on_retry(chosen.host, exc)
            continue
        return Placement(chosen.host, result, chosen, tried)
    raise nowhere(capacities, need, tried)


def nowhere(capacities: list[Capacity], need: GpuNeed, tried: list[tuple[Host, DevboxError]]) -> DevboxError:
    """Why no host took the box, one clause per host: NoCapacity, or EngineUnreachable when
    no host answered at all."""
    failed = {host.name: exc for host, exc in tried}
    clauses = []
    for c in capacities:
        if c.host.name in failed:
            clauses.append(f"{c.host.name}: {failed[c.host.name].message.removeprefix(c.host.name + ': ')}")
        elif c.error is not None:
            clauses.append(f"{c.host.name}: {c.error.message.removeprefix(c.host.name + ': ')}")
        else:
            clauses.append(f"{c.host.name}: {c.describe().replace('were', 'are')}")
    message = f"no host could take a box with {need.describe()}: " + "; ".join(clauses)
    if not any(c.usable for c in capacities):
        return EngineUnreachable(message, "devbox hosts shows which hosts answer")
    return NoCapacity(message, "devbox gpus --all-hosts shows who holds them; try again when one is freed")
