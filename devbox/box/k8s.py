"""ContainerSpec → Kubernetes manifests (`devbox render --format k8s`). Pure: data in, data out.

A box becomes one Pod, plus a PersistentVolumeClaim per named volume. What has no faithful
Kubernetes form is not guessed at: it goes into `Manifests.notes`, which the YAML starts with as
`# ` comment lines and the CLI repeats on stderr. docs/scaling.md says why each choice was made.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any

import yaml

from devbox.box import labels
from devbox.box.spec import ContainerSpec, Mount, volume_name
from devbox.profile.model import Profile

GPU_RESOURCE = "nvidia.com/gpu"  # the NVIDIA device plugin's extended resource
DEFAULT_STORAGE = "10Gi"  # what each PersistentVolumeClaim asks for (docs/scaling.md)
MANAGED_BY = "app.kubernetes.io/managed-by"
BACKEND = "kubernetes"
CONTAINER = "box"  # the pod's one container

# A label value (and a label key's name part): 63 characters at most, alphanumeric at both ends.
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_PORT_NAME = re.compile(r"^(?=.*[a-z])[a-z0-9]+(-[a-z0-9]+)*$")  # IANA_SVC_NAME, at most 15


@dataclass(frozen=True)
class Manifests:
    """The documents to apply, and what the profile asks for that they do not (or not exactly) do."""

    documents: tuple[dict[str, Any], ...]
    notes: tuple[str, ...]


def is_label_value(text: str) -> bool:
    """True when `text` may be a Kubernetes label value."""
    return len(text) <= 63 and bool(_LABEL_VALUE.match(text))


def is_qualified_name(key: str) -> bool:
    """True when `key` may be a label or annotation key: [DNS-subdomain prefix/]name."""
    prefix, slash, name = key.rpartition("/")
    if slash and not (len(prefix) <= 253 and _DNS_SUBDOMAIN.match(prefix)):
        return False
    return 0 < len(name) <= 63 and is_label_value(name)


def is_dns_label(text: str) -> bool:
    """True when `text` may name a pod, claim, volume or host (RFC 1123 label, 63 at most)."""
    return len(text) <= 63 and bool(_DNS_LABEL.match(text))


def dns_label(text: str) -> str:
    """`text` as an RFC 1123 label. A changed name gets a short hash of the original, so two
    names that differ only where Kubernetes is stricter (case, `_`, `.`) stay two names."""
    if is_dns_label(text):
        return text
    cleaned = re.sub(r"-+", "-", re.sub(r"[^a-z0-9-]", "-", text.lower())).strip("-")
    digest = hashlib.sha256(text.encode()).hexdigest()[:6]
    return f"{cleaned[:56].rstrip('-')}-{digest}" if cleaned else f"x-{digest}"


def label_value(text: str) -> str:
    """`text` as a label value: disallowed characters become '-', ends trimmed, 63 at most."""
    if is_label_value(text):
        return text
    cleaned = re.sub(r"^[^A-Za-z0-9]+", "", re.sub(r"[^A-Za-z0-9_.-]", "-", text))
    return re.sub(r"[^A-Za-z0-9]+$", "", cleaned[:63])


def quantity(size: int) -> str:
    """Bytes as the shortest exact Kubernetes quantity: 17179869184 → "16Gi"."""
    for unit, factor in (("Ti", 1 << 40), ("Gi", 1 << 30), ("Mi", 1 << 20), ("Ki", 1 << 10)):
        if size and size % factor == 0:
            return f"{size // factor}{unit}"
    return str(size)


def cpu_quantity(nano_cpus: int) -> str:
    """Nano-CPUs as a CPU quantity: whole CPUs ("4"), else millicores ("1500m"), at least 1m."""
    if nano_cpus % 1_000_000_000 == 0:
        return str(nano_cpus // 1_000_000_000)
    return f"{max(1, round(nano_cpus / 1_000_000))}m"


def _metadata(name: str, spec_labels: dict[str, str], notes: list[str]) -> dict[str, Any]:
    """Labels where key and value are label-shaped; everything else, exact, as annotations.

    `devbox.owner` and `devbox.box` are always labels (selectors need them): a value that is
    no label value is cleaned up there and kept verbatim as an annotation.
    """
    meta_labels: dict[str, str] = {MANAGED_BY: "devbox"}
    annotations: dict[str, str] = {}
    for key, value in {**spec_labels, labels.BACKEND: BACKEND}.items():
        if not is_qualified_name(key):
            notes.append(f"label {key!r}: not a Kubernetes label key, left out")
        elif is_label_value(value):
            meta_labels[key] = value
        else:
            annotations[key] = value
            if key in (labels.OWNER, labels.BOX):
                meta_labels[key] = label_value(value)
    meta: dict[str, Any] = {"name": name, "labels": meta_labels}
    if annotations:
        meta["annotations"] = annotations
    return meta


def _gpu_limit(spec: ContainerSpec, profile: Profile, notes: list[str]) -> int:
    """How many GPUs the pod asks the scheduler for; the scheduler, not devbox, picks which."""
    gpus = spec.gpus
    if gpus.kind == "count":
        return gpus.count
    if gpus.kind == "devices":
        notes.append(
            f"gpus: {gpus.describe()} ({profile.origin('gpus')}): Kubernetes cannot ask for "
            f"particular GPUs; rendered as {len(gpus.devices)} GPU(s) the scheduler picks"
        )
        return len(gpus.devices)
    if gpus.kind == "all":
        # A pod asks for a number and Kubernetes has no "every GPU of the node": one is the
        # request that still gets a GPU on any GPU node; the note says how to ask for more.
        notes.append(
            f"gpus: all ({profile.origin('gpus')}): a pod asks for a number of GPUs; rendered as "
            f"{GPU_RESOURCE}: 1 (give --gpus N, or gpus: N in the profile, for more)"
        )
        return 1
    return 0


def _run_as(spec: ContainerSpec, uid: int, gid: int, notes: list[str]) -> tuple[int, int]:
    """The numeric user the pod runs as: the profile's numeric user, else the caller.

    Kubernetes takes numbers only, and a per-user pod is never root unless the caller is.
    """
    user = (spec.user or "") if not spec.protocol else f"{spec.env.get('DEVBOX_UID', '')}"
    if spec.protocol and spec.env.get("DEVBOX_GID"):
        user += f":{spec.env['DEVBOX_GID']}"
    name, _, group = user.partition(":")
    if name.isdecimal() and int(name) != 0:
        return int(name), int(group) if group.isdecimal() else gid
    if name and not (name in ("0", "root") and uid == 0):
        notes.append(f"user {name}: a pod runs as a number and never as another user; runs as {uid}:{gid}")
    if uid == 0:
        notes.append("runs as root because you are root: clusters enforcing non-root pods refuse it")
    return uid, gid


def _port(
    port_name: str, container: int, host: int | None, notes: list[str], taken: set[str]
) -> dict[str, Any]:
    entry: dict[str, Any] = {"containerPort": container, "protocol": "TCP"}
    name = re.sub(r"-+", "-", port_name.replace("_", "-")).strip("-")
    if name in taken:
        # my_port and my-port are two devbox ports but one Kubernetes name: the API server
        # refuses a container whose port names repeat.
        notes.append(f"port {port_name}: its Kubernetes name {name} is another port's already; unnamed")
    elif len(name) <= 15 and _PORT_NAME.match(name):
        entry["name"] = name
        taken.add(name)
    else:
        notes.append(f"port {port_name}: no Kubernetes port name (15 characters, a-z 0-9 -); unnamed")
    if host is not None:
        notes.append(
            f"port {port_name}: host port {host} left out (hostPort would open it on the node); "
            f"reach it with kubectl port-forward"
        )
    return entry


def _volumes(
    spec: ContainerSpec, storage: str, notes: list[str]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """Pod volumes, the container's mounts, and one claim per named volume."""
    volumes: list[dict[str, Any]] = []
    mounts: list[dict[str, Any]] = []
    claims: list[dict[str, Any]] = []
    if spec.shm_size is not None:
        # /dev/shm as tmpfs: a Memory emptyDir, capped at shm_size (and counted as the pod's memory).
        volumes.append(
            {"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": quantity(spec.shm_size)}}
        )
        mounts.append({"name": "shm", "mountPath": "/dev/shm"})
    claimed: dict[str, str] = {}
    for mount in spec.mounts:
        if mount.type == "bind":
            notes.append(_bind_note(mount))
            continue
        claim = dns_label(mount.source)
        if claim not in claimed:
            claimed[claim] = dns_label(f"vol-{_short(spec, mount)}")
            volumes.append({"name": claimed[claim], "persistentVolumeClaim": {"claimName": claim}})
            claims.append(_claim(claim, spec.volume_labels, storage, notes))
        entry: dict[str, Any] = {"name": claimed[claim], "mountPath": mount.target}
        if mount.readonly:
            entry["readOnly"] = True
        mounts.append(entry)
    return volumes, mounts, claims


