"""Parsers for the `ports:` and `volumes:` profile keys."""

from __future__ import annotations

import posixpath
import re
from typing import TYPE_CHECKING, Any

from devbox.profile import files
from devbox.profile.model import PortSpec, VolumeSpec
from devbox.profile.yamlsrc import KeyPath
from devbox.settings import is_valid_name

if TYPE_CHECKING:
    from devbox.profile.fields import LayerParser

_PORT_NAME_RE = re.compile(r"^[a-z][a-z0-9_-]*$")


def parse_port(raw: Any) -> tuple[int | None, int] | str:
    """(host or None, container) for `8888` or `"8080:8888"`, or an error message."""
    if isinstance(raw, bool):
        return "a port is a number"
    text = str(raw).strip()
    host_text, _, container_text = text.rpartition(":")
    if not container_text.isdecimal() or (host_text and not host_text.isdecimal()):
        return f'{files.shown(repr(raw))} is not a port: write 8888 or "HOST:CONTAINER" such as "8080:8888"'
    if len(container_text) > 5 or len(host_text) > 5:
        return f"port {files.shown(text)} is out of range (1-65535)"
    container = int(container_text)
    host = int(host_text) if host_text else None
    for port in (container, host):
        if port is not None and not 1 <= port <= 65535:
            return f"port {port} is out of range (1-65535)"
    return host, container


def parse_ports(p: LayerParser, raw: Any, path: KeyPath) -> dict[str, PortSpec] | None:
    spec = p.mapping(raw, path, "ports")
    if spec is None:
        return None
    result: dict[str, PortSpec] = {}
    for name, value in spec.items():
        if not _PORT_NAME_RE.match(name):
            p.fail_key(
                (*path, name),
                f"port name '{name}' must start with a lower-case letter, then letters, digits, - or _",
                f"e.g. {re.sub(r'[^a-z0-9_-]', '-', name.lower()).lstrip('0123456789-_') or 'web'}: ...",
            )
            continue
        parsed = parse_port(value)
        if isinstance(parsed, str):
            p.fail((*path, name), parsed)
            continue
        result[name] = PortSpec(name, parsed[1], parsed[0], p.doc.origin((*path, name)))
    return result


def parse_volume(p: LayerParser, raw: Any, path: KeyPath) -> VolumeSpec | None:
    """One `volumes:` entry, short (`src:dst[:ro]`) or long ({source, target, readonly})."""
    origin = p.doc.origin(path)
    if isinstance(raw, str):
        parts = raw.split(":")
        if len(parts) not in (2, 3) or not all(parts[:2]):
            p.fail(
                path,
                f"'{raw}' is not SOURCE:TARGET[:ro]",
                "e.g. ./notebooks:/workspace or data:/data:ro",
            )
            return None
        mode = parts[2] if len(parts) == 3 else "rw"
        if mode not in ("ro", "rw"):
            p.fail(path, f"mount mode '{mode}' is neither ro nor rw")
            return None
        source, target, readonly = parts[0], parts[1], mode == "ro"
        source_at = target_at = path
    elif isinstance(raw, dict):
        p.known_keys(raw, path, ("source", "target", "readonly"))
        raw_source, raw_target, readonly = raw.get("source"), raw.get("target"), raw.get("readonly", False)
        if (
            not isinstance(raw_source, str)
            or not isinstance(raw_target, str)
            or not raw_source
            or not raw_target
        ):
            bad = "source" if not isinstance(raw_source, str) or not raw_source else "target"
            p.fail(
                (*path, bad),
                "a volume needs source: and target: strings",
                "e.g. {source: ~/datasets, target: /datasets}",
            )
            return None
        source, target = raw_source, raw_target
        # Long form: point at the field that is wrong, not at the item.
        source_at, target_at = (*path, "source"), (*path, "target")
        if not isinstance(readonly, bool):
            p.fail((*path, "readonly"), "readonly must be true or false")
            return None
    else:
        p.fail(path, "a volume is SOURCE:TARGET or {source, target, readonly}")
        return None
    target_problem = files.path_problem(target)
    if target_problem is not None:
        p.fail(target_at, f"mount target {files.shown(target)} {target_problem}", "pick a folder: /data")
        return None
    if ":" in source or ":" in target:
        # Docker's -v and the API's Binds both split at ':'; its long form (--mount, Mounts)
        # would take one, but never makes a missing folder, so up and render would differ.
        bad, at = (source, source_at) if ":" in source else (target, target_at)
        p.fail(
            at, f"a mount path cannot hold ':' ({files.shown(bad)})", "rename it, or mount a folder above it"
        )
        return None
    if not target.startswith("/"):
        p.fail(
            target_at,
            f"mount target '{target}' is not an absolute path",
            f"write /{target.lstrip('./')}",
        )
        return None
    # normpath keeps a leading // (POSIX allows it to mean something else); Docker does not.
    target = "/" + posixpath.normpath(target).lstrip("/")
    if target == "/":
        p.fail(target_at, "a volume cannot be mounted over the box's root /", "pick a folder: /data")
        return None
    if target.split("/")[1] in ("proc", "sys", "dev"):
        p.fail(
            target_at, f"{target} belongs to the container runtime, not to volumes", "pick a folder: /data"
        )
        return None
    if source.startswith(("/", ".", "~")) or "/" in source:
        bind = p.expand_path(source, p.bind_base, source_at)
        return None if bind is None else VolumeSpec("bind", bind, target, readonly, origin)
    if not is_valid_name(source):
        p.fail(
            source_at,
            f"'{source}' is neither a path nor a volume name",
            "start a path with ./ or /",
        )
        return None
    return VolumeSpec("volume", source, target, readonly, origin)


def parse_volumes(p: LayerParser, raw: Any, path: KeyPath) -> dict[str, VolumeSpec] | None:
    if not isinstance(raw, list):
        p.fail(
            path,
            "volumes must be a list",
            "e.g. volumes: [./notebooks:/workspace, data:/data]",
        )
        return None
    result: dict[str, VolumeSpec] = {}
    for i, item in enumerate(raw):
        volume = parse_volume(p, item, (*path, i))
        if volume is None:
            continue
        if volume.target in result:
            p.fail((*path, i), f"two volumes mount on {volume.target}", "keep one of them")
        result[volume.target] = volume
    return result
