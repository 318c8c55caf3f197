"""The lab admin's policy file: defaults, limits, allowed images, forbidden mounts, bind address.

Read from `DEVBOX_POLICY`, else `/etc/devbox/policy.yaml`; no file means permissive
defaults. `check` refuses a profile that breaks a rule before anything touches the engine.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import math
import os
from dataclasses import dataclass, field
from typing import Any

from devbox import sizes
from devbox.errors import InvalidInput, Origin, PolicyRefusal, Problem
from devbox.model import Profile, Resources
from devbox.profile_fields import Layer
from devbox.profiles import parse_document
from devbox.settings import Settings
from devbox.yamlsrc import Document, load_file

# Mounting any of these hands the box the host: always refused, whatever the policy says.
ALWAYS_FORBIDDEN = (
    "/",
    "/var/run/docker.sock",
    "/run/docker.sock",
    "/var/lib/docker",
    "/run/containerd",
    "/run/docker",  # dockerd's own containerd socket lives here: root on the host too
    "/var/run/docker",
)
POLICY_KEYS = (
    "defaults",
    "limits",
    "allowed_images",
    "allow_build",
    "forbidden_mounts",
    "bind_address",
)
LIMIT_KEYS = ("max_gpus_per_user", "max_cpus", "max_memory", "max_boxes_per_user")


@dataclass(frozen=True)
class Limits:
    """Per-user ceilings; None means no limit."""

    max_gpus_per_user: int | None = None
    max_cpus: float | None = None
    max_memory: int | None = None
    max_boxes_per_user: int | None = None


@dataclass(frozen=True)
class Policy:
    """The effective lab policy. `path` is None when no policy file exists."""

    path: str | None = None
    defaults: Layer | None = None
    limits: Limits = Limits()
    allowed_images: tuple[str, ...] | None = None
    allow_build: bool = True
    forbidden_mounts: tuple[str, ...] = ALWAYS_FORBIDDEN
    bind_address: str = "127.0.0.1"
    origins: dict[str, Origin] = field(default_factory=dict)

    @property
    def source(self) -> str:
        """The policy file, or a note that the built-in defaults apply."""
        return self.path or "(no policy file: built-in defaults)"

    def rule(self, key: str) -> str:
        """Where rule `key` is written, for messages."""
        origin = self.origins.get(key)
        return str(origin) if origin else self.source


def load(settings: Settings) -> Policy:
    """The policy in force for `settings`; a broken policy file raises InvalidInput."""
    path = settings.policy_path
    if not path.exists():
        if settings.policy_path_explicit:
            raise InvalidInput(
                f"policy file {path} does not exist",
                [Problem(Origin("DEVBOX_POLICY"), f"points at {path}")],
                hint="fix DEVBOX_POLICY or unset it",
            )
        return Policy()
    return parse(load_file(path), settings)


def parse(doc: Document, settings: Settings) -> Policy:
    """Validate a policy document, reporting every problem at once."""
    problems = list(doc.problems)
    data = doc.data if doc.data is not None else {}
    if not isinstance(data, dict):
        raise InvalidInput(
            f"{doc.source} is not a policy",
            [Problem(doc.origin(()), "a policy is a mapping of rules")],
        )
    for key in data:
        if key not in POLICY_KEYS:
            problems.append(
                Problem(
                    doc.key_origin((key,)),
                    f"unknown policy key '{key}'",
                    "known: " + ", ".join(POLICY_KEYS),
                )
            )
    defaults = None
    if "defaults" in data:
        defaults, found = parse_document(
            doc.subdocument("defaults"),
            settings,
            settings.cwd,
            settings.policy_path.parent,
        )
        problems += found
        if defaults.extends is not None:
            problems.append(
                Problem(
                    doc.key_origin(("defaults", "extends")),
                    "defaults cannot extend a profile: they sit under every profile",
                    "write the keys themselves under defaults:",
                )
            )
    limits = _limits(doc, data.get("limits", {}), problems)
    images = _string_list(doc, data, "allowed_images", problems)
    mounts = _string_list(doc, data, "forbidden_mounts", problems) or ()
    for i, mount in enumerate(mounts):
        if not mount.startswith("/"):
            problems.append(
                Problem(
                    doc.origin(("forbidden_mounts", i)),
                    f"'{mount}' is not an absolute path",
                )
            )
    import ipaddress  # only when a policy file exists

    bind_address = str(data.get("bind_address", "127.0.0.1"))
    try:
        ipaddress.ip_address(bind_address)
    except ValueError:
        problems.append(
            Problem(
                doc.origin(("bind_address",)),
                f"bind_address '{bind_address}' is not an IP address",
                "e.g. 127.0.0.1",
            )
        )
    allow_build = data.get("allow_build", True)
    if not isinstance(allow_build, bool):
        problems.append(Problem(doc.origin(("allow_build",)), "allow_build must be true or false"))
    if problems:
        raise InvalidInput(f"policy {doc.source} is invalid", problems, hint="see docs/policy.md")
    return Policy(
        path=doc.source,
        defaults=defaults,
        limits=limits,
        allowed_images=tuple(images) if images is not None else None,
        allow_build=bool(allow_build),
        forbidden_mounts=tuple(dict.fromkeys([*ALWAYS_FORBIDDEN, *(os.path.normpath(m) for m in mounts)])),
        bind_address=bind_address,
        origins={k: doc.origin((k,)) for k in POLICY_KEYS if k in data}
        | {
            f"limits.{k}": doc.origin(("limits", k))
            for k in LIMIT_KEYS
            if isinstance(data.get("limits"), dict) and k in data["limits"]
        },
    )


def _limits(doc: Document, raw: Any, problems: list[Problem]) -> Limits:
    if not isinstance(raw, dict):
        problems.append(Problem(doc.origin(("limits",)), "limits must be a mapping"))
        return Limits()
    values: dict[str, Any] = {}
    for key, value in raw.items():
        where = doc.origin(("limits", key))
        if key not in LIMIT_KEYS:
            problems.append(
                Problem(
                    doc.key_origin(("limits", key)),
                    f"unknown limit '{key}'",
                    "known: " + ", ".join(LIMIT_KEYS),
                )
            )
        elif key == "max_memory":
            size = sizes.parse_size(value)
            if size is None:
                problems.append(Problem(where, f"max_memory {value!r} is not a size", "e.g. 64g"))
            elif size < 6 * 1024**2:
                # Boxes get this as their memory when they ask for none: Docker refuses < 6 MiB.
                problems.append(
                    Problem(where, f"max_memory {value!r} is below Docker's 6 MiB minimum", "e.g. 64g")
                )
            values[key] = size
        elif (
            key == "max_cpus"
            and not isinstance(value, bool)
            and isinstance(value, (int, float))
            and math.isfinite(value)
            and value >= 0.01  # Docker's smallest quota; less rounds to 0, "no limit"
        ):
            values[key] = float(value)
        elif key != "max_cpus" and not isinstance(value, bool) and isinstance(value, int) and value >= 0:
            values[key] = value
        else:
            least = "a number of CPUs, at least 0.01" if key == "max_cpus" else "a whole number, 0 or more"
            problems.append(Problem(where, f"{key} must be {least}, not {value!r}"))
    return Limits(**values)


def _string_list(doc: Document, data: dict[str, Any], key: str, problems: list[Problem]) -> list[str] | None:
    if key not in data:
        return None
    value = data[key]
    if isinstance(value, list) and all(isinstance(v, str) and v for v in value):
        return list(value)
    problems.append(Problem(doc.origin((key,)), f"{key} must be a list of strings"))
    return None


def apply_limits(profile: Profile, policy: Policy) -> Profile:
    """Cap unset CPU and memory quotas at the policy's maximum, so no box runs unbounded."""
    res = profile.resources
    capped = Resources(
        cpus=res.cpus if res.cpus is not None else policy.limits.max_cpus,
        memory=res.memory if res.memory is not None else policy.limits.max_memory,
        pids=res.pids,
    )
    return dataclasses.replace(profile, resources=capped) if capped != res else profile


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


