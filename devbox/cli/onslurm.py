"""The box commands on a Slurm host (`hosts:` entry slurm:local or slurm://login): the verbs of
ops/slurmbox.py, shown here as the local commands show theirs. docs/slurm.md.

Reached from cli/onhost.py only, once a host turned out to be a Slurm cluster.
"""

from __future__ import annotations

import sys
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from devbox.errors import DevboxError, InvalidInput, Origin, Problem

if TYPE_CHECKING:
    from devbox.ops.hosts import Host
    from devbox.profile.flags import Overrides
    from devbox.settings import Settings


def _print_json(data: Any) -> None:
    from devbox.ui.to_json import print_json

    print_json(data)


def _job_line(data: dict[str, Any]) -> str:
    """ "job 12 on node2, GPUs 0" / "job 12 pending (Resources)"."""
    job = data.get("job_id")
    if data.get("job_state") == "PENDING" or data.get("status") == "pending":
        return f"job {job} pending ({data.get('reason') or 'queued'})"
    gpus = ",".join(str(g) for g in data.get("gpus") or []) or "none"
    return f"job {job} on {data.get('node')}, GPUs {gpus}"


def show_box(data: dict[str, Any], host: Host, json_output: bool) -> None:
    """A box of the cluster: its JSON, or the panel (running) or one line (pending)."""
    from devbox.cli import shared

    if json_output:
        _print_json(data)
        return
    if data.get("status") == "pending":
        shared.stdout().print(
            f"{data.get('name')} on {host.name}: {_job_line(data)}; "
            f"devbox ls --host {host.name} shows it, devbox down {data.get('name')} cancels it",
            highlight=False,
        )
        return
    from devbox.ui import remote as view

    view.report_panel(shared.stdout(), shared.stderr(), data, host.name)
    shared.stderr().print(f"{host.name}: {_job_line(data)}", highlight=False)


def up(
    settings: Settings,
    host: Host,
    profile: str,
    flags: Overrides,
    recreate: bool,
    keep_failed: bool,
    json_output: bool,
    progress: str,
    no_wait: bool,
    wait_timeout: float | None,
) -> None:
    """`devbox up PROFILE --host CLUSTER`: submit, wait while pending, show the box."""
    from devbox.cli import onhost, shared
    from devbox.ops import reach, slurmbox, sticky

    if keep_failed:
        raise InvalidInput(
            "--keep-failed does not apply to a Slurm host",
            [Problem(Origin("--keep-failed"), "a box whose job ends is removed with it")],
        )
    if flags.gpus is not None and not flags.gpus.strip().isdecimal():
        raise InvalidInput(
            f"on {host.name} Slurm picks the GPUs",
            [Problem(Origin("--gpus"), f"'{flags.gpus}': ask for a number", "e.g. --gpus 1")],
        )
    steps = shared.reporter(json_output, progress)
    # The node's devbox gets the job's GPUs by index, not the count asked for here.
    up_args = onhost.override_args(replace(flags, gpus=None), settings.caller_environ)
    if host.target is None:
        # This machine is the login node: the profile and policy as read here (no engine asked).
        from devbox.ops import resolve

        rendered = slurmbox.rendered_of(resolve.resolve(profile, settings, flags).spec)
    else:
        rendered = slurmbox.render_remote(host, profile, onhost.override_args(flags, settings.caller_environ))
    with steps:
        data = slurmbox.up(
            host, rendered, profile, up_args, str(settings.cwd), steps, recreate, no_wait, wait_timeout
        )
    if isinstance(data.get("name"), str):
        sticky.remember(settings, data["name"], host.name)
        reach.pin_remote(settings, host.name, data)
    show_box(data, host, json_output)


def info(host: Host, name: str, json_output: bool) -> None:
    """`devbox info NAME --host CLUSTER`."""
    from devbox.ops import slurmbox

    show_box(slurmbox.info(host, name), host, json_output)


