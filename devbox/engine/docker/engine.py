"""The engine adapter: box-level operations over the Docker Engine API.

All Docker traffic goes through here. Requests use `dockerapi` (standard library, fast) for
local and plain-TCP engines and docker-py's session otherwise; pulls and builds use
docker-py. Engine errors become DevboxErrors with a hint here, once. Removal tolerates
"already gone" (404) and "already being removed" (409), as dockerspawner does.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from devbox.box import labels, state
from devbox.engine.base import BuiltImage, EngineFacts, EngineUnavailable, ImageBuild, PullEvent
from devbox.engine.docker import decode, explain
from devbox.engine.docker.api import (
    ApiError,
    DockerAPI,
    Response,
    SocketTransport,
    can_reach_directly,
    demux,
    unreachable,
)
from devbox.engine.docker.logfollow import LogFollower
from devbox.errors import DevboxError

if TYPE_CHECKING:
    from devbox.box.spec import ContainerSpec


def connect(host: str, timeout: float, shown: str | None = None, tls: bool = False) -> DockerEngine:
    """A client of the Docker engine at `host` (`shown`: how errors name it, its context
    included; `tls`: its context holds TLS material, for docker-py). Nothing is sent yet."""
    shown = shown or host
    if can_reach_directly(host) and not tls and os.environ.get("DEVBOX_ENGINE_CLIENT") != "docker-py":
        try:
            transport = SocketTransport(host)
        except ValueError as exc:  # tcp://host:99999: urllib refuses the port
            raise EngineUnavailable(
                f"the engine address {host} is not valid: {exc}",
                "DOCKER_HOST takes unix:///path/to/docker.sock or tcp://HOST:PORT (a port from 1 to 65535)",
            ) from None
        return DockerEngine(DockerAPI(transport, timeout, shown), host)
    from devbox.engine.docker.dockerpy import DockerPyTransport

    try:
        return DockerEngine(DockerAPI(DockerPyTransport(int(timeout)), timeout, shown), host)
    except Exception as exc:  # docker-py wraps connection failures in many types
        raise unreachable(shown, exc) from None


class DockerEngine:
    """Box-level operations on one Docker engine: the `Engine` protocol over the Docker API."""

    def __init__(self, api: DockerAPI, host: str) -> None:
        self.api = api
        self.host = host
        # Volumes create() made in this process: a box that fails to start takes them back.
        self.volumes_made: list[str] = []

    def _call(self, method: str, path: str, body: Any = None, doing: str = "talking to it") -> Any:
        try:
            return self.api.call(method, path, body)
        except ApiError as exc:
            raise self.error(exc, doing) from None
        except OSError as exc:
            raise unreachable(self.host, exc) from None

    def call(self, method: str, path: str, body: Any = None, doing: str = "talking to it") -> Any:
        """One API call; engine errors as DevboxErrors (for the backend's helper modules)."""
        return self._call(method, path, body, doing)

    def get_or_none(self, path: str) -> Any:
        """A GET's answer, or None when the engine has no such thing (404)."""
        try:
            return self.api.call("GET", path)
        except ApiError as exc:
            if exc.status == 404 and exc.from_docker:
                # Docker's 404 says what is missing; a bare one is a web server, not an engine.
                return None
            raise self.error(exc, "reading from the engine") from None
        except OSError as exc:
            raise unreachable(self.host, exc) from None

    def error(self, exc: ApiError, doing: str) -> DevboxError:
        """The DevboxError (with its fix) for an engine error."""
        return explain.engine_error(exc, self.host, doing)

    # --- reading -------------------------------------------------------------------------

    def _inspect_json(self, container: str) -> dict[str, Any] | None:
        """Inspect output, or None if there is no such container."""
        result: dict[str, Any] | None = self.get_or_none(DockerAPI.path("/containers/{}/json", container))
        return result

    def facts(self) -> EngineFacts:
        """GET /version and /info: version, API version, runtimes, CDI dirs, storage root."""
        version = self._call("GET", "/version", doing="asking its version")
        info = self._call("GET", "/info", doing="asking for its configuration")
        runtimes = info.get("Runtimes") or {}
        return EngineFacts(
            "Docker",
            str(version.get("Version")),
            str(version.get("ApiVersion")),
            tuple(runtimes) if isinstance(runtimes, dict) else (),
            tuple(str(d) for d in info.get("CDISpecDirs") or []),
            str(info.get("DockerRootDir") or "/var/lib/docker"),
            str(info.get("Driver") or ""),
            # DriverStatus: [["Backing Filesystem", "xfs"], ["Supports d_type", "true"], ...]
            next(
                (str(v) for k, v, *_ in info.get("DriverStatus") or [] if k == "Backing Filesystem"),
                "",
            ),
        )

    def inspect(self, container: str) -> state.Box | None:
        """The full view of a container, or None; whoever owns it."""
        info = self._inspect_json(container)
        return decode.from_inspect(info) if info else None

    def created_ns(self, container: str) -> int:
        """When the engine created the container, in nanoseconds (0 if it is gone)."""
        info = self._inspect_json(container)
        return decode.created_ns(info["Created"]) if info else 0

    def find(self, container: str, owner: str) -> state.Box | None:
        """`owner`'s box container named `container`, or None; another owner's box is refused."""
        box = self.inspect(container)
        if box is not None:
            state.check_owner(box, owner)
        return box

    def list_boxes(self, owner: str | None) -> list[state.Box]:
        """All devbox boxes (one owner's, or everyone's) in one API call."""
        path = DockerAPI.path("/containers/json", all=1, filters={"label": labels.box_selector(owner)})
        return [decode.from_summary(item) for item in self._call("GET", path, doing="listing boxes")]

    def image_exists(self, ref: str) -> bool:
        """True when `ref` is in the engine's image store."""
        return self.get_or_none(DockerAPI.path("/images/{}/json", ref)) is not None

    def image_labels(self, ref: str) -> dict[str, str] | None:
        """Labels of a local image (None when the engine does not have it)."""
        info = self.get_or_none(DockerAPI.path("/images/{}/json", ref))
        return None if info is None else dict((info.get("Config") or {}).get("Labels") or {})

    def image_env(self, ref: str) -> dict[str, str] | None:
        """The environment a local image sets (None when the engine does not have it)."""
        info = self.get_or_none(DockerAPI.path("/images/{}/json", ref))
        if info is None:
            return None
        pairs = (item.partition("=") for item in (info.get("Config") or {}).get("Env") or [])
        return {key: value for key, _, value in pairs}

    def volumes(self, owner: str, box: str | None = None) -> list[str]:
        """Names of an owner's devbox volumes, optionally only those made for `box`."""
        selector = [f"{labels.OWNER}={owner}"] + ([f"{labels.BOX}={box}"] if box else [])
        found = (
            self._call("GET", DockerAPI.path("/volumes", filters={"label": selector})).get("Volumes") or []
        )
        return sorted(v["Name"] for v in found)

    def volume_users(self, volume: str) -> list[str]:
        """Containers (any state) that mount `volume`."""
        items = self._call("GET", DockerAPI.path("/containers/json", all=1, filters={"volume": [volume]}))
        return [(c.get("Names") or ["?"])[0].lstrip("/") for c in items]

    # --- images (docker-py: registry auth, build contexts) ----------------------------------

    def pull(self, ref: str, on_event: Callable[[PullEvent], None]) -> None:
        """Pull `ref`, reporting each step; errors inside the stream are raised."""
        from devbox.engine.docker import images

        images.pull(ref, on_event)

    def build(self, spec: ContainerSpec, no_cache: bool, on_line: Callable[[str], None]) -> None:
        """Build the image of a `build:` profile, streaming its output."""
        from devbox.engine.docker import images

        images.build(spec, no_cache, on_line, self.host)

    def build_image(self, request: ImageBuild, no_cache: bool, on_line: Callable[[str], None]) -> None:
        """Build any image (`devbox image build`), streaming its output."""
        from devbox.engine.docker import images

        images.build_image(request, no_cache, on_line, self.host)

    def image_id(self, ref: str) -> str | None:
        """The id of a local image (None when the engine does not have it)."""
        from devbox.engine.docker import images

        return images.image_id(self, ref)

    def remove_image(self, ref: str) -> bool:
        """Remove an image (never forced); False when a container uses it."""
        from devbox.engine.docker import images

        return images.remove_image(self, ref)

    def built_images(self, owner: str | None) -> list[BuiltImage]:
        """Images devbox built, `owner`'s only unless None."""
        from devbox.engine.docker import images

        return images.built_images(self, owner)

    # --- containers ------------------------------------------------------------------------

    def create(
        self, spec: ContainerSpec, env: dict[str, str], extra_labels: dict[str, str] | None = None
    ) -> str:
        """Create (not start) the box's container; returns its id. Volumes it made are undone on failure.

        A lab box's network (the owner's own bridge) is made first if missing, and kept:
        the owner's other boxes share it.
        """
        from devbox.engine.docker import volumes

        if spec.network is not None:
            from devbox.engine.docker import networks

            networks.ensure(self, spec.network, spec.owner)
        return volumes.create_container(self, spec, env, extra_labels or {})

    def remove_volumes(self, names: list[str]) -> None:
        """Remove volumes this process made for a box that then failed (never older ones).

        They are no longer "made": a later failure in this process must not remove a volume
        of the same name that someone made meanwhile.
        """
        for volume in list(names):  # `names` is often volumes_made itself
            self.remove_volume(volume)
            if volume in self.volumes_made:
                self.volumes_made.remove(volume)

    def put_files(
        self, container: str, files: dict[str, tuple[str, int]], owner: tuple[int, int] | None = None
    ) -> None:
        """Copy files ({absolute path: (text, mode)}), root's or `owner`'s, into a box before it starts."""
        from devbox.engine.docker import body

        try:
            self.api.put_tar(
                DockerAPI.path("/containers/{}/archive", container, path="/"), body.files_tar(files, owner)
            )
        except ApiError as exc:
            raise self.error(exc, "copying the box's keys in") from None

    def has_file(self, container: str, path: str) -> bool:
        """True when `path` exists in the container (running or not): what put_files copied in."""
        try:
            # GET, not HEAD: the answer to HEAD carries a length but no body, which the
            # transport would wait for. The files devbox copies in are a few hundred bytes.
            self.api.raw("GET", DockerAPI.path("/containers/{}/archive", container, path=path))
        except ApiError as exc:
            if exc.status == 404:
                return False
            raise self.error(exc, "looking into the box") from None
        except OSError as exc:
            raise unreachable(self.host, exc) from None
        return True

    def own_folders(self, container: str, folders: list[str], uid: int, gid: int) -> None:
        """Before start: make `folders` (e.g. fresh volume roots) belong to uid:gid, mode 0755."""
        from devbox.engine.docker import body

        # copyUIDGID keeps the tar's owners; without it the engine makes them root's.
        path = DockerAPI.path("/containers/{}/archive", container, path="/", copyUIDGID=1)
        try:
            self.api.put_tar(path, body.folders_tar(folders, uid, gid))
        except ApiError as exc:
            raise self.error(exc, "handing the box's new volumes to its user") from None

    def chown_volumes(self, image: str, volumes: dict[str, str], owner: str) -> bool:
        """Give `volumes` ({name: mount point}) to `owner` (uid:gid, or name:) with a one-shot root
        container of `image`.

        For images that run as a numeric user: the engine's own chown on copy looks the user
        up in the image's passwd file and fails for a uid it does not know. False if it failed.
        """
        from devbox.engine.docker.volumes import chown

        return chown(self, image, volumes, owner)

    def start(self, container: str) -> None:
        """Start a created or stopped container."""
        self._call("POST", DockerAPI.path("/containers/{}/start", container), doing="starting the box")

    def stop(self, container: str, timeout: int = 10) -> None:
        """Stop a container (SIGTERM, then SIGKILL after `timeout` s); gone is fine."""
        try:
            self.api.call("POST", DockerAPI.path("/containers/{}/stop", container, t=timeout))
        except ApiError as exc:
            if exc.status not in (304, 404):
                raise self.error(exc, "stopping the box") from None

    def rename(self, container: str, name: str) -> None:
        """Give a container another name (NameTaken if a container already has it)."""
        path = DockerAPI.path("/containers/{}/rename", container, name=name)
        self._call("POST", path, doing=f"renaming the box to {name}")

    def remove(self, container: str) -> None:
        """Force-remove a container; already gone (404) or being removed (409) is fine."""
        try:
            self.api.call("DELETE", DockerAPI.path("/containers/{}", container, force=1))
        except ApiError as exc:
            if exc.status not in (404, 409):
                raise self.error(exc, "removing the box") from None

    def remove_if_stopped(self, container: str) -> bool:
        """Remove a container unless it runs (never forced): False when it runs now (the
        engine's 409); gone already is fine."""
        return self.delete_unless_used(DockerAPI.path("/containers/{}", container), "removing the box")

    def remove_volume(self, name: str) -> bool:
        """Remove a volume; False if a container still uses it. Gone already is fine."""
        return self.delete_unless_used(DockerAPI.path("/volumes/{}", name), f"removing volume {name}")

    def delete_unless_used(self, path: str, doing: str) -> bool:
        """DELETE `path` (a volume, an image), never forced: False when the engine refuses
        because something uses it (409); gone already (404) is fine."""
        try:
            self.api.call("DELETE", path)
        except ApiError as exc:
            if exc.status == 409:
                return False
            if exc.status != 404:
                raise self.error(exc, doing) from None
        return True

    # --- logs and exec ---------------------------------------------------------------------

    def _logs(
        self, container: str, follow: bool, tail: int | str, since: float | None, tty: bool | None
    ) -> tuple[Response, bool]:
        if tty is None:  # callers holding the container's inspect output pass it and save a call
            info = self._inspect_json(container) or {}
            tty = bool((info.get("Config") or {}).get("Tty"))
        path = DockerAPI.path(
            "/containers/{}/logs",
            container,
            stdout=1,
            stderr=1,
            follow=int(follow),
            tail=tail,
            since=f"{since:.9f}" if since else None,
        )
        try:
            return self.api.stream("GET", path), tty
        except ApiError as exc:
            raise self.error(exc, "reading logs") from None

    def stream_logs(
        self,
        container: str,
        follow: bool,
        tail: int | str = "all",
        since: float | None = None,
        tty: bool | None = None,
    ) -> Iterator[bytes]:
        """The log as byte chunks, following new output if asked. `tty`: None = look it up."""
        response, tty = self._logs(container, follow, tail, since, tty)
        return response.chunks() if tty else demux(response.chunks())

    def log_lines(
        self, container: str, tail: int | str = "all", since: float | None = None, tty: bool | None = None
    ) -> list[str]:
        """The container's log as lines (not following)."""
        chunks = self.stream_logs(container, False, tail, since, tty)
        return b"".join(chunks).decode("utf-8", "replace").splitlines()

    def follow(self, container: str, since: float | None = None, tty: bool | None = None) -> LogFollower:
        """Start following the container's log in the background."""
        response, tty = self._logs(container, True, "all", since, tty)
        return LogFollower(response, tty)

    def exec(
        self,
        container: str,
        argv: list[str],
        user: str = "",
        env: dict[str, str] | None = None,
        on_line: Callable[[str], None] | None = None,
        workdir: str = "",
    ) -> tuple[int, str]:
        """Run a command in the box and collect its output (non-interactive), lines as they come."""
        from devbox.engine.docker import execute

        return execute.run(self, container, argv, user, env or {}, on_line, workdir)
