"""The box verbs that change boxes: up, rebuild, switch, down.

Each returns a result dataclass and prints nothing; progress goes through a `Reporter`
the CLI passes in (a spinner for people, silence for --json). `up` is a pure plan
(`plan_up`: create, start, noop or recreate, as docker compose's convergence plan) and
its execution (`execute`).
"""

from __future__ import annotations

import os
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

from devbox import audit, hostlock
from devbox.access import sshkeys
from devbox.access.reports import BoxReport, report
from devbox.box import drift
from devbox.box.resolved import Resolved
from devbox.box.spec import ContainerSpec
from devbox.box.state import Box
from devbox.engine.base import Engine, NameTaken
from devbox.errors import DevboxError
from devbox.ops import builtimages, ready
from devbox.ops.afterstart import after_start
from devbox.ops.create import create, ensure_image, environment
from devbox.ops.replace import aside_name, forget_pins, half_made, replace_box, restore_aside
from devbox.ops.reporter import Reporter
from devbox.ops.resolve import check_capacity
from devbox.placement import place

Action = Literal["create", "start", "noop", "recreate"]


@dataclass(frozen=True)
class UpPlan:
    """What `up` does to bring the box in line with its profile."""

    action: Action
    box: Box | None  # the box there is now, if any
    changes: tuple[str, ...] = ()  # how it differs from the profile (reported; recreate drops them)


def plan_up(
    box: Box | None,
    spec: ContainerSpec,
    recreate: bool,
    cwd: str | None = None,
    built: dict[str, str] | None = None,
) -> UpPlan:
    """Pure: the action for the box there is now (None: no box) and the spec it should match.

    A box that differs from its profile is reported with its changes, not replaced: replacing
    loses what is in the container, so that takes --recreate (or `devbox rebuild`). `cwd`, the
    folder devbox runs from, words a change that comes only from it as such.
    """
    if box is None:
        return UpPlan("create", None)
    # `built`: the labels of the image a `build:` box runs; they name the files it was built from.
    changes = tuple(drift.changes(box, spec, cwd, built)) if box.spec_hash != spec.spec_hash else ()
    if recreate:
        return UpPlan("recreate", box, changes)
    return UpPlan("noop" if box.running else "start", box, changes)


def up(
    engine: Engine, resolved: Resolved, reporter: Reporter, recreate: bool = False, keep_failed: bool = False
) -> BoxReport:
    """Idempotent: report a matching running box, start a stopped one, create a missing one.

    Two `up`s of one box on this host take turns (a per-box flock), so the second reports
    what the first made instead of racing it for the name, the volumes and the start.
    """
    audit.note(box=resolved.spec.box, owner=resolved.spec.owner)
    with _box_lock(engine, resolved, "up"):
        box = restore_aside(engine, resolved)
        built = None
        if box is not None and resolved.spec.build is not None and box.image != resolved.spec.image:
            built = engine.image_labels(box.image)  # its build inputs changed: the image it runs
        if box is not None:
            # Compare with the spec for the image as it is (a devbox image's spec differs); one
            # not built yet is taken to be like the one it would replace.
            resolved = resolved.for_image(engine.image_labels(resolved.spec.image) or built)
            why = half_made(engine, box)
            if why is not None:
                # Left by an `up` interrupted while making it: starting it would fail every time.
                reporter.step(f"removing {box.container}: {why} (an interrupted up left it)")
                engine.remove(box.id)
                forget_pins(box)
                box = None
        plan = plan_up(box, resolved.spec, recreate, str(resolved.settings.cwd), built)
        result = execute(engine, plan, resolved, reporter, keep_failed)
    audit.note(gpus=list(result.box.gpus))
    return result


def _box_lock(engine: Engine, resolved: Resolved, verb: str) -> AbstractContextManager[None]:
    """The per-box flock `up` and `rebuild` take turns on (a rebuild sets the old box aside
    for a while: an `up` meanwhile must not take that for a box killed halfway)."""
    lock = f"box {engine.host} {resolved.spec.name}"
    # As long as the other `up` may take to get its box ready, and the making before that.
    wait = resolved.profile.ready_timeout + 120
    what = f"devbox {verb} {resolved.spec.name}"
    folder = resolved.settings.user_config_dir
    if resolved.settings.lab:
        from devbox.labmode import BINDS_DIR

        # devbox runs as root in lab mode: its locks stay out of the caller's home.
        folder = BINDS_DIR.parent / "locks" / str(resolved.settings.uid)
    return hostlock.user_lock(lock, folder, what, timeout=wait)


