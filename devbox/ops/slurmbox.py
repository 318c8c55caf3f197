"""The box verbs on a Slurm cluster: up (submit, wait while pending, credentials from the node),
info, ls rows, down (scancel, then no container left), rebuild (cancel, resubmit).

The node's own devbox makes the box inside the job (ops/slurmscript.py); this side only talks
to Slurm and, once the job runs, to the node's devbox over ssh, as for any server. docs/slurm.md.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from devbox.box.spec import ContainerSpec
from devbox.errors import DevboxError, Interrupted, InvalidInput, NoCapacity, Origin, Problem
from devbox.ops import remote, slurm, slurmscript
from devbox.ops.hosts import Host
from devbox.ops.reporter import Reporter
from devbox.ops.slurmjobs import PENDING, RUNNING, Job, job_fields, job_name, row

NODE_TIMEOUT_S = 120.0
GONE_TIMEOUT_S = 90.0  # scancel: TERM, KillWait, then the Epilog


def _poll_delay(waited: float) -> float:
    """Seconds between two squeue calls: often at first, then every 3 s."""
    return 0.5 if waited < 5 else 1.0 if waited < 20 else 3.0


def _request(
    cluster: Host, rendered: dict[str, Any], profile: str, up_args: list[str], cwd: str
) -> slurmscript.JobRequest:
    """The job a rendered profile asks for; InvalidInput for GPUs Slurm cannot be asked for."""
    gpu = rendered.get("gpu_request") or {}
    kind = gpu.get("kind")
    if kind in ("all", "devices"):
        raise InvalidInput(
            f"a box on {cluster.name} asks Slurm for a number of GPUs, and Slurm picks them",
            [
                Problem(
                    Origin("gpus"), f"gpus: {kind} cannot be asked of Slurm", "write gpus: N (e.g. gpus: 1)"
                )
            ],
        )
    labels = rendered.get("labels") or {}
    return slurmscript.JobRequest(
        owner=str(rendered.get("owner")),
        box=str(rendered.get("name")),
        profile=str(labels.get("devbox.profile") or profile),
        gpus=int(gpu.get("count") or 0) if kind == "count" else 0,
        cpus=slurmscript.cpus_of(rendered.get("nano_cpus")),
        memory_mib=slurmscript.mib_of(rendered.get("memory")),
        time=slurm.option(cluster, "time"),
        partition=slurm.option(cluster, "partition"),
        account=slurm.option(cluster, "account"),
        qos=slurm.option(cluster, "qos"),
        up_args=tuple(up_args),
        workdir=cwd if cluster.target is None else None,
    )


def _answer(cluster: Host, job_id: int) -> dict[str, Any] | None:
    """The node's `devbox up --json` answer of the job, once written."""
    text = slurm.read_file(cluster, f"{slurmscript.JOBS_DIR}/{job_id}.json")
    if not text:
        return None
    try:
        data = json.loads(text)
    except ValueError:
        return {"error": {"kind": "failed", "message": f"devbox up on the node said: {text.strip()[:300]}"}}
    return data if isinstance(data, dict) else None


def _ended_early(cluster: Host, job: Job) -> DevboxError:
    """The job ended before its box was up: the last lines of its output say why."""
    out = slurm.read_file(cluster, f"{slurmscript.JOBS_DIR}/{job.job_id}.out") or ""
    tail = " | ".join(line for line in out.strip().splitlines()[-5:])
    return DevboxError(
        f"{cluster.name}: job {job.job_id} ({job.name}) ended before its box was up"
        + (f": {tail[:400]}" if tail else ""),
        f"its output: ~/.cache/devbox/slurm/{job.job_id}.out on {cluster.name}'s login node",
    )


