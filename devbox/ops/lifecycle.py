"""The box verbs that touch the engine: up, rebuild, switch, info, ls, down.

Each returns a result dataclass and prints nothing; progress goes through a `Reporter`
the CLI passes in (a spinner for people, silence for --json).
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass, replace
from pathlib import Path

from devbox import hostlock
from devbox.access import credentials, reports, sshkeys
from devbox.access.reports import BoxReport, report
from devbox.box import labels, spec, state
from devbox.box.resolved import Resolved
from devbox.engine.base import BoxFailed, NameTaken
from devbox.engine.docker import decode
from devbox.engine.docker.engine import DockerEngine as Engine
from devbox.errors import DevboxError
from devbox.ops import porthint
from devbox.ops.reporter import Reporter
from devbox.placement import place
from devbox.profile import envfile
from devbox.profile.model import Profile

EXIT_LOG_LINES = 30
# With nothing to wait for, watch this long for a box that dies at once before calling it up.
NOTHING_EXPECTED_GRACE_S = 1.0


class BoxExited(DevboxError):
    """The box stopped before it was ready."""


class NotReady(DevboxError):
    """The box runs but did not print its credentials in time."""


def _environment(container_spec: spec.ContainerSpec) -> dict[str, str]:
    env: dict[str, str] = {}
    for path in container_spec.env_files:
        from_file = envfile.parse(Path(path).read_text(encoding="utf-8"))
        if "NVIDIA_VISIBLE_DEVICES" in from_file:
            # As in env: the runtime would hand the box GPUs past allocation and limits.
            raise DevboxError(
                f"{path} sets NVIDIA_VISIBLE_DEVICES, which devbox sets from gpus:",
                "remove it from the file and ask for GPUs with gpus: 2 or [0, 3]",
            )
        env.update(from_file)
    env.update(container_spec.env)
    return env


def ensure_image(
    engine: Engine,
    resolved: Resolved,
    reporter: Reporter,
    pull: bool = False,
    build: bool = False,
    no_cache: bool = False,
) -> None:
    """Make the box's image present: build a `build:` profile, pull a missing (or --pull) image."""
    image = resolved.spec.image
    if resolved.spec.build is not None:
        if build or no_cache or not engine.image_exists(image):
            reporter.step(f"building {image}")
            engine.build(resolved.spec, no_cache, reporter.build_line)
        return
    if pull or not engine.image_exists(image):
        reporter.step(f"pulling {image}")
        engine.pull(image, reporter.pull_event)


def _scanner(profile: Profile) -> credentials.LogScanner:
    """A log scanner expecting what this profile's ports promise (jupyter, ssh)."""
    names = {p.name for p in profile.ports}
    return credentials.LogScanner("jupyter" in names, "ssh" in names, profile.credentials)


def wait_ready(
    engine: Engine, box_id: str, resolved: Resolved, reporter: Reporter, since: float | None, tty: bool
) -> tuple[state.Box, credentials.Credentials]:
    """Follow the log until every expected credential appeared, the box exits, or the deadline."""
    profile = resolved.profile
    scanner = _scanner(profile)
    reporter.step(f"waiting for {', '.join(scanner.missing()) or 'the box to settle'}")
    start = time.monotonic()
    deadline = start + profile.ready_timeout
    waiting = not scanner.ready
    if not waiting:
        deadline = min(deadline, start + NOTHING_EXPECTED_GRACE_S)
    follower = engine.follow(box_id, since, tty=tty)
    try:
        for line in follower.lines(deadline):
            if line is None:
                continue
            scanner.feed(line)
            reporter.log_line(scanner.last_line)
            if waiting and scanner.ready:
                break
    finally:
        follower.close()
    info = engine.inspect(box_id) or {}
    box = decode.from_inspect(info) if info else None
    if box is None or not box.running:
        code = box.exit_code if box else None
        tail = tuple(engine.log_lines(box_id, tail=EXIT_LOG_LINES, tty=box.tty)) if box else ()
        raise BoxExited(f"box '{profile.name}' exited with code {code} before it was ready", details=tail)
    if not scanner.ready:
        missing = ", ".join(scanner.missing())
        raise NotReady(
            f"box '{profile.name}' did not print its {missing} within {profile.ready_timeout:g} s",
            f"it is still running (devbox logs {profile.name}); if it is slow, raise ready.timeout",
        )
    ssh = box.port("ssh")
    if (
        scanner.expect_ssh
        and ssh
        and ssh.host
        and not _ssh_banner(reports.display_address(ssh.address), ssh.host, deadline)
    ):
        raise NotReady(
            f"box '{profile.name}' said SSH is up, but port {ssh.host} sends no SSH banner",
            f"it is still running: devbox logs {profile.name}",
        )
    return box, scanner.found


def _ssh_banner(address: str, port: int, deadline: float) -> bool:
    """True once the published port answers like an SSH server (the log line alone could lie)."""
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((address, port), timeout=2) as conn:
                if conn.recv(64).startswith(b"SSH-"):
                    return True
        except OSError:
            pass
        time.sleep(0.1)
    return False


