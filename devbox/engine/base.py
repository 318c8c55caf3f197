"""What every engine backend offers, in devbox's own types, and the errors verbs can tell apart.

The verbs, placement and access talk to an engine only through `Engine`: boxes come back as
`Box`, logs as lines, the engine itself as `EngineFacts`. What a backend's API speaks (Docker's
JSON) stays inside its subpackage. `devbox.engine.connect()` picks the backend; the in-memory
`devbox.engine.fake.FakeEngine` satisfies the same protocol for unit tests of the verbs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from devbox.errors import DevboxError, EngineUnreachable

if TYPE_CHECKING:
    from devbox.box.spec import ContainerSpec
    from devbox.box.state import Box


class EngineUnavailable(EngineUnreachable):
    """The engine does not answer (kind engine-unreachable, exit 6)."""


class BoxFailed(DevboxError):
    """The engine refused to create or start the box."""


class NameTaken(BoxFailed):
    """A container of this name appeared between looking and creating (a concurrent `up`)."""


@dataclass(frozen=True)
class EngineFacts:
    """What `devbox doctor` reports about the engine: its version and what it can attach."""

    product: str  # "Docker"
    version: str
    api_version: str
    runtimes: tuple[str, ...] = ()  # container runtimes it knows ("runc", "nvidia")
    cdi_dirs: tuple[str, ...] = ()  # where it reads CDI device specs (GPUs without the nvidia runtime)
    storage_root: str = ""  # where it keeps images, on its own host
    storage_driver: str = ""  # "overlay2", "btrfs", ...: whether a box's disk can be capped
    backing_fs: str = ""  # the file system under the storage driver ("xfs", "extfs")


@dataclass(frozen=True)
class PullEvent:
    """One step of an image pull: a status ("Pull complete") for a layer or the whole image."""

    status: str
    layer: str = ""  # "" when the status is about the image as a whole
    current: int | None = None  # bytes so far, when the step moves a progress bar
    total: int | None = None


@dataclass(frozen=True)
class BuiltImage:
    """An image devbox built for a box (its devbox.owner label): what `prune --images` weighs."""

    id: str
    tags: tuple[str, ...]
    owner: str
    box: str
    size: int  # bytes
    created: float  # seconds since the epoch
    in_use: bool = False  # a container (any state, any owner) was made from it


@dataclass(frozen=True)
class ImageBuild:
    """An image to build: its context folder (read as the caller), Dockerfile in it, tag, args."""

    context: str
    dockerfile: str  # relative to the context
    tag: str
    args: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    target: str | None = None


@dataclass(frozen=True)
class RunCommands:
    """The docker CLI lines that would make a box by hand: what `devbox render` prints."""

    build: list[str] | None  # `docker build …` for a `build:` profile, else None
    run: list[str]  # `docker run -d …`


class LogFollow(Protocol):
    """A box's log being followed in the background until `close()`."""

    def lines(self, deadline: float, tick: float = 0.25) -> Iterator[str | None]:
        """Complete lines as they come; None every `tick` s of silence; ends at EOF or `deadline`."""
        ...

    def close(self) -> None:
        """Stop following."""
        ...


