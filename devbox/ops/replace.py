"""Replacing a box (rebuild, up --recreate) without losing the one that runs until the new one is ready.

The old container is stopped (it may hold the same fixed host ports and GPUs) and set aside
under another name, so the new one can take the box's name. Only once the new box is ready is
the old one removed; on any failure, Ctrl-C included, the new one goes and the old one gets its
name back and runs again as it did. A run killed in between leaves the old box set aside: the
next `up` of that box (`restore_aside`) puts it back.

`half_made` recognises the other thing an interrupted run leaves: a container created but never
started, or missing the files devbox copies in, which `up` would otherwise try to start forever.
"""

from __future__ import annotations

from devbox.access import reports
from devbox.access.reports import BoxReport
from devbox.box import labels
from devbox.box.resolved import Resolved
from devbox.box.state import Box
from devbox.engine.base import Engine
from devbox.errors import DevboxError
from devbox.ops.create import create
from devbox.ops.ready import BoxExited
from devbox.ops.reporter import Reporter

# Box names have no dots, so this never clashes with another box's container name.
_ASIDE_SUFFIX = ".replaced"


def forget_pins(box: Box) -> None:
    """Unmount the pins of a box just removed (lab mode, docs/lab.md); a no-op for most boxes."""
    if box.labels.get("devbox.binds"):
        from devbox.ops import labbinds

        labbinds.forget(box)


def aside_name(container: str) -> str:
    """The name an old box waits under while its replacement is made."""
    return f"{container}{_ASIDE_SUFFIX}"


def is_set_aside(container: str) -> bool:
    """True for an old box waiting under its aside name (a rebuild is at work, or was killed
    and the next `up` puts the box back): never anyone's to prune."""
    return container.endswith(_ASIDE_SUFFIX)


def replace_box(
    engine: Engine, resolved: Resolved, reporter: Reporter, old: Box, keep_failed: bool, action: str
) -> BoxReport:
    """Create the box anew in place of `old`; `old` runs again as before if the new one fails."""
    name = resolved.spec.name
    reporter.step(f"replacing {name}")
    was_running = old.running
    try:
        # Inside the try: a Ctrl-C while the engine stops or renames the old box must put it
        # back too, not only one while the new box is made.
        engine.stop(old.id)
        engine.rename(old.id, aside_name(name))
        result = create(engine, resolved, reporter, keep_failed, action)
    except BaseException as exc:
        kept_new = keep_failed and isinstance(exc, BoxExited)
        note = _restore(engine, resolved, old, was_running, kept_new)
        if isinstance(exc, DevboxError):
            exc.hint = f"{exc.hint}; {note}" if exc.hint else note
        raise
    engine.remove(old.id)
    forget_pins(old)  # its own pins only: the new box has others
    return result


def _restore(engine: Engine, resolved: Resolved, old: Box, was_running: bool, kept_new: bool) -> str:
    """Put the old box back under its name (running if it ran); returns what happened, for the hint.

    Errors here never replace the one that made the replacement fail: they are reported in the
    returned text instead.
    """
    name = resolved.spec.name
    box = resolved.spec.box
    if kept_new:
        return (
            f"the old box was kept, stopped, as {aside_name(name)}; `devbox down {box}` then "
            f"`devbox up {box}` puts it back"
        )
    try:
        new = engine.inspect(name)
        if new is not None and new.id != old.id:
            engine.remove(new.id)  # ours: the per-box lock keeps other `up`s of this box out
            forget_pins(new)
        current = engine.inspect(old.id)
        if current is not None and current.container != name:  # Ctrl-C may have come before the rename
            engine.rename(old.id, name)
        if was_running:
            # A stop cut short by Ctrl-C goes on in the engine: a start now would be undone
            # by it. A second stop waits for the first to finish (and is a no-op after it).
            engine.stop(old.id)
            from devbox.placement import place

            place.start_checked(engine, resolved, old)  # its GPUs may be someone else's by now
    except BaseException as exc:  # the first error is the one to show
        return f"the old box could not be put back ({exc}); `devbox up {box}` tries again"
    return f"box '{box}' was left as it was" + (" (started again)" if was_running else "")


def restore_aside(engine: Engine, resolved: Resolved) -> Box | None:
    """The box as it is now, after putting back an old box a killed replacement left set aside."""
    name = resolved.spec.name
    box = engine.find(name, resolved.spec.owner)
    aside = engine.find(aside_name(name), resolved.spec.owner)
    if aside is None:
        return box
    if box is not None:
        if box.running and half_made(engine, box) is None:
            engine.remove(aside.id)  # killed after the new box was ready: only the old one's removal was left
            forget_pins(aside)
            return box
        engine.remove(box.id)  # killed while making the new box: it never got ready
        forget_pins(box)
    engine.rename(aside.id, name)  # stopped, as the replacement left it: `up` starts it again
    return engine.find(name, resolved.spec.owner)


def half_made(engine: Engine, box: Box) -> str | None:
    """Why `box` is what an interrupted `up` left (to be made again), or None for a whole box.

    A box with a host key label was made for files devbox copies in before its first start
    (the devbox image protocol); without them it cannot start ("jupyter_config.py: No such
    file"). The box's own label decides, not the image's: an image that took up the protocol
    later must not cost an older box its contents.
    """
    if box.status == "created" and box.started_at is None:
        return "it was created but never started"
    copied_in = labels.SSH_HOSTKEY in box.labels
    if copied_in and not box.running and not engine.has_file(box.id, reports.TOKEN_FILE):
        return "the keys devbox copies in are missing"
    return None
