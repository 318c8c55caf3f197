"""Every JSON document devbox prints, each shape a TypedDict: the contract scripts rely on.

The same field means the same thing everywhere: `name` is the box name, `container` its
container, `owner` its owner, `host` the engine it runs on (DOCKER_HOST, e.g.
unix:///var/run/docker.sock), or the host's name for what came from another server (`--host`,
`--all-hosts`: docs/hosts.md). GPU indices are integers (a UUID stays a string). A time is two
fields: `X`, seconds since the epoch, and `X_iso`, ISO 8601 in UTC (both null when unknown).
A failure under --json is one `ErrorJson`. `ui/to_json.py` fills the shapes and prints them
(and imports this module only for the type checker); docs/cli.md documents them;
tests/unit/test_contract.py holds each command's output to its shape.
"""

from __future__ import annotations

from typing import Any, Literal, TypedDict

from devbox.errors import Kind

# --- errors --------------------------------------------------------------------------------


class ProblemJson(TypedDict):
    """One located mistake: `file` is a path, a flag (--memory) or a variable (DEVBOX_USER)."""

    file: str
    line: int | None
    column: int | None
    message: str
    fix: str | None


class ErrorBody(TypedDict):
    """What went wrong: `kind` is one of the stable kinds, each with its exit code."""

    kind: Kind
    message: str
    problems: list[ProblemJson]
    hint: str | None


class ErrorJson(TypedDict):
    """The one object a failing command prints under --json."""

    error: ErrorBody


# --- boxes ---------------------------------------------------------------------------------


class PortJson(TypedDict):
    """A named container port and where the host reaches it (host_port null: not published)."""

    container: int
    host_port: int | None
    address: str | None


class VolumeJson(TypedDict):
    """A mount: a named volume or a bind."""

    type: str
    source: str
    target: str
    readonly: bool


class BoxRefJson(TypedDict):
    """Which box: enough to name it on any engine."""

    name: str
    container: str
    owner: str
    host: str
    created: int | None
    created_iso: str | None


class BoxJson(BoxRefJson):
    """A box without credentials."""

    id: str
    status: str
    profile: str
    image: str
    inside: dict[str, str]
    gpus: list[int | str]
    ports: dict[str, PortJson]
    volumes: list[VolumeJson]


class LsBoxJson(BoxJson):
    """One box of `ls --json` (and of prune): `uptime` is the engine's words ("Up 3 hours")."""

    uptime: str


class JupyterJson(TypedDict):
    """How to open the box's Jupyter from this host."""

    url: str
    token: str | None
    auth: str


class SshJson(TypedDict):
    """How to log into the box from this host (`command` checks the recorded host key)."""

    address: str
    port: int
    user: str
    password: str | None
    command: str
    hostkey: str | None
    host_key_alias: str
    known_hosts: str
    identity_file: str | None
    host_public_key: str | None  # what `hostkey` is the fingerprint of; a client pins it (issue 12)


class ReportJson(BoxJson):
    """`up`, `info`, `rebuild --json`: the box and how to reach it."""

    started: int | None
    started_iso: str | None
    action: str
    shm_size: int | None  # bytes; null: Docker's default (64m)
    memory: int | None  # bytes; null: no limit
    nano_cpus: int | None  # CPUs x 10^9; null: no limit
    pids_limit: int | None  # null (or 0, -1): no limit
    jupyter: JupyterJson | None
    ssh: SshJson | None
    credentials: dict[str, str]
    changes: list[str]
    warnings: list[str]


class SwitchJson(ReportJson):
    """`switch --json`: the box it brought up, and the boxes it stopped for it."""

    stopped: list[str]


class VolumeInUseJson(TypedDict):
    """A volume `down --purge` kept: the containers that still mount it."""

    name: str
    used_by: list[str]


class EnvironmentJson(TypedDict):
    """One conda environment of a box (`devbox env`): `environment` is its name.

    `status`: ok, failed (`message` holds the installer's last lines) or pending (named by
    the profile, not made yet); `hash` is the recorded file's content hash; `kernel`: a
    Jupyter kernel of that name was written (`message` says when it would not start).
    """

    environment: str
    file: str
    hash: str
    updated: int | None
    updated_iso: str | None
    status: str
    message: str
    installer: str
    prefix: str
    kernel: bool


class EnvironmentsJson(TypedDict):
    """`devbox env NAME --json`: box `name`'s environments (docs/environments.md)."""

    name: str
    environments: list[EnvironmentJson]


class DownJson(TypedDict):
    """`down --json`: whether the box was there to remove, and what became of its volumes."""

    name: str
    container: str
    owner: str
    host: str
    removed: bool
    volumes_removed: list[str]
    volumes_kept: list[str]
    volumes_in_use: list[VolumeInUseJson]


# --- admin ---------------------------------------------------------------------------------


class PruneJson(TypedDict):
    """`prune --json`: the stopped boxes it removed (their volumes are kept)."""

    removed: list[LsBoxJson]


class BuiltImageJson(TypedDict):
    """An image devbox built for a box: `size` in bytes, `tags` may be empty (dangling)."""

    id: str
    tags: list[str]
    owner: str
    box: str
    size: int


class ImageBuildJson(TypedDict):
    """`image build --json`: the reference image made, what it was built on, its id."""

    image: str
    base: str
    id: str


class PruneImagesJson(TypedDict):
    """`prune --images --json`: images devbox built that no container used, removed; `kept`:
    those a container was made from meanwhile."""

    images_removed: list[BuiltImageJson]
    kept: list[BuiltImageJson]


class PruneIdleJson(TypedDict):
    """`prune --idle --json`: running boxes whose every GPU is at 0 % now (nothing is removed)."""

    idle: list[LsBoxJson]