def wait(
    cluster: Host,
    user: str,
    box: str,
    job_id: int,
    steps: Reporter,
    no_wait: bool,
    wait_timeout: float | None,
    sleep: Callable[[float], None] = time.sleep,
) -> tuple[Job, dict[str, Any] | None]:
    """Follow job `job_id` until its box is up (job, the node's answer) or, with `no_wait`, while
    it pends (job, None); it is gone once Slurm lists it no longer alive, whatever other job of
    the box there is. `wait_timeout` seconds of pending cancel it: NoCapacity with the reason."""
    started = time.monotonic()
    said = ""
    while True:
        found = next((j for j in slurm.jobs(cluster) if j.job_id == job_id and j.alive), None)
        if found is None:
            answer = _answer(cluster, job_id)
            if answer is not None and isinstance(answer.get("error"), dict):
                raise remote.error_from_json(cluster.name, answer["error"])
            raise _ended_early(cluster, _gone(job_id, user, box))
        if found.state == PENDING:
            if no_wait:
                return found, None
            if found.reason != said:
                steps.step(f"job {job_id} pending: {found.reason or 'queued'}")
                said = found.reason
            if wait_timeout is not None and time.monotonic() - started > wait_timeout:
                slurm.cancel(cluster, job_id)
                raise NoCapacity(
                    f"{cluster.name}: job {job_id} pended {wait_timeout:g} s "
                    f"({found.reason or 'queued'}): cancelled",
                    "Resources: every GPU is taken, try later or --no-wait; "
                    "QOSMax…PerUser: your own jobs use up a limit (devbox ls --host "
                    f"{cluster.name}); Priority: others are ahead of you",
                )
        elif found.state == RUNNING:
            if said != RUNNING:
                gpus = ",".join(map(str, found.gpus)) or "none"
                steps.step(f"job {job_id} running on {found.node} (GPUs {gpus}): devbox up there")
                said = RUNNING
            answer = _answer(cluster, job_id)
            if answer is not None:
                return found, answer
        sleep(_poll_delay(time.monotonic() - started))


def _gone(job_id: int, user: str, box: str) -> Job:
    return Job(job_id, job_name(user, box), user, box, "GONE", "", None, (), None, None, None)


def render_remote(cluster: Host, profile: str, up_args: list[str]) -> dict[str, Any]:
    """The profile as the login node's devbox renders it (`render --format json`): a
    `slurm://` cluster reads profiles where its jobs do."""
    render = ["render", profile, *up_args, "--host", "local", "--format", "json"]
    rendered = remote.run_json(slurm.login(cluster), render, NODE_TIMEOUT_S)
    if not isinstance(rendered, dict):
        raise DevboxError(f"{cluster.name}: devbox render answered no profile")
    return rendered


def rendered_of(spec: ContainerSpec) -> dict[str, Any]:
    """What `up` reads of a render (`render --format json`'s keys), from a spec made here."""
    return {
        "name": spec.box,
        "owner": spec.owner,
        "gpu_request": {"kind": spec.gpus.kind, "count": spec.gpus.count, "devices": list(spec.gpus.devices)},
        "memory": spec.memory,
        "nano_cpus": spec.nano_cpus,
        "labels": dict(spec.labels),
    }


def up(
    cluster: Host,
    rendered: dict[str, Any],
    profile: str,
    up_args: list[str],
    cwd: str,
    steps: Reporter,
    recreate: bool,
    no_wait: bool,
    wait_timeout: float | None,
) -> dict[str, Any]:
    """`devbox up --host CLUSTER` of the `rendered` profile: the box's JSON object (status
    pending with --no-wait)."""
    user, found = slurm.whoami_and_jobs(cluster)
    req = _request(cluster, rendered, profile, up_args, cwd)
    box = req.box
    job = slurm.job_of(found, user, box)
    if job is not None and recreate:
        steps.step(f"cancelling job {job.job_id} (--recreate)")
        _cancel_and_wait(cluster, slurm.jobs_of(found, user, box))
        job = None
    if job is None:
        req = replace(req, owner=user)  # the Slurm user owns the job (and the box on the node)
        steps.step(f"submitting {job_name(user, box)} to {cluster.name}")
        job_id = slurm.submit(cluster, slurmscript.submit_command(req), slurmscript.script(req))
        action = "created"
        # Another `up` of the box may have read the same empty queue: the older job is the box's.
        first = slurm.job_of(slurm.jobs(cluster), user, box)
        if first is not None and first.job_id < job_id:
            slurm.cancel(cluster, job_id)
            steps.step(
                f"another `up` of {box} submitted job {first.job_id} first: "
                f"following it (job {job_id} cancelled)"
            )
            job_id, action = first.job_id, "existing"
    else:
        job_id, action = job.job_id, "existing"
        steps.step(f"{job_name(user, box)} is job {job_id} ({job.status})")
    try:
        job, answer = wait(cluster, user, box, job_id, steps, no_wait, wait_timeout)
    except KeyboardInterrupt:
        raise _interrupted(cluster, box, job_id, action == "created") from None
    if answer is None:
        return {**row(cluster.name, job), "action": action}
    if set(answer) == {"error"} and isinstance(answer["error"], dict):
        raise remote.error_from_json(f"{cluster.name} ({job.node})", answer["error"])
    return {**node_info(cluster, job, fallback=answer), "action": action}


