"""What differs between a box and the spec its profile now implies.

Pure: compares a box's full view (`Box.config`, labels, limits) with a ContainerSpec, field
by field, in the words of the profile, so `devbox up` can say what changed instead of just
"outdated". Works the same for every engine backend.
"""

from __future__ import annotations

from devbox import sizes
from devbox.box import labels
from devbox.box.spec import ContainerSpec
from devbox.box.state import Box, BoxConfig, MountInfo


def _size(value: int | None) -> str:
    return sizes.format_size(value) if value else "none"


def _cpus(value: int | None) -> str:
    return f"{value / 1e9:g}" if value else "none"


def _bind(mount: MountInfo) -> str:
    return f"{mount.source}:{mount.target}:{'ro' if mount.readonly else 'rw'}"


def _binds(spec: ContainerSpec) -> list[str]:
    return sorted(f"{m.source}:{m.target}:{'ro' if m.readonly else 'rw'}" for m in spec.mounts)


def changes(box: Box, spec: ContainerSpec) -> list[str]:
    """Human-readable differences, `key: old → new`; a generic line if only metadata moved."""
    config = box.config or BoxConfig()
    lab = box.labels
    pairs: list[tuple[str, str, str]] = [
        ("image", box.image, spec.image),
        ("gpus", lab.get(labels.GPUS, ""), spec.labels[labels.GPUS]),
        # No shm_size in the profile keeps whatever the engine gave: not a change.
        ("shm_size", _size(box.shm_size), _size(spec.shm_size or box.shm_size)),
        ("resources.memory", _size(box.memory), _size(spec.memory)),
        ("resources.cpus", _cpus(box.nano_cpus), _cpus(spec.nano_cpus)),
        ("resources.pids", str(box.pids_limit or "none"), str(spec.pids_limit or "none")),
        ("ports", lab.get(labels.PORTS, ""), spec.labels[labels.PORTS]),
        ("volumes", ", ".join(sorted(_bind(m) for m in config.binds)), ", ".join(_binds(spec))),
        ("user", config.user or "image default", spec.user or "image default"),
        ("workdir", config.workdir or "image default", spec.workdir or config.workdir or "image default"),
    ]
    if spec.command:
        pairs.append(("command", " ".join(config.command), " ".join(spec.command)))
    found = [f"{key}: {old} → {new}" for key, old, new in pairs if old != new]
    env_now = config.env
    for key in sorted(spec.env):
        if env_now.get(key) != spec.env[key]:
            found.append(f"env {key} changed")
    fixed_new = {p.container: p.host for p in spec.ports}
    if config.host_ports != fixed_new and not any(f.startswith("ports:") for f in found):
        found.append("ports: host port bindings changed")
    if not found and lab.get(labels.SPEC_HASH) != spec.spec_hash:
        found.append("profile metadata changed (labels, env file or profile path)")
    return found