def execute(
    engine: Engine, plan: UpPlan, resolved: Resolved, reporter: Reporter, keep_failed: bool = False
) -> BoxReport:
    """Carry out `plan`, then report the box and how to reach it (waiting until it is ready)."""
    if plan.action in ("create", "recreate"):
        _check_binds(resolved)  # before a pull or build: a refused bind wastes neither
        check_capacity(resolved, engine.host)  # likewise a quota the host cannot give
        replaced = builtimages.before_build(engine, resolved, plan.box)
        ensure_image(engine, resolved, reporter)
        resolved = resolved.for_image(engine.image_labels(resolved.spec.image))
        try:
            if plan.box is not None:
                made = replace_box(engine, resolved, reporter, plan.box, keep_failed, "recreated")
                builtimages.drop_replaced(engine, resolved, replaced, reporter)
                return made
            return create(engine, resolved, reporter, keep_failed, "created")
        except NameTaken:
            # Another `up` of this very box created it first: report that one, as a later
            # `up` would (waiting for it to be ready if need be).
            box = engine.find(resolved.spec.name, resolved.spec.owner)
            if box is None or plan.action == "recreate":
                raise
            plan = plan_up(box, resolved.spec, recreate=False, cwd=str(resolved.settings.cwd))
    assert plan.box is not None
    env = environment(resolved.spec, resolved.settings.caller)
    config_dir = resolved.settings.user_config_dir
    if plan.action == "noop":
        box = plan.box
        printed = ready.printed(engine, box, resolved.profile)
        found = printed.found
        if not printed.ready:
            # Still starting (another `up` is waiting on it) or never got ready: wait the
            # same way rather than report a box with no way in.
            box, found = ready.wait_ready(
                engine, box.id, resolved, reporter, since=box.started_at, tty=box.tty
            )
        notes = after_start(engine, box, resolved, reporter, "running")
        result = report(engine, box, found, "running", env, config_dir)
    else:
        if resolved.settings.lab:
            from devbox.ops import labbinds

            # Its sources checked again as the caller and pinned anew (moved, or /run emptied).
            labbinds.repin(resolved, plan.box)
        reporter.step(f"starting {plan.box.container}")
        place.start_checked(engine, resolved, plan.box)
        started = engine.inspect(plan.box.id) or plan.box
        # Only this run's log: an earlier run printed other tokens.
        box, found = ready.wait_ready(
            engine, started.id, resolved, reporter, since=started.started_at, tty=started.tty
        )
        notes = after_start(engine, box, resolved, reporter, "started")
        result = report(engine, box, found, "started", env, config_dir)
    if notes:
        result = replace(result, warnings=(*notes, *result.warnings))
    return replace(result, changes=plan.changes)


def _check_binds(resolved: Resolved) -> None:
    """Lab mode: refuse a bind the caller may not mount before anything else happens."""
    if resolved.settings.lab:
        from devbox.ops import labbinds

        labbinds.verify(resolved)


def rebuild(engine: Engine, resolved: Resolved, reporter: Reporter, pull: bool, no_cache: bool) -> BoxReport:
    """Fresh image (pulled or rebuilt) and a new container; named volumes are kept."""
    audit.note(box=resolved.spec.box, owner=resolved.spec.owner)
    _check_binds(resolved)
    check_capacity(resolved, engine.host)
    old_box = engine.find(resolved.spec.name, resolved.spec.owner)
    replaced = builtimages.before_build(engine, resolved, old_box)  # removed once the new box is up
    ensure_image(engine, resolved, reporter, pull=pull, build=True, no_cache=no_cache)
    resolved = resolved.for_image(engine.image_labels(resolved.spec.image))
    with _box_lock(engine, resolved, "rebuild"):  # not while building: that may take long
        old = restore_aside(engine, resolved)
        try:
            place.check_fits(engine, resolved)  # before the old box goes: it stays if the new cannot
        except DevboxError as exc:
            if old is not None:
                kept = f"box '{resolved.spec.box}' was left as it was"
                exc.hint = f"{exc.hint}; {kept}" if exc.hint else kept
            raise
        if old is not None:
            result = replace_box(engine, resolved, reporter, old, keep_failed=False, action="rebuilt")
        else:
            result = create(engine, resolved, reporter, keep_failed=False, action="rebuilt")
    builtimages.drop_replaced(engine, resolved, replaced, reporter)  # never one a box still uses
    audit.note(gpus=list(result.box.gpus))
    return result