def _interrupted(cluster: Host, box: str, job_id: int, ours: bool) -> Interrupted:
    """Ctrl-C while `up` waited: a job this `up` submitted is cancelled (the user gave up on
    it, as --wait-timeout does: nothing left queued to start a box nobody waits for); a job it
    found is left as it was."""
    if not ours:
        return Interrupted(
            f"interrupted: job {job_id} of box '{box}' is still queued or running on {cluster.name}",
            f"devbox down {box} --host {cluster.name} cancels it",
        )
    try:
        slurm.cancel(cluster, job_id)
    except DevboxError as exc:
        return Interrupted(
            f"interrupted; job {job_id} could not be cancelled: {exc.message}",
            f"devbox down {box} --host {cluster.name}, or scancel {job_id} on the login node",
        )
    return Interrupted(f"interrupted: job {job_id} of box '{box}' cancelled on {cluster.name}")


def node_info(cluster: Host, job: Job, fallback: dict[str, Any] | None = None) -> dict[str, Any]:
    """The box's `info --json` from its node's devbox (credentials re-read from its log), with
    the job's fields; `fallback` (the job's own answer) when the node cannot be reached."""
    assert job.node is not None and job.box is not None
    node = slurm.node_host(cluster, job.node)
    warnings: list[str] = []
    try:
        data = remote.run_json(node, ["info", job.box, "--host", "local", "--json"], NODE_TIMEOUT_S)
    except DevboxError as exc:
        if fallback is None:
            raise
        data = fallback
        warnings.append(f"node {job.node} not reached over ssh ({exc.message}): tunnel and ssh will fail too")
    if not isinstance(data, dict):
        raise DevboxError(f"{cluster.name}: node {job.node} answered no box")
    data = {**data, "host": cluster.name, **job_fields(job), "status": data.get("status") or job.status}
    if warnings:
        data["warnings"] = [*(data.get("warnings") or []), *warnings]
    return data


def info(cluster: Host, box: str) -> dict[str, Any]:
    """`devbox info BOX --host CLUSTER`: the pending job, or the running box from its node."""
    _, job = slurm.the_job(cluster, box)
    if job.state != RUNNING or job.node is None:
        return row(cluster.name, job)
    return node_info(cluster, job)


def _cancel_and_wait(cluster: Host, jobs: list[Job]) -> None:
    """scancel each job (a box's, normally one), then until Slurm lists none of them alive
    (their Epilogs have run)."""
    ids = {j.job_id for j in jobs}
    for job_id in sorted(ids):
        slurm.cancel(cluster, job_id)
    deadline, left = time.monotonic() + GONE_TIMEOUT_S, sorted(ids)
    while time.monotonic() < deadline:
        left = sorted(j.job_id for j in slurm.jobs(cluster) if j.job_id in ids and j.alive)
        if not left:
            return
        time.sleep(0.5)
    raise DevboxError(
        f"{cluster.name}: job {left[0]} still there {GONE_TIMEOUT_S:g} s after scancel",
        f"squeue -j {left[0]} shows its state; an admin may need scancel --signal=KILL",
    )


def down(cluster: Host, box: str, purge: bool) -> dict[str, Any]:
    """`devbox down BOX --host CLUSTER`: cancel the job (and any duplicate a race of two `up`s
    left), wait until it is gone, check that its node's engine holds no container of the box
    (volumes removed there with `purge`)."""
    user, found = slurm.whoami_and_jobs(cluster)
    job = slurm.job_of(found, user, box)
    result: dict[str, Any] = {
        "name": box,
        "container": job_name(user, box),
        "owner": user,
        "host": cluster.name,
        "removed": job is not None,
        "volumes_removed": [],
        "volumes_kept": [],
        "volumes_in_use": [],
        "job_id": job.job_id if job is not None else None,
        "node": job.node if job is not None else None,
    }
    if job is None:
        return result  # as for any host: a box that is not there is no error
    jobs = slurm.jobs_of(found, user, box)
    _cancel_and_wait(cluster, jobs)
    for node, ran in {j.node: j for j in reversed(jobs) if j.node is not None}.items():
        _clear_node(cluster, box, node, ran.job_id, purge, result)
    return result  # a job that never ran left nothing on any node