class BusyJson(TypedDict):
    """A GPU's use by something that is no devbox box: compute processes, memory used."""

    processes: int
    memory_used_mib: int | None


class GpuJson(TypedDict):
    """One GPU of the engine's host, and the box holding it (null: free).

    `busy_outside` is null unless something outside devbox uses the GPU; the driver and CUDA
    versions are null for declared GPUs (and where nvidia-smi does not say).
    """

    host: str
    index: int
    uuid: str
    model: str
    memory_used_mib: int | None
    memory_total_mib: int | None
    utilization: int | None
    declared: bool
    holder: BoxRefJson | None
    busy_outside: BusyJson | None
    driver_version: str | None
    cuda_version: str | None


class CheckJson(TypedDict):
    """One doctor check: `status` is ok, warn or fail; `fix` is empty when there is none."""

    check: str
    status: Literal["ok", "warn", "fail"]
    detail: str
    fix: str


class DoctorJson(TypedDict):
    """`doctor --json`: printed whether or not a check fails (exit 1 then)."""

    ok: bool
    host: str
    checks: list[CheckJson]


class LimitsJson(TypedDict):
    """The policy's ceilings (null: no limit): the first four summed over a user's running
    boxes, the last three per box."""

    max_gpus_per_user: int | None
    max_cpus: float | None
    max_memory: str | None
    max_boxes_per_user: int | None
    max_pids: int | None
    max_shm_size: str | None
    max_disk: str | None


class PolicyJson(TypedDict):
    """`policy show --json`: the policy in force (`file` null: no policy file, built-in rules)."""

    file: str | None
    defaults: dict[str, Any]
    limits: LimitsJson
    allowed_images: list[str] | str
    allow_build: bool
    forbidden_mounts: list[str]
    bind_address: str
    admins: list[str]
    allow_root: bool
    allowed_mounts: list[str]
    gpu_inventory: int | str | None
    hosts: dict[str, str]  # host name → ssh://[user@]address[:port] or local (docs/hosts.md)


class PolicyCheckJson(TypedDict):
    """`policy check --json` of a valid file (an invalid one is an error object)."""

    file: str
    valid: bool


# --- profiles, render, ssh-config ----------------------------------------------------------


class ProfileStatusJson(TypedDict):
    """One profile of `profiles --json` / `profiles check --json`."""

    name: str
    path: str
    scope: str
    valid: bool
    shadowed_by: str | None
    message: str
    problems: list[ProblemJson]


class GpuRequestJson(TypedDict):
    """Which GPUs a profile asks for: kind none, all, count (with `count`) or devices."""

    kind: str
    count: int
    devices: list[int | str]


class BuildJson(TypedDict):
    """How a `build:` profile's image is built; `inputs`: the digest of what its context sends."""

    context: str
    dockerfile: str
    args: dict[str, str]
    target: str | None
    inputs: str


class RenderJson(TypedDict):
    """`render --json`: the container `up` would create, and the docker commands that make it."""

    name: str
    container: str
    owner: str
    host: str
    image: str
    build: BuildJson | None
    command: list[str] | None
    hostname: str
    env: dict[str, str]
    env_files: list[str]
    labels: dict[str, str]
    volume_labels: dict[str, str]
    ports: dict[str, PortJson]
    volumes: list[VolumeJson]
    gpu_request: GpuRequestJson  # not `gpus`: that name holds GPU ids everywhere else
    shm_size: int | None
    memory: int | None
    nano_cpus: int | None
    pids_limit: int | None
    user: str | None
    workdir: str | None
    init: bool
    security_opt: list[str]
    protocol: bool
    gpus_declared: bool
    spec_hash: str
    docker_run: list[str]
    docker_build: list[str] | None


class SshEntryJson(BoxRefJson):
    """One `Host` entry of `ssh-config --json`: `ssh_host` is what `ssh` takes (devbox-NAME)."""

    ssh_host: str
    address: str
    port: int
    user: str
    host_key_alias: str
    known_hosts: str
    identity_file: str | None
    host_public_key: str | None  # the box's SSH host key, pinned in known_hosts under host_key_alias
    proxy_command: str  # what ssh runs to reach the box whatever its port today (`devbox proxy NAME …`)


class SshConfigJson(TypedDict):
    """`ssh-config --json`: the entries, and where --write put them (null without --write)."""

    entries: list[SshEntryJson]
    file: str | None
    included_from: str | None


# --- several servers (docs/hosts.md) ------------------------------------------------------


class HostErrorJson(TypedDict):
    """A host of `ls --all-hosts` / `gpus --all-hosts` that did not answer (or refused): one
    object in place of its rows. `host` is the host's name."""

    host: str
    error: ErrorBody


class HostJson(TypedDict):
    """One host of `devbox hosts --json`: `host` is its name, `target` what ssh is given
    (null: this machine), `version` its devbox (null: not reached), the GPU counts null when
    not known; `error` null when it answered with the same devbox release. `kind`: ssh, local,
    or slurm (a Slurm cluster: `target` is its login node, null when this machine is one)."""

    host: str
    kind: str
    target: str | None
    port: int | None
    origin: str
    reachable: bool
    version: str | None
    gpus_free: int | None
    gpus_total: int | None
    error: ErrorBody | None


class EngineVersionJson(TypedDict):
    """The engine `devbox version` reached."""

    host: str
    product: str
    version: str
    api_version: str


class VersionJson(TypedDict):
    """`devbox version --json`: `engine` is null when no engine answers within 2 s."""

    version: str
    python: str
    engine: EngineVersionJson | None
