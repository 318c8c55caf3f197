"""`Out`: the profile a devcontainer.json becomes, each value kept with its position in the JSON.

devcontainer.py and devcontainer_args.py write into it; the profile's field parsers then
report problems at the devcontainer.json's lines. It also holds what a profile file has no
key for (the lifecycle commands, ipc) and the notes of what was skipped.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from devbox.errors import Problem
from devbox.profile.model import StartCommand
from devbox.profile.yamlsrc import Document, KeyPath

# The lifecycle commands devbox runs in the box (Out.commands), in the spec's order.
LIFECYCLE = ("onCreateCommand", "updateContentCommand", "postCreateCommand", "postStartCommand")
_PORT_NAME_RE = re.compile(r"[^a-z0-9_-]+")
_VOLUME_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")  # Docker's own rule
_CONTAINER_ENV_RE = re.compile(r"\$\{containerEnv:([A-Za-z_][A-Za-z0-9_]*)(?::([^}]*))?\}")


class Out:
    """The profile being written: data, the JSON positions of its values, problems and notes."""

    def __init__(self, doc: Document, env: Mapping[str, str] | None = None) -> None:
        self.doc = doc
        self.env = env or {}
        self.data: dict[str, Any] = {}
        self.marks: dict[KeyPath, tuple[int, int]] = {}
        self.key_marks: dict[KeyPath, tuple[int, int]] = {}
        self.problems: list[Problem] = []
        self.notes: list[str] = []
        self.extra: dict[str, Any] = {}  # values a profile file has no key for (commands, ipc)
        self.extra_at: dict[str, KeyPath] = {}
        self.remote_user: str | None = None
        # Values that used an unset ${localEnv:NAME} with no default (read as empty, as the
        # spec says): a bind source built from one would be a folder at the host's root.
        self.unset: dict[KeyPath, str] = {}

    def fail(self, path: KeyPath, message: str, hint: str | None = None) -> None:
        """A problem at the JSON value of `path`."""
        self.problems.append(Problem(self.doc.origin(path), message, hint))

    def fail_key(self, path: KeyPath, message: str, hint: str | None = None) -> None:
        """A problem at the JSON key that ends `path`."""
        self.problems.append(Problem(self.doc.key_origin(path), message, hint))

    def _mark(self, path: KeyPath) -> tuple[int, int] | None:
        origin = self.doc.origin(path)
        return (origin.line, origin.column or 1) if origin.line is not None else None

    def put(self, target: KeyPath, value: Any, source: KeyPath, key_at: KeyPath | None = None) -> None:
        """Set the profile value at `target`, located where `source` stands in the JSON."""
        node: Any = self.data
        for i, key in enumerate(target[:-1]):
            if isinstance(node, list):
                node = node[key]  # type: ignore[index]
                continue
            if key not in node:
                node[key] = [] if isinstance(target[i + 1], int) else {}
            node = node[key]
        if isinstance(node, list):
            node.append(value)
        else:
            node[target[-1]] = value
        mark = self._mark(source)
        if mark is not None:
            for end in range(1, len(target) + 1):
                self.marks.setdefault(target[:end], mark)
            self.marks[target] = mark
            key_mark = self.doc.key_marks.get(key_at or source)
            self.key_marks[target] = key_mark or mark

    def drop(self, target: KeyPath) -> None:
        """Unset the profile value at `target` (a mapping entry), if it was set."""
        node: Any = self.data
        for key in target[:-1]:
            node = node.get(key) if isinstance(node, dict) else None
        if isinstance(node, dict):
            node.pop(target[-1], None)
        self.marks.pop(target, None)
        self.key_marks.pop(target, None)

    def set_extra(self, key: str, value: Any, source: KeyPath) -> None:
        """A value a profile file has no key for, kept with where it was written."""
        self.extra[key] = value
        self.extra_at[key] = source

    def port(self, container: int, host: int | None, source: KeyPath) -> None:
        """A published port, named by its portsAttributes label (e.g. jupyter) or port-N."""
        ports = self.data.get("ports", {})
        for name, value in ports.items():
            if str(value).rpartition(":")[2] == str(container):
                if host is not None:
                    self.put(("ports", name), f"{host}:{container}", source)
                return
        attributes = self.doc.data.get("portsAttributes") if isinstance(self.doc.data, dict) else None
        label = attributes.get(str(container), {}).get("label") if isinstance(attributes, dict) else None
        name = _PORT_NAME_RE.sub("-", label.lower()).strip("-_") if isinstance(label, str) else ""
        if name == "jupyter" and self.doc.data.get("overrideCommand", True) is not False:
            # The wait loop replaces the image's CMD, so no Jupyter starts: a port named
            # jupyter would make `up` wait for its URL until ready.timeout, then fail.
            self.notes.append(
                f'portsAttributes "{label}": port {container} is not waited on as Jupyter (the box '
                'runs a wait loop, not the image\'s CMD); "overrideCommand": false runs the CMD'
            )
            name = ""
        if not name[:1].isalpha() or name in ports:
            name = f"port-{container}"
        self.put(("ports", name), f"{host}:{container}" if host is not None else container, source)

    def mount(self, fields: dict[str, Any], source: KeyPath) -> None:
        """A mount (--mount fields, or the spec's object form) as a volumes: entry."""
        kind = fields.get("type", "volume")
        src = fields.get("source", fields.get("src"))
        dst = fields.get("target", fields.get("destination", fields.get("dst")))
        readonly = fields.get("readonly", fields.get("ro", False))
        readonly = readonly is True or str(readonly).lower() in ("true", "1", "")
        if kind not in ("bind", "volume"):
            self.fail(
                source,
                f"mount type {kind!r} is not supported: devbox mounts binds and named volumes",
                "type=bind or type=volume",
            )
            return
        if not isinstance(src, str) or not src or not isinstance(dst, str) or not dst:
            self.fail(
                source,
                "a mount needs a source and a target",
                "source=${localEnv:HOME}/data,target=/data,type=bind",
            )
            return
        if kind == "bind" and self.unset_in(source, src):
            return
        if kind == "bind" and not src.startswith("/"):
            self.fail(
                source,
                f"bind source {src!r} is not an absolute path",
                "e.g. source=${localWorkspaceFolder}/data",
            )
            return
        if kind == "volume" and not _VOLUME_NAME_RE.match(src):
            # ".." or ".cache" would read as a relative path, i.e. a bind of a host folder.
            self.fail(
                source,
                f"volume source {src!r} is not a volume name",
                "letters, digits, _ . - (not first); type=bind for a folder",
            )
            return
        index = len(self.data.get("volumes", []))
        self.put(("volumes", index), {"source": src, "target": dst, "readonly": readonly}, source)
        for key in ("source", "target", "readonly"):
            self._locate(("volumes", index, key), source)

    def unset_in(self, source: KeyPath, src: str) -> bool:
        """True (and a problem) when the bind source `src`, written at `source`, used an unset variable."""
        used = next((v for p, v in self.unset.items() if source and p[: len(source)] == source), None)
        if used is None:
            return False
        self.fail(
            source,
            f"bind source {src!r} uses {used}, which is not set (read as empty)",
            f"set {used[2:-1].split(':')[1]}, or give a default: {used[:-1]}:/some/folder}}",
        )
        return True

    def _locate(self, target: KeyPath, source: KeyPath) -> None:
        mark = self._mark(source)
        if mark is not None:
            self.marks[target] = mark

    def commands(self, key: str, raw: Any) -> None:
        """A lifecycle command in its string, array or object form → StartCommands."""
        found: list[StartCommand] = []
        entries = raw.items() if isinstance(raw, dict) else [(None, raw)]
        for entry, value in entries:
            where: KeyPath = (key, entry) if entry is not None else (key,)
            name = f"{key}.{entry}" if entry is not None else key
            if isinstance(value, str):
                if value.strip():
                    # ${containerEnv:NAME} stays: it is substituted when the command runs, from
                    # the box's environment (expand_container_env).
                    found.append(StartCommand(name, shell=value, user=self.remote_user))
            elif isinstance(value, list) and all(isinstance(a, str) for a in value):
                if value:
                    found.append(StartCommand(name, argv=tuple(value), user=self.remote_user))
            elif value is not None:
                self.fail(
                    where,
                    f"{name} must be a string, an array of strings or an object of them",
                    '"postCreateCommand": "pip install -r requirements.txt"',
                )
        slot = "post_start" if key == "postStartCommand" else "post_create"
        if found:
            self.set_extra(slot, (*self.extra.get(slot, ()), *found), (key,))


def uses_container_env(text: str) -> bool:
    """True when `text` holds a ${containerEnv:NAME} to substitute in the box."""
    return _CONTAINER_ENV_RE.search(text) is not None


def expand_container_env(text: str, env: Mapping[str, str]) -> str:
    """`text` with each ${containerEnv:NAME[:default]} replaced by the box's value, as the spec
    substitutes it before the command runs (so also inside a shell's single quotes, and in the
    array form): unset is the default, or empty."""

    def value(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        return env.get(name, default or "")

    return _CONTAINER_ENV_RE.sub(value, text)
