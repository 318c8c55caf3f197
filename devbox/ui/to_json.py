"""Result dataclasses → the JSON shapes of `devbox.ui.json`, and the one `print_json`.

Only the type checker reads the shapes (TypedDicts cost milliseconds to build at import, and
`up --json` is timed); at run time the builders return plain dicts of exactly those keys.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from devbox.access.reports import BoxReport
    from devbox.access.sshaccess import SshTarget
    from devbox.box.spec import ContainerSpec
    from devbox.box.state import Box
    from devbox.engine.base import BuiltImage, RunCommands
    from devbox.errors import DevboxError, Problem
    from devbox.ops.admin import Check, GpuRow
    from devbox.ops.lifecycle import DownResult
    from devbox.ops.profiles import ProfileStatus
    from devbox.placement.inventory import Driver
    from devbox.policy.rules import Policy
    from devbox.ui.json import (
        BoxJson,
        BoxRefJson,
        BuiltImageJson,
        DoctorJson,
        DownJson,
        ErrorJson,
        GpuJson,
        ImageBuildJson,
        LsBoxJson,
        PolicyCheckJson,
        PolicyJson,
        ProblemJson,
        ProfileStatusJson,
        PruneIdleJson,
        PruneImagesJson,
        PruneJson,
        RenderJson,
        ReportJson,
        SshConfigJson,
        SshEntryJson,
        SshJson,
        SwitchJson,
    )


def print_json(data: object) -> None:
    """Exactly one JSON document on stdout, nothing else."""
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
    sys.stdout.flush()


def iso(epoch: float | None) -> str | None:
    """Seconds since the epoch as ISO 8601 UTC ("2026-11-23T10:02:00Z"); None when unknown."""
    if not epoch:
        return None
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def gpu_ids(ids: tuple[str, ...] | list[str]) -> list[int | str]:
    """GPU ids as JSON: an index is an integer; a UUID, "all" or "count:N" stays a string."""
    return [int(g) if g.isdecimal() else g for g in ids]


def problem_json(problem: Problem) -> ProblemJson:
    """A located problem."""
    origin = problem.origin
    return {
        "file": origin.source,
        "line": origin.line,
        "column": origin.column if origin.column is not None or origin.line is None else 1,
        "message": problem.message,
        "fix": problem.hint,
    }


def error_json(exc: DevboxError) -> ErrorJson:
    """The error object for a DevboxError."""
    return {
        "error": {
            "kind": exc.kind,
            "message": exc.message,
            "problems": [problem_json(p) for p in exc.problems],
            "hint": exc.hint,
        }
    }


def box_ref_json(box: Box, host: str) -> BoxRefJson:
    """Which box, on which engine, made when."""
    # Whole seconds: `ls` reads the engine's list (seconds), `info` its inspect (nanoseconds);
    # one box must show one time whichever command a script asks.
    created = int(box.created) if box.created else None
    return {
        "name": box.name,
        "container": box.container,
        "owner": box.owner,
        "host": host,
        "created": created,
        "created_iso": iso(created),
    }


def box_json(box: Box, host: str) -> BoxJson:
    """A box without credentials."""
    return {
        **box_ref_json(box, host),
        "id": box.id,
        "status": box.status,
        "profile": box.profile,
        "image": box.image,
        "inside": box.inside,
        "gpus": gpu_ids(box.gpus),
        "ports": {
            p.name: {"container": p.container, "host_port": p.host, "address": p.address} for p in box.ports
        },
        "volumes": [
            {"type": m.type, "source": m.source, "target": m.target, "readonly": m.readonly}
            for m in box.mounts
        ],
    }


def ls_box_json(box: Box, host: str) -> LsBoxJson:
    """One box of `ls --json`."""
    return {**box_json(box, host), "uptime": box.status_text}


def _ssh_json(result: BoxReport) -> SshJson | None:
    from devbox.box import labels

    ssh = result.ssh
    if ssh is None:
        return None
    return {
        "address": ssh.target.host,
        "port": ssh.target.port,
        "user": ssh.target.user,
        "password": ssh.password,
        "command": ssh.command,
        "hostkey": ssh.hostkey,
        "host_key_alias": ssh.target.alias,
        "known_hosts": ssh.target.known_hosts,
        "identity_file": ssh.target.identity_file,
        "host_public_key": result.box.labels.get(labels.SSH_HOSTKEY),
    }


def report_json(result: BoxReport, host: str) -> ReportJson:
    """The one object `up`, `info` and `rebuild` print with --json."""
    jupyter = result.jupyter
    started = int(result.box.started_at) if result.box.started_at else None
    return {
        **box_json(result.box, host),
        "started": started,
        "started_iso": iso(started),
        "action": result.action,
        "shm_size": result.box.shm_size,
        "memory": result.box.memory,
        "nano_cpus": result.box.nano_cpus,
        "pids_limit": result.box.pids_limit,
        "jupyter": {"url": jupyter.url, "token": jupyter.token, "auth": jupyter.auth} if jupyter else None,
        "ssh": _ssh_json(result),
        "credentials": dict(result.custom),
        "changes": list(result.changes),
        "warnings": list(result.warnings),
    }


def switch_json(result: BoxReport, host: str, stopped: list[str]) -> SwitchJson:
    """`switch --json`."""
    return {**report_json(result, host), "stopped": list(stopped)}


def down_json(result: DownResult, name: str, owner: str, host: str) -> DownJson:
    """`down --json`."""
    return {
        "name": name,
        "container": result.container,
        "owner": owner,
        "host": host,
        "removed": result.removed,
        "volumes_removed": list(result.volumes_removed),
        "volumes_kept": list(result.volumes_kept),
        "volumes_in_use": [{"name": v, "used_by": list(users)} for v, users in result.volumes_in_use],
    }


def gpus_json(rows: list[GpuRow], host: str, driver: Driver | None = None) -> list[GpuJson]:
    """`gpus --json`."""
    return [
        {
            "host": host,
            "index": int(r.gpu.index),
            "uuid": r.gpu.uuid,
            "model": r.gpu.name,
            "memory_used_mib": r.gpu.memory_used,
            "memory_total_mib": r.gpu.memory_total,
            "utilization": r.gpu.utilization,
            "declared": r.gpu.declared,
            "holder": box_ref_json(r.holder, host) if r.holder else None,
            "busy_outside": (
                {"processes": r.busy.processes, "memory_used_mib": r.busy.memory_used} if r.busy else None
            ),
            "driver_version": driver.version if driver else None,
            "cuda_version": driver.cuda if driver else None,
        }
        for r in rows
    ]


def doctor_json(checks: list[Check], host: str) -> DoctorJson:
    """`doctor --json`."""
    return {
        "ok": not any(c.status == "fail" for c in checks),
        "host": host,
        "checks": [{"check": c.name, "status": c.status, "detail": c.detail, "fix": c.fix} for c in checks],
    }


def _plain(value: Any) -> Any:
    """Profile values as JSON data: dataclasses as objects, tuples as lists."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _plain(dataclasses.asdict(value))
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def policy_json(lab: Policy) -> PolicyJson:
    """`policy show --json`."""
    from devbox import sizes

    lim = lab.limits
    return {
        "file": lab.path,
        "defaults": _plain(lab.defaults.values if lab.defaults else {}),
        "limits": {
            "max_gpus_per_user": lim.max_gpus_per_user,
            "max_cpus": lim.max_cpus,
            "max_memory": sizes.format_size(lim.max_memory) if lim.max_memory else None,
            "max_boxes_per_user": lim.max_boxes_per_user,
            "max_pids": lim.max_pids,
            "max_shm_size": sizes.format_size(lim.max_shm_size) if lim.max_shm_size else None,
            "max_disk": sizes.format_size(lim.max_disk) if lim.max_disk else None,
        },
        "allowed_images": list(lab.allowed_images) if lab.allowed_images is not None else "any",
        "allow_build": lab.allow_build,
        "forbidden_mounts": list(lab.forbidden_mounts),
        "bind_address": lab.bind_address,
        "admins": list(lab.admins),
        "allow_root": lab.allow_root,
        "allowed_mounts": list(lab.allowed_mounts),
        "gpu_inventory": lab.gpu_inventory,
        "hosts": {h.name: h.url for h in lab.hosts},
    }


