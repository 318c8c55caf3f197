"""Parsers for the profile keys that name files on the host: `build:`, `env_file:` and `ssh:`.

Each file is looked at (and env files and keys read) when the profile loads, so a missing,
unreadable or wrong file is a located problem in the profile, before anything touches the
engine. Looking never raises: see files.py.
"""

from __future__ import annotations

import os
import posixpath
import re
from typing import TYPE_CHECKING, Any

from devbox.profile import envfile, files
from devbox.profile.yamlsrc import KeyPath

if TYPE_CHECKING:
    from devbox.profile.fields import LayerParser

# Public key types OpenSSH reads in authorized_keys (options may stand before them).
_KEY_TYPE_RE = re.compile(
    r"^(ssh-(rsa|dss|ed25519)|ecdsa-sha2-nistp(256|384|521)|sk-(ssh-ed25519|ecdsa-sha2-nistp256)@openssh\.com"
    r"|(ssh|ecdsa)-[a-z0-9-]+-cert-v01@openssh\.com)$"
)
_PRIVATE_KEY_RE = re.compile(r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----|^PuTTY-User-Key-File-", re.MULTILINE)
_MAX_KEYS_FILE = 256 * 1024


def parse_build(p: LayerParser, raw: Any, path: KeyPath) -> dict[str, Any] | None:
    """`build: DIR` or `build: {context, dockerfile, args, target}`; the Dockerfile lies in the context."""
    from devbox.profile.fields import string_map

    if isinstance(raw, str):
        raw = {"context": raw}
    spec = p.mapping(raw, path, "build")
    if spec is None:
        return None
    p.known_keys(spec, path, ("context", "dockerfile", "args", "target"))
    context_raw = spec.get("context", ".")
    dockerfile_raw = spec.get("dockerfile", "Dockerfile")
    # Every field is checked, so one look shows all that is wrong with build:.
    args = string_map(p, spec.get("args", {}), (*path, "args"), "build args")
    target = spec.get("target")
    if target is not None and (not isinstance(target, str) or not target.strip()):
        p.fail((*path, "target"), "target must be the name of a stage of the Dockerfile", "e.g. target: dev")
        target = None
    context = None
    if not isinstance(context_raw, str) or not context_raw:
        p.fail((*path, "context"), "context must be a folder path")
    else:
        context = p.expand_path(context_raw, p.file_dir, (*path, "context"))
    if context is not None:
        seen = files.look(context)
        if seen.error or seen.kind != "folder":
            why = f"cannot be looked at: {seen.error}" if seen.error else "is not a folder"
            p.fail(
                (*path, "context"),
                f"build context {files.shown(context)} {why}",
                "create it, or fix the path",
            )
            context = None
    dockerfile = _dockerfile(p, dockerfile_raw, context, (*path, "dockerfile"))
    if context is None or dockerfile is None or args is None:
        return None
    return {"context": context, "dockerfile": dockerfile, "args": args or {}, "target": target}


def _dockerfile(p: LayerParser, raw: Any, context: str | None, where: KeyPath) -> str | None:
    """The Dockerfile's path relative to the context (the engine reads it from the context)."""
    if not isinstance(raw, str) or not raw:
        p.fail(where, "dockerfile must be a file name", "e.g. dockerfile: Dockerfile.gpu")
        return None
    problem = files.path_problem(raw)
    if problem is not None:
        p.fail(where, f"dockerfile {files.shown(raw)} {problem}")
        return None
    if context is None:
        return None  # already reported; nothing to look in
    full = posixpath.normpath(posixpath.join(context, raw))
    inside = posixpath.relpath(full, context)
    if inside == ".." or inside.startswith("../"):
        # The engine builds from the context it was sent: a Dockerfile outside it is not there.
        p.fail(
            where,
            f"dockerfile {files.shown(full)} is outside the build context {files.shown(context)}",
            "move it into the context, or make the context a folder that holds it",
        )
        return None
    seen = files.look(full)
    if seen.error or seen.kind != "file":
        why = f"cannot be looked at: {seen.error}" if seen.error else "does not exist"
        p.fail(where, f"{files.shown(full)} {why}", "add the Dockerfile or fix dockerfile:")
        return None
    real = os.path.realpath(full)
    if os.path.relpath(real, os.path.realpath(context)).startswith(".."):
        # The context is sent with its links as links: one out of it is not there to read.
        p.fail(
            where,
            f"dockerfile {files.shown(full)} is a link to {files.shown(real)}, outside the build context",
            "copy the Dockerfile into the context instead of linking it",
        )
        return None
    return inside


def parse_env_file(p: LayerParser, raw: Any, path: KeyPath) -> list[str] | None:
    """One env file or a list; each must be readable UTF-8 and may not pick GPUs (envfile.GPU_VARIABLES)."""
    items = raw if isinstance(raw, list) else [raw]
    result: list[str] = []
    for i, item in enumerate(items):
        where = (*path, i) if isinstance(raw, list) else path
        if not isinstance(item, str) or not item:
            p.fail(where, "env_file must be a path or a list of paths")
            continue
        resolved = p.expand_path(item, p.file_dir, where)
        if resolved is None:
            continue
        if files.look(resolved) == files.Look("missing"):
            p.fail(where, f"env file {files.shown(resolved)} does not exist", "create it or remove env_file:")
            continue
        try:
            variables = envfile.parse(files.read_text(resolved))
        except envfile.EnvFileError as exc:
            # At the bad line of the env file itself: that is what to fix.
            p.problems.append(envfile.problem_of(resolved, exc))
            continue
        except ValueError as exc:
            p.fail(
                where, f"env file {files.shown(resolved)} {exc}", "make it a readable UTF-8 KEY=VALUE file"
            )
            continue
        gpu_keys = [k for k in envfile.GPU_VARIABLES if k in variables]
        if gpu_keys:
            # As in env: the runtime would hand the box GPUs past allocation and limits.
            p.fail(
                where,
                f"env file {files.shown(resolved)} sets {gpu_keys[0]}: {envfile.GPU_VARIABLES[gpu_keys[0]]}",
                f"remove it from the file and {envfile.GPU_VARIABLES_FIX}",
            )
            continue
        result.append(resolved)
    return result


def authorized_keys_problem(text: str) -> str | None:
    """Why `text` is no authorized_keys file of public keys, or None when it is one."""
    if _PRIVATE_KEY_RE.search(text):
        return "is a private key: a box is given public keys only"
    lines = [line.strip() for line in text.splitlines()]
    keys = [line for line in lines if line and not line.startswith("#")]
    if not keys:
        return "holds no public key"
    for number, line in enumerate(lines, 1):
        if line and not line.startswith("#") and not any(_KEY_TYPE_RE.match(w) for w in line.split()):
            return f"line {number} is not a public key (ssh-ed25519 AAAA… or the like)"
    return None


def parse_ssh(p: LayerParser, raw: Any, path: KeyPath) -> dict[str, Any] | None:
    """`ssh: {authorized_keys: PUBLIC_KEY_FILE, password: BOOL}`."""
    spec = p.mapping(raw, path, "ssh")
    if spec is None:
        return None
    p.known_keys(spec, path, ("authorized_keys", "password"))
    result: dict[str, Any] = {}
    keys = spec.get("authorized_keys")
    where = (*path, "authorized_keys")
    if keys is not None:
        resolved = p.expand_path(keys, p.file_dir, where) if isinstance(keys, str) and keys else None
        if not isinstance(keys, str) or not keys:
            p.fail(where, "authorized_keys must be the path of a public key file")
        elif resolved is not None:
            problem = read_authorized_keys(resolved)[1]
            if problem is None:
                result["authorized_keys"] = resolved
            else:
                public = f"{resolved}.pub"
                hint = (
                    f"give the public half: {public}"
                    if files.is_file(public)
                    else "e.g. ~/.ssh/id_ed25519.pub"
                )
                p.fail(where, f"{files.shown(resolved)} {problem}", hint)
    password = spec.get("password", False)
    if not isinstance(password, bool):
        p.fail((*path, "password"), "password must be true or false")
    elif "password" in spec:
        result["password"] = password
    return result


def read_authorized_keys(path: str) -> tuple[str, str | None]:
    """(the file's text, None) for a file of public keys; ("", why not) otherwise."""
    if files.look(path) == files.Look("missing"):
        return "", "does not exist"
    try:
        text = files.read_text(path, _MAX_KEYS_FILE)
    except ValueError as exc:
        return "", str(exc)
    problem = authorized_keys_problem(text)
    return (text, None) if problem is None else ("", problem)
