"""Check and normalise one profile layer (a file, the policy defaults or the CLI flags).

Each key has a parser that turns the raw YAML value into normalised data or records a
located problem. Parsing never stops at the first problem: the user sees them all at once.
"""

from __future__ import annotations

import difflib
import math
import os
import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devbox.errors import Origin, Problem
from devbox.profile import envfile, files
from devbox.profile.environments import parse_environments
from devbox.profile.filekeys import parse_build, parse_env_file, parse_ssh
from devbox.profile.model import CredentialPattern
from devbox.profile.ports_volumes import parse_ports, parse_volumes
from devbox.profile.quotas import parse_gpu_key, parse_resources, parse_size_key
from devbox.profile.yamlsrc import Document, KeyPath

_ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_USER_RE = re.compile(r"^([a-z_][a-z0-9_.-]*\$?|\d+(:\d+)?)$")
# Docker's reference grammar (distribution/reference): [domain/]path[:tag][@digest], where
# path components are lower case and a domain needs a dot, a port or to be localhost.
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_HOST = r"[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?"
_DOMAIN = rf"(?:localhost(?::\d+)?|{_HOST}(?:\.{_HOST})+(?::\d+)?|{_HOST}:\d+|\[[0-9a-fA-F:]+\](?::\d+)?)"
_IMAGE_RE = re.compile(
    rf"^(?:{_DOMAIN}/)?{_COMPONENT}(?:/{_COMPONENT})*"
    r"(?::\w[\w.-]{0,127})?(?:@[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[0-9a-fA-F]{32,})?$"
)


@dataclass
class Layer:
    """Normalised values of one layer, each top-level key with the origin that set it."""

    values: dict[str, Any] = field(default_factory=dict)
    origins: dict[str, Origin] = field(default_factory=dict)
    extends: str | None = None
    failed: set[str] = field(default_factory=set)  # keys given but unusable (already reported)


@dataclass
class LayerParser:
    """Parses one document. `bind_base` anchors relative bind sources, `file_dir` the rest."""

    doc: Document
    bind_base: Path
    file_dir: Path
    home: Path
    problems: list[Problem] = field(default_factory=list)

    def fail(self, path: KeyPath, message: str, hint: str | None = None) -> None:
        """Record a problem at the value of `path`."""
        self.problems.append(Problem(self.doc.origin(path), message, hint))

    def fail_key(self, path: KeyPath, message: str, hint: str | None = None) -> None:
        """Record a problem with the key that ends `path` (its name), located at the key."""
        self.problems.append(Problem(self.doc.key_origin(path), message, hint))

    def parse(self) -> Layer:
        """Normalise the whole document into a Layer; problems collect in `self.problems`."""
        layer = Layer()
        data = self.doc.data
        if data is None:
            return layer
        if not isinstance(data, dict):
            self.fail(
                (),
                "a profile is a mapping of keys (image:, gpus:, ...)",
                "devbox help profiles",
            )
            layer.failed.add("image")  # so "no image" is not said about it as well
            return layer
        for key, raw in data.items():
            parser = PARSERS.get(key)
            if parser is None:
                self._unknown_key(key)
                continue
            value = parser(self, raw, (key,))
            if value is None:
                layer.failed.add(key)
            else:
                layer.values[key] = value
                layer.origins[key] = self.doc.origin((key,))
                if key == "resources":
                    # Each quota's own line, for errors about one of them (policy/capacity.py).
                    for sub in value:
                        layer.origins[f"{key}.{sub}"] = self.doc.key_origin((key, sub))
        if "extends" in layer.values:
            layer.extends = layer.values["extends"]
        elif "extends" in layer.failed:
            layer.failed.add("image")  # what the parent would give is unknown: no "no image" too
        if "image" in layer.values and "build" in layer.values:
            self.fail(("build",), "give either image: or build:, not both", "drop one of them")
        return layer

    def _unknown_key(self, key: str) -> None:
        guess = difflib.get_close_matches(key.replace("-", "_").lower(), list(PARSERS), n=1, cutoff=0.6)
        hint = f"did you mean '{guess[0]}'?" if guess else "known keys: " + ", ".join(sorted(PARSERS))
        self.problems.append(Problem(self.doc.key_origin((key,)), f"unknown key '{key}'", hint))

    def mapping(self, raw: Any, path: KeyPath, what: str) -> dict[str, Any] | None:
        """`raw` if it is a mapping, else a problem and None."""
        if isinstance(raw, dict):
            return raw
        self.fail(
            path,
            f"{what} must be a mapping",
            f"write it as  {path[-1]}: {{key: value}}",
        )
        return None

    def known_keys(self, raw: dict[str, Any], path: KeyPath, allowed: tuple[str, ...]) -> None:
        """Record a problem for each key of `raw` not in `allowed`, with a did-you-mean."""
        for key in raw:
            if key not in allowed:
                guess = difflib.get_close_matches(key.replace("-", "_"), allowed, n=1, cutoff=0.6)
                hint = f"did you mean '{guess[0]}'?" if guess else "allowed: " + ", ".join(allowed)
                self.problems.append(Problem(self.doc.key_origin((*path, key)), f"unknown key '{key}'", hint))

    def expand_path(self, text: str, base: Path, where: KeyPath) -> str | None:
        """`~` (or `~name`) expanded, relative to `base`, normalised; None (and a problem) if no path."""
        problem = files.path_problem(text)
        if problem is None:
            try:
                text = files.expand_user(text, str(self.home))
            except ValueError as exc:
                self.fail(where, f"{files.shown(text)}: {exc}", "write the folder out, e.g. /home/NAME/data")
                return None
            full = os.path.normpath(base / text)
            problem = files.path_problem(full)
            if problem is None:
                return full
        self.fail(where, f"the path {files.shown(text)} {problem}", "rename it, or mount a folder above it")
        return None


