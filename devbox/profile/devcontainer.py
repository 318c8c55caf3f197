"""A devcontainer.json read as a profile layer (docs/devcontainer.md has the table of keys).

The file is parsed (jsonc.py), its `${localEnv:…}`-style variables substituted
(devcontainer_variables.py), then its keys translated into the profile's own (image, build,
gpus, shm_size, resources, ports, volumes, env, user, workdir, command) in a profile-shaped
Document (devcontainer_out.py) whose every value keeps the line and column it had in the
JSON. That Document goes through the same field parsers as a YAML profile, so the same checks
(and the lab policy after them) apply, and each problem is located
`devcontainer.json:line:column`. What devbox cannot honour and would change what runs is
refused, located; what only an editor reads is skipped and said in a note.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devbox.errors import Origin, Problem
from devbox.profile import jsonc
from devbox.profile.devcontainer_args import (
    KEEP_ALIVE,
    app_port,
    forward_ports,
    mount_fields,
    mounts,
    run_args,
)
from devbox.profile.devcontainer_out import LIFECYCLE, Out
from devbox.profile.devcontainer_variables import Variables
from devbox.profile.fields import Layer, LayerParser
from devbox.profile.yamlsrc import Document, KeyPath

CONFIG_FILES = (".devcontainer/devcontainer.json", ".devcontainer.json")

# Keys only an editor or a hosted service reads: skipped, and said.
_EDITOR_KEYS = (
    "customizations",
    "extensions",
    "settings",
    "otherPortsAttributes",
    "shutdownAction",
    "waitFor",
    "userEnvProbe",
    "updateRemoteUserUID",
    "postAttachCommand",
    "overrideFeatureInstallOrder",
    "secrets",
    "devPort",
)
_SILENT_KEYS = ("name", "$schema", "portsAttributes")  # a port's label names it (devcontainer_out)
# Keys that change what runs and that devbox cannot do: refused, naming the key.
_REFUSED = {
    "dockerComposeFile": "devbox runs one container per box, not a Compose project",
    "service": "devbox runs one container per box, not a Compose project",
    "runServices": "devbox runs one container per box, not a Compose project",
    "initializeCommand": "devbox does not run a project's commands on the host",
}


@dataclass
class Translated:
    """A devcontainer.json as a profile layer, with what a profile has no key for."""

    layer: Layer
    problems: list[Problem]
    notes: list[str] = field(default_factory=list)


def workspace_of(path: Path) -> Path:
    """The project folder of a devcontainer.json: the folder holding its `.devcontainer/`
    (also `.devcontainer/NAME/devcontainer.json`), else the folder the file is in."""
    for folder in path.parents:
        if folder.name == ".devcontainer":
            return folder.parent
    return path.parent


def box_name(path: Path) -> str:
    """The profile (and box) name of a devcontainer.json: its project folder's name, made a valid name."""
    cleaned = re.sub(r"[^A-Za-z0-9_.-]+", "-", workspace_of(path).name).lstrip("._-")
    return cleaned[:60] or "devcontainer"


def config_in(folder: Path) -> Path | None:
    """The devcontainer.json of a project folder (or of a `.devcontainer` folder itself), if any."""
    candidates = [folder / name for name in CONFIG_FILES]
    if folder.name == ".devcontainer":
        candidates.insert(0, folder / "devcontainer.json")
    for candidate in candidates:
        try:
            if candidate.is_file():
                return candidate
        except OSError:
            continue
    return None


def load_layer(path: Path, env: Mapping[str, str], home: Path, lab: bool = False) -> Translated:
    """Read `path` and turn it into a checked profile layer (problems located in the JSON)."""
    doc = jsonc.load_file(path)
    return translate(doc, path, env, home, lab)


def translate(doc: Document, path: Path, env: Mapping[str, str], home: Path, lab: bool = False) -> Translated:
    """A parsed devcontainer.json → a profile layer, every problem located in the JSON.

    `lab`: lab mode, where a box may not join the host's IPC namespace (other people's
    shared memory segments are there)."""
    workspace = workspace_of(path)
    out = Out(doc, env)
    data = doc.data
    if data is None:
        data = {}
    if not isinstance(data, dict):
        out.fail(
            (),
            "a devcontainer.json is a JSON object of keys",
            "see https://containers.dev/implementors/json_reference/",
        )
        return _finish(out, path, workspace, home)
    variables = Variables(
        env, workspace, _text(data.get("workspaceFolder")) or f"/workspaces/{workspace.name}"
    )
    folder = variables.folder
    doc.data = data = variables.walk(data, (), doc, out)
    for key in data:
        if key in _REFUSED:
            out.fail_key(
                (key,),
                f"'{key}' is not supported: {_REFUSED[key]}",
                f"remove '{key}', or keep a profile for it",
            )
        elif key in _SILENT_KEYS:
            pass
        elif key in _EDITOR_KEYS:
            out.notes.append(f"{key} skipped: devbox runs the box, not an editor")
        elif key not in _MAPPED:
            out.notes.append(f"unknown key '{key}' skipped")
    for key, handler in _MAPPED.items():
        if key in data:
            handler(out, data[key], (key,))
    if lab and out.extra.get("ipc") == "host":
        out.fail(
            out.extra_at["ipc"],
            "--ipc host is not allowed in lab mode: the host's IPC namespace is shared with everyone's",
            "drop it; shm_size (--shm-size 8g) gives PyTorch its shared memory",
        )
    _workspace(out, data, workspace, folder)
    _gpu(out, data)
    for key in ("overrideCommand", "init"):
        if key in data and not isinstance(data[key], bool):
            # "false" (a string) would read as true: the box would run the other command.
            out.fail((key,), f"{key} must be true or false, not {data[key]!r}", f'"{key}": false')
    if data.get("overrideCommand", True) is not False and "command" not in out.data:
        # The spec's default for an image or Dockerfile: the box stays up whatever its CMD
        # (bash exits at once without a terminal). A devbox image's ENTRYPOINT still runs first.
        out.put(("command",), list(KEEP_ALIVE), ("overrideCommand",) if "overrideCommand" in data else ())
    for key in LIFECYCLE:
        if key in data:
            out.commands(key, data[key])
    translated = _finish(out, path, workspace, home)
    if "dockerComposeFile" in data and "image" not in data and not _builds(data):
        translated.layer.failed.add("image")  # a Compose file: refused once, not also "no image"
    return translated