@dataclass(frozen=True)
class DownResult:
    """What `devbox down` did."""

    container: str
    removed: bool
    volumes_removed: tuple[str, ...] = ()
    volumes_kept: tuple[str, ...] = ()
    # Volumes --purge left because a container still mounts them: (volume, those containers).
    volumes_in_use: tuple[tuple[str, tuple[str, ...]], ...] = ()


def box_volumes(engine: Engine, owner: str, name: str, container: str) -> list[str]:
    """Named volumes that belong to a box: those it mounts, or, if it is gone, those made for it."""
    box = engine.find(container, owner)
    if box is not None:
        return sorted(m.source for m in box.mounts if m.type == "volume")
    return engine.volumes(owner, name)


def down(
    engine: Engine, owner: str, name: str, container: str, purge: list[str], config_dir: Path
) -> DownResult:
    """Stop and remove the box; remove only the volumes in `purge` (confirmed by the caller).

    Its pinned bind mounts (lab mode) go with it.
    """
    audit.note(box=name, owner=owner)
    kept = box_volumes(engine, owner, name, container)
    box = engine.find(container, owner)
    if box is not None:
        audit.note(gpus=list(box.gpus))
        engine.stop(box.id)
        engine.remove(box.id)
    _release_pins(engine, owner, name, container)
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
        tuple((v, tuple(engine.volume_users(v))) for v in in_use),
    )


def _release_pins(engine: Engine, owner: str, name: str, container: str) -> None:
    """Unmount the box's pins, but those of an old box a killed replacement left set aside."""
    from devbox.labmode import BINDS_DIR

    if not os.path.isdir(BINDS_DIR / owner / name):  # outside lab mode: none, or not ours to see
        return
    from devbox.ops import labbinds

    aside = engine.find(aside_name(container), owner)
    labbinds.release(owner, name, keep=labbinds.folders_of(aside) if aside is not None else ())


def switch(engine: Engine, resolved: Resolved, reporter: Reporter) -> tuple[list[str], BoxReport]:
    """Stop the caller's other running boxes (data kept), then `up` this one.

    If this one then fails, the others are started again: a failed switch leaves you where
    you were, not with no box at all.
    """
    running = [
        box
        for box in engine.list_boxes(resolved.spec.owner)
        if box.running and box.container != resolved.spec.name
    ]
    stopped: list[Box] = []
    try:
        for box in running:
            reporter.step(f"stopping {box.name}")
            stopped.append(box)  # before stopping: Ctrl-C during the stop still starts it again
            engine.stop(box.id)
        return [b.name for b in stopped], up(engine, resolved, reporter)
    except BaseException as exc:
        # Ctrl-C included: a switch that did not finish leaves you where you were.
        failed = _start_again(engine, resolved, stopped)
        if not isinstance(exc, DevboxError):
            raise
        if failed:
            exc.hint = f"{exc.hint + '; ' if exc.hint else ''}could not start again: {', '.join(failed)}"
        again = ", ".join(b.name for b in stopped if not any(f.startswith(f"{b.name} (") for f in failed))
        if again:
            exc.hint = f"{exc.hint + '; ' if exc.hint else ''}{again} started again, as before the switch"
        raise


def _start_again(engine: Engine, resolved: Resolved, boxes: list[Box]) -> list[str]:
    """Start the boxes a failed switch stopped; returns those that would not start (with why).

    Each start is checked like any other (its GPUs still free, the limits kept): while they
    were stopped someone may have taken their GPUs, or the new box stayed up. An error here
    never replaces the one that made the switch fail.
    """
    failed: list[str] = []
    for box in boxes:
        try:
            # A stop cut short by Ctrl-C goes on in the engine and would undo a start sent now;
            # a second stop waits for it to finish (a no-op when the box is already stopped).
            engine.stop(box.id)
            place.start_checked(engine, resolved, box)
        except Exception as exc:  # reported with the switch's own error
            failed.append(f"{box.name} ({exc})")
    return failed
