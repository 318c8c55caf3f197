"""What differs between a running box and the spec its profile now implies.

Pure: compares the engine's inspect output with a ContainerSpec, field by field, in the
words of the profile, so `devbox up` can say what changed instead of just "outdated".
"""

from __future__ import annotations

from typing import Any

from devbox import sizes
from devbox.box import labels
from devbox.box.spec import ContainerSpec


def _size(value: int | None) -> str:
    return sizes.format_size(value) if value else "none"


def _cpus(value: int | None) -> str:
    return f"{value / 1e9:g}" if value else "none"


def _binds(spec: ContainerSpec) -> list[str]:
    return sorted(f"{m.source}:{m.target}:{'ro' if m.readonly else 'rw'}" for m in spec.mounts)


def changes(spec: ContainerSpec, info: dict[str, Any]) -> list[str]:
    """Human-readable differences, `key: old → new`; a generic line if only metadata moved."""
    config, host = info.get("Config") or {}, info.get("HostConfig") or {}
    lab = config.get("Labels") or {}
    env_now = dict(e.split("=", 1) for e in config.get("Env") or [] if "=" in e)
    pairs: list[tuple[str, str, str]] = [
        ("image", config.get("Image", ""), spec.image),
        ("gpus", lab.get(labels.GPUS, ""), spec.labels[labels.GPUS]),
        (
            "shm_size",
            _size(host.get("ShmSize")),
            _size(spec.shm_size) if spec.shm_size else _size(host.get("ShmSize")),
        ),
        ("resources.memory", _size(host.get("Memory")), _size(spec.memory)),
        ("resources.cpus", _cpus(host.get("NanoCpus")), _cpus(spec.nano_cpus)),
        ("resources.pids", str(host.get("PidsLimit") or "none"), str(spec.pids_limit or "none")),
        ("ports", lab.get(labels.PORTS, ""), spec.labels[labels.PORTS]),
        ("volumes", ", ".join(sorted(host.get("Binds") or [])), ", ".join(_binds(spec))),
        ("user", config.get("User") or "image default", spec.user or "image default"),
        (
            "workdir",
            config.get("WorkingDir") or "image default",
            spec.workdir or config.get("WorkingDir") or "image default",
        ),
    ]
    if spec.command:
        pairs.append(("command", " ".join(config.get("Cmd") or []), " ".join(spec.command)))
    found = [f"{key}: {old} → {new}" for key, old, new in pairs if old != new]
    for key in sorted(set(spec.env) | {k for k in env_now if k in spec.env}):
        if env_now.get(key) != spec.env.get(key):
            found.append(f"env {key} changed")
    fixed_now = {k: (v or [{}])[0].get("HostPort", "") for k, v in (host.get("PortBindings") or {}).items()}
    fixed_new = {f"{p.container}/tcp": str(p.host or "") for p in spec.ports}
    if fixed_now != fixed_new and not any(f.startswith("ports:") for f in found):
        found.append("ports: host port bindings changed")
    if not found and lab.get(labels.SPEC_HASH) != spec.spec_hash:
        found.append("profile metadata changed (labels, env file or profile path)")
    return found
