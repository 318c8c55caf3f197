"""ContainerSpec → the `docker run` / `docker build` command lines `devbox render` prints (pure)."""

from __future__ import annotations

import shlex

from devbox import sizes
from devbox.box.spec import ContainerSpec, Mount, PortBinding
from devbox.profile.model import GpuRequest


def _gpu_flag(gpus: GpuRequest) -> list[str]:
    if gpus.kind == "all":
        return ["--gpus", "all"]
    if gpus.kind == "count":
        return ["--gpus", str(gpus.count)]
    if gpus.kind == "devices":
        # The inner quotes keep docker's CSV parser from splitting the id list at the comma.
        return ["--gpus", f'"device={",".join(gpus.devices)}"']
    return []


def _publish(port: PortBinding) -> str:
    address = f"[{port.address}]" if ":" in port.address else port.address
    return f"{address}:{port.host or ''}:{port.container}"


def _mount_args(mount: Mount, volume_labels: dict[str, str]) -> list[str]:
    if mount.type == "bind":
        # -v (not --mount) so a missing folder is created, as users expect from docker run -v,
        # and because `up` sends the same SOURCE:TARGET:MODE as Binds: what render prints is
        # what up does. A ':' in either path cannot be said that way; the profile refuses it.
        return ["-v", f"{mount.source}:{mount.target}" + (":ro" if mount.readonly else "")]
    parts = [f"type={mount.type}", f"source={mount.source}", f"target={mount.target}"]
    if mount.readonly:
        parts.append("readonly")
    if mount.type == "volume":
        parts += [f"volume-label={k}={v}" for k, v in volume_labels.items()]
    return ["--mount", ",".join(_csv_field(part) for part in parts)]


def _csv_field(text: str) -> str:
    """The docker CLI reads --mount as one CSV record: quote a field holding , or "."""
    return '"' + text.replace('"', '""') + '"' if any(c in text for c in ',"') else text


def docker_run_argv(spec: ContainerSpec) -> list[str]:
    """The `docker run -d …` equivalent of `spec`, as an argument list."""
    argv = ["docker", "run", "-d", "--name", spec.name, "--hostname", spec.hostname]
    if spec.init:
        argv.append("--init")
    for opt in spec.security_opt:
        argv += ["--security-opt", opt]
    if spec.network is not None:
        argv += ["--network", spec.network]
    if not spec.gpus_declared:
        argv += _gpu_flag(spec.gpus)
    if spec.shm_size is not None:
        argv += ["--shm-size", sizes.format_size(spec.shm_size)]
    if spec.ipc is not None:
        argv += ["--ipc", spec.ipc]
    if spec.memory is not None:
        argv += ["--memory", sizes.format_size(spec.memory)]
    if spec.nano_cpus is not None:
        argv += ["--cpus", f"{spec.nano_cpus / 1e9:g}"]
    if spec.pids_limit is not None:
        argv += ["--pids-limit", str(spec.pids_limit)]
    if spec.disk is not None:
        argv += ["--storage-opt", f"size={sizes.format_size(spec.disk)}"]
    for port in spec.ports:
        argv += ["-p", _publish(port)]
    for mount in spec.mounts:
        argv += _mount_args(mount, spec.volume_labels)
    for env_file in spec.env_files:
        argv += ["--env-file", env_file]
    for key, value in spec.env.items():
        argv += ["-e", f"{key}={value}"]
    for key, value in spec.labels.items():
        argv += ["--label", f"{key}={value}"]
    if spec.workdir:
        argv += ["-w", spec.workdir]
    if spec.user:
        argv += ["--user", spec.user]
    argv.append(spec.image)
    argv += list(spec.command or ())
    return argv


def docker_build_argv(spec: ContainerSpec) -> list[str] | None:
    """The `docker build` that makes the image of a `build:` profile; None for a plain image."""
    if spec.build is None:
        return None
    argv = ["docker", "build", "-t", spec.image, "-f", f"{spec.build.context}/{spec.build.dockerfile}"]
    for key, value in spec.build.args.items():
        argv += ["--build-arg", f"{key}={value}"]
    if spec.build.target:
        argv += ["--target", spec.build.target]
    return [*argv, spec.build.context]


def shell_command(argv: list[str]) -> str:
    """`argv` quoted for a POSIX shell, copy-pastable."""
    return shlex.join(argv)