def statuses_json(statuses: list[ProfileStatus]) -> list[ProfileStatusJson]:
    """`profiles --json`, `profiles check --json`."""
    return [
        {
            "name": s.name,
            "path": s.path,
            "scope": s.scope,
            "valid": s.valid,
            "shadowed_by": s.shadowed_by,
            "message": s.message,
            "problems": [problem_json(p) for p in s.problems],
        }
        for s in statuses
    ]


def render_json(spec: ContainerSpec, host: str, commands: RunCommands) -> RenderJson:
    """`render --json`: the spec in the names the other shapes use."""
    build = spec.build
    return {
        "name": spec.box,
        "container": spec.name,
        "owner": spec.owner,
        "host": host,
        "image": spec.image,
        "build": {
            "context": build.context,
            "dockerfile": build.dockerfile,
            "args": dict(build.args),
            "target": build.target,
            "inputs": build.inputs,
        }
        if build
        else None,
        "command": list(spec.command) if spec.command is not None else None,
        "hostname": spec.hostname,
        "env": dict(spec.env),
        "env_files": list(spec.env_files),
        "labels": dict(spec.labels),
        "volume_labels": dict(spec.volume_labels),
        "ports": {
            p.name: {"container": p.container, "host_port": p.host, "address": p.address} for p in spec.ports
        },
        "volumes": [
            {"type": m.type, "source": m.source, "target": m.target, "readonly": m.readonly}
            for m in spec.mounts
        ],
        "gpu_request": {
            "kind": spec.gpus.kind,
            "count": spec.gpus.count,
            "devices": gpu_ids(spec.gpus.devices),
        },
        "shm_size": spec.shm_size,
        "memory": spec.memory,
        "nano_cpus": spec.nano_cpus,
        "pids_limit": spec.pids_limit,
        "user": spec.user,
        "workdir": spec.workdir,
        "init": spec.init,
        "security_opt": list(spec.security_opt),
        "protocol": spec.protocol,
        "gpus_declared": spec.gpus_declared,
        "spec_hash": spec.spec_hash,
        "docker_run": list(commands.run),
        "docker_build": list(commands.build) if commands.build is not None else None,
    }


