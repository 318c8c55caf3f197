"""Find, load and merge profiles into one validated `Profile`.

Precedence, lowest first: lab policy `defaults` < the `extends` chain (root first) < the
profile < command-line flags. Every layer is checked on its own (so each problem points at
its own file and line), then merged, then the merged result is checked as a whole (merge.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from devbox.errors import InvalidInput, Kind, Origin, Problem
from devbox.profile import devcontainer, files, interpolate
from devbox.profile.fields import Layer, LayerParser
from devbox.profile.merge import check_merged, merge, to_profile
from devbox.profile.model import Profile
from devbox.profile.yamlsrc import Document, load_file
from devbox.settings import Settings, bundled_profiles_dir, is_valid_name


class ProfileNotFound(InvalidInput):
    """No profile file answers to a name or path (kind not-found; still input to fix, located)."""

    kind: Kind = "not-found"


Scope = Literal["path", "project", "user", "lab", "bundled"]
SUFFIXES = (".yaml", ".yml")


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
    """A profile argument with a slash or a YAML (or devcontainer .json) suffix is a path, not a name."""
    return "/" in ref or ref in (".", "..") or ref.endswith((*SUFFIXES, ".json"))


def _profile_name(path: Path) -> str:
    if path.suffix == ".json":
        return devcontainer.box_name(path)
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
        config = devcontainer.config_in(path) if seen.kind == "folder" else None
        if config is not None:  # a project folder, or its .devcontainer/: its devcontainer.json
            path, seen = config, files.look(str(config))
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
        if scope == "project":
            # The project's devcontainer.json answers to its project folder's name.
            config = devcontainer.config_in(settings.cwd)
            if config is not None and devcontainer.box_name(config) == name and config.resolve() != skip:
                return ProfileRef(name, config.resolve(), scope)
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
        config = devcontainer.config_in(settings.cwd) if scope == "project" else None
        if config is not None:
            found.append(ProfileRef(_profile_name(config), config.resolve(), scope))
    return found


def scope_of(path: Path, settings: Settings) -> Scope:
    """Where a profile file lives: in one of the search folders, or anywhere else ("path")."""
    for scope, folder in search_dirs(settings):
        if path.parent == folder.resolve():
            return scope
    if path.suffix == ".json":
        return "project"  # a devcontainer.json: anchored at its project folder (devcontainer.py)
    if path.parent.name == ".devbox":
        # Another project's profile (devbox up ../llm/.devbox/llm.yaml, or a box's recorded
        # profile): anchored at that project's folder, as when run from there.
        return "project"
    return "path"


def bind_base(ref: ProfileRef, settings: Settings, leaf: ProfileRef | None = None) -> Path:
    """What relative bind sources in `ref` are relative to.

    A profile given by path anchors them at its own folder. A project profile
    (.devbox/NAME.yaml) at the project folder. Library profiles (the user's, the lab's,
    the bundled ones) at the current directory, so they mount the folder you stand in,
    except under a project or path profile (`leaf`, the chain's first): then at the leaf's
    folder, so `extends: default` mounts the project, wherever devbox runs from.
    """
    if ref.path.suffix == ".json":
        return devcontainer.workspace_of(ref.path)
    if ref.scope == "path":
        return ref.path.parent
    if ref.scope == "project":
        return ref.path.parent.parent
    if leaf is not None and leaf.scope in ("path", "project"):
        return bind_base(leaf, settings)
    return settings.cwd


def project_folder(ref: ProfileRef) -> Path | None:
    """The folder a box of `ref` is bound to (its `devbox.project` label): a project or path
    profile's anchor; None for a library profile, which follows the current folder."""
    if ref.path.suffix == ".json":
        return devcontainer.workspace_of(ref.path)
    if ref.scope == "project":
        return ref.path.parent.parent
    if ref.scope == "path":
        return ref.path.parent
    return None


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
        if current.path.suffix == ".json":
            # A devcontainer.json: one layer, translated (it has no extends).
            found_dc = devcontainer.load_layer(
                current.path, settings.interpolation_env(), settings.home, settings.lab
            )
            layers.insert(0, found_dc.layer)
            problems += found_dc.problems
            break
        doc = load_file(current.path)
        base = bind_base(current, settings, leaf=ref)
        layer, found = parse_document(doc, settings, base, current.path.parent)
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
    problems += check_merged(
        merged.values,
        Origin(str(ref.path), 1, 1),
        need_image=not image_failed,
        devcontainer=ref.path.suffix == ".json",
    )
    if problems:
        problems.sort(key=lambda p: (p.origin.source, p.origin.line or 0, p.origin.column or 0))
        count = f"{len(problems)} problem" + ("s" if len(problems) > 1 else "")
        raise InvalidInput(
            f"profile '{ref.name}' is invalid ({count})",
            problems,
            hint="devbox help devcontainer" if ref.path.suffix == ".json" else "devbox help profiles",
        )
    project = project_folder(ref)
    chain_paths = tuple(str(r.path) for r in chain)
    return to_profile(ref.name, str(ref.path), merged, chain_paths, str(project) if project else None)