def _finish(out: Out, path: Path, workspace: Path, home: Path) -> Translated:
    profile_doc = Document(out.doc.source, out.data, out.marks, out.key_marks)
    parser = LayerParser(profile_doc, workspace, path.parent, home)
    layer = parser.parse()
    for key, value in out.extra.items():
        layer.values[key] = value
        layer.origins[key] = out.doc.origin(out.extra_at[key])
    if out.notes:
        layer.values["notes"] = tuple(dict.fromkeys(out.notes))
        layer.origins["notes"] = Origin(out.doc.source)
    return Translated(layer, [*out.doc.problems, *out.problems, *parser.problems], out.notes)


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value.strip() else None


def _image(out: Out, raw: Any, path: KeyPath) -> None:
    if _builds(out.doc.data):
        # VS Code and the devcontainer CLI build the Dockerfile and ignore image then.
        out.notes.append(f"image {raw} skipped: the Dockerfile (build) is built instead, as the spec does")
        return
    out.put(("image",), raw, path)


def _builds(data: dict[str, Any]) -> bool:
    """True when the file names a Dockerfile: the spec then builds it, whatever `image` says."""
    build = data.get("build")
    return "dockerFile" in data or (
        isinstance(build, dict) and ("dockerfile" in build or "dockerFile" in build)
    )


def _build(out: Out, raw: Any, path: KeyPath) -> None:
    if not isinstance(raw, dict):
        out.fail(path, "build must be an object", '"build": {"dockerfile": "Dockerfile", "context": ".."}')
        return
    if "image" in out.doc.data and not _builds(out.doc.data):
        out.notes.append("build skipped: it names no dockerfile, so image is used, as the spec does")
        return
    data = out.doc.data
    dockerfile, dockerfile_at = raw.get("dockerfile", raw.get("dockerFile")), (*path, "dockerfile")
    context, context_at = raw.get("context"), (*path, "context")
    if dockerfile is None and "dockerFile" in data:
        # The legacy top-level form beside "build": {"args": …}: the devcontainer CLI reads both.
        dockerfile, dockerfile_at = data["dockerFile"], ("dockerFile",)
    if context is None and "context" in data:
        context, context_at = data["context"], ("context",)
    _dockerfile(out, dockerfile, context, dockerfile_at, context_at)
    if "args" in raw:
        out.put(("build", "args"), raw["args"], (*path, "args"))
    if "target" in raw:
        out.put(("build", "target"), raw["target"], (*path, "target"))
    for key in raw:
        if key in ("cacheFrom", "options"):
            out.notes.append(f"build.{key} skipped: devbox builds with its own options")
        elif key not in ("dockerfile", "dockerFile", "context", "args", "target"):
            out.notes.append(f"unknown key 'build.{key}' skipped")


def _legacy_dockerfile(out: Out, raw: Any, path: KeyPath) -> None:
    data = out.doc.data
    if "build" not in data:  # else _build reads it, with build's args and target
        _dockerfile(out, raw, data.get("context"), path, ("context",))


def _dockerfile(out: Out, dockerfile: Any, context: Any, at: KeyPath, where_context: KeyPath) -> None:
    """The spec's paths are relative to the devcontainer.json; the profile's Dockerfile is
    relative to its context (and must lie inside it: the engine reads it from there).
    `at`, `where_context`: where the two were written."""
    base = Path(out.doc.source).parent
    if not isinstance(dockerfile, str) or not dockerfile:
        out.fail(
            at,
            "build needs a dockerfile (a path relative to the devcontainer.json)",
            '"dockerfile": "Dockerfile"',
        )
        return
    context_text = context if isinstance(context, str) and context else "."
    context_path = (base / context_text).resolve()
    dockerfile_path = (base / dockerfile).resolve()
    try:
        inside = str(dockerfile_path.relative_to(context_path))
    except ValueError:
        inside = str(dockerfile_path)  # the field parser says it lies outside the context
    out.put(("build", "context"), str(context_path), where_context if context is not None else at)
    out.put(("build", "dockerfile"), inside, at)