def _clear_node(cluster: Host, box: str, node: str, job_id: int, purge: bool, result: dict[str, Any]) -> None:
    """After `down`: no container of the box left on `node` (volumes removed there with `purge`)."""
    host = slurm.node_host(cluster, node)
    left = remote.run_json(host, ["ls", "--json", "--host", "local"], NODE_TIMEOUT_S)
    if any(isinstance(b, dict) and b.get("name") == box for b in left or []):
        # The trap and the Epilog both missed it (no Epilog installed?): remove it now.
        gone = remote.run_json(host, ["down", box, "--host", "local", "--yes", "--json"], NODE_TIMEOUT_S)
        result["warnings"] = [
            *result.get("warnings", []),
            f"job {job_id} left its container on {node}: removed now; is the Epilog installed?",
        ]
        if isinstance(gone, dict):
            result["removed"] = bool(gone.get("removed"))
    if purge:
        gone = remote.run_json(
            host, ["down", box, "--host", "local", "--purge", "--yes", "--json"], NODE_TIMEOUT_S
        )
        if isinstance(gone, dict):
            for key in ("volumes_removed", "volumes_kept", "volumes_in_use"):
                result[key] = [*result[key], *(gone.get(key) or [])]


def listing(cluster: Host, all_users: bool, owner: str | None) -> list[dict[str, Any]]:
    """`ls --host CLUSTER --json`: the caller's devbox jobs (everyone's with --all; Slurm shows
    every user's jobs to everyone unless the site sets PrivateData=jobs)."""
    user, found = slurm.whoami_and_jobs(cluster)
    wanted = owner if owner is not None else None if all_users else user
    return [row(cluster.name, j) for j in found if j.alive and (wanted is None or j.user == wanted)]


def profile_of(cluster: Host, box: str) -> tuple[str, Job]:
    """The profile a running box was made from (its node's info), for rebuild."""
    _, job = slurm.the_job(cluster, box)
    if job.state != RUNNING or job.node is None:
        raise DevboxError(
            f"box '{box}' on {cluster.name} is {job.status}: nothing to rebuild yet",
            f"devbox down {box} --host {cluster.name}, then devbox up PROFILE --host {cluster.name}",
        )
    data = node_info(cluster, job)
    profile = data.get("profile")
    if not isinstance(profile, str) or not profile:
        raise DevboxError(f"{cluster.name}: box '{box}' names no profile", "devbox down it and up again")
    return profile, job


def gpu_rows(cluster: Host) -> list[dict[str, Any]]:
    """`gpus --host CLUSTER`: every node's GPUs, each with the box (job) holding it, or null."""
    _, found = slurm.whoami_and_jobs(cluster)
    holders = {(j.node, g): j for j in found if j.node and j.alive for g in j.gpus}
    rows: list[dict[str, Any]] = []
    for node in slurm.nodes(cluster):
        for index in range(node.gpus):
            job = holders.get((node.name, index))
            holder = None
            if job is not None:
                holder = {"name": job.box, "owner": job.user, "host": cluster.name, "job_id": job.job_id}
            busy = job is None and index in node.gpus_used  # Slurm counts it used: another job
            rows.append(
                {
                    # `gpus --json`'s keys (GpuJson), what Slurm knows of them, and the node's.
                    "host": cluster.name,
                    "index": index,
                    "uuid": "",
                    "model": f"{node.name} (Slurm)",
                    "memory_used_mib": None,
                    "memory_total_mib": None,
                    "utilization": None,
                    "declared": False,
                    "holder": holder,
                    "busy_outside": {"processes": 0, "memory_used_mib": None} if busy else None,
                    "driver_version": None,
                    "cuda_version": None,
                    "node": node.name,
                    "node_state": node.state,
                }
            )
    return rows


def fan_answer(cluster: Host, args: list[str]) -> Any:
    """What a Slurm cluster answers in `ls --all-hosts` and `gpus --all-hosts` (the JSON a
    server's devbox would give for `args`)."""
    if args[:1] == ["ls"]:
        owner = args[args.index("--owner") + 1] if "--owner" in args else None
        return listing(cluster, "--all" in args, owner)
    if args[:1] == ["gpus"]:
        return gpu_rows(cluster)
    raise DevboxError(f"{cluster.name} is a Slurm cluster: `devbox {args[0]}` does not apply there")
