"""Making a new box: its image, its secrets, its container where it may go, then waiting for it.

A box that fails on the way is removed with the volumes made for it just now (empty, so no
data is lost), unless the caller keeps a crashed box to read its log.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from devbox import caller
from devbox.access import reports, sshkeys
from devbox.access.reports import BoxReport, report
from devbox.box import labels, spec
from devbox.box.resolved import Resolved
from devbox.engine.base import BoxFailed, Engine
from devbox.errors import DevboxError, InvalidInput, Origin, Problem
from devbox.ops import porthint, refimage
from devbox.ops.afterstart import after_start
from devbox.ops.ready import BoxExited, NotReady, wait_ready
from devbox.ops.reporter import Reporter
from devbox.placement import place
from devbox.profile import envfile


def environment(container_spec: spec.ContainerSpec, who: caller.Caller | None = None) -> dict[str, str]:
    """The box's environment: its env files, then the profile's env over them.

    In lab mode `who` is the caller: their env files are read with their rights, so a file
    only root may read never reaches a box.
    """
    env: dict[str, str] = {}
    for path in container_spec.env_files:
        with caller.rights(who):
            from_file = envfile.load(path)  # checked when the profile loaded; it may have changed since
        gpu_keys = [k for k in envfile.GPU_VARIABLES if k in from_file]
        if gpu_keys:
            # As in env: the runtime would hand the box GPUs past allocation and limits.
            raise InvalidInput(
                f"{path} sets {gpu_keys[0]}: {envfile.GPU_VARIABLES[gpu_keys[0]]}",
                [Problem(Origin(path), f"sets {gpu_keys[0]}")],
                f"remove it from the file and {envfile.GPU_VARIABLES_FIX}",
            )
        if who is not None:
            # Lab mode: the image protocol's variables are devbox's to set, never the user's.
            from_file = {k: v for k, v in from_file.items() if not k.startswith("DEVBOX_")}
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
    missing = not engine.image_exists(image)
    built_here = refimage.missing_hint(image) if missing else None
    if built_here and not pull:
        # The reference image is built, not pulled: no registry has it (docs/image.md).
        raise BoxFailed(f"the image {image} is not on this engine: {refimage.BUILD_COMMAND}", built_here)
    if pull or missing:
        reporter.step(f"pulling {image}")
        engine.pull(image, reporter.pull_event)


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
        reports.TOKEN_FILE: (token + "\n", 0o600),
        "/run/devbox/ssh_host_key": (host.private_pem, 0o600),
    }
    box_labels = {labels.SSH_HOSTKEY: host.public}
    if key.identity_file:
        box_labels[reports.IDENTITY_LABEL] = key.identity_file
    return _Secrets(files, box_labels, token, host.public)


def _numeric_user(user: str | None) -> tuple[int, int] | None:
    """(uid, gid) of a `--user UID:GID`, or None (root, or a name only the image can resolve)."""
    uid, _, gid = (user or "").partition(":")
    if not uid.isdecimal():
        return None
    return int(uid), int(gid) if gid.isdecimal() else int(uid)


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


def _undo(engine: Engine, box_id: str | None, failure: BaseException, resolved: Resolved) -> None:
    """Remove a box that failed, the volumes made for it just now (empty: no data lost), its pins.

    Never raises: an error while cleaning up (the engine gone, say) must not replace
    `failure`, the one that says what went wrong; it is added to its hint instead.
    """
    try:
        if box_id is not None:
            engine.remove(box_id)
        engine.remove_volumes(engine.volumes_made)
        if resolved.settings.lab:
            from devbox.ops import labbinds

            labbinds.unpin(resolved.spec.labels)
    except Exception as exc:  # any: the failure being handled is the one to show
        if isinstance(failure, DevboxError):
            note = f"cleaning up failed too ({exc}); the next `devbox up` makes the box again"
            failure.hint = f"{failure.hint}; {note}" if failure.hint else note


def create(
    engine: Engine, resolved: Resolved, reporter: Reporter, keep_failed: bool, action: str
) -> BoxReport:
    """Create, start and wait for a new box; a box that fails is removed (unless keep_failed)."""
    container_spec = resolved.spec
    env = environment(container_spec, resolved.settings.caller)
    made = _secrets(resolved) if container_spec.protocol else None
    reporter.step(f"creating {container_spec.name}")
    notes: list[str] = []  # e.g. a GPU asked for by number that something outside devbox uses
    try:
        if resolved.settings.lab:
            from devbox.ops import labbinds

            # Binds checked as the caller and pinned; the engine gets the pins (docs/lab.md).
            resolved = labbinds.pin(resolved, labbinds.check(resolved))
        box_id, container_spec = place.create(engine, resolved, env, made.labels if made else {}, notes)
    except BaseException as exc:
        _undo(engine, None, exc, resolved)  # volumes made e.g. on a try that then lost its GPU
        raise
    try:
        if made:
            # A box that runs as its user from the start (lab mode) must read its own secrets.
            engine.put_files(box_id, made.files, _numeric_user(container_spec.user))
        _hand_over_new_volumes(engine, box_id, container_spec)
        engine.start(box_id)
        # devbox never asks for a TTY, so the log is multiplexed: no need to look it up.
        box, found = wait_ready(engine, box_id, resolved, reporter, since=None, tty=False)
    except BoxExited as exc:
        if not keep_failed:
            _undo(engine, box_id, exc, resolved)
            exc.hint = (
                f"the container was removed; --keep-failed keeps it for devbox logs {container_spec.box}"
            )
        raise
    except NotReady:
        raise
    except BoxFailed as exc:
        _undo(engine, box_id, exc, resolved)
        raise porthint.explain(exc, resolved) from None
    except BaseException as exc:
        _undo(engine, box_id, exc, resolved)  # Ctrl-C, a crash, the engine gone: leave nothing half-made
        raise
    config_dir = resolved.settings.user_config_dir
    if made:
        alias = sshkeys.host_alias(container_spec.owner, container_spec.box)
        sshkeys.record_host_key(config_dir, alias, made.hostkey)
    notes += after_start(engine, box, resolved, reporter, "created")
    result = report(engine, box, found, action, env, config_dir, token=made.token if made else None)
    return replace(result, warnings=(*notes, *result.warnings)) if notes else result