def _unverifiable(path: str) -> bool:
    """True when some part of `path` cannot be looked at (a missing tail is fine: -v creates it)."""
    try:
        os.path.realpath(path, strict=True)
    except (FileNotFoundError, NotADirectoryError):
        return False
    except OSError:
        return True
    return False


def _real(path: str) -> str:
    """The path with symlinks resolved, as far as this user may look (unreadable: as written)."""
    try:
        return os.path.realpath(path)
    except OSError:
        return os.path.normpath(path)


def _image_rules(profile: Profile, policy: Policy) -> list[Problem]:
    problems = []
    allowed = policy.allowed_images
    if (
        profile.image
        and allowed is not None
        and not any(fnmatch.fnmatchcase(profile.image, p) for p in allowed)
    ):
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
    if lim.max_boxes_per_user == 0:
        message = (
            f"limits.max_boxes_per_user is 0: no boxes may run ({policy.rule('limits.max_boxes_per_user')})"
        )
        problems.append(Problem(Origin(profile.path), message))
    return problems


def _mount_rules(profile: Profile, policy: Policy) -> list[Problem]:
    problems = []
    for volume in profile.volumes:
        if volume.kind != "bind":
            continue
        if _unverifiable(volume.source):
            # The engine runs as root and follows links this user cannot see; what cannot be
            # checked is refused, or a folder made unreadable would hide a link to the socket.
            message = f"cannot see where {volume.source} leads (permission denied), so it cannot be checked"
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


def check(profile: Profile, policy: Policy) -> Profile:
    """The profile with policy caps applied; raises PolicyRefusal listing every broken rule."""
    problems = violations(profile, policy)
    if problems:
        count = f"{len(problems)} rule" + ("s" if len(problems) > 1 else "")
        raise PolicyRefusal(
            f"the lab policy refuses profile '{profile.name}' ({count} broken)",
            problems,
            policy.source,
        )
    return apply_limits(profile, policy)
