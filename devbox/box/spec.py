"""Profile → ContainerSpec: exactly what devbox asks the engine for, as data.

Pure: no engine, no file reads. From a spec come the `docker run` argv that `devbox render`
prints and the JSON form; the spec hash tells `up` whether a running box still matches.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Literal

from devbox import __version__
from devbox.box import labels
from devbox.profile import environments
from devbox.profile.model import BuildSpec, GpuRequest, Profile

# A setuid file in the box never raises anyone's privileges (the devbox image protocol only
# drops them). Lab boxes say it in full, as lab mode's docs do.
SECURITY_OPT = ("no-new-privileges",)
LAB_SECURITY_OPT = ("no-new-privileges:true",)


@dataclass(frozen=True)
class HostContext:
    """Who runs the box and where ports are published."""

    owner: str
    uid: int
    gid: int
    bind_address: str = "127.0.0.1"
    login: str = ""  # the caller's login name, for the user a devbox image creates
    backend: str = "docker"  # the engine backend that runs the box (Docker is the only real one)
    lab: bool = False  # lab mode (docs/lab.md): the owner's own network, no-new-privileges:true
    slurm_job: str = ""  # made inside this Slurm job ($SLURM_JOB_ID): labelled for its Epilog


@dataclass(frozen=True)
class PortBinding:
    """A container port published on `address`; host None = the engine picks a free port."""

    name: str
    container: int
    host: int | None
    address: str


@dataclass(frozen=True)
class Mount:
    """A bind mount or a named volume, with the final (owner-prefixed) volume name."""

    type: Literal["bind", "volume"]
    source: str
    target: str
    readonly: bool


@dataclass(frozen=True)
class ContainerSpec:
    """Everything needed to create the box's container."""

    name: str
    box: str
    owner: str
    image: str
    build: BuildSpec | None
    command: tuple[str, ...] | None
    hostname: str
    env: dict[str, str]
    env_files: tuple[str, ...]
    labels: dict[str, str]
    volume_labels: dict[str, str]
    ports: tuple[PortBinding, ...]
    mounts: tuple[Mount, ...]
    gpus: GpuRequest
    shm_size: int | None
    memory: int | None
    nano_cpus: int | None
    pids_limit: int | None
    user: str | None
    workdir: str | None
    init: bool = True
    security_opt: tuple[str, ...] = SECURITY_OPT
    protocol: bool = False  # the image follows the devbox image protocol (docs/image.md)
    gpus_declared: bool = False  # allocated from a declared inventory: no device request
    disk: int | None = None  # bytes the writable layer may grow to (--storage-opt size=)
    network: str | None = None  # a network of the owner's boxes alone (lab mode); None: the default
    ipc: str | None = None  # IPC namespace mode (a devcontainer.json's --ipc); None: the engine's
    spec_hash: str = field(default="")


def container_name(owner: str, box: str) -> str:
    """The container of `owner`'s box `box`."""
    return f"devbox-{owner}-{box}"


def network_name(owner: str) -> str:
    """The bridge network of `owner`'s boxes in lab mode: boxes of others cannot reach them."""
    return f"devbox-{owner}"


def volume_name(owner: str, volume: str) -> str:
    """A named volume is per owner, so two people's `data:` never meet."""
    return f"devbox-{owner}-{volume}"


def protocol_user(env: Mapping[str, str]) -> str | None:
    """The "uid:gid" a devbox-protocol box drops to, from the environment it was given."""
    uid = env.get("DEVBOX_UID", "")
    return f"{uid}:{env.get('DEVBOX_GID') or uid}" if uid else None


def volume_owner(spec: ContainerSpec) -> str | None:
    """Who should own a new named volume's root ("uid:gid", or "name:"), if not root.

    Docker makes a new volume root-owned; a box running as your uid could not write to it.
    A devbox-protocol box is told its user by number (or makes a named one itself: unknown).
    """
    if spec.protocol:
        user = protocol_user(spec.env)
        uid = (user or "").partition(":")[0]
        return user if uid.isdecimal() and int(uid) != 0 else None
    user, _, group = (spec.user or "").partition(":")
    if not user or user in ("0", "root"):
        return None
    if user.isdecimal():
        return f"{user}:{group or user}"
    return f"{user}:{group}"  # chown name: gives the user's login group