def _env(out: Out, raw: Any, path: KeyPath) -> None:
    if not isinstance(raw, dict):
        out.fail(path, f"{path[0]} must be an object of NAME: value", '"containerEnv": {"NAME": "value"}')
        return
    for name, value in raw.items():
        if value is None:
            if path == ("remoteEnv",):
                out.drop(("env", name))  # null unsets what containerEnv or runArgs -e set
            continue
        if isinstance(value, str) and "${containerEnv:" in value:
            out.notes.append(
                f"{path[0]}.{name} skipped: it uses ${{containerEnv:…}}, known only inside the box"
            )
            continue
        out.put(("env", name), value, (*path, name), key_at=(*path, name))


def _user(out: Out, raw: Any, path: KeyPath) -> None:
    if path == ("containerUser",) or "containerUser" not in out.doc.data:
        out.put(("user",), raw, path)
    if path == ("remoteUser",) and isinstance(raw, str):
        out.remote_user = raw


def _host_requirements(out: Out, raw: Any, path: KeyPath) -> None:
    if not isinstance(raw, dict):
        out.fail(path, "hostRequirements must be an object")
        return
    for key in raw:
        if key != "gpu":
            out.notes.append(f"hostRequirements.{key} skipped: devbox does not pick a host by it")


def _gpu(out: Out, data: dict[str, Any]) -> None:
    """hostRequirements.gpu: true (or {cores, memory}) → one GPU; "optional" → none, said."""
    requirements = data.get("hostRequirements")
    if not isinstance(requirements, dict) or "gpu" not in requirements or ("gpus",) in out.marks:
        return
    gpu, where = requirements["gpu"], ("hostRequirements", "gpu")
    if gpu is True or isinstance(gpu, dict):
        out.put(("gpus",), 1, where)
    elif gpu == "optional":
        out.notes.append(
            'hostRequirements.gpu "optional": no GPU asked for; add "--gpus", "all" to runArgs, '
            "or run devbox up --gpus 1"
        )
    elif gpu is not False:
        out.fail(where, f'hostRequirements.gpu {gpu!r} is not true, false or "optional"')


def _workspace(out: Out, data: dict[str, Any], workspace: Path, folder: str) -> None:
    """workspaceMount (default: the project folder bound at /workspaces/NAME) and workspaceFolder."""
    if "workspaceMount" in data:
        raw, where = data["workspaceMount"], ("workspaceMount",)
        if isinstance(raw, str) and raw.strip():
            fields = mount_fields(out, raw, where)
            if fields is not None:
                out.mount(fields, where)
        elif raw not in ("", None):
            out.fail(
                where,
                "workspaceMount must be a mount string",
                '"source=${localWorkspaceFolder},target=/workspace,type=bind"',
            )
    else:
        out.mount({"type": "bind", "source": str(workspace), "target": f"/workspaces/{workspace.name}"}, ())
    at = ("workspaceFolder",) if "workspaceFolder" in data else ()
    out.put(("workdir",), folder, at)


def _skip(out: Out, raw: Any, path: KeyPath) -> None:
    """A key read together with another one (workspaceFolder with workspaceMount, …)."""


def _features(out: Out, raw: Any, path: KeyPath) -> None:
    listed = ", ".join(raw) if isinstance(raw, dict) else ""
    out.notes.append(f"features skipped: {listed}" if listed else "features skipped")


def _init(out: Out, raw: Any, path: KeyPath) -> None:
    if raw is False:
        out.notes.append("init false skipped: devbox boxes always run an init")


_UNSAFE = {
    "privileged": "a box never runs privileged",
    "capAdd": "devbox adds no capabilities",
    "securityOpt": "devbox sets the box's security options itself",
}


def _unsafe(out: Out, raw: Any, path: KeyPath) -> None:
    if raw not in (False, [], None):
        out.fail_key(path, f"'{path[0]}' is not supported: {_UNSAFE[str(path[0])]}", f"remove '{path[0]}'")


_MAPPED: dict[str, Callable[[Out, Any, KeyPath], None]] = {
    "image": _image,
    "build": _build,
    "dockerFile": _legacy_dockerfile,
    "context": _skip,  # read with dockerFile
    "runArgs": run_args,
    "forwardPorts": forward_ports,
    "appPort": app_port,
    "mounts": mounts,
    "containerEnv": _env,
    "remoteEnv": _env,
    "containerUser": _user,
    "remoteUser": _user,
    "hostRequirements": _host_requirements,
    "workspaceFolder": _skip,  # read with workspaceMount
    "workspaceMount": _skip,
    "overrideCommand": _skip,  # read once runArgs are
    "features": _features,
    "init": _init,
    **{key: _skip for key in LIFECYCLE},  # read last: remoteUser first
    **{key: _unsafe for key in _UNSAFE},
}
