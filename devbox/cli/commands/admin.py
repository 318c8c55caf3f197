"""The lab admin's commands: gpus, doctor, prune, policy show / check."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from devbox.cli.app import AllHostsOpt, JsonOpt, TimeoutOpt, app, handles_errors, stderr, stdout
from devbox.errors import DevboxError, ExitCode, InvalidInput, NotFound, Origin, Problem

if TYPE_CHECKING:
    from rich.console import Console

    from devbox.engine.base import Engine
    from devbox.policy.rules import Policy

policy_app = typer.Typer(help="Show the lab policy in force, or check a policy file.")
app.add_typer(policy_app, name="policy")


@app.command()
@handles_errors
def gpus(
    json_output: JsonOpt = False,
    all_hosts: AllHostsOpt = False,
    timeout: TimeoutOpt = 10.0,
    host: Annotated[str | None, typer.Option("--host", help="The GPUs of this server or cluster.")] = None,
) -> None:
    """Every GPU of the host: memory, utilisation, and which box (owner, since) holds it."""
    if host is not None and not all_hosts:
        from devbox.cli import onhost, shared

        server = onhost.server(shared.caller(), host)
        if server is not None and server.slurm:
            from devbox.cli import onslurm

            onslurm.gpus(server, json_output)
            return
        if server is not None:
            from devbox.ops import fanout, remote
            from devbox.ui import remote as view
            from devbox.ui import term

            data = remote.run_json(server, ["gpus", "--json"], timeout)
            if json_output:
                from devbox.ui.to_json import print_json

                print_json([{**row, "host": server.name} for row in data if isinstance(row, dict)])
            else:
                print(view.gpus_table([fanout.Outcome(server, data, None, 0.0)], term.styled(sys.stdout)))
            return
    if all_hosts:
        from devbox.cli import allhosts, shared

        code = allhosts.gpus(shared.caller(), json_output, timeout)
        if code:
            raise typer.Exit(code)
        return
    from devbox import engine, settings
    from devbox.ops import admin
    from devbox.placement import gpus
    from devbox.ui import plain, term

    eng = engine.connect()
    caller = settings.from_environment()
    rows = admin.gpu_rows(eng, caller)
    if rows is None:
        raise DevboxError(
            "no GPUs known on this host: nvidia-smi is missing and DEVBOX_GPU_INVENTORY is unset",
            "install the NVIDIA driver, or declare GPUs for bookkeeping: DEVBOX_GPU_INVENTORY=8",
        )
    driver = admin.gpu_driver(caller)
    if json_output:
        from devbox.ui import to_json

        to_json.print_json(to_json.gpus_json(rows, eng.host, driver))
        return
    if driver:
        print(f"driver {driver.version or 'unknown'}, CUDA {driver.cuda or 'unknown'}")

    def shown(value: int | None, unit: str = "") -> str:
        return "n/a" if value is None else f"{value}{unit}"  # [N/A] is unknown, never 0

    table = [["GPU", "NAME", "MEMORY", "UTIL", "HOLDER", "KIND"]]
    for r in rows:
        g = r.gpu
        holder = [gpus.describe_holder(r.holder)] if r.holder else []
        holder += [f"busy (outside devbox): {r.busy.describe()}"] if r.busy else []
        table.append(
            [
                g.index,
                g.name,
                f"{shown(g.memory_used)}/{shown(g.memory_total)} MiB",
                shown(g.utilization, "%"),
                "; ".join(holder) or "free",
                "declared" if g.declared else "real",
            ]
        )
    print(plain.table(table, bold_header=term.styled(sys.stdout)))


@app.command()
@handles_errors
def doctor(json_output: JsonOpt = False) -> None:
    """Check the engine, socket, GPU runtime, GPUs, disk, /dev/shm, policy, lab mode; exit 1 on failure."""
    from rich.markup import escape

    from devbox import engine, settings
    from devbox.ops import admin

    eng = engine.connect(timeout=10)
    caller = settings.from_environment()
    checks = admin.doctor(eng, caller)
    if not caller.lab:
        from devbox.ops import slurm

        if slurm.clusters(caller):  # a Slurm host: its limits are the ones that hold (docs/slurm.md)
            from devbox.policy import rules

            checks += slurm.doctor_checks(caller, rules.load(caller).limits)
    failed = any(c.status == "fail" for c in checks)
    if json_output:
        # A report even when a check fails: the checks are the answer (exit 1 says one failed).
        from devbox.ui import to_json

        to_json.print_json(to_json.doctor_json(checks, eng.host))
    else:
        out = stdout()
        style = {"ok": "[green]ok  [/]", "warn": "[yellow]warn[/]", "fail": "[red]FAIL[/]"}
        for c in checks:
            out.print(
                f"{style[c.status]}  [bold]{c.name:<12}[/] {escape(c.detail)}",
                highlight=False,
                soft_wrap=True,
            )
            if c.fix:
                out.print(f"      [cyan]fix:[/] {escape(c.fix)}", highlight=False, soft_wrap=True)
    if failed:
        raise typer.Exit(int(ExitCode.ERROR))


@app.command()
@handles_errors
def prune(
    older_than: Annotated[
        str, typer.Option("--older-than", help="Only boxes created longer ago, e.g. 7d.")
    ] = "0s",
    all_users: Annotated[bool, typer.Option("--all", "-a", help="Everyone's boxes (admin).")] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Remove without asking.")] = False,
    idle: Annotated[bool, typer.Option("--idle", help="Report running boxes whose GPUs are idle.")] = False,
    images: Annotated[
        bool, typer.Option("--images", help="Remove the images devbox built that no box uses.")
    ] = False,
    json_output: JsonOpt = False,
) -> None:
    """List stopped boxes, then remove them (their volumes are kept). --idle reports idle GPU holders.

    --images removes the images devbox built that no container uses, instead of boxes.
    """
    from devbox import engine, settings
    from devbox.ops import admin
    from devbox.placement import gpus
    from devbox.ui import to_json

    caller = settings.from_environment()
    eng = engine.connect()
    out = stderr() if json_output else stdout()  # with --json, stdout holds the one document
    if idle:
        found = admin.idle(eng, caller)
        if json_output:
            to_json.print_json(to_json.prune_idle_json([box for box, _ in found], eng.host))
            return
        for box, ids in found:
            out.print(
                f"idle: {box.owner}/{box.name} holds GPU {','.join(ids)} at 0% ({gpus.describe_holder(box)})"
            )
        if not found:
            out.print("no running box holds only idle GPUs (a snapshot of utilisation right now)")
        return
    if all_users and not caller.admin:
        from devbox.errors import Refused

        raise Refused(
            "only lab admins may prune everyone's boxes", "devbox prune (without --all) prunes yours"
        )
    if images:
        _prune_images(eng, None if all_users else caller.owner, yes, json_output, out)
        return
    doomed = admin.prunable(eng, None if all_users else caller.owner, admin.parse_age(older_than))
    if not doomed and not json_output:
        out.print("nothing to prune")
        return
    for box in doomed:
        out.print(f"stopped: {box.owner}/{box.name} ({box.container}, {box.status_text})")
    if doomed and not yes:
        if not sys.stdin.isatty():
            raise InvalidInput(
                "prune needs a confirmation and there is no terminal",
                [Problem(Origin("--yes"), "missing: there is no terminal to ask")],
                "add --yes",
            )
        question = f"Remove these {len(doomed)} box(es)? Their volumes are kept."
        if not typer.confirm(question, default=False, err=True):
            raise typer.Exit(1)
    from devbox.ops.replace import forget_pins

    removed = []
    for box in doomed:
        # Never forced: a box its owner started since it was listed (at the prompt, say) stays.
        if not eng.remove_if_stopped(box.id):
            out.print(f"kept {box.owner}/{box.name}: it was started meanwhile")
            continue
        removed.append(box)
        forget_pins(box)  # lab mode: the box's pinned binds go with it
    if json_output:
        to_json.print_json(to_json.prune_json(removed, eng.host))
    else:
        out.print(f"removed {len(removed)} box(es); volumes kept")


def _prune_images(eng: Engine, owner: str | None, yes: bool, json_output: bool, out: Console) -> None:
    """`prune --images`: list the built images no container uses, confirm, remove them."""
    from devbox.ops import builtimages
    from devbox.ui import to_json

    doomed = builtimages.unused(eng, owner)
    if not doomed and not json_output:
        out.print("no unused image devbox built")
        return
    for image in doomed:
        name = ", ".join(image.tags) or image.id.removeprefix("sha256:")[:12]
        out.print(f"unused: {name} ({image.owner}/{image.box}, {image.size / 1e6:.0f} MB)")
    if doomed and not yes:
        _confirm(f"Remove these {len(doomed)} image(s)?")
    removed, kept = builtimages.prune(eng, doomed)
    if json_output:
        to_json.print_json(to_json.prune_images_json(removed, kept))
        return
    freed = f"{sum(i.size for i in removed) / 1e6:.0f} MB"
    # The engine refuses one a container was made from meanwhile, or one another image is built
    # on (a `docker commit` of its box, a FROM it) or tagged as too.
    note = f"; {len(kept)} kept: a container or another image uses it" if kept else ""
    out.print(f"removed {len(removed)} image(s), {freed}{note}")


def _confirm(question: str) -> None:
    """Ask on the terminal; no terminal needs --yes."""
    if not sys.stdin.isatty():
        raise InvalidInput(
            "prune needs a confirmation and there is no terminal",
            [Problem(Origin("--yes"), "missing: there is no terminal to ask")],
            "add --yes",
        )
    if not typer.confirm(question, default=False, err=True):
        raise typer.Exit(1)


@policy_app.command("show")
@handles_errors
def policy_show(json_output: JsonOpt = False) -> None:
    """Print the policy in force (file, defaults, limits, images, mounts, bind address)."""
    import json as stdlib_json

    from devbox import settings
    from devbox.policy import rules
    from devbox.ui import to_json

    caller = settings.from_environment()
    lab = rules.load(caller)
    data: dict[str, Any] = dict(to_json.policy_json(lab))
    if not caller.lab:
        from devbox.ops import slurm

        # Next to devbox's: each Slurm cluster's QOS limits, the ones Slurm enforces there.
        found = {c.name: slurm.limits(c) for c in slurm.clusters(caller)}
        if found:
            data["slurm"] = found
    if json_output:
        to_json.print_json(data)
        return
    out = stdout()
    out.print(f"[bold]policy[/] {lab.source}", soft_wrap=True)
    for key, value in data.items():
        if key != "file":
            text = stdlib_json.dumps(value, default=str)
            out.print(f"  [bold]{key:<18}[/] {text}", highlight=False, soft_wrap=True)


def _policy_warnings(lab: Policy) -> None:
    """On stderr: the limits this host cannot honour (valid all the same: exit 0)."""
    from devbox.ops import admin

    facts = None
    if lab.limits.max_disk is not None:  # only then is the engine worth asking
        from devbox import engine

        try:
            facts = engine.connect(timeout=3).facts()
        except DevboxError:
            facts = None
    for status, text, fix in admin.policy_warnings(lab, facts):
        stderr().print(f"{status}: {text}\n  fix: {fix}", highlight=False, soft_wrap=True, markup=False)


@policy_app.command("check")
@handles_errors
def policy_check(
    file: Annotated[Path | None, typer.Argument(help="Policy file (default: the one in force).")] = None,
    json_output: JsonOpt = False,
) -> None:
    """Validate a policy file; exit 2 with every problem located if it is invalid."""
    from devbox import caller as lab_caller
    from devbox import settings
    from devbox.policy import rules
    from devbox.profile import files
    from devbox.profile.yamlsrc import load_file

    caller = settings.from_environment()
    path = file or caller.policy_path
    # A file of the caller's choosing is read with their rights (lab mode runs as root: an
    # "unknown key" message would otherwise quote /etc/shadow's lines to anyone).
    with lab_caller.rights(caller.caller if file is not None else None):
        if files.look(str(path)).kind == "missing":  # never raises, whatever the argument holds
            shown = files.shown(str(path))
            raise NotFound(f"no policy file {shown}", "pass a path: devbox policy check FILE")
        lab = rules.parse(load_file(path), caller)
    _policy_warnings(lab)
    if json_output:
        from devbox.ui import to_json

        to_json.print_json(to_json.policy_check_json(str(path)))
    else:
        stderr().print(f"[green]ok[/] {path}")