def gpu_label(gpus: GpuRequest) -> str:
    """The `devbox.gpus` label: none, all, count:N (engine picks) or the device ids."""
    return f"count:{gpus.count}" if gpus.kind == "count" else gpus.describe()


def _user(profile_user: str | None, ctx: HostContext) -> str | None:
    if profile_user == "host":
        return f"{ctx.uid}:{ctx.gid}"
    uid, _, gid = (profile_user or "").partition(":")
    if ctx.lab and uid.isdecimal() and not gid:
        # A uid alone runs with gid 0 when the image has no passwd entry for it (group root,
        # whose set-gid files written through a bind work on the host), and with the groups
        # the image's /etc/group gives its name. UID:GID gets neither: always the caller's gid.
        return f"{uid}:{ctx.gid}"
    return profile_user


def _account_name(name: str) -> str:
    # useradd wants [a-z_][a-z0-9_-]*; owner and login names are usually that already.
    cleaned = re.sub(r"[^a-z0-9_-]", "_", name.lower())[:32]
    return cleaned if cleaned[:1].isalpha() or cleaned[:1] == "_" else f"u{cleaned}"[:32]


def protocol_env(profile: Profile, ctx: HostContext) -> dict[str, str]:
    """What a devbox-protocol image is told instead of `--user`: whom to create and run as.

    The box starts as root (to make the user and run sshd) and drops to that user itself.
    """
    env: dict[str, str] = {}
    user = profile.user
    if user == "host" or (user and user[0].isdecimal()):
        uid, _, gid = (f"{ctx.uid}:{ctx.gid}" if user == "host" else user).partition(":")
        env = {
            "DEVBOX_USER_NAME": _account_name(ctx.login or ctx.owner),
            "DEVBOX_UID": uid,
            "DEVBOX_GID": gid or uid,
        }
    elif user and user != "root":
        env = {"DEVBOX_USER_NAME": user}
    if profile.ssh_password:
        env["DEVBOX_SSH_PASSWORD"] = "1"
    return env


def _env(profile: Profile, ctx: HostContext, protocol: bool) -> dict[str, str]:
    """The box's environment: the protocol's user, the profile's env, the GPU guard.

    In lab mode the protocol's variables win over the profile's: `env: {DEVBOX_UID: "0"}`
    would otherwise make the box's user root (or another person's uid) on the host's files.
    """
    told = protocol_env(profile, ctx) if protocol else {}
    if ctx.lab:
        own = {k: v for k, v in profile.env.items() if not k.startswith("DEVBOX_")}
        return {**own, **told, **_no_gpus(profile.gpus)}
    return {**told, **profile.env, **_no_gpus(profile.gpus)}


def _environment_mounts(profile: Profile, owner: str) -> tuple[Mount, ...]:
    """`environments:`: the owner's environments volume and package cache (docs/environments.md)."""
    if not profile.environments:
        return ()
    return (
        Mount("volume", volume_name(owner, environments.ENVS_VOLUME), environments.ENVS_ROOT, False),
        Mount("volume", volume_name(owner, environments.PKGS_VOLUME), environments.PKGS_ROOT, False),
    )


def _environment_env(profile: Profile) -> dict[str, str]:
    """Jupyter finds the box's environment kernels; conda tools in the box share the cache."""
    if not profile.environments:
        return {}
    return {
        "JUPYTER_PATH": environments.jupyter_path(profile.name),
        "CONDA_PKGS_DIRS": environments.PKGS_ROOT,
    }


