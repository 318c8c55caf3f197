"""The lab admin's policy file: defaults, limits, allowed images, forbidden mounts, bind address.

Read from `DEVBOX_POLICY`, else `/etc/devbox/policy.yaml`; no file means permissive
defaults. `check` refuses a profile that breaks a rule before anything touches the engine.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any

from devbox import sizes
from devbox.errors import InvalidInput, Origin, Problem
from devbox.profile.fields import Layer
from devbox.profile.loader import parse_document
from devbox.profile.yamlsrc import Document, load_file
from devbox.settings import Settings

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
