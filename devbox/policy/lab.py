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
import os

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


def _user_problem(profile: Profile, policy: Policy, settings: Settings) -> Problem | None:
    """Why the box may not run as `profile.user` in lab mode, or None."""
    user = profile.user
    if user is None or user == "host" or policy.allow_root:
        # With allow_root any user is allowed: root in the box could become any of them.
        return None
    where = profile.origin("user")
    rule = f"allow_root is false ({policy.rule('allow_root')})"
    uid_text, _, gid_text = user.partition(":")
    if user == "root" or (uid_text.isdecimal() and int(uid_text) == 0):
        message = f"user: {user} is not allowed in lab mode, {rule}: {_ROOT_WHY}"
        return Problem(where, message, _AS_YOU)
    if not uid_text.isdecimal():
        # A name means whatever uid the image's passwd file gives it: root, or someone else.
        message = (
            f"user: {user} would run the box as a user of the image, not as you "
            f"(a name can be any uid there, root included), {rule}"
        )
        return Problem(where, message, _AS_YOU)
    uid, gids = _caller_ids(settings)
    if int(uid_text) != uid:
        message = (
            f"user: {user} is another user's uid (yours is {uid}): a box runs as you in lab mode, {rule}"
        )
        return Problem(where, message, _AS_YOU)
    if gid_text and int(gid_text) not in gids:
        message = f"user: {user} names group {gid_text}, which is not yours, {rule}"
        return Problem(where, message, _AS_YOU)
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


def violations(profile: Profile, policy: Policy, settings: Settings) -> list[Problem]:
    """The lab-mode rules `profile` breaks (none outside lab mode), located in the profile."""
    if not settings.lab:
        return []
    found = [_user_problem(profile, policy, settings), _build_problem(profile, policy)]
    return [p for p in found if p is not None]


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
    """True when a lab box may follow the devbox image protocol (start as root, then drop).

    Only an image the admin allowed by name (`image:` matching `allowed_images`, never a
    `build:` of the user's, whose Dockerfile decides what runs as root), or any image when
    the policy allows root anyway. Otherwise the box gets `--user uid:gid` from the start.
    """
    if policy.allow_root:
        return True
    if profile.image is None or profile.build is not None or policy.allowed_images is None:
        return False
    return enforce.image_allowed(profile.image, policy)


def mount_roots(policy: Policy, settings: Settings, project: str | None = None) -> tuple[str, ...]:
    """Folders a lab-mode bind source may lie under: the caller's home, the working folder,
    the project profile's folder (`project`) and the policy's `allowed_mounts`.

    Compare real paths (symlinks resolved as the caller sees them) against these with
    `under_root`; forbidden mounts still apply inside them.
    """
    home = settings.caller.home if settings.caller is not None else settings.home
    found = [str(home), str(settings.cwd), *([project] if project else []), *policy.allowed_mounts]
    return tuple(dict.fromkeys(os.path.normpath(p) for p in found))


def under_root(real_path: str, roots: tuple[str, ...]) -> bool:
    """True when `real_path` is one of `roots` or inside one (`/` as a root allows nothing)."""
    path = os.path.normpath(real_path)
    return any(root != "/" and (path == root or path.startswith(root.rstrip("/") + "/")) for root in roots)
