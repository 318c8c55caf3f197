"""The fake engine's state: containers with their logs, volumes, images, and what tests scripted.

Plain data plus the view a real engine gives of a container (`FakeContainer.box`); the
behaviour is in devbox/engine/fake.py.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from devbox.box import labels
from devbox.box.spec import ContainerSpec
from devbox.box.state import Box, BoxConfig, MountInfo, Published, gpus_from_label, port_names_from_label

# Where the devbox image protocol (docs/image.md) finds the Jupyter token devbox copied in.
TOKEN_FILE = "/run/devbox/jupyter_token"


@dataclass
class Script:
    """What a box does when it starts: print `lines` (None: what its ports promise), maybe exit."""

    lines: list[str] | None = None
    exit_code: int | None = None  # set: the box exits with this code right after printing


@dataclass
class FakeContainer:
    """A container of the fake engine, with what it printed."""

    id: str
    spec: ContainerSpec
    env: dict[str, str]
    labels: dict[str, str]
    created: float
    created_ns: int
    status: str = "created"
    started_at: float | None = None
    exit_code: int | None = None
    host_ports: dict[int, int] = field(default_factory=dict)  # while running
    files: dict[str, str] = field(default_factory=dict)
    files_owner: tuple[int, int] | None = None  # put_files' owner (None: root)
    log: list[tuple[float, str]] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.spec.name

    def box(self, full: bool) -> Box:
        """As the engine shows it: the full view (inspect) or the summary (a listing)."""
        c = self
        lab = c.labels
        names = port_names_from_label(lab.get(labels.PORTS, ""))
        address = {p.container: p.address for p in c.spec.ports}
        ports = tuple(
            Published(name, port, c.host_ports.get(port), address.get(port) if port in c.host_ports else None)
            for port, name in names.items()
        )
        status_text = {"running": "Up 1 second", "created": "Created"}.get(
            c.status, f"Exited ({c.exit_code})"
        )
        shown = labels.pinned_sources(lab)
        mounts = tuple(
            MountInfo(m.type, shown.get(m.source, m.source), m.target, m.readonly) for m in c.spec.mounts
        )
        config = BoxConfig(
            env=dict(c.env),
            user=c.spec.user or "",
            workdir=c.spec.workdir or "",
            command=tuple(c.spec.command or ()),
            binds=mounts,
            host_ports={p.container: p.host for p in c.spec.ports},
        )
        return Box(
            id=c.id,
            container=c.name,
            name=lab.get(labels.BOX, ""),
            owner=lab.get(labels.OWNER, ""),
            profile=lab.get(labels.PROFILE, ""),
            image=c.spec.image,
            status=c.status,
            status_text=status_text,
            created=c.created,
            spec_hash=lab.get(labels.SPEC_HASH, ""),
            gpus=gpus_from_label(lab.get(labels.GPUS, "")),
            ports=ports,
            mounts=mounts,
            started_at=c.started_at if full else None,
            exit_code=c.exit_code,
            labels=dict(lab),
            shm_size=c.spec.shm_size,
            memory=c.spec.memory,
            nano_cpus=c.spec.nano_cpus,
            pids_limit=c.spec.pids_limit,
            config=config if full else None,
        )

    def promised_lines(self) -> list[str]:
        """What a devbox image prints: its Jupyter URL (with the token it was given) and ssh line."""
        c = self
        names = set(port_names_from_label(c.labels.get(labels.PORTS, "")).values())
        lines = ["box starting"]
        ports = {p.name: p.container for p in c.spec.ports}
        if "jupyter" in names:
            token = c.files.get(TOKEN_FILE, "").strip() or secrets.token_hex(24)
            lines.append(f"[I ServerApp] http://127.0.0.1:{ports['jupyter']}/lab?token={token}")
        if "ssh" in names:
            user = c.env.get("DEVBOX_USER_NAME", "root")
            lines.append(f"devbox-ready ssh user={user} port={ports['ssh']}")
        return lines


@dataclass
class FakeStore:
    """The engine's state, shared by every client of it (see FakeEngine.client)."""

    host: str
    containers: dict[str, FakeContainer] = field(default_factory=dict)  # by id
    volumes: dict[str, dict[str, str]] = field(default_factory=dict)  # name → labels
    networks: dict[str, dict[str, str]] = field(default_factory=dict)  # name → labels (lab mode)
    images: dict[str, dict[str, str]] = field(default_factory=dict)  # local: ref → labels
    image_envs: dict[str, dict[str, str]] = field(default_factory=dict)  # ref → its ENV, if any
    registry: dict[str, dict[str, str]] = field(default_factory=dict)  # pullable: ref → labels
    scripts: dict[str, Script] = field(default_factory=dict)  # container name → what it does
    start_failures: dict[str, str] = field(default_factory=dict)  # container name → engine message
    clashes: dict[str, str] = field(default_factory=dict)  # container name → owner who takes it
    calls: list[tuple[str, str]] = field(default_factory=list)  # (verb, container name) in order
    # Called as each create begins, outside the lock: a test can hold creators there (a
    # barrier) so that racing `up`s have all picked their GPUs before any creates.
    before_create: Callable[[], None] | None = None
    lock: threading.RLock = field(default_factory=threading.RLock)
    now: float = 1_800_000_000.0
    next_port: int = 40000

    def tick(self) -> float:
        """A clock that moves on every event, so `since` and creation order are exact."""
        self.now += 1.0
        return self.now

    def get(self, container: str) -> FakeContainer | None:
        """A container by id or name."""
        found = self.containers.get(container)
        return found or next((c for c in self.containers.values() if c.name == container), None)


class FakeFollow:
    """A followed log that ends where the box's printed lines do (no waiting in tests)."""

    def __init__(self, lines: list[str]) -> None:
        self._lines = lines

    def lines(self, deadline: float, tick: float = 0.25) -> Iterator[str | None]:
        """Every line at once, then the end."""
        yield from self._lines

    def close(self) -> None:
        """Nothing to let go of."""
