"""Lab mode's rules on a profile: who the box runs as, builds, which images may start as root (pure).

In lab mode (docs/lab.md) devbox acts as root for a user who cannot use the engine
themselves, so what a box may do to the host is decided here, not by the user: a box runs
as its caller (`user:` unset means `host`); root inside a box only where the policy says
`allow_root: true`, because root in a box with a bind mount is root on the host (a setuid
file written through the bind runs as root outside). Outside lab mode none of this applies:
whoever holds the engine's socket is root on the host already.
"""

from __future__ import annotations

import dataclasses

from devbox.errors import Problem
from devbox.policy import enforce
from devbox.policy.rules import Policy
from devbox.profile.model import Profile
from devbox.settings import Settings

_ROOT_WHY = (
    "root in a box with a bind mount is root on the host: a setuid file written through the "
    "bind runs as root outside"
)
_AS_YOU = "leave user: out (or write user: host): in lab mode a box runs as you"


def _caller_ids(settings: Settings) -> tuple[int, frozenset[int]]:
    """The caller's uid and every gid of theirs (primary and supplementary)."""
    caller = settings.caller
    if caller is None:
        return settings.uid, frozenset({settings.gid})
    return caller.uid, frozenset({caller.gid, *caller.groups})


def _user_problem(
    profile: Profile, policy: Policy, settings: Settings, user: str | None = None, slot: str = "user"
) -> Problem | None:
    """Why the box (or a command in it, run as `user`) may not run as that user in lab mode, or None."""
    if slot == "user":
        user = profile.user
    if user is None or user == "host" or policy.allow_root:
        # With allow_root any user is allowed: root in the box could become any of them.
        return None
    where = profile.origin(slot)
    label, hint = "user", _AS_YOU
    if slot != "user":
        name = "postStartCommand" if slot == "post_start" else "postCreateCommand"
        label = f"remoteUser (running {name})"
        hint = "leave remoteUser out: in lab mode the commands run as you, the box's user"
    rule = f"allow_root is false ({policy.rule('allow_root')})"
    uid_text, _, gid_text = user.partition(":")
    if user == "root" or (uid_text.isdecimal() and int(uid_text) == 0):
        message = f"{label}: {user} is not allowed in lab mode, {rule}: {_ROOT_WHY}"
        return Problem(where, message, hint)
    if not uid_text.isdecimal():
        # A name means whatever uid the image's passwd file gives it: root, or someone else.
        message = (
            f"{label}: {user} would run the box as a user of the image, not as you "
            f"(a name can be any uid there, root included), {rule}"
        )
        return Problem(where, message, hint)
    uid, gids = _caller_ids(settings)
    if int(uid_text) != uid:
        message = (
            f"{label}: {user} is another user's uid (yours is {uid}): a box runs as you in lab mode, {rule}"
        )
        return Problem(where, message, hint)
    if gid_text and not gid_text.isdecimal():
        message = (
            f"{label}: {user} names group {gid_text!r}: a group name is whatever gid the image "
            f"gives it, {rule}"
        )
        return Problem(where, message, hint)
    if gid_text and int(gid_text) not in gids:
        message = f"{label}: {user} names group {gid_text}, which is not yours, {rule}"
        return Problem(where, message, hint)
    return None


def _build_problem(profile: Profile, policy: Policy) -> Problem | None:
    """`build:` under an image allow-list needs `allow_build: true` written down."""
    if profile.build is None or policy.allowed_images is None:
        return None
    if not policy.allow_build:
        return None  # allow_build: false: the general rule (enforce) says so already
    if policy.allow_build_explicit:
        return None
    message = (
        f"building images is not allowed in lab mode: allowed_images is set "
        f"({policy.rule('allowed_images')}) and allow_build: true is not written in {policy.source}; "
        "a Dockerfile's FROM is the same door as image:"
    )
    return Problem(profile.origin("build"), message, "use an allowed image: instead")


