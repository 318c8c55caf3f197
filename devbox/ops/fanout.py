"""One call per host, all at once, each bounded in time: `ls --all-hosts`, `gpus`, `hosts`, placement.

A host that fails or does not answer in time is an Outcome with its error, never an
exception: the other hosts' answers still count. Results come back in the hosts' order.
Daemon threads, not an executor: a call stuck past its deadline must not keep devbox from
exiting (an executor's threads are joined at exit).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from devbox.errors import DevboxError, EngineUnreachable, unexpected
from devbox.ops.hosts import Host

T = TypeVar("T")
# The calls bound themselves (ssh's timeout); this is the backstop past theirs.
GRACE_S = 2.0


@dataclass(frozen=True)
class Outcome(Generic[T]):
    """One host's answer: `value`, or the `error` it ended with."""

    host: Host
    value: T | None
    error: DevboxError | None
    seconds: float

    @property
    def ok(self) -> bool:
        """True when the host answered."""
        return self.error is None


def fan_out(hosts: Sequence[Host], call: Callable[[Host], T], timeout: float) -> list[Outcome[T]]:
    """`call(host)` for every host in parallel; each gets `timeout` seconds (plus a grace the
    call should not need: it is given the timeout itself). In `hosts`' order."""
    slots: list[Outcome[T] | None] = [None] * len(hosts)
    started = time.monotonic()

    def work(i: int, host: Host) -> None:
        begin = time.monotonic()
        try:
            value = call(host)
        except DevboxError as exc:
            slots[i] = Outcome(host, None, exc, time.monotonic() - begin)
        except Exception as exc:  # a bug in one host's path: that host's row says so
            slots[i] = Outcome(host, None, unexpected(exc), time.monotonic() - begin)
        else:
            slots[i] = Outcome(host, value, None, time.monotonic() - begin)

    threads = [threading.Thread(target=work, args=(i, h), daemon=True) for i, h in enumerate(hosts)]
    for thread in threads:
        thread.start()
    deadline = started + timeout + GRACE_S
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    results: list[Outcome[T]] = []
    for host, slot in zip(hosts, slots, strict=True):
        if slot is not None:
            results.append(slot)
            continue
        late = EngineUnreachable(
            f"{host.name} ({host.address}) did not answer within {timeout:g} s",
            "is the server up? a slow link: give more time with --timeout SECONDS",
        )
        results.append(Outcome(host, None, late, time.monotonic() - started))
    return results