@dataclass(frozen=True)
class _Secrets:
    """What a devbox-protocol box gets copied in before it starts."""

    files: dict[str, tuple[str, int]]
    labels: dict[str, str]
    token: str
    hostkey: str


def _secrets(resolved: Resolved) -> _Secrets:
    settings = resolved.settings
    key = sshkeys.login_key(settings.user_config_dir, settings.home, resolved.profile.ssh_authorized_keys)
    host = sshkeys.new_host_key()
    import secrets  # here, not at the top: only devbox-protocol boxes need it (up is timed)

    token = secrets.token_hex(24)
    files = {
        "/run/devbox/authorized_keys": (key.public + "\n", 0o644),
        "/run/devbox/jupyter_token": (token + "\n", 0o600),
        "/run/devbox/ssh_host_key": (host.private_pem, 0o600),
    }
    box_labels = {labels.SSH_HOSTKEY: host.public}
    if key.identity_file:
        box_labels[reports.IDENTITY_LABEL] = key.identity_file
    return _Secrets(files, box_labels, token, host.public)


def _hand_over_new_volumes(engine: Engine, box_id: str, container_spec: spec.ContainerSpec) -> None:
    """Volumes made just now belong to the box's user, so Jupyter and ssh can write to them."""
    owner = spec.volume_owner(container_spec)
    fresh = {
        m.source: m.target
        for m in container_spec.mounts
        if m.type == "volume" and m.source in engine.volumes_made
    }
    if not owner or not fresh:
        return
    if container_spec.protocol:
        # The box starts as root, so the engine keeps the owners written in the archive.
        uid, _, gid = owner.partition(":")
        engine.own_folders(box_id, list(fresh.values()), int(uid), int(gid))
    else:
        engine.chown_volumes(container_spec.image, fresh, owner)


def _undo(engine: Engine, box_id: str) -> None:
    """Remove a box that failed, and the volumes made for it just now (empty: no data lost)."""
    engine.remove(box_id)
    engine.remove_volumes(engine.volumes_made)


def create(
    engine: Engine, resolved: Resolved, reporter: Reporter, keep_failed: bool, action: str
) -> BoxReport:
    """Create, start and wait for a new box; a box that fails is removed (unless keep_failed)."""
    container_spec = resolved.spec
    env = _environment(container_spec)
    made = _secrets(resolved) if container_spec.protocol else None
    reporter.step(f"creating {container_spec.name}")
    try:
        box_id, container_spec = place.create(engine, resolved, env, made.labels if made else {})
    except BaseException:
        engine.remove_volumes(engine.volumes_made)  # e.g. made on a try that then lost its GPU
        raise
    try:
        if made:
            engine.put_files(box_id, made.files)
        _hand_over_new_volumes(engine, box_id, container_spec)
        engine.start(box_id)
        # devbox never asks for a TTY, so the log is multiplexed: no need to look it up.
        box, found = wait_ready(engine, box_id, resolved, reporter, since=None, tty=False)
    except BoxExited as exc:
        if not keep_failed:
            _undo(engine, box_id)
            exc.hint = (
                f"the container was removed; --keep-failed keeps it for devbox logs {container_spec.box}"
            )
        raise
    except NotReady:
        raise
    except BoxFailed as exc:
        _undo(engine, box_id)
        raise porthint.explain(exc, resolved) from None
    except BaseException:
        _undo(engine, box_id)  # Ctrl-C or a crash: leave nothing half-made
        raise
    config_dir = resolved.settings.user_config_dir
    if made:
        alias = sshkeys.host_alias(container_spec.owner, container_spec.box)
        sshkeys.record_host_key(config_dir, alias, made.hostkey)
    return report(engine, box, found, action, env, config_dir, token=made.token if made else None)


def up(
    engine: Engine, resolved: Resolved, reporter: Reporter, recreate: bool = False, keep_failed: bool = False
) -> BoxReport:
    """Idempotent: report a matching running box, start a stopped one, create a missing one.

    Two `up`s of one box on this host take turns (a per-box flock), so the second reports
    what the first made instead of racing it for the name, the volumes and the start.
    """
    lock = f"box {engine.host} {resolved.spec.name}"
    with hostlock.held(lock, timeout=resolved.profile.ready_timeout + 120):
        return _up(engine, resolved, reporter, recreate, keep_failed)


