"""Applying the lab policy to a profile: caps on quotas, image, quota and mount rules (pure).

`check` refuses a profile that breaks a rule before anything touches the engine.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import os

from devbox import sizes
from devbox.errors import Origin, PolicyRefusal, Problem
from devbox.policy import capacity
from devbox.policy.rules import ALWAYS_FORBIDDEN, Policy
from devbox.profile.model import Profile, Resources


def apply_limits(profile: Profile, policy: Policy, host: capacity.Capacity | None = None) -> Profile:
    """Give unset quotas the policy's maximum, so no box runs unbounded.

    A maximum above what the host has is given as the host's amount (`host`, this machine
    when None): a policy written for a bigger machine must not make Docker refuse the box.
    """
    host = capacity.local() if host is None else host
    res, lim = profile.resources, policy.limits
    capped = Resources(
        cpus=res.cpus if res.cpus is not None else capacity.cap_cpus(lim.max_cpus, host),
        memory=res.memory if res.memory is not None else capacity.cap_bytes(lim.max_memory, host),
        pids=res.pids if res.pids is not None else lim.max_pids,
        disk=res.disk if res.disk is not None else lim.max_disk,
    )
    shm = profile.shm_size if profile.shm_size is not None else capacity.cap_bytes(lim.max_shm_size, host)
    if capped == res and shm == profile.shm_size:
        return profile
    return dataclasses.replace(profile, resources=capped, shm_size=shm)


def mount_is_forbidden(source: str, forbidden: str) -> bool:
    """True when binding `source` exposes `forbidden`: the path itself, inside it, or a parent of it."""
    # Both sides through symlinks: forbidding /var/run/x must also forbid /run/x.
    paths = {source, _real(source)}
    for path in paths:
        for rule in {forbidden, _real(forbidden)}:
            if path == rule or (rule != "/" and path.startswith(rule.rstrip("/") + "/")):
                return True
            if rule.startswith(path.rstrip("/") + "/"):
                return True
    return False


def _unverifiable(path: str) -> str | None:
    """Why some part of `path` cannot be looked at, or None (a missing tail is fine: -v creates it)."""
    try:
        os.path.realpath(path, strict=True)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        return (exc.strerror or str(exc)).lower()
    except ValueError as exc:  # a NUL byte: the profile refuses those first, this is the backstop
        return str(exc)
    return None


def _real(path: str) -> str:
    """The path with symlinks resolved, as far as this user may look (unreadable: as written)."""
    try:
        return os.path.realpath(path)
    except OSError:
        return os.path.normpath(path)


def _image_rules(profile: Profile, policy: Policy) -> list[Problem]:
    problems = []
    allowed = policy.allowed_images
    if profile.image and allowed is not None and not image_allowed(profile.image, policy):
        listed = ", ".join(allowed) or "(none)"
        message = f"image '{profile.image}' is not allowed: allowed_images is [{listed}]"
        problems.append(Problem(profile.origin("image"), f"{message} ({policy.rule('allowed_images')})"))
    if profile.build and not policy.allow_build:
        message = f"building images is not allowed: allow_build is false ({policy.rule('allow_build')})"
        problems.append(Problem(profile.origin("build"), message, "use an allowed image: instead"))
    return problems


def _quota_rules(profile: Profile, policy: Policy) -> list[Problem]:
    problems = []
    lim, gpus, res = policy.limits, profile.gpus, profile.resources
    if lim.max_gpus_per_user is not None and gpus.kind != "none":
        asked = {"all": None, "count": gpus.count, "devices": len(gpus.devices)}[gpus.kind]
        if asked is None or asked > lim.max_gpus_per_user:
            rule = f"limits.max_gpus_per_user = {lim.max_gpus_per_user}"
            message = f"gpus: {gpus.describe()} exceeds {rule} ({policy.rule('limits.max_gpus_per_user')})"
            hint = f"ask for at most {lim.max_gpus_per_user}: gpus: {lim.max_gpus_per_user}"
            problems.append(Problem(profile.origin("gpus"), message, hint))
    if lim.max_cpus is not None and res.cpus is not None and res.cpus > lim.max_cpus:
        rule = f"limits.max_cpus = {lim.max_cpus:g}"
        message = f"resources.cpus {res.cpus:g} exceeds {rule} ({policy.rule('limits.max_cpus')})"
        problems.append(
            Problem(profile.origin("resources"), message, f"ask for at most cpus: {lim.max_cpus:g}")
        )
    if lim.max_memory is not None and res.memory is not None and res.memory > lim.max_memory:
        limit = sizes.format_size(lim.max_memory)
        asked_memory = sizes.format_size(res.memory)
        message = f"resources.memory {asked_memory} exceeds limits.max_memory = {limit}"
        problems.append(
            Problem(
                profile.origin("resources"),
                f"{message} ({policy.rule('limits.max_memory')})",
                f"ask for at most memory: {limit}",
            )
        )
    problems += _per_box_rules(profile, policy)
    if lim.max_boxes_per_user == 0:
        message = (
            f"limits.max_boxes_per_user is 0: no boxes may run ({policy.rule('limits.max_boxes_per_user')})"
        )
        problems.append(Problem(Origin(profile.path), message))
    return problems


def _per_box_rules(profile: Profile, policy: Policy) -> list[Problem]:
    """max_pids, max_shm_size and max_disk: ceilings on each box, not sums over boxes."""
    lim, res = policy.limits, profile.resources
    problems = []
    if lim.max_pids is not None and res.pids is not None and res.pids > lim.max_pids:
        message = f"resources.pids {res.pids} exceeds limits.max_pids = {lim.max_pids}"
        problems.append(
            Problem(
                profile.origin("resources"),
                f"{message} ({policy.rule('limits.max_pids')})",
                f"ask for at most pids: {lim.max_pids}",
            )
        )
    for key, asked, limit, origin in (
        ("shm_size", profile.shm_size, lim.max_shm_size, profile.origin("shm_size")),
        ("resources.disk", res.disk, lim.max_disk, profile.origin("resources")),
    ):
        rule = "max_shm_size" if key == "shm_size" else "max_disk"
        if limit is not None and asked is not None and asked > limit:
            shown = sizes.format_size(limit)
            message = f"{key} {sizes.format_size(asked)} exceeds limits.{rule} = {shown}"
            hint = f"ask for at most {key.rpartition('.')[2]}: {shown}"
            problems.append(Problem(origin, f"{message} ({policy.rule(f'limits.{rule}')})", hint))
    return problems


def _mount_rules(profile: Profile, policy: Policy) -> list[Problem]:
    problems = []
    for volume in profile.volumes:
        if volume.kind != "bind":
            continue
        why = _unverifiable(volume.source)
        if why is not None:
            # The engine runs as root and follows links this user cannot see; what cannot be
            # checked is refused, or a folder made unreadable would hide a link to the socket.
            message = f"cannot see where {volume.source} leads ({why}), so it cannot be checked"
            problems.append(Problem(volume.origin, message, "mount a folder you can read"))
            continue
        for forbidden in policy.forbidden_mounts:
            if mount_is_forbidden(volume.source, forbidden):
                if forbidden in ALWAYS_FORBIDDEN:
                    rule = "always forbidden (it hands the box the host)"
                else:
                    rule = f"forbidden_mounts ({policy.rule('forbidden_mounts')})"
                message = f"mounting {volume.source} exposes {forbidden}: {rule}"
                problems.append(Problem(volume.origin, message, "mount a project folder instead"))
                break
    return problems


def violations(profile: Profile, policy: Policy) -> list[Problem]:
    """Every rule of `policy` that `profile` breaks, located in the profile."""
    return _image_rules(profile, policy) + _quota_rules(profile, policy) + _mount_rules(profile, policy)


def check(profile: Profile, policy: Policy, host: capacity.Capacity | None = None) -> Profile:
    """The profile with policy caps applied; raises PolicyRefusal listing every broken rule.

    `host`: what the machine has, to cap the quotas given (this machine when None).
    """
    problems = violations(profile, policy)
    if problems:
        raise refusal(profile, policy, problems)
    return apply_limits(profile, policy, host)


def refusal(profile: Profile, policy: Policy, problems: list[Problem]) -> PolicyRefusal:
    """The refusal of `profile` for the broken rules `problems` (exit 3)."""
    count = f"{len(problems)} rule" + ("s" if len(problems) > 1 else "")
    return PolicyRefusal(
        f"the lab policy refuses profile '{profile.name}' ({count} broken)",
        problems,
        policy.source,
    )


def image_allowed(image: str, policy: Policy) -> bool:
    """True when `image` matches `allowed_images` (any image when the policy lists none)."""
    allowed = policy.allowed_images
    return allowed is None or any(fnmatch.fnmatchcase(image, p) for p in allowed)
