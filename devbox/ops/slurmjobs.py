"""What Slurm says, as devbox's rows: `squeue --json`, `sinfo --json`, `sacctmgr show qos`. Pure.

Slurm 22.05's JSON (openapi v0.0.38) is the contract read here: a job's `job_id`, `name`,
`user_name`, `job_state`, `state_reason`, `nodes`, `gres_detail` (["gpu:1(IDX:0)"]); a node's
`name`, `address`, `state`, `gres` ("gpu:4"), `gres_used` ("gpu:1(IDX:0)"). Fields missing in
other releases read as empty, never as an error: a listing shows what it can.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any

JOB_PREFIX = "devbox-"
# Slurm's states while a job holds (or waits for) its node; anything else is over.
PENDING = "PENDING"
RUNNING = "RUNNING"
COMPLETING = "COMPLETING"  # cancelled or timed out, its Epilog still running
ALIVE = frozenset({PENDING, RUNNING, "CONFIGURING", "COMPLETING", "SUSPENDED", "REQUEUED", "RESIZING"})
_IDX_RE = re.compile(r"IDX:([^)]*)")
_GRES_COUNT_RE = re.compile(r"^gpu(?::[^:(]+)?:(\d+)")


def job_name(owner: str, box: str) -> str:
    """The Slurm job of `owner`'s box `box`: the container's name too (box/spec.py)."""
    return f"{JOB_PREFIX}{owner}-{box}"


@dataclass(frozen=True)
class Job:
    """One devbox job as squeue reports it. `box` is None for a job devbox did not name."""

    job_id: int
    name: str
    user: str
    box: str | None
    state: str  # PENDING, RUNNING, COMPLETING, …
    reason: str  # why it pends (Resources, Priority, QOSMaxGRESPerUser); "" when none
    node: str | None  # where it runs; None while pending
    gpus: tuple[int, ...]  # the node's GPU indices the job holds
    submitted: int | None
    started: int | None
    time_limit: int | None  # minutes; None: no limit (or not said)

    @property
    def alive(self) -> bool:
        """True while the job waits for or holds its resources."""
        return self.state in ALIVE

    @property
    def status(self) -> str:
        """devbox's word for it: pending, running, or Slurm's own state in lower case."""
        return self.state.lower()


def job_fields(job: Job) -> dict[str, Any]:
    """What Slurm says of a box's job, for its JSON object."""
    return {
        "job_id": job.job_id,
        "job_state": job.state,
        "reason": job.reason or None,
        "node": job.node,
        "gpus": list(job.gpus),
    }


def row(host: str, job: Job) -> dict[str, Any]:
    """A box as `ls --json` shows it on a Slurm host: from squeue alone (no node is asked)."""
    return {
        "name": job.box,
        "container": job.name,
        "owner": job.user,
        "host": host,
        "created": job.submitted,
        "status": job.status,
        "uptime": f"running since {time.strftime('%Y-%m-%d %H:%M', time.localtime(job.started))}"
        if job.started
        else (f"pending ({job.reason})" if job.reason else job.status),
        **job_fields(job),
    }


@dataclass(frozen=True)
class Node:
    """One Slurm node: its address (where ssh reaches it), state, and GPUs."""

    name: str
    address: str
    state: str
    gpus: int
    gpus_used: tuple[int, ...]


def gpu_indices(text: str) -> tuple[int, ...]:
    """The GPU indices of a GRES string: "gpu:2(IDX:0-1)" → (0, 1), "gpu:a100:3(IDX:0,2-3)" →
    (0, 2, 3); () for "gpu:0(IDX:N/A)" or no IDX."""
    found: list[int] = []
    for match in _IDX_RE.finditer(text):
        for part in match[1].split(","):
            low, _, high = part.strip().partition("-")
            if not low.isdecimal() or (high and not high.isdecimal()):
                continue
            found += range(int(low), int(high or low) + 1)
    return tuple(sorted(set(found)))


def _gres_parts(text: str) -> list[str]:
    """A GRES list split at its top-level commas ("gpu:2(IDX:0,2),shard:4" → two parts)."""
    parts, depth, start = [], 0, 0
    for i, char in enumerate(text):
        depth += char == "("
        depth -= char == ")"
        if char == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return [p.strip() for p in parts if p.strip()]


def gpu_count(text: str) -> int:
    """How many GPUs a GRES string names: "gpu:4" → 4, "gpu:a100:4(S:0-1)" → 4, "" → 0."""
    return sum(int(m[1]) for p in _gres_parts(text) if (m := _GRES_COUNT_RE.match(p)))


def _int(value: Any) -> int | None:
    """A number of Slurm's JSON (0.0.38 gives plain ints; later ones {"set", "number"})."""
    if isinstance(value, dict):
        if not value.get("set", True) or value.get("infinite"):
            return None
        value = value.get("number")
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return value


def _state(value: Any) -> str:
    """A node's state in lower case: "idle", or "mixed drain" where a release gives a list."""
    if isinstance(value, list):
        return " ".join(s for s in value if isinstance(s, str)).lower()
    return value.lower() if isinstance(value, str) else ""