class Engine(Protocol):
    """Box-level operations on one container engine.

    `container` arguments take a container's id or name. A missing container is None on
    reading and fine on removing. Errors are DevboxErrors that say how to fix them.
    """

    host: str  # the engine's address: names the host-wide locks; doctor shows it
    # Volumes create() made in this process: a box that then fails takes them back, never others.
    volumes_made: list[str]

    # --- reading -------------------------------------------------------------------------

    def facts(self) -> EngineFacts:
        """The engine's version and configuration (EngineUnavailable if it does not answer)."""
        ...

    def inspect(self, container: str) -> Box | None:
        """The full view of a container (with `config`), or None; whoever owns it."""
        ...

    def find(self, container: str, owner: str) -> Box | None:
        """`owner`'s box container named `container` (full view), or None; another owner's is refused."""
        ...

    def list_boxes(self, owner: str | None) -> list[Box]:
        """All devbox boxes (one owner's, or everyone's); the summary view, without `config`."""
        ...

    def created_ns(self, container: str) -> int:
        """When the engine created the container, in nanoseconds (0 if it is gone): orders GPU races."""
        ...

    def image_exists(self, ref: str) -> bool:
        """True when `ref` is in the engine's image store."""
        ...

    def image_labels(self, ref: str) -> dict[str, str] | None:
        """Labels of a local image (None when the engine does not have it)."""
        ...

    def image_env(self, ref: str) -> dict[str, str] | None:
        """The environment a local image sets (its ENV lines; None when the engine does not have it)."""
        ...

    def volumes(self, owner: str, box: str | None = None) -> list[str]:
        """Names of an owner's devbox volumes, optionally only those made for `box`."""
        ...

    def volume_users(self, volume: str) -> list[str]:
        """Containers (any state) that mount `volume`."""
        ...

    # --- images ----------------------------------------------------------------------------

    def pull(self, ref: str, on_event: Callable[[PullEvent], None]) -> None:
        """Pull `ref`, reporting each step (per layer, with bytes where a bar moves)."""
        ...

    def build(self, spec: ContainerSpec, no_cache: bool, on_line: Callable[[str], None]) -> None:
        """Build the image of a `build:` profile, streaming its output lines."""
        ...

    def build_image(self, request: ImageBuild, no_cache: bool, on_line: Callable[[str], None]) -> None:
        """Build any image (`devbox image build`), streaming its output lines."""
        ...

    def image_id(self, ref: str) -> str | None:
        """The id of a local image (None when the engine does not have it)."""
        ...

    def remove_image(self, ref: str) -> bool:
        """Remove an image (never forced); False when a container, in any state, uses it."""
        ...

    def built_images(self, owner: str | None) -> list[BuiltImage]:
        """Images devbox built, `owner`'s only unless None."""
        ...

    # --- containers ------------------------------------------------------------------------

    def create(
        self, spec: ContainerSpec, env: dict[str, str], extra_labels: dict[str, str] | None = None
    ) -> str:
        """Create (not start) the box's container, its missing volumes and network; returns its id.

        `env`: the final environment; `extra_labels`: labels outside the spec hash. A volume
        of another owner is refused; NameTaken when the name was taken meanwhile. A spec with
        a `network` joins that owner's network, made on demand (concurrent creates both
        succeed); one of that name devbox did not make for the owner is refused.
        """
        ...

    def put_files(
        self, container: str, files: dict[str, tuple[str, int]], owner: tuple[int, int] | None = None
    ) -> None:
        """Copy files ({absolute path: (text, mode)}) into a container before it starts.

        Owned by root, or by `owner` (uid, gid): a box that runs as its user must read them.
        """
        ...

    def has_file(self, container: str, path: str) -> bool:
        """True when `path` exists in the container (running or not): what put_files copied in."""
        ...

    def own_folders(self, container: str, folders: list[str], uid: int, gid: int) -> None:
        """Before start: make `folders` (fresh volume roots) belong to uid:gid."""
        ...

    def chown_volumes(self, image: str, volumes: dict[str, str], owner: str) -> bool:
        """Give `volumes` ({name: mount point}) to `owner` (uid:gid or name:); False if that failed."""
        ...

    def start(self, container: str) -> None:
        """Start a created or stopped container."""
        ...

    def stop(self, container: str, timeout: int = 10) -> None:
        """Stop a container (killed after `timeout` s); gone is fine."""
        ...

    def rename(self, container: str, name: str) -> None:
        """Give a container another name (NameTaken if a container already has it)."""
        ...

    def remove(self, container: str) -> None:
        """Force-remove a container; gone is fine."""
        ...

    def remove_if_stopped(self, container: str) -> bool:
        """Remove a container unless it runs (never forced): False when it runs now; gone is fine."""
        ...

    def remove_volume(self, name: str) -> bool:
        """Remove a volume; False if a container still uses it. Gone already is fine."""
        ...

    def remove_volumes(self, names: list[str]) -> None:
        """Remove volumes made for a box that then failed (never older ones); they leave volumes_made."""
        ...

    # --- logs and exec ---------------------------------------------------------------------

    def stream_logs(
        self,
        container: str,
        follow: bool,
        tail: int | str = "all",
        since: float | None = None,
        tty: bool | None = None,
    ) -> Iterator[bytes]:
        """The log as byte chunks, following new output if asked. `tty`: None = look it up."""
        ...

    def log_lines(
        self, container: str, tail: int | str = "all", since: float | None = None, tty: bool | None = None
    ) -> list[str]:
        """The log as lines (not following); `since`: only what was printed from then on."""
        ...

    def follow(self, container: str, since: float | None = None, tty: bool | None = None) -> LogFollow:
        """Start following the log in the background."""
        ...

    def exec(
        self,
        container: str,
        argv: list[str],
        user: str = "",
        env: dict[str, str] | None = None,
        on_line: Callable[[str], None] | None = None,
        workdir: str = "",
    ) -> tuple[int, str]:
        """Run a command in a running box and collect its exit code and output.

        `on_line` gets each output line as it comes (a solve, a postCreateCommand); `env` is
        added to the box's environment for this command only.
        """
        ...