def ssh_entry_json(box: Box, host: str, target: SshTarget, proxy_command: str) -> SshEntryJson:
    """One `Host devbox-NAME` entry as data; the public host key is what a client pins (issue 12)."""
    from devbox.box import labels

    return {
        **box_ref_json(box, host),
        "ssh_host": f"devbox-{box.name}",
        "address": target.host,
        "port": target.port,
        "user": target.user,
        "host_key_alias": target.alias,
        "known_hosts": target.known_hosts,
        "identity_file": target.identity_file,
        "host_public_key": box.labels.get(labels.SSH_HOSTKEY),
        "proxy_command": proxy_command,
    }


def ssh_config_json(
    entries: list[SshEntryJson], file: str | None, included_from: str | None
) -> SshConfigJson:
    """`ssh-config --json`: `file` and `included_from` only with --write."""
    return {"entries": entries, "file": file, "included_from": included_from}


def prune_json(removed: list[Box], host: str) -> PruneJson:
    """`prune --json`: the boxes removed."""
    return {"removed": [ls_box_json(b, host) for b in removed]}


def built_image_json(image: BuiltImage) -> BuiltImageJson:
    """One image devbox built."""
    return {
        "id": image.id,
        "tags": list(image.tags),
        "owner": image.owner,
        "box": image.box,
        "size": image.size,
    }


def image_build_json(tag: str, base: str, image_id: str) -> ImageBuildJson:
    """`image build --json`."""
    return {"image": tag, "base": base, "id": image_id}


def prune_images_json(removed: list[BuiltImage], kept: list[BuiltImage]) -> PruneImagesJson:
    """`prune --images --json`."""
    return {
        "images_removed": [built_image_json(i) for i in removed],
        "kept": [built_image_json(i) for i in kept],
    }


def prune_idle_json(idle: list[Box], host: str) -> PruneIdleJson:
    """`prune --idle --json`: running boxes holding only idle GPUs."""
    return {"idle": [ls_box_json(b, host) for b in idle]}


def policy_check_json(file: str) -> PolicyCheckJson:
    """`policy check --json` of a valid file."""
    return {"file": file, "valid": True}
