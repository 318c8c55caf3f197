"""ContainerSpec → the JSON body of `POST /containers/create`, and the tars put into a box. Pure."""

from __future__ import annotations

import io
import tarfile
import time
from pathlib import PurePosixPath
from typing import Any

from devbox.box.spec import ContainerSpec


def named_volumes(spec: ContainerSpec) -> list[str]:
    """The named volumes the box mounts (created with labels before the container)."""
    return [m.source for m in spec.mounts if m.type == "volume"]


def device_requests(spec: ContainerSpec) -> list[dict[str, Any]]:
    """GPU requests: all, a count, or device ids; never a count-0 request (it attaches nothing)."""
    gpus = spec.gpus
    request: dict[str, Any] = {
        "Driver": "",
        "Count": 0,
        "DeviceIDs": None,
        "Capabilities": [["gpu"]],
        "Options": {},
    }
    if gpus.kind == "all":
        return [{**request, "Count": -1}]
    if gpus.kind == "count":
        return [{**request, "Count": gpus.count}]
    if gpus.kind == "devices":
        return [{**request, "DeviceIDs": list(gpus.devices)}]
    return []


def create_body(
    spec: ContainerSpec, env: dict[str, str], extra_labels: dict[str, str] | None = None
) -> dict[str, Any]:
    """What `docker run` would send for `spec`, with `env` (env files and env: merged).

    `extra_labels`: labels made at creation (the box's public host key), outside the spec hash.
    """
    host: dict[str, Any] = {
        # Binds (not Mounts) so a missing bind folder is created, as with docker run -v.
        "Binds": [f"{m.source}:{m.target}:{'ro' if m.readonly else 'rw'}" for m in spec.mounts],
        "PortBindings": {
            f"{p.container}/tcp": [{"HostIp": p.address, "HostPort": str(p.host or "")}] for p in spec.ports
        },
        "Init": spec.init,
        "SecurityOpt": list(spec.security_opt),
        # Declared GPUs (DEVBOX_GPU_INVENTORY) are bookkeeping only: nothing to attach.
        "DeviceRequests": None if spec.gpus_declared else device_requests(spec) or None,
        "ShmSize": spec.shm_size,
        "Memory": spec.memory,
        "NanoCpus": spec.nano_cpus,
        "PidsLimit": spec.pids_limit,
        # Only some storage drivers can cap the writable layer; the others refuse the box
        # (docs/policy.md, `devbox doctor`).
        "StorageOpt": {"size": str(spec.disk)} if spec.disk is not None else None,
        # Lab mode: the owner's own bridge (made before the box, networks.ensure), by name.
        "NetworkMode": spec.network,
        "IpcMode": spec.ipc,
    }
    body: dict[str, Any] = {
        "Image": spec.image,
        "Hostname": spec.hostname,
        "Cmd": list(spec.command) if spec.command else None,
        "Env": [f"{k}={v}" for k, v in env.items()],
        "Labels": {**spec.labels, **(extra_labels or {})},
        "ExposedPorts": {f"{p.container}/tcp": {} for p in spec.ports},
        "WorkingDir": spec.workdir,
        "User": spec.user,
        "HostConfig": {k: v for k, v in host.items() if v is not None},
    }
    return {k: v for k, v in body.items() if v is not None}


def files_tar(files: dict[str, tuple[str, int]], owner: tuple[int, int] | None = None) -> bytes:
    """A tar of files ({absolute path: (text, mode)}) and their folders (0711), root's or `owner`'s."""
    uid, gid = owner or (0, 0)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for folder in sorted({str(PurePosixPath(p).parent) for p in files}):
            info = tarfile.TarInfo(folder.lstrip("/"))
            info.type, info.mode, info.uid, info.gid = tarfile.DIRTYPE, 0o711, uid, gid
            tar.addfile(info)
        for path, (text, mode) in files.items():
            data = text.encode()
            info = tarfile.TarInfo(path.lstrip("/"))
            info.size, info.mode, info.uid, info.gid = len(data), mode, uid, gid
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def folders_tar(folders: list[str], uid: int, gid: int) -> bytes:
    """A tar of folder entries owned by uid:gid, mode 0755, stamped now."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for folder in folders:
            info = tarfile.TarInfo(folder.lstrip("/"))
            info.type, info.mode, info.uid, info.gid = tarfile.DIRTYPE, 0o755, uid, gid
            info.mtime = int(time.time())
            tar.addfile(info)
    return buffer.getvalue()