def _up(
    engine: Engine, resolved: Resolved, reporter: Reporter, recreate: bool, keep_failed: bool
) -> BoxReport:
    info = engine.inspect_own(resolved.spec.name, resolved.spec.owner)
    if info is None or recreate:
        ensure_image(engine, resolved, reporter)
        resolved = resolved.for_image(engine.image_labels(resolved.spec.image))
        if info is not None:
            engine.remove(info["Id"])
        try:
            return create(engine, resolved, reporter, keep_failed, "recreated" if info else "created")
        except NameTaken:
            # Another `up` of this very box created it first: report that one, as a later
            # `up` would (waiting for it to be ready if need be).
            info = engine.inspect_own(resolved.spec.name, resolved.spec.owner)
            if info is None or recreate:
                raise
    resolved = resolved.for_image(engine.image_labels(resolved.spec.image))
    container_spec = resolved.spec
    config_dir = resolved.settings.user_config_dir
    box = decode.from_inspect(info)
    changes: tuple[str, ...] = ()
    if box.spec_hash != container_spec.spec_hash:
        from devbox.engine.docker import drift

        changes = tuple(drift.changes(container_spec, info))
    env = _environment(container_spec)
    if box.running:
        scanner = _scanner(resolved.profile)
        for line in engine.log_lines(box.id, since=box.started_at, tty=box.tty):
            scanner.feed(line)
        found = scanner.found
        if not scanner.ready:
            # Still starting (another `up` is waiting on it) or never got ready: wait the
            # same way rather than report a box with no way in.
            box, found = wait_ready(engine, box.id, resolved, reporter, since=box.started_at, tty=box.tty)
        result = report(engine, box, found, "running", env, config_dir)
    else:
        place.check_restart(engine, resolved, box)
        reporter.step(f"starting {box.container}")
        engine.start(box.id)
        started = decode.from_inspect(engine.inspect(box.id) or info)
        # Only this run's log: an earlier run printed other tokens.
        box, found = wait_ready(engine, box.id, resolved, reporter, since=started.started_at, tty=started.tty)
        result = report(engine, box, found, "started", env, config_dir)
    return replace(result, changes=changes)


def info(engine: Engine, owner: str, name: str, container: str, config_dir: Path) -> BoxReport:
    """A box and its credentials, re-read from this run's log."""
    box = engine.find(container, owner)
    if box is None:
        raise DevboxError(f"no box named '{name}'", "devbox ls shows your boxes")
    found = credentials.Credentials()
    if box.running:
        found = credentials.scan(engine.log_lines(box.id, since=box.started_at, tty=box.tty))
    return report(engine, box, found, box.status, {}, config_dir)


def rebuild(engine: Engine, resolved: Resolved, reporter: Reporter, pull: bool, no_cache: bool) -> BoxReport:
    """Fresh image (pulled or rebuilt) and a new container; named volumes are kept."""
    ensure_image(engine, resolved, reporter, pull=pull, build=True, no_cache=no_cache)
    resolved = resolved.for_image(engine.image_labels(resolved.spec.image))
    old = engine.inspect_own(resolved.spec.name, resolved.spec.owner)
    try:
        place.check_fits(engine, resolved)  # before the old box goes: it stays if the new cannot
    except DevboxError as exc:
        if old is not None:
            kept = f"box '{resolved.spec.box}' was left as it was"
            exc.hint = f"{exc.hint}; {kept}" if exc.hint else kept
        raise
    if old is not None:
        reporter.step(f"replacing {resolved.spec.name}")
        engine.stop(old["Id"])
        engine.remove(old["Id"])
    return create(engine, resolved, reporter, keep_failed=False, action="rebuilt")


@dataclass(frozen=True)
class DownResult:
    """What `devbox down` did."""

    container: str
    removed: bool
    volumes_removed: tuple[str, ...] = ()
    volumes_kept: tuple[str, ...] = ()
    volumes_in_use: tuple[str, ...] = ()


def box_volumes(engine: Engine, owner: str, name: str, container: str) -> list[str]:
    """Named volumes that belong to a box: those it mounts, or, if it is gone, those made for it."""
    box = engine.find(container, owner)
    if box is not None:
        return sorted(m.source for m in box.mounts if m.type == "volume")
    return engine.volumes(owner, name)


def down(
    engine: Engine, owner: str, name: str, container: str, purge: list[str], config_dir: Path
) -> DownResult:
    """Stop and remove the box; remove only the volumes in `purge` (confirmed by the caller)."""
    kept = box_volumes(engine, owner, name, container)
    box = engine.find(container, owner)
    if box is not None:
        engine.stop(box.id)
        engine.remove(box.id)
    sshkeys.forget_host_key(config_dir, sshkeys.host_alias(owner, name))
    removed: list[str] = []
    in_use: list[str] = []
    for volume in purge:
        (removed if engine.remove_volume(volume) else in_use).append(volume)
    return DownResult(
        container,
        box is not None,
        tuple(removed),
        tuple(v for v in kept if v not in removed and v not in in_use),
        tuple(f"{v} (used by {', '.join(engine.volume_users(v))})" for v in in_use),
    )


def switch(engine: Engine, resolved: Resolved, reporter: Reporter) -> tuple[list[str], BoxReport]:
    """Stop the caller's other running boxes (data kept), then `up` this one.

    If this one then fails, the others are started again: a failed switch leaves you where
    you were, not with no box at all.
    """
    stopped = [
        box
        for box in engine.list_boxes(resolved.spec.owner)
        if box.running and box.container != resolved.spec.name
    ]
    for box in stopped:
        reporter.step(f"stopping {box.name}")
        engine.stop(box.id)
    try:
        return [b.name for b in stopped], up(engine, resolved, reporter)
    except DevboxError as exc:
        for box in stopped:
            engine.start(box.id)
        if stopped:
            again = ", ".join(b.name for b in stopped)
            exc.hint = f"{exc.hint + '; ' if exc.hint else ''}{again} started again, as before the switch"
        raise
