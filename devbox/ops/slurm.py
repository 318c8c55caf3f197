"""A Slurm cluster as a devbox host: Slurm's commands on its login node, its nodes over ssh.

`slurm:local`: this machine is a login node (sbatch, squeue, scancel on the PATH, SLURM_CONF as
the user has it). `slurm://[user@]login[:port]`: the same commands over ssh to that login node
(ops/remote.py's ssh: ControlMaster, BatchMode). A node is reached as the login node's user,
at the address Slurm has for it (`sinfo`'s NodeAddr), through the login node (`ssh -J`) when
there is one. Identity is Slurm's (munge): the Slurm user is whoever runs these commands.
docs/slurm.md.
"""

from __future__ import annotations

import json
import shlex
import subprocess
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from devbox.errors import DevboxError, EngineUnreachable, NotFound
from devbox.ops import remote, slurmjobs
from devbox.ops.hosts import Host
from devbox.ops.slurmjobs import Job, Node

if TYPE_CHECKING:
    from devbox.ops.admin import Check
    from devbox.policy.rules import Limits
    from devbox.settings import Settings

COMMAND_TIMEOUT_S = 60.0


def login(cluster: Host) -> Host:
    """The cluster's login node as a plain host: this machine (local) or an ssh target."""
    return Host(cluster.name, cluster.target, cluster.port, cluster.origin)


def option(cluster: Host, key: str) -> str | None:
    """One of the cluster entry's sbatch options (partition, time, account, qos)."""
    return dict(cluster.options).get(key)


def _where(cluster: Host) -> str:
    return "this machine" if cluster.target is None else f"the login node {cluster.target}"


def run(cluster: Host, argv: list[str], stdin: str | None = None, timeout: float = COMMAND_TIMEOUT_S) -> str:
    """`argv`'s stdout, run on the cluster's login node; DevboxError with its last words when it fails."""
    head = login(cluster)
    command = argv if head.local else remote.ssh_argv(head, argv)
    try:
        done = subprocess.run(
            command, input=stdin, capture_output=True, text=True, timeout=timeout, check=False
        )
    except FileNotFoundError:
        raise EngineUnreachable(
            f"{cluster.name}: {argv[0]} is not installed on {_where(cluster)}",
            "run devbox on a Slurm login node (slurm:local), or name one: slurm://LOGIN (devbox help slurm)",
        ) from None
    except subprocess.TimeoutExpired:
        raise EngineUnreachable(
            f"{cluster.name}: `{argv[0]}` did not answer within {timeout:g} s on {_where(cluster)}",
            "is slurmctld up? `scontrol ping` there says",
        ) from None
    said = [line.strip() for line in done.stderr.splitlines() if line.strip()]
    last = said[-1] if said else f"exit {done.returncode}"
    if not head.local and done.returncode == 255 and not done.stdout:
        raise EngineUnreachable(
            f"cannot reach {cluster.name}'s login node ({head.address}) over ssh: {last}",
            f"`{remote.host_command(head)} true` shows what ssh sees",
        )
    if done.returncode == 127 and not done.stdout:
        raise EngineUnreachable(
            f"{cluster.name}: {argv[0]} is not installed on {_where(cluster)}: {last}",
            "devbox needs Slurm's client commands (sbatch, squeue, sinfo, scancel) there",
        )
    if done.returncode != 0:
        raise DevboxError(f"{cluster.name}: {argv[0]} failed: {last}", _hint(last))
    return done.stdout


def _hint(said: str) -> str | None:
    """What to do about Slurm's words."""
    if "munge" in said.lower() or "Unable to contact slurm controller" in said:
        return "is Slurm reachable from here? `scontrol ping` says (munged, slurmctld, SLURM_CONF)"
    if "Invalid account" in said or "Invalid qos" in said:
        return "your Slurm account or QOS: ask the cluster's admin (sacctmgr show assoc user=$USER)"
    if "Requested node configuration is not available" in said:
        return "no node has that many GPUs, CPUs or that much memory: ask for less"
    return None


def _json(cluster: Host, argv: list[str]) -> Any:
    text = run(cluster, argv)
    try:
        return json.loads(text)
    except ValueError:
        raise DevboxError(
            f"{cluster.name}: `{' '.join(argv)}` answered no JSON",
            "devbox needs Slurm 21.08 or later, built with JSON support (libjson-c)",
        ) from None


def whoami_and_jobs(cluster: Host) -> tuple[str, list[Job]]:
    """The Slurm user devbox acts as there, and every devbox job of the cluster."""
    text = run(cluster, ["sh", "-c", "id -un && exec squeue --json"])
    user, _, rest = text.partition("\n")
    try:
        data = json.loads(rest)
    except ValueError:
        raise DevboxError(
            f"{cluster.name}: `squeue --json` answered no JSON",
            "devbox needs Slurm 21.08 or later, built with JSON support (libjson-c)",
        ) from None
    return user.strip(), slurmjobs.jobs(data)


def jobs(cluster: Host) -> list[Job]:
    """Every devbox job of the cluster (squeue --json; 22.05 ignores its filters with --json)."""
    return slurmjobs.jobs(_json(cluster, ["squeue", "--json"]))


def nodes(cluster: Host) -> list[Node]:
    """The cluster's nodes (sinfo --json)."""
    return slurmjobs.nodes(_json(cluster, ["sinfo", "--json"]))


