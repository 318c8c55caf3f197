"""ContainerSpec → the JSON body of `POST /containers/create`. Pure."""

from __future__ import annotations

from typing import Any

from devbox.spec import ContainerSpec


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
