"""A box as the engine reports it, read back from labels: what `ls`, `info` and `down` show.

Pure data: each engine backend builds these from what its API returns (a listing gives the
summary view; looking one box up gives the full view, with `config`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from devbox.box import labels
from devbox.errors import Refused


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
class BoxConfig:
    """How the container was created (full view only): what `up` compares with a new spec."""

    env: dict[str, str] = field(default_factory=dict)
    user: str = ""  # "" = the image's default user
    workdir: str = ""  # "" = the image's default
    command: tuple[str, ...] = ()
    binds: tuple[MountInfo, ...] = ()  # the mounts asked for (not volumes the image declares)
    host_ports: dict[int, int | None] = field(default_factory=dict)  # container port → fixed host port


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
    tty: bool = False  # full view only: whether its log comes as one raw stream
    config: BoxConfig | None = None  # full view only

    @property
    def backend(self) -> str:
        """The engine backend that made the box (boxes from before the label are Docker's)."""
        return self.labels.get(labels.BACKEND) or "docker"

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


def check_owner(box: Box, owner: str) -> None:
    """Refuse to act on a box that merely shares the caller's container name.

    Names are devbox-<owner>-<box>, so owner `ann` with box `lee-nb` and owner `ann-lee`
    with box `nb` meet at one name; only the labels say whose box it is.
    """
    if box.owner != owner:
        raise Refused(
            f"the container name {box.container} is taken by {box.owner}'s box '{box.name}'",
            "give your box another name: the box is named after its profile file",
        )
