"""The lab admin's commands: gpus, doctor, prune, policy show / check."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from devbox.cli.app import JsonOpt, app, handles_errors, stderr, stdout
from devbox.errors import DevboxError, ExitCode

policy_app = typer.Typer(help="Show the lab policy in force, or check a policy file.")
app.add_typer(policy_app, name="policy")


def _print_json(data: object) -> None:
    print(json.dumps(data, indent=2, default=str))


@app.command()
@handles_errors
def gpus(json_output: JsonOpt = False) -> None:
    """Every GPU of the host: memory, utilisation, and which box (owner, since) holds it."""
    from devbox import engine, settings
    from devbox.ops import admin
    from devbox.placement import gpus
    from devbox.ui import plain

    rows = admin.gpu_rows(engine.connect(), settings.from_environment())
    if rows is None:
        raise DevboxError(
            "no GPUs known on this host: nvidia-smi is missing and DEVBOX_GPU_INVENTORY is unset",
            "install the NVIDIA driver, or declare GPUs for bookkeeping: DEVBOX_GPU_INVENTORY=8",
        )
    if json_output:
        _print_json(
            [
                {
                    "index": r.gpu.index,
                    "uuid": r.gpu.uuid,
                    "name": r.gpu.name,
                    "memory_used_mib": r.gpu.memory_used,
                    "memory_total_mib": r.gpu.memory_total,
                    "utilization": r.gpu.utilization,
                    "declared": r.gpu.declared,
                    "holder": (
                        {
                            "box": r.holder.name,
                            "owner": r.holder.owner,
                            "container": r.holder.container,
                            "since": r.holder.created,
                        }
                        if r.holder
                        else None
                    ),
                }
                for r in rows
            ]
        )
        return
    table = [["GPU", "NAME", "MEMORY", "UTIL", "HOLDER", "KIND"]]
    for r in rows:
        g = r.gpu
        table.append(
            [
                g.index,
                g.name,
                f"{g.memory_used}/{g.memory_total} MiB",
                f"{g.utilization}%",
                gpus.describe_holder(r.holder) if r.holder else "free",
                "declared" if g.declared else "real",
            ]
        )
    print(plain.table(table, bold_header=sys.stdout.isatty()))


@app.command()
@handles_errors
def doctor(json_output: JsonOpt = False) -> None:
    """Check the engine, socket, GPU runtime, GPUs, disk, /dev/shm default and policy; exit 1 on failure."""
    from rich.markup import escape

    from devbox import engine, settings
    from devbox.ops import admin

    checks = admin.doctor(engine.connect(timeout=10), settings.from_environment())
    failed = any(c.status == "fail" for c in checks)
    if json_output:
        _print_json({"ok": not failed, "checks": [c.__dict__ for c in checks]})
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
        str, typer.Option("--older-than", help="Only boxes stopped for longer, e.g. 7d.")
    ] = "0s",
    all_users: Annotated[bool, typer.Option("--all", "-a", help="Everyone's boxes (admin).")] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Remove without asking.")] = False,
    idle: Annotated[bool, typer.Option("--idle", help="Report running boxes whose GPUs are idle.")] = False,
) -> None:
    """List stopped boxes, then remove them (their volumes are kept). --idle reports idle GPU holders."""
    from devbox import engine, settings
    from devbox.ops import admin
    from devbox.placement import gpus

    caller = settings.from_environment()
    eng = engine.connect()
    out = stdout()
    if idle:
        found = admin.idle(eng, caller)
        for box, ids in found:
            out.print(
                f"idle: {box.owner}/{box.name} holds GPU {','.join(ids)} at 0% ({gpus.describe_holder(box)})"
            )
        if not found:
            out.print("no running box holds only idle GPUs (a snapshot of utilisation right now)")
        return
    doomed = admin.prunable(eng, None if all_users else caller.owner, admin.parse_age(older_than))
    if not doomed:
        out.print("nothing to prune")
        return
    for box in doomed:
        out.print(f"stopped: {box.owner}/{box.name} ({box.container}, {box.status_text})")
    if not yes:
        if not sys.stdin.isatty():
            raise DevboxError("prune needs a confirmation and there is no terminal", "add --yes")
        if not typer.confirm(f"Remove these {len(doomed)} box(es)? Their volumes are kept.", default=False):
            raise typer.Exit(1)
    for box in doomed:
        eng.remove(box.id)
    out.print(f"removed {len(doomed)} box(es); volumes kept")


@policy_app.command("show")
@handles_errors
def policy_show(json_output: JsonOpt = False) -> None:
    """Print the policy in force (file, defaults, limits, images, mounts, bind address)."""
    from devbox import settings, sizes
    from devbox.policy import rules

    lab = rules.load(settings.from_environment())
    lim = lab.limits
    data: dict[str, Any] = {
        "file": lab.path,
        "defaults": {k: v for k, v in (lab.defaults.values if lab.defaults else {}).items()},
        "limits": {
            "max_gpus_per_user": lim.max_gpus_per_user,
            "max_cpus": lim.max_cpus,
            "max_memory": sizes.format_size(lim.max_memory) if lim.max_memory else None,
            "max_boxes_per_user": lim.max_boxes_per_user,
        },
        "allowed_images": list(lab.allowed_images) if lab.allowed_images is not None else "any",
        "allow_build": lab.allow_build,
        "forbidden_mounts": list(lab.forbidden_mounts),
        "bind_address": lab.bind_address,
    }
    if json_output:
        _print_json(data)
        return
    out = stdout()
    out.print(f"[bold]policy[/] {lab.source}", soft_wrap=True)
    for key, value in data.items():
        if key != "file":
            out.print(
                f"  [bold]{key:<18}[/] {json.dumps(value, default=str)}", highlight=False, soft_wrap=True
            )


@policy_app.command("check")
@handles_errors
def policy_check(
    file: Annotated[Path | None, typer.Argument(help="Policy file (default: the one in force).")] = None,
) -> None:
    """Validate a policy file; exit 2 with every problem located if it is invalid."""
    from devbox import settings
    from devbox.policy import rules
    from devbox.profile.yamlsrc import load_file

    caller = settings.from_environment()
    path = file or caller.policy_path
    if not path.exists():
        raise DevboxError(f"no policy file {path}", "pass a path: devbox policy check FILE")
    rules.parse(load_file(path), caller)
    stderr().print(f"[green]ok[/] {path}")
