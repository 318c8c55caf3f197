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
from devbox.profile import buildcontext


def _size(value: int | None) -> str:
    return sizes.format_size(value) if value else "none"


def _cpus(value: int | None) -> str:
    return f"{value / 1e9:g}" if value else "none"


def _bind(mount: MountInfo) -> str:
    return f"{mount.source}:{mount.target}:{'ro' if mount.readonly else 'rw'}"


def _binds(spec: ContainerSpec) -> list[str]:
    return sorted(f"{m.source}:{m.target}:{'ro' if m.readonly else 'rw'}" for m in spec.mounts)


# Marks a change that comes only from the folder devbox runs from (the panel's rebuild hint
# would re-point the box too, so it is not given for those).
CURRENT_FOLDER = "(the current folder)"


def folder_moves(config: BoxConfig, spec: ContainerSpec, cwd: str | None) -> list[tuple[str, str, str, str]]:
    """The binds that move only because devbox runs from another folder (a library profile's
    `.` follows the current folder): (target, new source, old source, the box's folder) each;
    [] when none moves, or when any other bind differs too (a real change)."""
    if not cwd or labels.PROJECT in spec.labels:
        return []
    had = {m.target: m for m in config.binds}
    want = {m.target: m for m in spec.mounts if m.type == "bind"}
    if set(had) != set(want):
        return []
    moved: list[tuple[str, str, str, str]] = []
    for target, new in sorted(want.items()):
        old = had[target]
        if old.source == new.source and old.readonly == new.readonly:
            continue
        rest = new.source.removeprefix(cwd)
        if old.readonly != new.readonly or rest == new.source or (rest and not rest.startswith("/")):
            return []  # not under the current folder: a real change
        if not old.source.endswith(rest) or (rest and old.source == rest):
            return []
        folder = old.source[: len(old.source) - len(rest)] if rest else old.source
        moved.append((target, new.source, old.source, folder))
    return moved


# Marks a box of another project's profile of the same name: `devbox rebuild NAME` acts on the
# box's own project, so the panel does not suggest it for those.
OTHER_PROJECT = "(another project)"


def _other_project(box: Box, spec: ContainerSpec) -> str | None:
    """A box bound to one project, looked at with another project's profile of its name."""
    had, want = box.labels.get(labels.PROJECT), spec.labels.get(labels.PROJECT)
    if not had or not want or had == want:
        return None
    return (
        f"project: box '{spec.box}' belongs to {had}, not {want} {OTHER_PROJECT}: a profile of"
        f" this folder names the same box; rename one profile file (a box is named after it),"
        f" or devbox up --recreate to move the box here"
    )


def _cwd_moves(config: BoxConfig, spec: ContainerSpec, cwd: str | None) -> list[str] | None:
    """`folder_moves`, worded for `up`; None when there are none."""
    moved = [
        f"{target} would mount {new} {CURRENT_FOLDER} instead of {old} (the box's):"
        f" run from {folder}, or devbox up --recreate to re-point it"
        for target, new, old, folder in folder_moves(config, spec, cwd)
    ]
    return moved or None


def _inputs(box: Box, spec: ContainerSpec, built: dict[str, str] | None) -> str | None:
    """A `build:` box whose context changed: which files (its image's label lists them)."""
    if spec.build is None or box.image == spec.image or built is None:
        return None
    label = built.get(buildcontext.LABEL)
    names = buildcontext.changed(label, spec.build.files)
    if names:
        return f"image inputs changed: {names}"
    if label and '"files"' in label and label == buildcontext.manifest_label(spec.build.files):
        # Every file as the image had it: the tag moved with the build's settings.
        return "image inputs changed: build args, target, dockerfile or folders (no file's content)"
    return None


def changes(
    box: Box, spec: ContainerSpec, cwd: str | None = None, built: dict[str, str] | None = None
) -> list[str]:
    """Human-readable differences, `key: old → new`; a generic line if only metadata moved.

    `cwd`: the folder devbox runs from; binds that differ only because of it say so.
    `built`: the labels of the image a `build:` box runs (None: unknown), naming its files.
    """
    config = box.config or BoxConfig()
    lab = box.labels
    inputs = _inputs(box, spec, built)
    pairs: list[tuple[str, str, str]] = [
        ("image", box.image, box.image if inputs else spec.image),
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
    moves = _cwd_moves(config, spec, cwd)
    if moves:
        pairs = [pair for pair in pairs if pair[0] != "volumes"]
    found = [*(moves or []), *(f"{key}: {old} → {new}" for key, old, new in pairs if old != new)]
    if inputs:
        found.insert(0, inputs)
    other = _other_project(box, spec)
    if other:
        found.insert(0, other)
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
