"""An engine in memory, for unit tests of the verbs: containers, volumes, images and logs in dicts.

It keeps the rules the verbs rely on from a real engine: container names are unique (a
taken name is NameTaken), a volume of another owner is refused, a stopped box has no host
ports, a box prints its log when it starts and `since` reads only that run. What a box
prints by default is what its ports promise (a Jupyter URL with the token devbox copied in,
the devbox image's ssh line), so credential scanning works as on a real box.

Tests steer it: `add_image` (local or only in the registry; the images are fakeimages.py's),
`script` (what a box prints, or that it exits at once), `fail_start`, `crash`,
`clash_on_create` (another `up` takes the name between looking and creating). `client()` is
a second process on the same engine. Integration tests use the real engine; this is only for
unit tests of the verbs.
"""

from __future__ import annotations

import itertools
import secrets
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import TYPE_CHECKING

from devbox.box import labels
from devbox.box.spec import ContainerSpec
from devbox.box.state import Box, check_owner
from devbox.engine.base import BoxFailed, EngineFacts, NameTaken
from devbox.engine.fakeimages import FakeImages
from devbox.engine.fakestore import FakeContainer, FakeFollow, FakeStore, Script
from devbox.errors import Refused

if TYPE_CHECKING:
    from devbox.engine.base import Engine

_ids = itertools.count(1)