def _string(p: LayerParser, raw: Any, path: KeyPath) -> str | None:
    if isinstance(raw, str) and raw.strip():
        return raw.strip()
    p.fail(path, f"{path[-1]} must be a non-empty string")
    return None


def _image(p: LayerParser, raw: Any, path: KeyPath) -> str | None:
    image = _string(p, raw, path)
    if image is not None and not _IMAGE_RE.match(image):
        name, _, tag = image.partition(":")
        lowered = f"{name.lower()}:{tag}" if tag else name.lower()
        hint = (
            f"repository names are lower case: {lowered}"
            if lowered != image and _IMAGE_RE.match(lowered)
            else "e.g. pytorch/pytorch:2.7.0-cuda12.6-cudnn9-runtime"
        )
        p.fail(path, f"'{image}' is not an image reference", hint)
        return None
    return image


def _command(p: LayerParser, raw: Any, path: KeyPath) -> tuple[str, ...] | None:
    if isinstance(raw, str):
        try:
            return tuple(shlex.split(raw))
        except ValueError as exc:
            p.fail(
                path,
                f"command cannot be split into words: {exc}",
                'use a list: ["jupyter", "lab"]',
            )
            return None
    if (
        isinstance(raw, list)
        and raw
        and all(isinstance(a, (str, int, float)) and not isinstance(a, bool) for a in raw)
    ):
        return tuple(str(a) for a in raw)
    p.fail(
        path,
        "command must be a string or a non-empty list of strings",
        'e.g. command: ["jupyter", "lab"]',
    )
    return None


def string_map(p: LayerParser, raw: Any, path: KeyPath, what: str) -> dict[str, str] | None:
    spec = p.mapping(raw, path, what)
    if spec is None:
        return None
    result: dict[str, str] = {}
    for key, value in spec.items():
        if not key.strip():
            p.fail_key((*path, key), f"{what} cannot have an empty name")
        elif "\0" in key or "\0" in str(value):
            # The kernel ends a C string at NUL: the engine refuses it only once the box starts.
            p.fail((*path, key), f"{what} {key!r} holds a NUL character", "remove the \\0 from it")
        elif isinstance(value, bool):
            result[key] = "true" if value else "false"
        elif isinstance(value, (str, int, float)):
            result[key] = str(value)
        else:
            p.fail(
                (*path, key),
                f"{what} value of '{key}' must be a string",
                f'e.g. {key}: "value"',
            )
    return result