# Below this a port is privileged: a box holding 127.0.0.1:25 or :80 could pose as a service
# root's jobs trust (Docker's proxy binds it as root for the box).
FIRST_UNPRIVILEGED_PORT = 1024
# The NVIDIA runtime may read GPU requests from mounts here (accept-nvidia-visible-devices-as-
# volume-mounts): a mount target there could ask for GPUs past allocation.
_GPU_REQUEST_TARGETS = ("/var/run/nvidia-container-devices", "/run/nvidia-container-devices")


def _port_problems(profile: Profile) -> list[Problem]:
    """Fixed host ports below 1024 (lab mode): only root's services listen there."""
    return [
        Problem(
            profile.origin("ports"),
            f"port {port.name}: host port {port.host} is a privileged port (below "
            f"{FIRST_UNPRIVILEGED_PORT}); in lab mode boxes publish on {FIRST_UNPRIVILEGED_PORT} and up",
            f"leave the host port out (devbox picks a free one) or use {port.host + 8000}",
        )
        for port in profile.ports
        if port.host is not None and 0 < port.host < FIRST_UNPRIVILEGED_PORT
    ]


# Each bind is a mount on the host (a pin) and each volume work under the lab's GPU lock: a
# profile with thousands of either would slow everyone or fill the host's mount table.
MOST_MOUNTS = 32


def _count_problems(profile: Profile) -> list[Problem]:
    """More mounts than a box needs (lab mode)."""
    if len(profile.volumes) <= MOST_MOUNTS:
        return []
    message = f"{len(profile.volumes)} volumes and binds; lab mode allows {MOST_MOUNTS} per box"
    hint = "mount a parent folder instead of many of its children"
    return [Problem(profile.origin("volumes"), message, hint)]


def _target_problems(profile: Profile) -> list[Problem]:
    """Mount targets where the GPU runtime reads requests."""
    return [
        Problem(
            profile.origin("volumes"),
            f"{volume.target} is where the NVIDIA runtime may read GPU requests: not a mount target",
            "ask for GPUs with gpus:",
        )
        for volume in profile.volumes
        if any(volume.target == t or volume.target.startswith(t + "/") for t in _GPU_REQUEST_TARGETS)
    ]


def violations(profile: Profile, policy: Policy, settings: Settings) -> list[Problem]:
    """The lab-mode rules `profile` breaks (none outside lab mode), located in the profile."""
    if not settings.lab:
        return []
    found = [_user_problem(profile, policy, settings), _build_problem(profile, policy)]
    # A devcontainer.json's remoteUser runs its postCreateCommand / postStartCommand: the
    # same rule as user:, or `"remoteUser": "root"` beside an allowed user is root in the box.
    for slot in ("post_create", "post_start"):
        users = dict.fromkeys(c.user for c in getattr(profile, slot) if c.user is not None)
        found += [_user_problem(profile, policy, settings, user, slot) for user in users]
    return [
        *(p for p in found if p is not None),
        *_port_problems(profile),
        *_target_problems(profile),
        *_count_problems(profile),
    ]


def check(profile: Profile, policy: Policy, settings: Settings) -> Profile:
    """The profile as lab mode runs it: `user:` unset becomes `host`.

    Raises PolicyRefusal (exit 3) listing every broken rule, lab-mode and general ones
    together, so one run shows everything to fix. Outside lab mode: `profile` unchanged.
    """
    if not settings.lab:
        return profile
    problems = violations(profile, policy, settings)
    if problems:
        raise enforce.refusal(profile, policy, problems + enforce.violations(profile, policy))
    if profile.user is None:
        return dataclasses.replace(profile, user="host")
    return profile


def may_start_as_root(profile: Profile, policy: Policy) -> bool:
    """True when a lab box may start as root (the devbox image protocol's set-up), then drop.

    Only with `allow_root: true`: a process that is root in a box with the user's mounts can
    be steered by them (a mount over the entrypoint, LD_PRELOAD, a symlink in their home),
    so by default lab boxes run as the caller from their first process (`--user`).
    """
    del profile  # the rule is the policy's alone, whatever the profile asks
    return policy.allow_root