def _text(value: Any) -> str:
    if isinstance(value, list):  # later releases: job_state ["RUNNING"]
        value = value[0] if value else ""
    return value if isinstance(value, str) else ""


def box_of(name: str, user: str) -> str | None:
    """The box a job named `name` of `user` is: devbox-<user>-<box>; None for other jobs."""
    prefix = job_name(user, "")
    return name[len(prefix) :] or None if name.startswith(prefix) else None


def job_from_json(item: dict[str, Any]) -> Job | None:
    """One job of `squeue --json`'s `jobs`; None when it has no id."""
    job_id = _int(item.get("job_id"))
    if job_id is None:
        return None
    name, user = _text(item.get("name")), _text(item.get("user_name"))
    reason = _text(item.get("state_reason"))
    nodes = _text(item.get("nodes"))
    details = item.get("gres_detail")
    gpus = (
        gpu_indices(" ".join(d for d in details if isinstance(d, str))) if isinstance(details, list) else ()
    )
    state = _text(item.get("job_state")).upper()
    started = _int(item.get("start_time"))
    return Job(
        job_id=job_id,
        name=name,
        user=user,
        box=box_of(name, user),
        state=state,
        reason="" if reason == "None" else reason,
        node=nodes or None if state != PENDING else None,
        gpus=gpus,
        submitted=_int(item.get("submit_time")) or None,
        started=started or None if state != PENDING else None,
        time_limit=_int(item.get("time_limit")),
    )


def jobs(data: Any, devbox_only: bool = True) -> list[Job]:
    """The jobs of `squeue --json` output (parsed JSON), devbox's alone by default."""
    items = data.get("jobs") if isinstance(data, dict) else None
    found = [job_from_json(i) for i in items or [] if isinstance(i, dict)]
    return [j for j in found if j is not None and (j.box is not None or not devbox_only)]


def nodes(data: Any) -> list[Node]:
    """The nodes of `sinfo --json` output (parsed JSON), each once, in name order."""
    items = data.get("nodes") if isinstance(data, dict) else None
    found: dict[str, Node] = {}
    for item in items or []:
        if not isinstance(item, dict) or not _text(item.get("name")):
            continue
        name = _text(item["name"])
        state = item.get("state")
        found[name] = Node(
            name=name,
            address=_text(item.get("address")) or _text(item.get("hostname")) or name,
            state=(
                " ".join(s for s in state if isinstance(s, str)) if isinstance(state, list) else _text(state)
            ).lower(),
            gpus=gpu_count(_text(item.get("gres"))),
            gpus_used=gpu_indices(_text(item.get("gres_used"))),
        )
    return [found[n] for n in sorted(found)]


@dataclass(frozen=True)
class Qos:
    """A Slurm QOS's per-user limits, as sacctmgr says them."""

    name: str
    max_tres_per_user: dict[str, str]  # {"gres/gpu": "2", "cpu": "16"}
    max_jobs_per_user: int | None

    @property
    def max_gpus_per_user(self) -> int | None:
        """`MaxTRESPerUser=gres/gpu=N`; None when unset."""
        value = self.max_tres_per_user.get("gres/gpu", "")
        return int(value) if value.isdecimal() else None


QOS_FORMAT = "Name,MaxTRESPU,MaxJobsPU"


def qos_rows(text: str) -> list[Qos]:
    """`sacctmgr -nP show qos format=Name,MaxTRESPU,MaxJobsPU` output → one Qos per line."""
    found = []
    for line in text.splitlines():
        fields = line.strip().split("|")
        if len(fields) < 3 or not fields[0]:
            continue
        tres = dict(part.partition("=")[::2] for part in fields[1].split(",") if "=" in part)
        found.append(Qos(fields[0], tres, int(fields[2]) if fields[2].isdecimal() else None))
    return found


def unenforced(max_gpus: int | None, max_boxes: int | None, qos: Qos | None) -> list[tuple[str, str]]:
    """(what, fix) for each per-user limit of the lab policy that `qos` (the QOS the cluster's
    jobs run under) does not enforce; on Slurm, Slurm's limits are the ones that hold."""
    name = qos.name if qos is not None else "normal"
    checks = (
        (
            "max_gpus_per_user",
            max_gpus,
            qos.max_gpus_per_user if qos is not None else None,
            "MaxTRESPerUser=gres/gpu=",
            "GPU",
        ),
        (
            "max_boxes_per_user",
            max_boxes,
            qos.max_jobs_per_user if qos is not None else None,
            "MaxJobsPerUser=",
            "job",
        ),
    )
    found = []
    for key, wanted, has, setting, what in checks:
        if wanted is None or has == wanted:
            continue
        said = f"QOS {name} has {setting}{has}" if has is not None else f"QOS {name} sets no {what} limit"
        found.append(
            (
                f"the lab policy's {key} is {wanted}, but {said}",
                f"sacctmgr -i modify qos {name} set {setting}{wanted}",
            )
        )
    return found
