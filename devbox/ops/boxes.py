"""Finding boxes: the caller's box by name, `ls`, what `info` shows, exec and ssh targets.

Every lookup of "your box NAME" goes through `find_own`, so each command says the same
when there is none, and refuses another owner's box that merely shares the container name.
`devbox ls` imports this module on its fast path: what only other lookups need is
imported inside them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from devbox.box.state import Box
from devbox.errors import DevboxError, NotFound, Refused
from devbox.profile import files

if TYPE_CHECKING:
    from devbox.access.reports import BoxReport
    from devbox.access.sshaccess import SshTarget
    from devbox.engine.base import Engine
    from devbox.settings import Settings


# What an admin may do to another owner's box (`devbox down bob/exp1`); everything else —
# its log, exec, ssh, its credentials — stays its owner's alone.
ADMIN_ACTIONS = ("see", "stop and remove")


def target(settings: Settings, ref: str, action: str = "use") -> tuple[str, str]:
    """(owner, name) of a box reference, `NAME` (yours) or `OWNER/NAME`, if the caller may `action` it.

    Another owner's box: only admins (lab mode: the policy's `admins:`; outside lab mode,
    whoever holds the engine socket), and only to see or remove it. Refused (exit 3) otherwise.
    """
    from devbox import audit  # here: `devbox ls` imports this module on its fast path

    owner, sep, name = ref.rpartition("/")
    if not sep or owner == settings.owner:
        owner = settings.owner
    audit.note(box=name, owner=owner)
    if owner != settings.owner and not (settings.admin and action in ADMIN_ACTIONS):
        allowed = "only lab admins may see or remove it" if action in ADMIN_ACTIONS else "only its owner may"
        raise Refused(
            f"{owner}/{name} is {owner}'s box: you may not {action} it ({allowed})", "devbox ls shows yours"
        )
    return owner, name


def container(settings: Settings, name: str) -> str:
    """The container of the caller's box `name`."""
    from devbox.box import spec

    return spec.container_name(settings.owner, name)


def find(engine: Engine, settings: Settings, name: str, action: str = "use") -> Box | None:
    """The box `name` (or `OWNER/NAME`, see `target`), or None.

    A container that merely shares the name, made by another owner, is refused.
    """
    from devbox.box import spec

    owner, name = target(settings, name, action)
    return engine.find(spec.container_name(owner, name), owner)


def find_own(engine: Engine, settings: Settings, name: str, action: str = "use") -> Box:
    """The box `name` (yours, or `OWNER/NAME` where `action` is allowed); NotFound when there is none."""
    box = find(engine, settings, name, action)
    if box is None:
        raise NotFound(f"no box named '{name}'", "devbox ls shows your boxes")
    return box


def running_own(engine: Engine, settings: Settings, name: str, action: str = "use") -> Box:
    """The caller's box `name`, which must be running (to exec or ssh into it)."""
    box = find_own(engine, settings, name, action)
    if not box.running:
        raise DevboxError(f"box '{name}' is {box.status}", f"start it: devbox up {name}")
    return box


def box_profile(engine: Engine, settings: Settings, name: str) -> str | None:
    """The profile file the caller's box `name` was made from, if the box and file still exist."""
    if "/" in name:
        return None  # a path to a profile, not a box name
    box = find(engine, settings, name)
    if box is None:
        return None
    from devbox import caller

    # A label is any text: looked at without raising (a NUL or a 300-byte name is "no file").
    # As the caller: whether a file exists where they cannot look is not theirs to learn.
    with caller.rights(settings.caller):
        return box.profile if files.is_file(box.profile) else None


@dataclass(frozen=True)
class Listing:
    """The boxes `devbox ls` shows, and whether they are everyone's (then it names owners)."""

    boxes: list[Box]
    everyone: bool


def listing(
    engine: Engine, all_users: bool, owner: str | None, gpu: str | None, caller: Callable[[], str]
) -> Listing:
    """The caller's boxes, or everyone's (--all); --owner and --gpu narrow everyone's.

    `caller` names the caller; it is asked only for their own listing, so `ls --all` works
    for a caller devbox cannot name.
    """
    everyone = all_users or owner is not None or gpu is not None
    selector = owner or (None if everyone else caller())
    found = sorted(engine.list_boxes(selector), key=lambda b: (b.owner, b.name))
    if gpu is not None:
        found = [b for b in found if gpu in b.gpus]
    return Listing(found, everyone)


def info(engine: Engine, settings: Settings, name: str) -> BoxReport:
    """The caller's box `name` and its credentials, re-read from this run's log."""
    from devbox.access import credentials, reports

    box = find_own(engine, settings, name, "see")
    found = credentials.Credentials()
    if box.running and box.owner == settings.owner:  # another's credentials are never shown
        found = credentials.scan(engine.log_lines(box.id, since=box.started_at, tty=box.tty))
    return reports.report(engine, box, found, box.status, {}, settings.user_config_dir)


@dataclass(frozen=True)
class ExecTarget:
    """A running box to run a command in, and as whom."""

    box: Box
    user: str  # "" = the container's own user


def exec_target(engine: Engine, settings: Settings, name: str) -> ExecTarget:
    """Where `devbox exec NAME` runs its command.

    A devbox-image box starts as root and runs as its user: exec as that user too, so what
    the command writes into /workspace is the caller's on the host, not root's. In lab mode
    always as the caller: the box's environment (an image's ENV, an env file) is theirs to set.
    """
    from devbox.box import spec

    box = running_own(engine, settings, name, "run commands in")
    if settings.lab:
        return ExecTarget(box, f"{settings.uid}:{settings.gid}")
    env = box.config.env if box.config else {}
    return ExecTarget(box, spec.protocol_user(env) or "")


def ssh_target(engine: Engine, settings: Settings, box: Box) -> SshTarget | None:
    """How to ssh into a running box (None without a published ssh port); user from its log."""
    from devbox.access import credentials, reports

    found = credentials.scan(engine.log_lines(box.id, since=box.started_at, tty=box.tty)).ssh
    user = found.user if found and found.user else "root"
    return reports.ssh_target(box, user, settings.user_config_dir)


def ssh_login(engine: Engine, settings: Settings, name: str) -> SshTarget:
    """The ssh target of the caller's running box `name`; an error if it has no ssh port."""
    target = ssh_target(engine, settings, running_own(engine, settings, name, "log into"))
    if target is None:
        raise DevboxError(
            f"box '{name}' has no ssh port", "add ports: {ssh: 22} to its profile and rebuild it"
        )
    return target


def ssh_targets(engine: Engine, settings: Settings) -> list[tuple[Box, SshTarget]]:
    """Each of the caller's running boxes with an ssh port, and its target, by box name."""
    targets = []
    for listed in sorted(engine.list_boxes(settings.owner), key=lambda b: b.name):
        # The listing has no start time; the full view does (its log since then holds the user).
        box = engine.find(listed.container, settings.owner) if listed.running else None
        target = ssh_target(engine, settings, box) if box else None
        if target:
            targets.append((listed, target))
    return targets
