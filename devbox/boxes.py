"""A box as the engine reports it, read back from labels: what `ls`, `info` and `down` show.

Pure: built from the dicts the Docker API returns (container summaries or inspect output).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from devbox import labels
from devbox.errors import DevboxError


@dataclass(frozen=True)
class Published:
    """A named container port and where the host reaches it."""

    name: str
    container: int
    host: int | None
    address: str | None


@dataclass(frozen=True)
class MountInfo:
    """A mount of a box: a named volume or a bind."""

    type: str
    source: str
    target: str
    readonly: bool


@dataclass(frozen=True)
class Box:
    """A devbox container."""

    id: str
    container: str
    name: str
    owner: str
    profile: str
    image: str
    status: str
    status_text: str
    created: float
    spec_hash: str
    gpus: tuple[str, ...]
    ports: tuple[Published, ...]
    mounts: tuple[MountInfo, ...] = ()
    started_at: float | None = None
    exit_code: int | None = None
    labels: dict[str, str] = field(default_factory=dict)
    shm_size: int | None = None
    memory: int | None = None
    nano_cpus: int | None = None
    pids_limit: int | None = None
    tty: bool = False  # from inspect only: whether its log comes as one raw stream

    @property
    def running(self) -> bool:
        """True while the container runs."""
        return self.status == "running"

    @property
    def gpus_declared(self) -> bool:
        """True when the box's GPUs come from a declared inventory (no device attached)."""
        return self.labels.get(labels.GPUS_DECLARED) == "1"

    @property
    def inside(self) -> dict[str, str]:
        """What the image says is inside (devbox.image.* labels): python, jupyter, cuda versions."""
        prefix = "devbox.image."
        return {
            k[len(prefix) :]: v
            for k, v in self.labels.items()
            if k.startswith(prefix) and v not in ("", "none")
        }

    def port(self, name: str) -> Published | None:
        """The published port called `name`, if the box has one."""
        return next((p for p in self.ports if p.name == name), None)


def gpus_from_label(value: str) -> tuple[str, ...]:
    """`devbox.gpus` label → list form: none → (), all → ("all",), 0,3 → ("0", "3")."""
    if not value or value == "none":
        return ()
    return tuple(value.split(","))


def port_names_from_label(value: str) -> dict[int, str]:
    """`devbox.ports` label (jupyter:8888,ssh:22) → {8888: "jupyter", 22: "ssh"}."""
    names = {}
    for item in filter(None, value.split(",")):
        name, _, port = item.partition(":")
        if port.isdecimal():
            names[int(port)] = name
    return names


def created_ns(text: str) -> int:
    """Docker's RFC 3339 timestamp with nanoseconds as integer nanoseconds (exact ordering)."""
    head, _, frac = text.rstrip("Z").partition(".")
    seconds = int(datetime.fromisoformat(head).replace(tzinfo=UTC).timestamp())
    return seconds * 1_000_000_000 + int((frac + "000000000")[:9] or 0)


def _timestamp(text: str | None) -> float | None:
    if not text or text.startswith("0001-"):
        return None
    # Docker prints nanoseconds; fromisoformat takes at most microseconds.
    head, _, frac = text.rstrip("Z").partition(".")
    frac = (frac + "000000")[:6]
    return datetime.fromisoformat(f"{head}.{frac}").replace(tzinfo=UTC).timestamp()


def _mounts(items: list[dict[str, Any]] | None) -> tuple[MountInfo, ...]:
    # Summaries and inspect output describe mounts the same way.
    return tuple(
        MountInfo(
            m.get("Type", ""), m.get("Name") or m.get("Source", ""), m["Destination"], not m.get("RW", True)
        )
        for m in items or []
    )


def _from_labels(lab: dict[str, str]) -> dict[str, Any]:
    # What both engine views give the same way: everything devbox keeps in labels.
    return {
        "name": lab.get(labels.BOX, ""),
        "owner": lab.get(labels.OWNER, ""),
        "profile": lab.get(labels.PROFILE, ""),
        "spec_hash": lab.get(labels.SPEC_HASH, ""),
        "gpus": gpus_from_label(lab.get(labels.GPUS, "")),
        "labels": dict(lab),
    }


def from_summary(item: dict[str, Any]) -> Box:
    """A box from one entry of `GET /containers/json` (what `docker ps` reads)."""
    lab = item.get("Labels") or {}
    names = port_names_from_label(lab.get(labels.PORTS, ""))
    published: dict[int, Published] = {}
    for port in item.get("Ports") or []:
        private = int(port["PrivatePort"])
        if private in names and (private not in published or port.get("IP") not in ("::", "")):
            host = port.get("PublicPort")
            published[private] = Published(
                names[private], private, int(host) if host else None, port.get("IP")
            )
    for private, name in names.items():
        published.setdefault(private, Published(name, private, None, None))
    return Box(
        id=item["Id"],
        container=(item.get("Names") or ["/?"])[0].lstrip("/"),
        image=item.get("Image", ""),
        status=item.get("State", ""),
        status_text=item.get("Status", ""),
        created=float(item.get("Created", 0)),
        ports=tuple(published[p] for p in sorted(published, key=list(names).index)),
        mounts=_mounts(item.get("Mounts")),
        **_from_labels(lab),
    )


def from_inspect(info: dict[str, Any]) -> Box:
    """A box from `GET /containers/{id}/json` (what `docker inspect` reads)."""
    config, state, host_config = (
        info.get("Config") or {},
        info.get("State") or {},
        info.get("HostConfig") or {},
    )
    lab = config.get("Labels") or {}
    names = port_names_from_label(lab.get(labels.PORTS, ""))
    bound = (info.get("NetworkSettings") or {}).get("Ports") or {}
    ports = []
    for private, name in names.items():
        bindings = bound.get(f"{private}/tcp") or []
        # Prefer the IPv4 binding when the engine reports both families.
        binding = next(
            (b for b in bindings if ":" not in b.get("HostIp", "")), bindings[0] if bindings else None
        )
        host = int(binding["HostPort"]) if binding and binding.get("HostPort") else None
        ports.append(Published(name, private, host, binding.get("HostIp") if binding else None))
    return Box(
        id=info["Id"],
        container=info.get("Name", "").lstrip("/"),
        image=config.get("Image", ""),
        status=state.get("Status", ""),
        status_text=state.get("Status", ""),
        created=_timestamp(info.get("Created")) or 0.0,
        ports=tuple(ports),
        mounts=_mounts(info.get("Mounts")),
        started_at=_timestamp(state.get("StartedAt")),
        exit_code=state.get("ExitCode"),
        **_from_labels(lab),
        shm_size=host_config.get("ShmSize") or None,
        memory=host_config.get("Memory") or None,
        nano_cpus=host_config.get("NanoCpus") or None,
        pids_limit=host_config.get("PidsLimit") or None,
        tty=bool(config.get("Tty")),
    )


def check_owner(box: Box, owner: str) -> None:
    """Refuse to act on a box that merely shares the caller's container name.

    Names are devbox-<owner>-<box>, so owner `ann` with box `lee-nb` and owner `ann-lee`
    with box `nb` meet at one name; only the labels say whose box it is.
    """
    if box.owner != owner:
        raise DevboxError(
            f"the container name {box.container} is taken by {box.owner}'s box '{box.name}'",
            "give your box another name: the box is named after its profile file",
        )