def _hash(spec: ContainerSpec) -> str:
    data = asdict(spec)
    data.pop("spec_hash")
    if data["disk"] is None:
        del data["disk"]  # added later: boxes made before it keep their hash
    if data["network"] is None:
        del data["network"]  # likewise
    if data["ipc"] is None:
        del data["ipc"]  # likewise
    # The project label was added later, and the binds hashed already say the same.
    data["labels"] = {k: v for k, v in spec.labels.items() if k not in (labels.SPEC_HASH, labels.PROJECT)}
    blob = json.dumps(data, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


def _no_gpus(gpus: GpuRequest) -> dict[str, str]:
    """`gpus: none` as the NVIDIA runtime understands it: the box sees no GPU.

    nvidia/cuda images set ENV NVIDIA_VISIBLE_DEVICES=all: where the engine's default runtime
    is nvidia, that would hand a box that asked for no GPU every GPU. In the spec, not at
    placement, so `devbox render` prints the same `docker run` as `up` sends.
    """
    return {"NVIDIA_VISIBLE_DEVICES": "void"} if gpus.kind == "none" else {}


def build(
    profile: Profile, ctx: HostContext, protocol: bool = False, as_caller: bool = False
) -> ContainerSpec:
    """The container spec for `profile` run by `ctx.owner`, hash included.

    `protocol`: the image follows the devbox image protocol (it carries the devbox.protocol
    label): the user is passed in the environment, not as `--user`. `as_caller` (lab mode,
    without `allow_root`): it still does, but starts as the caller too (`--user UID:GID`), so
    no process of the box is ever root.
    """
    box = profile.name
    owner_labels = {labels.OWNER: ctx.owner, labels.BOX: box}
    image = profile.image
    if image is None:
        # Built images are per owner and box; the tag changes when the build inputs do: the
        # settings and the digest of the context's contents (`inputs`, read at resolve).
        assert profile.build is not None
        settings = {k: v for k, v in asdict(profile.build).items() if k != "files"}
        digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]
        # Repository names are lower case for Docker; owners and boxes may not be.
        image = f"devbox/{ctx.owner}-{box}:{digest}".lower()
    res = profile.resources
    spec = ContainerSpec(
        name=container_name(ctx.owner, box),
        box=box,
        owner=ctx.owner,
        image=image,
        build=profile.build,
        command=profile.command,
        # A host name is at most 63 characters; the kernel refuses longer ones at start.
        hostname=box.replace("_", "-").replace(".", "-")[:63].rstrip("-"),
        env={**_env(profile, ctx, protocol), **_environment_env(profile)},
        env_files=profile.env_files,
        labels={
            **profile.labels,
            **owner_labels,
            labels.PROFILE: profile.path,
            **({labels.PROJECT: profile.project} if profile.project else {}),
            labels.GPUS: gpu_label(profile.gpus),
            labels.PORTS: ",".join(f"{p.name}:{p.container}" for p in profile.ports),
            **({labels.CPUS: str(round(res.cpus * 1e9))} if res.cpus is not None else {}),
            **({labels.MEMORY: str(res.memory)} if res.memory is not None else {}),
            labels.VERSION: __version__,
            labels.BACKEND: ctx.backend,
        },
        volume_labels={**profile.labels, **owner_labels},
        ports=tuple(PortBinding(p.name, p.container, p.host, ctx.bind_address) for p in profile.ports),
        mounts=tuple(
            Mount(
                v.kind,
                v.source if v.kind == "bind" else volume_name(ctx.owner, v.source),
                v.target,
                v.readonly,
            )
            for v in profile.volumes
        )
        + _environment_mounts(profile, ctx.owner),
        gpus=profile.gpus,
        shm_size=profile.shm_size,
        memory=res.memory,
        nano_cpus=round(res.cpus * 1e9) if res.cpus is not None else None,
        pids_limit=res.pids,
        disk=res.disk,
        user=(f"{ctx.uid}:{ctx.gid}" if as_caller else None) if protocol else _user(profile.user, ctx),
        workdir=profile.workdir,
        protocol=protocol,
        security_opt=LAB_SECURITY_OPT if ctx.lab else SECURITY_OPT,
        network=network_name(ctx.owner) if ctx.lab else None,
        ipc=profile.ipc,
    )
    digest = _hash(spec)
    # The job is no part of the hash: the next job's box of the same profile is the same box.
    job = {labels.SLURM_JOB: ctx.slurm_job} if ctx.slurm_job else {}
    return replace(spec, spec_hash=digest, labels={**spec.labels, labels.SPEC_HASH: digest, **job})


def with_gpus(spec: ContainerSpec, ids: tuple[str, ...], declared: bool) -> ContainerSpec:
    """The spec with the GPUs allocation picked: device ids, NVIDIA_VISIBLE_DEVICES, labels.

    The spec hash stays that of the request, so a later `up` of the same profile matches.
    """
    visible = ",".join(ids)
    box_labels = {**spec.labels, labels.GPUS: visible}
    if declared:
        box_labels[labels.GPUS_DECLARED] = "1"
    return replace(
        spec,
        gpus=GpuRequest("devices", devices=ids),
        env={**spec.env, "NVIDIA_VISIBLE_DEVICES": visible},
        labels=box_labels,
        gpus_declared=declared,
    )
