"""A Slurm cluster on this machine for the Slurm backend tests (issue 14): scripts/test-slurm as fixtures.

`slurm_session()` (for a module fixture) runs `scripts/test-slurm up` once, under the test
hosts' lock (the cluster's nodes node1..node3 ARE test hosts h1..h3: slurmd in their network
namespaces, next to their dockerd) and the lab lock, and `down` at the end. `one_test()` (for a
per-test fixture) cancels every job afterwards, waits for their Epilogs, resets the QOS limit,
then cleans the hosts as hostsbed does.

`SlurmBed` is hostsbed's `Bed` (commands as test users dbxhu1..4 on the client side, the hosts'
engines as root) with SLURM_CONF passed to the users' commands, plus the cluster seen as root:
`slurm("squeue", ...)`, `squeue_json()`, `sinfo_json()`, `set_gpu_limit(2)`, `node_docker()`.
What the cluster is (ports, users, TaskProlog, Epilog): the header of scripts/test-slurm.
Without root the tests skip; in CI (CI=true) they fail instead.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.integration.hostsbed import Bed, _unusable, bed_session

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "test-slurm"
STATE = Path(os.environ.get("DEVBOX_TEST_SLURM_DIR") or "/run/devbox-test-slurm")
CONF = STATE / "etc" / "slurm.conf"
NODES = ("node1", "node2", "node3")
PARTITION = "gpu"
UP_TIMEOUT_S = 900  # test-hosts' images, then Debian's Slurm packages on a bare machine
SETTLE_S = 60


def read_env(path: Path = STATE / "env") -> dict[str, str]:
    """`$STATE/env` of scripts/test-slurm as a dict (NAME=value lines, values maybe in '')."""
    values: dict[str, str] = {}
    for line in path.read_text().splitlines():
        if line and not line.startswith("#") and "=" in line:
            name, value = line.split("=", 1)
            values[name] = value.strip("'")
    return values


@dataclass
class SlurmBed(Bed):
    """The test hosts as Slurm nodes: users' commands get SLURM_CONF; the cluster as root."""

    conf: Path = CONF
    nodes: tuple[str, ...] = NODES

    def argv(self, user: str, *command: str) -> list[str]:
        """`command` run as `user` on the client side with SLURM_CONF (scripts/test-slurm as)."""
        return [str(SCRIPT), "as", user, *command]

    # --- the cluster, as root ------------------------------------------------------------

    def slurm(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """A Slurm client command (squeue, scontrol, sacctmgr, ...) as root."""
        env = {**os.environ, "SLURM_CONF": str(self.conf)}
        return subprocess.run(list(argv), env=env, capture_output=True, text=True, check=check, timeout=60)

    def squeue_json(self) -> list[dict[str, Any]]:
        """`squeue --json`'s jobs: every job slurmctld still holds (22.05 ignores -u/-t with
        --json), finished ones included for MinJobAge (300 s)."""
        jobs: list[dict[str, Any]] = json.loads(self.slurm("squeue", "--json").stdout)["jobs"]
        return jobs

    def sinfo_json(self) -> list[dict[str, Any]]:
        """`sinfo --json`'s nodes (name, state, gres "gpu:4", gres_used, ...)."""
        nodes: list[dict[str, Any]] = json.loads(self.slurm("sinfo", "--json").stdout)["nodes"]
        return nodes

    def set_gpu_limit(self, gpus: int | None) -> None:
        """QOS normal's MaxTRESPerUser=gres/gpu=N (None: no limit; one_test resets it)."""
        value = "-1" if gpus is None else str(gpus)
        self.slurm("sacctmgr", "-i", "modify", "qos", "normal", "set", f"MaxTRESPerUser=gres/gpu={value}")

    def node_host(self, node: str) -> str:
        """The test host a node is (node2 -> h2)."""
        return "h" + node.removeprefix("node")

    def node_docker(self, node: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """The docker CLI on `node`'s engine."""
        return self.docker(self.node_host(node), *args, check=check)

    def cancel_all(self) -> None:
        """Cancel every job and wait until none is left running or completing (Epilogs done)."""
        self.slurm("scancel", "--full", f"--partition={PARTITION}", check=False)
        deadline = time.monotonic() + SETTLE_S
        while self.slurm("squeue", "-h", "-o", "%i").stdout.strip():
            if time.monotonic() > deadline:
                left = self.slurm("squeue", "-o", "%i %u %T %R %N").stdout
                raise AssertionError(f"jobs still there {SETTLE_S} s after scancel:\n{left}")
            time.sleep(0.5)

    def clean(self) -> None:
        """Remove what a test made: its jobs (and through their Epilogs their boxes), the QOS
        limit, then everything hostsbed's clean removes."""
        self.cancel_all()
        self.set_gpu_limit(None)
        super().clean()


def slurm_session() -> Iterator[SlurmBed]:
    """For a module (or session) fixture: the cluster up (scripts/test-slurm up, which makes
    the test hosts too), under the hosts' and the lab's locks, and down afterwards."""
    if os.geteuid() != 0:
        _unusable("the test cluster needs root (daemons, network namespaces, test accounts)")
    yield from bed_session(SCRIPT, ["up"], "test Slurm", SlurmBed, UP_TIMEOUT_S)


def one_test(bed: SlurmBed) -> Iterator[SlurmBed]:
    """For a per-test fixture: the cluster, and every job, box and limit the test made removed."""
    yield bed
    bed.clean()
