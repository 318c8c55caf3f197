"""The `environments:` key: conda environment.yml files a box keeps environments of.

Each file is read when the profile loads (in lab mode with the caller's rights, as every
profile file is), so a missing or unreadable file, a name that cannot be one, or two files
naming the same environment are located problems before anything touches the engine. The
text travels in the Profile: the box gets a copy, the project folder need not be mounted.

Where things live in a box (docs/environments.md) is fixed here, below the box layer, so
the spec (mounts, variables) and the verbs agree on it.
"""

from __future__ import annotations

import hashlib
import re
from typing import TYPE_CHECKING, Any

import yaml

from devbox.profile import files
from devbox.profile.model import EnvironmentFile
from devbox.profile.yamlsrc import KeyPath

if TYPE_CHECKING:
    from devbox.profile.fields import LayerParser

# The owner's environments volume (devbox-<owner>-envs) and package cache (devbox-<owner>-pkgs).
ENVS_VOLUME = "envs"
PKGS_VOLUME = "pkgs"
ENVS_ROOT = "/opt/devbox/envs"
PKGS_ROOT = "/opt/devbox/pkgs"
# devbox's own records in the volume: each environment's file copy and its state (NAME.yml,
# NAME.json), and per box the kernelspecs Jupyter lists (JUPYTER_PATH points there).
STATE_DIR = f"{ENVS_ROOT}/.devbox"
_NAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}")  # fullmatch: `$` would let "x\n" by
_VARIABLE_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_MAX_FILE = 256 * 1024  # an environment.yml is a few lines; the text passes through exec's env


def valid_name(name: str) -> bool:
    """Whether `name` may name an environment (a folder of the volume, never a dot folder)."""
    return bool(_NAME_RE.fullmatch(name))


def prefix(name: str) -> str:
    """Where environment `name` lives in the box."""
    return f"{ENVS_ROOT}/{name}"


def jupyter_path(box: str) -> str:
    """The JUPYTER_PATH folder of `box`: its kernels are those of its own environments."""
    return f"{STATE_DIR}/jupyter/{box}"


def digest(text: str) -> str:
    """The content hash recorded for an environment file (sha256, first 16 hex digits)."""
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def read_env_file(text: str, path: str) -> tuple[str | None, dict[str, str], str | None]:
    """(name, variables, problem) of an environment.yml: its `name:` (else its stem), and its
    `variables:` (conda's environment variables of the environment)."""
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        return None, {}, f"is not valid YAML{where}: {getattr(exc, 'problem', None) or exc}"
    except (ValueError, RecursionError) as exc:  # a value YAML parses but cannot build (2001-13-45)
        return None, {}, f"is not valid YAML: {exc}"
    if not isinstance(doc, dict):
        return None, {}, "is not an environment file (a mapping with dependencies:)"
    if not isinstance(doc.get("dependencies"), list):
        return None, {}, "has no dependencies: list"
    name = doc.get("name")
    if name is None:
        stem = path.rsplit("/", 1)[-1]
        for suffix in (".yml", ".yaml"):
            stem = stem.removesuffix(suffix)
        name = "environment" if stem == "" else stem
    if isinstance(name, int) and not isinstance(name, bool):
        name = str(name)  # `name: 2024` is YAML's number, and a fine folder name
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        line = next(
            (i for i, t in enumerate(text.splitlines(), 1) if re.match(r"['\"]?name['\"]?\s*:", t)), 0
        )
        return (
            None,
            {},
            (
                f"names its environment {files.shown(str(name))!r}{f' (line {line})' if line else ''}, "
                "which cannot name a folder "
                "(letters, digits, _ . - only, at most 64, not starting with . or -)"
            ),
        )
    variables = doc.get("variables")
    if variables is None:
        return name, {}, None
    if not isinstance(variables, dict) or not all(
        isinstance(k, str) and _VARIABLE_RE.fullmatch(k) and isinstance(v, (str, int, float))
        for k, v in variables.items()
    ):
        return (
            None,
            {},
            "has variables: that are not NAME: value pairs (e.g. variables: {OMP_NUM_THREADS: 4})",
        )
    return name, {k: str(v) for k, v in variables.items()}, None


def parse_environments(p: LayerParser, raw: Any, path: KeyPath) -> list[EnvironmentFile] | None:
    """A list of environment.yml paths (relative to the project folder), each read and named."""
    if not isinstance(raw, list):
        p.fail(path, "environments must be a list of environment.yml paths", "e.g. [environment.yml]")
        return None
    result: list[EnvironmentFile] = []
    seen: dict[str, tuple[str, str]] = {}  # lower-case name → (name, file)
    for i, item in enumerate(raw):
        where = (*path, i)
        if not isinstance(item, str) or not item:
            p.fail(where, "an environments entry must be the path of an environment.yml")
            continue
        resolved = p.expand_path(item, p.bind_base, where)
        if resolved is None:
            continue
        try:
            text = files.read_text(resolved, _MAX_FILE)
        except ValueError as exc:
            fix = "create it, or fix the path"
            if "bytes" in str(exc):  # too large: an environment.yml is a list of packages
                fix = "list only the packages you asked for (conda env export --from-history)"
            p.fail(where, f"environment file {files.shown(resolved)} {exc}", fix)
            continue
        name, variables, problem = read_env_file(text, resolved)
        if name is None:
            p.fail(where, f"environment file {files.shown(resolved)} {problem}", "devbox help environments")
            continue
        # Jupyter lists kernels by their name in lower case: ML and ml would be one kernel.
        if name.lower() in seen:
            other, path_seen = seen[name.lower()]
            if other == name:
                message = f"environment '{name}' is named by {files.shown(path_seen)} already"
            else:
                message = (
                    f"environment '{name}' and '{other}' of {files.shown(path_seen)} differ only in "
                    f"case: Jupyter would list both kernels as '{name.lower()}'"
                )
            p.fail(where, message, "give one of the files another name: key")
            continue
        seen[name.lower()] = (name, resolved)
        result.append(
            EnvironmentFile(resolved, p.doc.origin(where), name=name, text=text, variables=variables)
        )
    return result
