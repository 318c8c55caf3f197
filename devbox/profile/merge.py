"""Layers merged into one (later ones winning), the checks of the merged whole, and the
frozen Profile built from it.

Each layer was checked on its own by the field parsers; what only shows once every layer is
merged (no image at all, two ports on one number) is checked here.
"""

from __future__ import annotations

from typing import Any

from devbox.errors import Origin, Problem
from devbox.profile.fields import Layer
from devbox.profile.model import (
    BuildSpec,
    CredentialPattern,
    GpuRequest,
    PortSpec,
    Profile,
    Resources,
    VolumeSpec,
)

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
            # A merged mapping's entries keep their own layer's lines ("resources.cpus").
            merged.origins |= {k: o for k, o in layer.origins.items() if k.startswith(f"{key}.")}
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


# "no image" (message, hint), in the words of a profile and of a devcontainer.json.
_NO_IMAGE = {
    False: (
        "no image: the profile (or one it extends) needs image: or build:",
        "e.g. image: devbox/devbox:0.1, or extends: default, or build: {context: .}",
    ),
    True: (
        "no image: the devcontainer.json needs image or build",
        '"image": "devbox/devbox:0.1", or "build": {"dockerfile": "Dockerfile"}',
    ),
}


def check_merged(
    values: dict[str, Any], origin: Origin, need_image: bool = True, devcontainer: bool = False
) -> list[Problem]:
    """Problems only visible once every layer is merged (`devcontainer`: said in its keys)."""
    problems: list[Problem] = []
    if need_image and "image" not in values and "build" not in values:
        problems.append(Problem(origin, *_NO_IMAGE[devcontainer]))
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


def to_profile(
    name: str, path: str, merged: Layer, chain: tuple[str, ...], project: str | None = None
) -> Profile:
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
        build=BuildSpec(build["context"], build["dockerfile"], build["args"], build.get("target"))
        if build
        else None,
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
        project=project,
        environments=tuple(v.get("environments", [])),
        post_create=tuple(v.get("post_create", ())),
        post_start=tuple(v.get("post_start", ())),
        ipc=v.get("ipc"),
        notes=tuple(v.get("notes", ())),
    )