def _short(spec: ContainerSpec, mount: Mount) -> str:
    """The volume's name as the profile wrote it (`data`), without the owner prefix."""
    prefix = volume_name(spec.owner, "")
    return mount.source[len(prefix) :] if mount.source.startswith(prefix) else mount.source


def _bind_note(mount: Mount) -> str:
    # hostPath would hand a per-user pod a path on whatever node it lands on, as the kubelet's
    # user: no ownership check, and the cluster's admission policies usually forbid it.
    return (
        f"bind mount {mount.source} -> {mount.target} left out: a pod gets no host folders "
        f"(hostPath); use a named volume (NAME:{mount.target}) and copy the files in"
    )


def _claim(name: str, volume_labels: dict[str, str], storage: str, notes: list[str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": _metadata(name, volume_labels, notes),
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": storage}}},
    }


def _resources(spec: ContainerSpec, gpus: int, notes: list[str]) -> dict[str, Any]:
    """Limits, and requests equal to them: the scheduler reserves what the box may use."""
    limits: dict[str, Any] = {}
    if spec.nano_cpus is not None:
        limits["cpu"] = cpu_quantity(spec.nano_cpus)
    if spec.memory is not None:
        limits["memory"] = quantity(spec.memory)
    if spec.disk is not None:
        limits["ephemeral-storage"] = quantity(spec.disk)  # the writable layer, logs, disk emptyDirs
    if spec.pids_limit is not None:
        notes.append(
            f"resources.pids {spec.pids_limit} left out: a pod has no PID limit (the node's kubelet sets one)"
        )
    out: dict[str, Any] = {}
    if limits:
        out["requests"] = dict(limits)
    if gpus:
        limits[GPU_RESOURCE] = gpus  # limits only: Kubernetes sets the request to match
    if limits:
        out["limits"] = limits
    return out


def manifests(
    spec: ContainerSpec, profile: Profile, uid: int, gid: int, storage: str = DEFAULT_STORAGE
) -> Manifests:
    """The Pod (and claims) for `spec`, run by uid:gid unless the profile names a numeric user.

    No namespace is set: `kubectl apply -n USER` picks one, so each person's quota applies.
    """
    notes: list[str] = []
    name = dns_label(spec.name)
    if spec.build is not None:
        notes.append(
            f"build: the image {spec.image} is built on your machine; push it to a registry "
            f"the cluster pulls from and set image: to that"
        )
    # What devbox itself does in a box after it starts (devcontainer.json's commands, conda
    # environments) needs devbox at the box: a pod made by kubectl gets none of it.
    for key in ("post_create", "post_start", "environments"):
        if getattr(profile, key, ()):
            notes.append(f"{key} ({profile.origin(key)}): devbox runs these itself after `up`; not rendered")
    gpus = _gpu_limit(spec, profile, notes)
    run_uid, run_gid = _run_as(spec, uid, gid, notes)
    volumes, mounts, claims = _volumes(spec, storage, notes)
    container: dict[str, Any] = {"name": CONTAINER, "image": spec.image}
    if spec.command:
        container["args"] = list(spec.command)  # as docker run's COMMAND: replaces CMD, keeps ENTRYPOINT
    if spec.workdir:
        container["workingDir"] = spec.workdir
    env_from = []
    for index, path in enumerate(spec.env_files):
        secret = f"{name[:50]}-env-{index}"
        env_from.append({"secretRef": {"name": secret}})
        notes.append(
            f"env_file {path}: make its Secret first: "
            f"kubectl create secret generic {secret} --from-env-file={path}"
        )
    if env_from:
        container["envFrom"] = env_from
    if spec.env:
        container["env"] = [{"name": key, "value": value} for key, value in spec.env.items()]
    if spec.ports:
        taken: set[str] = set()
        container["ports"] = [_port(p.name, p.container, p.host, notes, taken) for p in spec.ports]
    resources = _resources(spec, gpus, notes)
    if resources:
        container["resources"] = resources
    security: dict[str, Any] = {
        "runAsUser": run_uid,
        "runAsGroup": run_gid,
        "allowPrivilegeEscalation": False,  # no-new-privileges: setuid files raise nobody
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    if run_uid != 0:
        security["runAsNonRoot"] = True  # with the above: the "restricted" Pod Security Standard
    container["securityContext"] = security
    if mounts:
        container["volumeMounts"] = mounts
    pod_spec: dict[str, Any] = {
        "hostname": dns_label(spec.hostname),
        "automountServiceAccountToken": False,  # a dev box has no business with the cluster's API
        # fsGroup makes a fresh claim writable by the box's user, as devbox chowns a new volume.
        "securityContext": {"fsGroup": run_gid},
        "containers": [container],
    }
    if run_uid != 0 and any(p.container < 1024 for p in spec.ports):
        # Docker lets a box's user bind port 22; a pod's runtime may not. This sysctl is one
        # Kubernetes counts as safe (the "restricted" standard allows it).
        sysctl = {"name": "net.ipv4.ip_unprivileged_port_start", "value": "0"}
        pod_spec["securityContext"]["sysctls"] = [sysctl]
    if spec.init:
        # docker run --init's job (reaping zombies) is done by the pause process as PID 1.
        pod_spec["shareProcessNamespace"] = True
    if volumes:
        pod_spec["volumes"] = volumes
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": _metadata(name, spec.labels, notes),
        "spec": pod_spec,
    }
    return Manifests((pod, *claims), tuple(notes))


def to_yaml(result: Manifests, header: str = "") -> str:
    """Multi-document YAML, after `# ` comment lines: the header, then every note."""
    lines = [f"# {header}"] if header else []
    if result.notes:
        lines.append("# Left out or changed (said on stderr too):")
        lines += [f"#   - {note}" for note in result.notes]
    body = yaml.safe_dump_all(
        result.documents, sort_keys=False, explicit_start=True, default_flow_style=False, width=4096
    )
    return "".join(f"{line}\n" for line in lines) + body


def as_list(result: Manifests) -> dict[str, Any]:
    """The documents as one `v1 List` (what `--json` prints; kubectl applies it as JSON)."""
    return {"apiVersion": "v1", "kind": "List", "items": list(result.documents)}