def ls(host: Host, all_users: bool, json_output: bool, owner: str | None, quiet: bool) -> None:
    """`devbox ls --host CLUSTER`: the boxes' jobs, with node, GPUs and why they pend."""
    from devbox.ops import slurmbox
    from devbox.ui import plain, term

    rows = slurmbox.listing(host, all_users, owner)
    if json_output:
        _print_json(rows)
        return
    if quiet:
        sys.stdout.write("".join(f"{r['name']}\n" for r in rows))
        return
    if not rows:
        print(f"no boxes on {host.name}" if all_users or owner else f"no boxes of yours on {host.name}")
        return
    table = [["NAME", "OWNER", "STATUS", "NODE", "GPUS", "JOB", "REASON"]]
    for r in rows:
        gpus = ",".join(str(g) for g in r["gpus"]) or "-"
        table.append(
            [r["name"], r["owner"], r["status"], r["node"] or "-", gpus, str(r["job_id"]), r["reason"] or ""]
        )
    print(plain.table(table, bold_header=term.styled(sys.stdout)))


def down(settings: Settings, host: Host, name: str, purge: bool, json_output: bool) -> int:
    """`devbox down NAME --host CLUSTER`: scancel, then no container left on the node."""
    from devbox.cli import shared
    from devbox.ops import slurmbox, sticky

    data = slurmbox.down(host, name, purge)
    if sticky.host_of(settings, name) == host.name:
        sticky.forget(settings, name)
    if json_output:
        _print_json(data)
        return 0
    from devbox.ui import panels
    from devbox.ui import remote as view

    panels.down_summary(
        shared.stdout(),
        view.down_result(data),
        f"{name} on {host.name}" + (f" (job {data['job_id']})" if data["job_id"] else ""),
    )
    for warning in data.get("warnings") or []:
        shared.stderr().print(f"warning: {warning}", highlight=False)
    return 0


def rebuild(settings: Settings, host: Host, name: str, json_output: bool, progress: str) -> None:
    """`devbox rebuild NAME --host CLUSTER`: cancel the job, submit the box's profile again."""
    from devbox.ops import slurmbox
    from devbox.profile.flags import Overrides

    profile, _ = slurmbox.profile_of(host, name)
    up(settings, host, profile, Overrides(), True, False, json_output, progress, False, None)


def gpus(host: Host, json_output: bool) -> None:
    """`devbox gpus --host CLUSTER`: every node's GPUs and the job (box) holding each."""
    from devbox.ops import slurmbox
    from devbox.ui import plain, term

    rows = slurmbox.gpu_rows(host)
    if json_output:
        _print_json(rows)
        return
    table = [["NODE", "GPU", "HOLDER", "JOB"]]
    for r in rows:
        holder = r["holder"]
        idle = "a job outside devbox" if r["busy_outside"] else "free"
        who = f"{holder['owner']}/{holder['name']}" if holder else idle
        table.append([r["node"], str(r["index"]), who, str(holder["job_id"]) if holder else ""])
    print(plain.table(table, bold_header=term.styled(sys.stdout)))


def node_of(host: Host, name: str) -> Host:
    """The node box `name`'s job runs on, as an ssh host (tunnel, ssh, logs, exec, proxy)."""
    from devbox.ops import slurm

    _, job = slurm.the_job(host, name)
    if job.node is None:
        raise DevboxError(
            f"box '{name}' on {host.name} is {job.status} ({job.reason or 'queued'}): not on a node yet",
            f"devbox info {name} --host {host.name} shows its job",
        )
    return slurm.node_host(host, job.node)


def refuse_flags(no_wait: bool, wait_timeout: float | None) -> None:
    """--no-wait and --wait-timeout mean a queue: only a Slurm host has one."""
    if no_wait or wait_timeout is not None:
        flag = "--no-wait" if no_wait else "--wait-timeout"
        raise InvalidInput(
            f"{flag} applies to a Slurm host only (a queue to wait in)",
            [Problem(Origin(flag), "this host starts the box at once or says why not")],
            "devbox hosts lists the hosts; a Slurm one is slurm:local or slurm://LOGIN",
        )


def not_slurm(host: Host) -> DevboxError:
    """A command devbox cannot do on a Slurm host."""
    return DevboxError(f"{host.name} is a Slurm cluster: this command does not apply there")
