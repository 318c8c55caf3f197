"""The profile as devbox understands it once loaded, merged and validated: plain frozen data."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from devbox.errors import Origin

GpuKind = Literal["none", "all", "count", "devices"]


@dataclass(frozen=True)
class GpuRequest:
    """Which GPUs a box asks for: none, all, a count, or specific indices/UUIDs."""

    kind: GpuKind = "none"
    count: int = 0
    devices: tuple[str, ...] = ()

    def describe(self) -> str:
        """The request as a user would write it: "all", "none", "2", "0,3"."""
        if self.kind == "count":
            return str(self.count)
        if self.kind == "devices":
            return ",".join(self.devices)
        return self.kind


@dataclass(frozen=True)
class PortSpec:
    """A named container port, published on an engine-chosen or fixed host port."""

    name: str
    container: int
    host: int | None
    origin: Origin


@dataclass(frozen=True)
class VolumeSpec:
    """A bind mount (absolute host path) or a named volume (short name, owner prefix added later)."""

    kind: Literal["bind", "volume"]
    source: str
    target: str
    readonly: bool
    origin: Origin


@dataclass(frozen=True)
class BuildSpec:
    """How to build the box's image from a Dockerfile."""

    context: str
    dockerfile: str
    args: dict[str, str]
    target: str | None = None  # the stage to build (docker build --target)
    # What the context sends (profile/buildcontext.py), read at resolve: the image tag hashes it.
    inputs: str = ""
    files: dict[str, str] = field(default_factory=dict)  # relative path → short hash


@dataclass(frozen=True)
class CredentialPattern:
    """An extra log pattern; its `value` group is the credential."""

    name: str
    pattern: str


@dataclass(frozen=True)
class EnvironmentFile:
    """A conda environment.yml the box keeps an environment of (`environments:`)."""

    path: str  # absolute, on the host (relative entries resolve against the project folder)
    origin: Origin
    name: str = ""  # the file's name: key, else its stem (profile/environments.py)
    text: str = ""  # the file as read when the profile loaded (the box gets this copy)
    variables: dict[str, str] = field(default_factory=dict)  # its variables: (the kernel's env)


@dataclass(frozen=True)
class StartCommand:
    """A devcontainer.json postCreateCommand / postStartCommand (one entry of its object form).

    `shell`: a string run by /bin/sh -c; `argv`: an array run as is (no shell).
    """

    name: str
    shell: str | None = None
    argv: tuple[str, ...] | None = None
    user: str | None = None  # remoteUser, when it is not the box's own user


@dataclass(frozen=True)
class Resources:
    """CPU, memory, process and writable-layer quotas; None means no limit."""

    cpus: float | None = None
    memory: int | None = None
    pids: int | None = None
    disk: int | None = None  # bytes of the container's writable layer (storage drivers that can)


@dataclass(frozen=True)
class Profile:
    """A fully resolved profile: every layer merged, every value checked."""

    name: str
    path: str
    image: str | None
    build: BuildSpec | None
    command: tuple[str, ...] | None
    gpus: GpuRequest
    shm_size: int | None
    resources: Resources
    ports: tuple[PortSpec, ...]
    volumes: tuple[VolumeSpec, ...]
    env: dict[str, str]
    env_files: tuple[str, ...]
    user: str | None
    workdir: str | None
    labels: dict[str, str]
    ready_timeout: float
    credentials: tuple[CredentialPattern, ...]
    ssh_authorized_keys: str | None = None
    ssh_password: bool = False
    chain: tuple[str, ...] = ()
    origins: dict[str, Origin] = field(default_factory=dict)
    environments: tuple[EnvironmentFile, ...] = ()
    post_create: tuple[StartCommand, ...] = ()
    post_start: tuple[StartCommand, ...] = ()
    ipc: str | None = None  # a devcontainer.json's --ipc (host, private, shareable, none)
    notes: tuple[str, ...] = ()  # what a devcontainer.json gave that devbox skipped, to say
    # The folder a project or path profile's box is bound to (relative binds resolve there).
    project: str | None = None

    def origin(self, key: str) -> Origin:
        """Where the winning value of top-level `key` was set (the profile file if unknown)."""
        return self.origins.get(key, Origin(self.path))