def _env(p: LayerParser, raw: Any, path: KeyPath) -> dict[str, str] | None:
    if isinstance(raw, list):
        # The compose-style list form: ["KEY=VALUE", ...].
        pairs: dict[str, Any] = {}
        for i, item in enumerate(raw):
            if not isinstance(item, str) or "=" not in item:
                p.fail((*path, i), f"env entry {item!r} is not KEY=VALUE", "or write env as a mapping")
                continue
            key, _, value = item.partition("=")
            pairs[key] = value
        raw = pairs
    result = string_map(p, raw, path, "env")
    for key in result or {}:
        if not _ENV_NAME_RE.match(key):
            p.fail_key(
                (*path, key),
                f"'{key}' is not a variable name",
                "letters, digits and _, not starting with a digit",
            )
        elif key in envfile.GPU_VARIABLES:
            # Set here it would bypass GPU allocation and the lab's GPU limits (envfile.py).
            p.fail_key((*path, key), envfile.GPU_VARIABLES[key], envfile.GPU_VARIABLES_FIX)
    return result


def _user(p: LayerParser, raw: Any, path: KeyPath) -> str | None:
    user = str(raw) if isinstance(raw, int) and not isinstance(raw, bool) else raw
    if isinstance(user, str) and _USER_RE.match(user):
        return user
    p.fail(
        path,
        f"user {raw!r} is not host, root, a user name or UID[:GID]",
        "e.g. user: host",
    )
    return None


def _workdir(p: LayerParser, raw: Any, path: KeyPath) -> str | None:
    workdir = _string(p, raw, path)
    if workdir is not None and any(ord(c) < 32 or ord(c) == 127 for c in workdir):
        p.fail(path, f"workdir {workdir!r} holds a control character", "e.g. workdir: /workspace")
        return None
    if workdir is not None and not workdir.startswith("/"):
        p.fail(
            path,
            f"workdir '{workdir}' is not an absolute path",
            "e.g. workdir: /workspace",
        )
        return None
    return workdir


def _labels(p: LayerParser, raw: Any, path: KeyPath) -> dict[str, str] | None:
    result = string_map(p, raw, path, "labels")
    for key in list(result or {}):
        if key.startswith("devbox."):
            p.fail_key(
                (*path, key),
                f"label '{key}' is reserved: devbox.* labels are devbox's own",
                "pick another prefix",
            )
    return result


def _ready(p: LayerParser, raw: Any, path: KeyPath) -> dict[str, Any] | None:
    spec = p.mapping(raw, path, "ready")
    if spec is None:
        return None
    p.known_keys(spec, path, ("timeout",))
    timeout = spec.get("timeout")
    if timeout is None:
        return {}
    if (
        isinstance(timeout, bool)
        or not isinstance(timeout, (int, float))
        or not math.isfinite(timeout)
        or timeout <= 0
    ):
        p.fail(
            (*path, "timeout"),
            f"timeout must be a positive number of seconds, not {timeout!r}",
        )
        return None
    return {"timeout": float(timeout)}


def _credentials(p: LayerParser, raw: Any, path: KeyPath) -> dict[str, CredentialPattern] | None:
    if not isinstance(raw, list):
        p.fail(path, "credentials must be a list of {name, pattern}")
        return None
    result: dict[str, CredentialPattern] = {}
    for i, item in enumerate(raw):
        where = (*path, i)
        if (
            not isinstance(item, dict)
            or not isinstance(item.get("name"), str)
            or not isinstance(item.get("pattern"), str)
        ):
            p.fail(where, "a credential is {name: ..., pattern: '...(?P<value>...)'}")
            continue
        p.known_keys(item, where, ("name", "pattern"))
        try:
            compiled = re.compile(item["pattern"])
        except re.error as exc:
            p.fail((*where, "pattern"), f"pattern is not a valid regular expression: {exc}")
            continue
        if "value" not in compiled.groupindex:
            p.fail(
                (*where, "pattern"),
                "pattern has no (?P<value>...) group",
                r"e.g. 'SSH password: (?P<value>\S+)'",
            )
            continue
        result[item["name"]] = CredentialPattern(item["name"], item["pattern"])
    return result


PARSERS: dict[str, Callable[[LayerParser, Any, KeyPath], Any]] = {
    "extends": _string,
    "image": _image,
    "build": parse_build,
    "command": _command,
    "gpus": parse_gpu_key,
    "shm_size": parse_size_key,
    "resources": parse_resources,
    "ports": parse_ports,
    "volumes": parse_volumes,
    "env": _env,
    "env_file": parse_env_file,
    "user": _user,
    "workdir": _workdir,
    "labels": _labels,
    "ready": _ready,
    "credentials": _credentials,
    "ssh": parse_ssh,
    "environments": parse_environments,
}