def jobs_of(found: list[Job], user: str, box: str) -> list[Job]:
    """Every job still alive of `user`'s box `box`, oldest first (normally one: two `up`s that
    raced may have submitted two, until the later one cancels its own)."""
    return sorted((j for j in found if j.user == user and j.box == box and j.alive), key=lambda j: j.job_id)


def job_of(found: list[Job], user: str, box: str) -> Job | None:
    """THE job of `user`'s box `box`: the oldest one alive, so that up, info, rebuild and tunnel
    agree on it whatever other `up` raced it. One on its way out (COMPLETING: a cancel, a time
    limit) is it only when no other is alive."""
    mine = jobs_of(found, user, box)
    staying = [j for j in mine if j.state != slurmjobs.COMPLETING]
    return (staying or mine)[0] if mine else None


def the_job(cluster: Host, box: str) -> tuple[str, Job]:
    """(the Slurm user, the alive job of their box `box`); NotFound when there is none."""
    user, found = whoami_and_jobs(cluster)
    job = job_of(found, user, box)
    if job is None:
        raise NotFound(
            f"no box '{box}' of {user} on {cluster.name} (no job {slurmjobs.job_name(user, box)} in squeue)",
            f"devbox ls --host {cluster.name} lists yours; devbox up PROFILE --host {cluster.name} makes one",
        )
    return user, job


def node_host(cluster: Host, node: str, known: list[Node] | None = None) -> Host:
    """The node `node` as an ssh host: Slurm's address for it, as the login node's user,
    through the login node (-J) when the cluster is reached over ssh."""
    found = {n.name: n for n in (known if known is not None else nodes(cluster))}
    address = found[node].address if node in found else node
    user, at, _ = (cluster.target or "").rpartition("@")
    jump = None
    if cluster.target is not None:
        jump = f"{cluster.target}:{cluster.port}" if cluster.port is not None else cluster.target
    return Host(cluster.name, f"{user}{at}{address}", None, cluster.origin, jump=jump)


def submit(cluster: Host, command: list[str], script: str) -> int:
    """Submit `script` (on stdin) with `command` (slurmscript.submit_command); the job id."""
    said = run(cluster, command, stdin=script).strip().splitlines()
    first = said[-1].split(";")[0] if said else ""  # --parsable: "ID" or "ID;cluster"
    if not first.isdecimal():
        raise DevboxError(f"{cluster.name}: sbatch answered no job id: {' '.join(said)[:200]}")
    return int(first)


def cancel(cluster: Host, job_id: int) -> None:
    """scancel the job (Slurm checks it is the caller's, or that they are an operator)."""
    run(cluster, ["scancel", str(job_id)])


def read_file(cluster: Host, path: str) -> str | None:
    """A file of the user's jobs folder on the login node (`path` may start with $HOME); None if absent."""
    text = run(cluster, ["sh", "-c", f'cat "{path}" 2>/dev/null || true'])
    return text or None


def qos(cluster: Host) -> list[slurmjobs.Qos]:
    """Every QOS and its per-user limits (sacctmgr); [] where accounting is not set up."""
    try:
        text = run(cluster, ["sacctmgr", "-nP", "show", "qos", f"format={slurmjobs.QOS_FORMAT}"])
    except DevboxError:
        return []
    return slurmjobs.qos_rows(text)


def shell_words(argv: list[str]) -> str:
    """`argv` as one line for messages."""
    return shlex.join(argv)


def with_name(host: Host, name: str) -> Host:
    """`host` under another name (messages say the cluster's)."""
    return replace(host, name=name)


def clusters(settings: Settings) -> list[Host]:
    """The Slurm clusters among the configured hosts ([] when hosts cannot be read)."""
    from devbox.ops import hosts

    try:
        return [h for h in hosts.load(settings).values() if h.slurm]
    except DevboxError:
        return []


def limits(cluster: Host) -> dict[str, Any]:
    """The cluster's per-user limits as Slurm holds them: {qos: {max_tres_per_user, max_jobs_per_user}}."""
    return {
        q.name: {"max_tres_per_user": q.max_tres_per_user, "max_jobs_per_user": q.max_jobs_per_user}
        for q in qos(cluster)
    }


def doctor_checks(settings: Settings, policy_limits: Limits) -> list[Check]:
    """One check per Slurm cluster: Slurm answers, and enforces the lab policy's per-user limits."""
    from devbox.ops.admin import Check

    checks = []
    for cluster in clusters(settings):
        label = f"slurm {cluster.name}"
        try:
            found = nodes(cluster)
        except DevboxError as exc:
            checks.append(Check(label, "fail", exc.message, exc.hint or ""))
            continue
        gpus = sum(n.gpus for n in found)
        checks.append(Check(label, "ok", f"{len(found)} nodes, {gpus} GPUs (sinfo)"))
        rows = {q.name: q for q in qos(cluster)}
        wanted = option(cluster, "qos") or "normal"
        for what, fix in slurmjobs.unenforced(
            policy_limits.max_gpus_per_user, policy_limits.max_boxes_per_user, rows.get(wanted)
        ):
            checks.append(Check(label, "warn", f"{what}: Slurm does not enforce it", fix))
    return checks