class FakeEngine(FakeImages):
    """The `Engine` protocol in memory. Each instance is one client (one devbox process)."""

    def __init__(self, store: FakeStore | None = None) -> None:
        self.store = store or FakeStore(host=f"fake://{next(_ids)}-{secrets.token_hex(4)}")
        self.host = self.store.host
        self.volumes_made: list[str] = []

    def client(self) -> FakeEngine:
        """Another client of the same engine, as a second devbox process would be."""
        return FakeEngine(self.store)

    # --- steering (tests only) ---------------------------------------------------------

    def script(self, container: str, lines: list[str] | None = None, exit_code: int | None = None) -> None:
        """What the box named `container` prints at its next starts, and whether it exits."""
        self.store.scripts[container] = Script(lines, exit_code)

    def fail_start(self, container: str, message: str | None) -> None:
        """Make starting `container` fail with the engine's `message` (None: starts work again)."""
        if message is None:
            self.store.start_failures.pop(container, None)
        else:
            self.store.start_failures[container] = message

    def clash_on_create(self, container: str, owner: str) -> None:
        """The next create of `container` finds that `owner`'s `up` made it just before."""
        self.store.clashes[container] = owner

    def crash(self, container: str, lines: list[str], exit_code: int = 1) -> None:
        """A running box prints `lines` and dies now."""
        with self.store.lock:
            box = self.store.get(container)
            if box is None:
                raise KeyError(container)
            self._print(box, lines)
            box.status, box.exit_code, box.host_ports = "exited", exit_code, {}

    # --- reading -------------------------------------------------------------------------

    def facts(self) -> EngineFacts:
        """A made-up engine with no GPU runtime."""
        return EngineFacts("Fake", "1.0", "1.0", ("runc",))

    def inspect(self, container: str) -> Box | None:
        """The full view of a container, or None."""
        with self.store.lock:
            found = self.store.get(container)
            return found.box(full=True) if found else None

    def find(self, container: str, owner: str) -> Box | None:
        """`owner`'s box named `container`, or None; another owner's is refused."""
        box = self.inspect(container)
        if box is not None:
            check_owner(box, owner)
        return box

    def list_boxes(self, owner: str | None) -> list[Box]:
        """Every box (or one owner's), summary view."""
        with self.store.lock:
            return [
                c.box(full=False)
                for c in self.store.containers.values()
                if labels.OWNER in c.labels and owner in (None, c.labels[labels.OWNER])
            ]

    def created_ns(self, container: str) -> int:
        """When the container was made (fake clock), 0 if gone."""
        with self.store.lock:
            found = self.store.get(container)
            return found.created_ns if found else 0

    def volumes(self, owner: str, box: str | None = None) -> list[str]:
        """An owner's volumes, optionally those made for `box`."""
        with self.store.lock:
            return sorted(
                name
                for name, lab in self.store.volumes.items()
                if lab.get(labels.OWNER) == owner and (box is None or lab.get(labels.BOX) == box)
            )

    def volume_users(self, volume: str) -> list[str]:
        """Containers that mount `volume`."""
        with self.store.lock:
            return [c.name for c in self.store.containers.values() if volume in _volumes_of(c.spec)]

    # --- containers ------------------------------------------------------------------------

    def create(
        self, spec: ContainerSpec, env: dict[str, str], extra_labels: dict[str, str] | None = None
    ) -> str:
        """Create the container and its missing volumes; NameTaken if the name is taken."""
        if self.store.before_create is not None:
            self.store.before_create()
        with self.store.lock:
            rival = self.store.clashes.pop(spec.name, None)
            if rival is not None:
                self._make_rival(spec, env, rival)
            if self.store.get(spec.name) is not None:
                raise NameTaken(f"Docker refused creating {spec.name}: the name is taken")
            if spec.image not in self.store.images:
                raise BoxFailed(f"Docker refused creating {spec.name}: No such image: {spec.image}")
            if spec.network is not None:
                self._network(spec.network, spec.owner)
            made = []
            for volume in _volumes_of(spec):
                holder = self.store.volumes.get(volume, {}).get(labels.OWNER)
                if volume not in self.store.volumes:
                    self.store.volumes[volume] = dict(spec.volume_labels)
                    made.append(volume)
                elif holder and holder != spec.owner:
                    for name in made:
                        del self.store.volumes[name]
                    raise Refused(
                        f"volume {volume} belongs to {holder}, not to {spec.owner}",
                        "rename the volume in your profile (volumes: NAME:/path)",
                    )
            self.volumes_made.extend(made)
            created = self.store.tick()
            box_id = secrets.token_hex(32)
            self.store.containers[box_id] = FakeContainer(
                box_id,
                spec,
                dict(env),
                {**spec.labels, **(extra_labels or {})},
                created,
                int(created * 1e9),
            )
            self.store.calls.append(("create", spec.name))
            return box_id

    def _network(self, name: str, owner: str) -> None:
        """`owner`'s network: made if missing, kept after; another's of that name is refused."""
        found = self.store.networks.get(name)
        if found is None:
            self.store.networks[name] = {labels.OWNER: owner, labels.NETWORK: "1"}
            self.store.calls.append(("network", name))
        elif found.get(labels.OWNER) != owner or found.get(labels.NETWORK) != "1":
            raise Refused(
                f"network {name} exists, but devbox did not make it for {owner}: a box will not join it",
                f"an admin removes it (docker network rm {name}); devbox makes it anew",
            )

    def _make_rival(self, spec: ContainerSpec, env: dict[str, str], owner: str) -> None:
        """`owner`'s container of the same name, made and started by another process."""
        rival_labels = {**spec.labels, labels.OWNER: owner}
        if owner != spec.owner:
            rival_labels[labels.BOX] = f"{spec.box}-of-{owner}"
        created = self.store.tick()
        rival = FakeContainer(
            secrets.token_hex(32),
            replace(spec, owner=owner),
            dict(env),
            rival_labels,
            created,
            int(created * 1e9),
        )
        self.store.containers[rival.id] = rival
        self._run(rival)

    def put_files(
        self, container: str, files: dict[str, tuple[str, int]], owner: tuple[int, int] | None = None
    ) -> None:
        """Keep the files' text (and who owns them, for tests)."""
        with self.store.lock:
            found = self._must(container)
            found.files.update({path: text for path, (text, _) in files.items()})
            found.files_owner = owner

    def has_file(self, container: str, path: str) -> bool:
        """True when `path` was copied into the container."""
        with self.store.lock:
            return path in self._must(container).files

    def own_folders(self, container: str, folders: list[str], uid: int, gid: int) -> None:
        """Nothing to do in memory."""
        self.store.calls.append(("own_folders", container))

    def chown_volumes(self, image: str, volumes: dict[str, str], owner: str) -> bool:
        """Nothing to do in memory; it worked."""
        self.store.calls.append(("chown_volumes", image))
        return True

    def start(self, container: str) -> None:
        """Run the box's script: publish its ports, print its lines, maybe exit."""
        with self.store.lock:
            found = self._must(container)
            failure = self.store.start_failures.get(found.name)
            if failure is not None:
                raise BoxFailed(failure)
            taken = {p for c in self.store.containers.values() for p in c.host_ports.values()}
            for port in found.spec.ports:
                if port.host is not None and port.host in taken:
                    raise BoxFailed(f"host port {port.host} is already taken")
            self._run(found)
            self.store.calls.append(("start", found.name))

    def _run(self, c: FakeContainer) -> None:
        c.status, c.exit_code, c.started_at = "running", None, self.store.tick()
        for port in c.spec.ports:
            if port.host is not None:
                c.host_ports[port.container] = port.host
            else:
                self.store.next_port += 1
                c.host_ports[port.container] = self.store.next_port
        script = self.store.scripts.get(c.name, Script())
        self._print(c, script.lines if script.lines is not None else c.promised_lines())
        if script.exit_code is not None:
            c.status, c.exit_code, c.host_ports = "exited", script.exit_code, {}

    def _print(self, c: FakeContainer, lines: list[str]) -> None:
        stamp = self.store.tick()
        c.log += [(stamp, line) for line in lines]

    def _must(self, container: str) -> FakeContainer:
        found = self.store.get(container)
        if found is None:
            raise BoxFailed(f"Docker refused: no such container: {container}")
        return found

    def stop(self, container: str, timeout: int = 10) -> None:
        """Stop a running box (gone is fine)."""
        with self.store.lock:
            found = self.store.get(container)
            if found is not None and found.status == "running":
                found.status, found.exit_code, found.host_ports = "exited", 0, {}
                self.store.calls.append(("stop", found.name))

    def rename(self, container: str, name: str) -> None:
        """Give a container another name (NameTaken if a container already has it)."""
        with self.store.lock:
            found = self._must(container)
            if self.store.get(name) is not None:
                raise NameTaken(f"Docker refused renaming {found.name} to {name}: the name is taken")
            found.spec = replace(found.spec, name=name)
            self.store.calls.append(("rename", name))

    def remove(self, container: str) -> None:
        """Remove a container (gone is fine)."""
        with self.store.lock:
            found = self.store.get(container)
            if found is not None:
                del self.store.containers[found.id]
                self.store.calls.append(("remove", found.name))

    def remove_if_stopped(self, container: str) -> bool:
        """Remove a container unless it runs: False when it runs (gone is fine)."""
        with self.store.lock:
            found = self.store.get(container)
            if found is not None and found.status == "running":
                return False
        self.remove(container)
        return True

    def remove_volume(self, name: str) -> bool:
        """Remove a volume unless a container uses it."""
        with self.store.lock:
            if self.volume_users(name):
                return False
            self.store.volumes.pop(name, None)
            return True

    def remove_volumes(self, names: list[str]) -> None:
        """Remove volumes made for a box that failed, and forget them as made."""
        for name in list(names):  # `names` is often volumes_made itself
            self.remove_volume(name)
            if name in self.volumes_made:
                self.volumes_made.remove(name)

    # --- logs and exec ---------------------------------------------------------------------

    def log_lines(
        self, container: str, tail: int | str = "all", since: float | None = None, tty: bool | None = None
    ) -> list[str]:
        """The lines printed from `since` on, the last `tail` of them."""
        with self.store.lock:
            found = self._must(container)
            lines = [line for stamp, line in found.log if since is None or stamp >= since]
        return lines[-tail:] if isinstance(tail, int) and tail > 0 else lines

    def stream_logs(
        self,
        container: str,
        follow: bool,
        tail: int | str = "all",
        since: float | None = None,
        tty: bool | None = None,
    ) -> Iterator[bytes]:
        """The log as one chunk per line (never waits for more)."""
        return iter([f"{line}\n".encode() for line in self.log_lines(container, tail, since)])

    def follow(self, container: str, since: float | None = None, tty: bool | None = None) -> FakeFollow:
        """What the box printed from `since` on; the stream then ends."""
        return FakeFollow(self.log_lines(container, since=since))

    def exec(
        self,
        container: str,
        argv: list[str],
        user: str = "",
        env: dict[str, str] | None = None,
        on_line: Callable[[str], None] | None = None,
        workdir: str = "",
    ) -> tuple[int, str]:
        """`cat` of a file put into the box; any other command is not found."""
        with self.store.lock:
            found = self._must(container)
            if found.status != "running":
                raise BoxFailed(f"container {found.name} is not running")
            if argv[:1] == ["cat"] and len(argv) == 2 and argv[1] in found.files:
                return 0, found.files[argv[1]]
        return 127, f"{argv[0]}: not found\n"


def _volumes_of(spec: ContainerSpec) -> list[str]:
    return [m.source for m in spec.mounts if m.type == "volume"]


if TYPE_CHECKING:
    _check: Engine = FakeEngine()  # mypy proves the fake offers everything the protocol asks
