"""Find, load and merge profiles into one validated `Profile`.

Precedence, lowest first: lab policy `defaults` < the `extends` chain (root first) < the
profile < command-line flags. Every layer is checked on its own (so each problem points at
its own file and line), then merged, then the merged result is checked as a whole.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from devbox.errors import InvalidInput, Kind, Origin, Problem
from devbox.profile import files, interpolate
from devbox.profile.fields import Layer, LayerParser
from devbox.profile.model import (
    BuildSpec,
    CredentialPattern,
    GpuRequest,
    PortSpec,
    Profile,
    Resources,
    VolumeSpec,
)
from devbox.profile.yamlsrc import Document, load_file
from devbox.settings import Settings, bundled_profiles_dir, is_valid_name


class ProfileNotFound(InvalidInput):
    """No profile file answers to a name or path (kind not-found; still input to fix, located)."""

    kind: Kind = "not-found"


Scope = Literal["path", "project", "user", "lab", "bundled"]
SUFFIXES = (".yaml", ".yml")
DEFAULT_READY_TIMEOUT = 120.0
# Keys whose values are mappings merged entry by entry across layers.
_MERGED_BY_KEY = (
    "resources",
    "ports",
    "volumes",
    "env",
    "labels",
    "ready",
    "credentials",
    "ssh",
)


@dataclass(frozen=True)
class ProfileRef:
    """A profile file devbox found, and where it was found."""

    name: str
    path: Path
    scope: Scope


def search_dirs(settings: Settings) -> list[tuple[Scope, Path]]:
    """Where `devbox up NAME` looks, first match wins."""
    return [
        ("project", settings.cwd / ".devbox"),
        ("user", settings.user_profiles_dir),
        ("lab", settings.lab_profiles_dir),
        ("bundled", bundled_profiles_dir()),
    ]


def looks_like_path(ref: str) -> bool:
    """A profile argument with a slash or a YAML suffix is a path, not a name."""
    return "/" in ref or ref.endswith(SUFFIXES)


def _profile_name(path: Path) -> str:
    return path.name.removesuffix(".yaml").removesuffix(".yml")


def find(ref: str, settings: Settings, skip: Path | None = None) -> ProfileRef:
    """Resolve a profile name or path; raise InvalidInput listing where we looked."""
    shown = files.shown(ref)
    problem = files.path_problem(ref)
    if problem is not None:
        what = "path" if looks_like_path(ref) else "name"
        raise InvalidInput(
            f"no profile {shown}",
            [Problem(Origin(shown), f"the profile {what} {problem}", "check the argument")],
        )
    if looks_like_path(ref):
        try:
            path = Path(files.expand_user(ref, str(settings.home)))
        except ValueError as exc:
            raise InvalidInput(
                f"no profile file {shown}", [Problem(Origin(shown), str(exc), "write the folder out")]
            ) from None
        path = path if path.is_absolute() else settings.cwd / path
        seen = files.look(str(path))
        if seen.kind == "file":
            return ProfileRef(_profile_name(path), path.resolve(), scope_of(path.resolve(), settings))
        if seen.error is not None:
            raise InvalidInput(f"cannot read profile {shown}", [Problem(Origin(shown), seen.error)])
        why = "file not found" if seen.kind == "missing" else "not a file"
        raise ProfileNotFound(f"no profile file {files.shown(str(path))}", [Problem(Origin(shown), why)])
    candidate = _find_by_name(ref, settings, skip)
    if candidate is not None:
        return candidate
    looked = [str(folder / f"{ref}.yaml") for _, folder in search_dirs(settings)]
    names = sorted({r.name for r in discover(settings)})
    raise ProfileNotFound(
        f"no profile named '{ref}'",
        [Problem(Origin(ref), "looked in: " + ", ".join(looked))],
        hint=("profiles you have: " + ", ".join(names))
        if names
        else "create .devbox/NAME.yaml or pass a path",
    )


def _find_by_name(name: str, settings: Settings, skip: Path | None) -> ProfileRef | None:
    for scope, folder in search_dirs(settings):
        for suffix in SUFFIXES:
            path = folder / f"{name}{suffix}"
            if files.is_file(str(path)) and path.resolve() != skip:
                return ProfileRef(name, path.resolve(), scope)
    return None


def discover(settings: Settings) -> list[ProfileRef]:
    """Every profile in every search folder, in precedence order (shadowed ones included)."""
    found: list[ProfileRef] = []
    for scope, folder in search_dirs(settings):
        try:
            entries = sorted(folder.iterdir()) if files.is_folder(str(folder)) else []
        except OSError:
            entries = []  # a folder this user may not list holds no profiles for them
        for path in entries:
            if path.suffix in SUFFIXES and files.is_file(str(path)) and path.name != "policy.yaml":
                found.append(ProfileRef(_profile_name(path), path.resolve(), scope))
    return found


def scope_of(path: Path, settings: Settings) -> Scope:
    """Where a profile file lives: in one of the search folders, or anywhere else ("path")."""
    for scope, folder in search_dirs(settings):
        if path.parent == folder.resolve():
            return scope
    return "path"


def bind_base(ref: ProfileRef, settings: Settings) -> Path:
    """What relative bind sources in `ref` are relative to.

    A profile given by path anchors them at its own folder. A project profile
    (./.devbox/NAME.yaml) at the project folder. Library profiles (the user's, the lab's,
    the bundled ones) at the current directory, so they mount the folder you stand in.
    """
    if ref.scope == "path":
        return ref.path.parent
    if ref.scope == "project":
        return ref.path.parent.parent
    return settings.cwd


def parse_document(
    doc: Document, settings: Settings, bind_base: Path, file_dir: Path
) -> tuple[Layer, list[Problem]]:
    """Expand variables in `doc` and normalise it into a Layer."""
    unset = interpolate.expand_document(doc, settings.interpolation_env())
    parser = LayerParser(doc, bind_base, file_dir, settings.home)
    layer = parser.parse()
    # A value whose ${VAR} is unset stays unexpanded and then fails its own check: one
    # mistake, so say it once (the variable is the thing to fix).
    said = {(p.origin.source, p.origin.line, p.origin.column) for p in unset}
    later = [
        p
        for p in parser.problems
        if "${" not in p.message or (p.origin.source, p.origin.line, p.origin.column) not in said
    ]
    return layer, [*doc.problems, *unset, *later]


def load_chain(ref: ProfileRef, settings: Settings) -> tuple[list[Layer], list[ProfileRef], list[Problem]]:
    """The layers of `ref` and its `extends` parents, root first, with every problem found."""
    layers: list[Layer] = []
    chain: list[ProfileRef] = []
    problems: list[Problem] = []
    current: ProfileRef | None = ref
    while current is not None:
        chain.append(current)
        doc = load_file(current.path)
        layer, found = parse_document(doc, settings, bind_base(current, settings), current.path.parent)
        layers.insert(0, layer)
        problems += found
        current = _parent(current, layer, doc, chain, settings, problems)
        if current is None and layer.extends is not None:
            # The parent is missing (or a cycle): what it would give, image included, is
            # unknown, so "no image" would be a second report of the same mistake.
            layer.failed.add("image")
    return layers, chain, problems


def _parent(
    child: ProfileRef,
    layer: Layer,
    doc: Document,
    chain: list[ProfileRef],
    settings: Settings,
    problems: list[Problem],
) -> ProfileRef | None:
    if layer.extends is None:
        return None
    origin = doc.origin(("extends",))
    ref = layer.extends
    if "${" in ref:
        return None  # an unset variable, already reported where it stands
    problem = files.path_problem(ref)
    if problem is not None:
        problems.append(
            Problem(origin, f"extends: the name {problem}", "check the name, or give a relative path")
        )
        return None
    if looks_like_path(ref):
        try:
            path = (child.path.parent / files.expand_user(ref, str(settings.home))).resolve()
        except ValueError as exc:
            problems.append(Problem(origin, f"extends {files.shown(ref)}: {exc}", "give a relative path"))
            return None
        found = files.is_file(str(path))
        parent = ProfileRef(_profile_name(path), path, scope_of(path, settings)) if found else None
    else:
        parent = _find_by_name(ref, settings, skip=child.path)
    if parent is None:
        problems.append(
            Problem(
                origin,
                f"extends '{files.shown(ref)}', which does not exist",
                "check the name, or give a relative path",
            )
        )
        return None
    if any(parent.path == seen.path for seen in chain):
        cycle = " -> ".join(str(seen.path) for seen in [*chain, parent])
        problems.append(Problem(origin, f"extends cycle: {cycle}", "remove extends: from one of them"))
        return None
    return parent


def merge(layers: list[Layer]) -> Layer:
    """Merge layers, later ones winning; mappings merge by key, env files accumulate."""
    merged = Layer()
    for layer in layers:
        for key, value in layer.values.items():
            if key == "extends":
                continue
            if key in ("image", "build"):
                # A layer that picks its image source replaces the inherited one, whichever kind.
                merged.values.pop("build" if key == "image" else "image", None)
            merged.values[key] = _merge_value(key, merged.values.get(key), value)
            merged.origins[key] = layer.origins[key]
    return merged


def _merge_value(key: str, old: Any, new: Any) -> Any:
    if old is None:
        return new
    if key in _MERGED_BY_KEY:
        return {**old, **new}
    if key == "env_file":
        return [*old, *new]
    if key == "build":
        return {**old, **new, "args": {**old["args"], **new["args"]}}
    return new


def check_merged(values: dict[str, Any], origin: Origin, need_image: bool = True) -> list[Problem]:
    """Problems only visible once every layer is merged."""
    problems: list[Problem] = []
    if need_image and "image" not in values and "build" not in values:
        problems.append(
            Problem(
                origin,
                "no image: the profile (or one it extends) needs image: or build:",
                "e.g. image: devbox/devbox:0.1, or extends: default, or build: {context: .}",
            )
        )
    ports: dict[str, PortSpec] = values.get("ports", {})
    seen_container: dict[int, str] = {}
    seen_host: dict[int, str] = {}
    for port in ports.values():
        if port.container in seen_container:
            other = seen_container[port.container]
            problems.append(
                Problem(
                    port.origin,
                    f"ports '{other}' and '{port.name}' both use container port {port.container}",
                )
            )
        seen_container[port.container] = port.name
        if port.host is not None:
            if port.host in seen_host:
                problems.append(
                    Problem(
                        port.origin,
                        f"ports '{seen_host[port.host]}' and '{port.name}' both use host port {port.host}",
                    )
                )
            seen_host[port.host] = port.name
    return problems


def to_profile(name: str, path: str, merged: Layer, chain: tuple[str, ...]) -> Profile:
    """Build the frozen Profile from merged, already-validated values."""
    v = merged.values
    resources = v.get("resources", {})
    build = v.get("build")
    credentials: dict[str, CredentialPattern] = v.get("credentials", {})
    volumes: dict[str, VolumeSpec] = v.get("volumes", {})
    ports: dict[str, PortSpec] = v.get("ports", {})
    return Profile(
        name=name,
        path=path,
        image=v.get("image"),
        build=BuildSpec(build["context"], build["dockerfile"], build["args"]) if build else None,
        command=v.get("command"),
        gpus=v.get("gpus", GpuRequest("none")),
        shm_size=v.get("shm_size"),
        resources=Resources(
            resources.get("cpus"), resources.get("memory"), resources.get("pids"), resources.get("disk")
        ),
        ports=tuple(ports.values()),
        volumes=tuple(volumes.values()),
        env=dict(v.get("env", {})),
        env_files=tuple(v.get("env_file", [])),
        user=v.get("user"),
        workdir=v.get("workdir"),
        labels=dict(v.get("labels", {})),
        ready_timeout=v.get("ready", {}).get("timeout", DEFAULT_READY_TIMEOUT),
        credentials=tuple(credentials.values()),
        ssh_authorized_keys=v.get("ssh", {}).get("authorized_keys"),
        ssh_password=v.get("ssh", {}).get("password", False),
        chain=chain,
        origins=dict(merged.origins),
    )


def load(
    ref_text: str,
    settings: Settings,
    defaults: list[Layer] | None = None,
    overrides: list[Layer] | None = None,
) -> Profile:
    """Load profile `ref_text` with lab defaults below and flag overrides above it.

    Raises InvalidInput carrying every problem found, in every file of the chain.
    """
    ref = find(ref_text, settings)
    layers, chain, problems = load_chain(ref, settings)
    if not is_valid_name(ref.name):
        problems.insert(
            0,
            Problem(
                Origin(str(ref.path)),
                f"'{ref.name}' cannot name a box",
                "rename the file: letters, digits, '_', '.', '-'",
            ),
        )
    merged = merge([*(defaults or []), *layers, *(overrides or [])])
    # A layer whose image: was itself wrong would also read as "no image"; say it once.
    image_failed = any(layer.failed & {"image", "build"} for layer in layers)
    problems += check_merged(merged.values, Origin(str(ref.path), 1, 1), need_image=not image_failed)
    if problems:
        problems.sort(key=lambda p: (p.origin.source, p.origin.line or 0, p.origin.column or 0))
        count = f"{len(problems)} problem" + ("s" if len(problems) > 1 else "")
        raise InvalidInput(
            f"profile '{ref.name}' is invalid ({count})",
            problems,
            hint="devbox help profiles",
        )
    return to_profile(ref.name, str(ref.path), merged, tuple(str(r.path) for r in chain))
