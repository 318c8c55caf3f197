"""Lab mode's own commands: lab install, lab uninstall (root), lab status (anyone)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from devbox.cli.app import JsonOpt, app, handles_errors, stderr, stdout

if TYPE_CHECKING:
    from devbox.ops.labcheck import Status
    from devbox.ops.labsetup import Report

lab_app = typer.Typer(
    help="Set lab mode up (root): users outside the docker group get what the policy allows, as themselves."
)
app.add_typer(lab_app, name="lab")


def _in_helper() -> bool:
    """True when a lab user runs this through the root helper (sudo HELPER -- lab …): never root's."""
    from devbox import settings
    from devbox.errors import DevboxError

    try:
        return settings.from_environment().lab
    except DevboxError:
        return False


def _report_json(report: Report) -> dict[str, Any]:
    return {
        "changed": report.changed,
        "steps": [{"what": s.what, "action": s.action, "note": s.note} for s in report.steps],
        "group": report.config.group,
        "admins": list(report.config.admin_groups),
        "engine": report.config.engine,
    }


def _print_steps(report: Report) -> None:
    out = stdout()
    for step in report.steps:
        note = f"  ({step.note})" if step.note else ""
        out.print(f"{step.action:<8} {step.what}{note}", highlight=False, markup=False, soft_wrap=True)


def _bypass_warning(found: Status) -> None:
    if found.socket_users:
        stderr().print(
            f"warning: {', '.join(found.socket_users)} can use {found.socket} directly, around the lab "
            "policy\n  fix: lab users need no docker group: gpasswd -d USER docker (for each)",
            highlight=False,
            markup=False,
            soft_wrap=True,
        )


@lab_app.command("install")
@handles_errors
def lab_install(
    group: Annotated[
        str | None, typer.Option("--group", help="The lab group: its members use lab mode (default devbox).")
    ] = None,
    admins: Annotated[
        list[str] | None,
        typer.Option("--admins", help="A group whose members are lab admins (repeatable)."),
    ] = None,
    engine: Annotated[
        str | None, typer.Option("--engine", help="The engine's socket, unix:///PATH (default Docker's).")
    ] = None,
    json_output: JsonOpt = False,
) -> None:
    """Set lab mode up (root): group, lab.yaml, a starter policy, the sudoers drop-in, the helper."""
    from devbox.ops import labcheck, labsetup

    labsetup.require_root("install", _in_helper())
    paths = labcheck.Paths()
    config = labsetup.wanted_config(group, admins, engine, paths)
    report = labsetup.install(config, paths)
    found = labcheck.status(paths)
    if json_output:
        from devbox.ui.to_json import print_json

        print_json(_report_json(report))
        return
    _print_steps(report)
    out = stdout()
    if not report.changed:
        out.print("lab mode is already installed; nothing changed", highlight=False)
    else:
        out.print(
            f"lab mode is on: members of group {config.group} run devbox as themselves, "
            f"under {paths.policy_file}",
            highlight=False,
            soft_wrap=True,
        )
    out.print(
        f"next: add users: usermod -aG {config.group} alice (they need no docker group); "
        f"edit {paths.policy_file}, then devbox policy check",
        highlight=False,
        markup=False,
        soft_wrap=True,
    )
    _bypass_warning(found)


@lab_app.command("uninstall")
@handles_errors
def lab_uninstall(json_output: JsonOpt = False) -> None:
    """Turn lab mode off (root): remove lab.yaml, the sudoers drop-in, the helper; keep policy, audit log."""
    from devbox.ops import labsetup

    labsetup.require_root("uninstall", _in_helper())
    report = labsetup.uninstall()
    if json_output:
        from devbox.ui.to_json import print_json

        print_json(_report_json(report))
        return
    _print_steps(report)
    out = stdout()
    if report.changed:
        out.print(
            "lab mode is off: devbox runs as each user again, with the Docker access they have. "
            "The policy, audit log and groups are kept.",
            highlight=False,
            soft_wrap=True,
        )
    else:
        out.print("lab mode is not installed; nothing to remove", highlight=False)


def _status_json(found: Status) -> dict[str, Any]:
    config = found.config
    return {
        "installed": found.installed,
        "sound": found.sound,
        "group": config.group if config else None,
        "members": found.members,
        "admins": found.admins,
        "engine": config.engine if config else None,
        "interpreter": found.interpreter,
        "files": found.present,
        "config_error": found.config_error,
        "weak_spots": [
            {"path": s.path, "why": s.why, "fix": s.fix, "checked": s.checked} for s in found.spots
        ],
        "socket": found.socket or None,
        "socket_users": found.socket_users,
    }


@lab_app.command("status")
@handles_errors
def lab_status(json_output: JsonOpt = False) -> None:
    """Show whether lab mode is installed and sound, its group, admins and engine."""
    from devbox.ops import labcheck

    found = labcheck.status()
    if json_output:
        from devbox.ui.to_json import print_json

        print_json(_status_json(found))
        return
    out = stdout()

    def row(key: str, value: str) -> None:
        out.print(f"{key:<10} {value}", highlight=False, markup=False, soft_wrap=True)

    if not found.installed:
        row("lab mode", "off (as root: devbox lab install)")
        return
    if found.sound and found.spots:
        row("lab mode", "on; some paths could not be checked (run lab status as root)")
    else:
        row("lab mode", "on, sound" if found.sound else "on, NOT sound (below)")
    if found.config_error:
        row("lab.yaml", found.config_error)
    config = found.config
    if config:
        row("group", f"{config.group}: {', '.join(found.members) or 'no members yet'}")
        admins = [f"{g}: {', '.join(m) or 'no members'}" for g, m in found.admins.items()]
        row("admins", "; ".join(admins) or "none in lab.yaml (the policy's admins: may name some)")
        row("engine", config.engine or f"default (unix://{labcheck.DEFAULT_SOCKET})")
    row("helper", f"runs {found.interpreter}" if found.interpreter else "missing")
    for path in found.missing:
        row("missing", f"{path} (as root: devbox lab install)")
    for spot in found.spots[:20]:
        row("weak" if spot.checked else "unchecked", f"{spot.path} {spot.why}")
        row("", f"fix: {spot.fix}")
    if len(found.spots) > 20:
        row("", f"… and {len(found.spots) - 20} more (devbox lab status --json lists them all)")
    for user in found.socket_users:
        row("bypass", f"{user} can use {found.socket} directly, around the policy")
