"""A box as a Slurm job: the `sbatch` options and the batch script that runs the box. Pure.

The job holds the box's resources (`--gres=gpu:N`, `--cpus-per-task`, `--mem`, `--time`) and
runs `devbox up --host local` on the node Slurm chose, with exactly the job's GPUs
(`--gpus device=$SLURM_JOB_GPUS`; every box made inside a job carries the label
`devbox.slurm_job=<id>`). Then it lives as long as the box: it waits on the box's log, and its
TERM trap (scancel, the time limit) removes the box. The Epilog devbox ships removes what a
KILL left (scripts/slurm-epilog). docs/slurm.md.
"""

from __future__ import annotations

import math
import shlex
from dataclasses import dataclass

from devbox import __version__
from devbox.ops.slurmjobs import job_name

# Under the user's home, which a Slurm site shares between login and compute nodes: the job's
# output (`<id>.out`) and its `devbox up --json` answer (`<id>.json`). Expanded by the shells
# of the login node (sbatch -o) and of the node (the script), the same folder on both.
JOBS_DIR = "$HOME/.cache/devbox/slurm"
UP_DONE = "devbox-slurm: up exit "  # the line the script writes once `up` on the node ended


@dataclass(frozen=True)
class JobRequest:
    """What one box asks Slurm for, and how the node's devbox makes it."""

    owner: str
    box: str
    profile: str  # the profile as the node's devbox reads it (an absolute path where known)
    gpus: int  # 0: no GPU
    cpus: int | None  # --cpus-per-task; None: Slurm's default
    memory_mib: int | None  # --mem; None: Slurm's default
    time: str | None  # --time; None: the partition's default
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    up_args: tuple[str, ...] = ()  # override flags for the node's `devbox up` (not --gpus)
    workdir: str | None = None  # where the job starts (relative paths of the profile)


def cpus_of(nano_cpus: int | None) -> int | None:
    """Whole CPUs for `--cpus-per-task` from Docker's nano-CPUs (1.5 CPUs → 2)."""
    return math.ceil(nano_cpus / 1e9) if nano_cpus else None


def mib_of(memory: int | None) -> int | None:
    """MiB for `--mem` from a byte count (rounded up)."""
    return math.ceil(memory / 2**20) if memory else None


def sbatch_options(req: JobRequest) -> list[str]:
    """The sbatch options of a box's job (output folder and script not included)."""
    options = ["--parsable", f"--job-name={job_name(req.owner, req.box)}"]
    options += [f"--gres=gpu:{req.gpus}"] if req.gpus else []
    options += [f"--cpus-per-task={req.cpus}"] if req.cpus else []
    options += [f"--mem={req.memory_mib}M"] if req.memory_mib else []
    options += [f"--time={req.time}"] if req.time else []
    options += [f"--partition={req.partition}"] if req.partition else []
    options += [f"--account={req.account}"] if req.account else []
    options += [f"--qos={req.qos}"] if req.qos else []
    options += [f"--chdir={req.workdir}"] if req.workdir else []
    return options


def submit_command(req: JobRequest) -> list[str]:
    """The command (for the login node's shell, or run here) that makes the jobs' folder and
    submits the script given on its stdin, printing the job id."""
    shell = f'mkdir -p "{JOBS_DIR}" && exec sbatch --output="{JOBS_DIR}/%j.out" "$@"'
    return ["sh", "-c", shell, "sh", *sbatch_options(req)]


def _one_line(text: str) -> str:
    """`text` fit for a comment line of the script (no line break ends the comment)."""
    return " ".join(text.split())


def _gpus_lines(count: int) -> str:
    """The script's lines that set `gpus`: the job's GPUs (host indices), or none.

    Only what Slurm gave this job: without a GPU asked for, an exported CUDA_VISIBLE_DEVICES
    must not give the box GPUs Slurm counts as free; with GPUs asked for and none given, the
    node's devbox must not pick its own.
    """
    if not count:
        return "gpus="
    return f"""gpus=${{SLURM_JOB_GPUS:-${{CUDA_VISIBLE_DEVICES:-}}}}
if [ -z "$gpus" ]; then
  echo "devbox-slurm: the job asked for {count} GPU(s) but Slurm gave it none (no SLURM_JOB_GPUS)" |
    tee "$answer"
  exit 1
fi"""


def script(req: JobRequest) -> str:
    """The batch script (bash) of a box's job."""
    q = shlex.quote
    up = ["up", req.profile, "--host", "local", "--recreate", "--json", "--progress", "plain", *req.up_args]
    return f"""#!/bin/bash
# devbox {__version__}: {_one_line(req.owner)}'s box {_one_line(req.box)} as a Slurm job.
# Made by devbox (devbox help slurm).
set -u
# Identity is Slurm's: the box belongs to the job's user (munge), never to a DEVBOX_USER sbatch exported.
unset DEVBOX_USER
# Nor to the LOGNAME or USER it exported (devbox reads its login name from them first): the
# job runs as its user's uid, and that uid's name is the owner.
me=$(id -un) || exit 1
export LOGNAME="$me" USER="$me"
box={q(req.box)}
answer="{JOBS_DIR}/$SLURM_JOB_ID.json"
{_gpus_lines(req.gpus)}
# scancel and the time limit send TERM: the box goes with its job (the Epilog removes what a
# KILL leaves). The trap runs at once because every wait below is on a background child.
stop() {{
  trap - TERM INT
  devbox down "$box" --host local --yes --json >/dev/null 2>&1
  exit 143
}}
trap stop TERM INT
args=({" ".join(q(a) for a in up)})
if [ -n "$gpus" ]; then args+=(--gpus "device=$gpus"); else args+=(--gpus none); fi
echo "devbox-slurm: job $SLURM_JOB_ID on $(hostname) GPUs ${{gpus:-none}}"
devbox "${{args[@]}}" >"$answer.new" &
wait $!
rc=$?
mv -f "$answer.new" "$answer"
echo "{UP_DONE}$rc"
[ "$rc" -eq 0 ] || exit "$rc"
# The job lives as long as the box runs: its log ends when it stops.
while :; do
  devbox logs "$box" --host local --follow --tail 0 >/dev/null 2>&1 &
  wait $!
  sleep 2 &
  wait $!
  devbox info "$box" --host local --json 2>/dev/null | grep -q '"status": *"running"' || break
done
echo "devbox-slurm: box $box stopped"
"""
