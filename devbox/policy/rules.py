"""The lab admin's policy file: defaults, limits, allowed images, forbidden mounts, bind address.

Read from `DEVBOX_POLICY`, else `/etc/devbox/policy.yaml`; no file means permissive
defaults. `check` refuses a profile that breaks a rule before anything touches the engine.
Lab mode (docs/lab.md) adds who is an admin, whether boxes may run as root, where binds may
come from and the declared GPUs: keys that mean nothing to a single user holding the socket,
except `gpu_inventory`, which stands in for an unset DEVBOX_GPU_INVENTORY there too.
`hosts:` names the lab's other servers (policy/hostentries.py, docs/hosts.md).
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from devbox import sizes
from devbox.errors import InvalidInput, Origin, Problem
from devbox.profile import files
from devbox.profile.fields import Layer
from devbox.profile.loader import parse_document
from devbox.profile.quotas import MOST_CPUS, MOST_PIDS
from devbox.profile.yamlsrc import Document, load_file
from devbox.settings import Settings

if TYPE_CHECKING:
    from devbox.policy.hostentries import HostEntry

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
    "gpu_busy_memory_mib",
    "admins",
    "allow_root",
    "allowed_mounts",
    "gpu_inventory",
    "hosts",
)
# Most GPUs a declared inventory may count (as DEVBOX_GPU_INVENTORY: a typo, not a machine).
MOST_DECLARED_GPUS = 1024
# A user or group name as passwd and group files allow them (samba's trailing $ included);
# `@name` is a group.
_ADMIN_RE = re.compile(r"^@?[A-Za-z0-9_][A-Za-z0-9_.-]*\$?$")
# A GPU no box holds with more memory in use than this is busy outside devbox (docs/gpus.md):
# a driver, X or a monitoring agent holds a few hundred MiB, a job gigabytes.
GPU_BUSY_MEMORY_MIB = 1024
LIMIT_KEYS = (
    "max_gpus_per_user",
    "max_cpus",
    "max_memory",
    "max_boxes_per_user",
    "max_pids",
    "max_shm_size",
    "max_disk",
)
# Limits on sizes, and the least each may be: a box without a value of its own gets the
# limit as its quota, and Docker refuses memory under 6 MiB.
_SIZE_LIMITS = {"max_memory": 6 * 1024**2, "max_shm_size": 1, "max_disk": 1}


@dataclass(frozen=True)
class Limits:
    """Ceilings; None means no limit.

    Summed over a user's live boxes: GPUs, CPUs, memory, boxes. Per box: pids, /dev/shm and
    the writable layer (`max_disk`, on storage drivers that can cap it).
    """

    max_gpus_per_user: int | None = None
    max_cpus: float | None = None
    max_memory: int | None = None
    max_boxes_per_user: int | None = None
    max_pids: int | None = None
    max_shm_size: int | None = None
    max_disk: int | None = None


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
    gpu_busy_memory_mib: int = GPU_BUSY_MEMORY_MIB
    # Lab mode (docs/lab.md). `allow_build_explicit`: allow_build was written down, which
    # lab mode asks for before it lets `build:` past an `allowed_images` list.
    allow_build_explicit: bool = False
    admins: tuple[str, ...] = ()  # user names, and groups as `@group` (or a plain group name)
    allow_root: bool = False
    allowed_mounts: tuple[str, ...] = ()  # roots a lab-mode bind may come from, besides home and project
    gpu_inventory: int | str | None = None  # a count or a CSV path, as DEVBOX_GPU_INVENTORY
    hosts: tuple[HostEntry, ...] = ()  # the lab's servers (docs/hosts.md), in the file's order
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
    seen = files.look(str(path))
    if seen.error is not None:
        where = Origin("DEVBOX_POLICY") if settings.policy_path_explicit else Origin(files.shown(str(path)))
        raise InvalidInput(
            f"cannot read the policy file {files.shown(str(path))}",
            [Problem(where, seen.error)],
            hint="the lab policy is read as you: ask the admin to make it readable",
        )
    if seen.kind == "missing":
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
    busy_memory = data.get("gpu_busy_memory_mib", GPU_BUSY_MEMORY_MIB)
    if not _whole(busy_memory) or busy_memory < 0:
        problems.append(
            Problem(
                doc.origin(("gpu_busy_memory_mib",)),
                f"gpu_busy_memory_mib must be a whole number of MiB, 0 or more, not "
                f"{files.shown(repr(busy_memory), 40)}",
                f"e.g. gpu_busy_memory_mib: {GPU_BUSY_MEMORY_MIB}",
            )
        )
    lab = _lab_keys(doc, data, problems)
    hosts = []
    if "hosts" in data:  # imported only then: `devbox up` on one server never needs it
        from devbox.policy.hostentries import parse_hosts

        hosts = parse_hosts(doc, ("hosts",), problems)
    if problems:
        raise InvalidInput(f"policy {doc.source} is invalid", problems, hint="devbox help policy")
    return Policy(
        path=doc.source,
        defaults=defaults,
        limits=limits,
        allowed_images=tuple(images) if images is not None else None,
        allow_build=bool(allow_build),
        forbidden_mounts=tuple(dict.fromkeys([*ALWAYS_FORBIDDEN, *(os.path.normpath(m) for m in mounts)])),
        bind_address=bind_address,
        gpu_busy_memory_mib=busy_memory,
        allow_build_explicit="allow_build" in data,
        admins=lab.admins,
        allow_root=lab.allow_root,
        allowed_mounts=lab.allowed_mounts,
        gpu_inventory=lab.gpu_inventory,
        hosts=tuple(hosts),
        origins={k: doc.origin((k,)) for k in POLICY_KEYS if k in data}
        | {
            f"limits.{k}": doc.origin(("limits", k))
            for k in LIMIT_KEYS
            if isinstance(data.get("limits"), dict) and k in data["limits"]
        },
    )


def gpu_inventory_value(policy: Policy) -> str | None:
    """The policy's `gpu_inventory` as DEVBOX_GPU_INVENTORY would say it ("8", a path), or None."""
    return None if policy.gpu_inventory is None else str(policy.gpu_inventory)


@dataclass(frozen=True)
class _LabKeys:
    admins: tuple[str, ...] = ()
    allow_root: bool = False
    allowed_mounts: tuple[str, ...] = ()
    gpu_inventory: int | str | None = None


def _lab_keys(doc: Document, data: dict[str, Any], problems: list[Problem]) -> _LabKeys:
    """admins, allow_root, allowed_mounts and gpu_inventory, each problem located."""
    admins = _string_list(doc, data, "admins", problems) or []
    for i, name in enumerate(admins):
        if not _ADMIN_RE.match(name):
            problems.append(
                Problem(
                    doc.origin(("admins", i)),
                    f"'{files.shown(name, 40)}' is not a user or group name",
                    "e.g. admins: [alice, '@labadmins'] (@ marks a group)",
                )
            )
    allow_root = data.get("allow_root", False)
    if not isinstance(allow_root, bool):
        problems.append(Problem(doc.origin(("allow_root",)), "allow_root must be true or false"))
    roots = _string_list(doc, data, "allowed_mounts", problems) or []
    for i, root in enumerate(roots):
        why = files.path_problem(root)
        if why is None and not root.startswith("/"):
            why = "is not an absolute path"
        if why is not None:
            problems.append(Problem(doc.origin(("allowed_mounts", i)), f"'{files.shown(root, 60)}' {why}"))
    return _LabKeys(
        admins=tuple(admins),
        allow_root=allow_root is True,
        allowed_mounts=tuple(dict.fromkeys(os.path.normpath(r) for r in roots)),
        gpu_inventory=_gpu_inventory(doc, data, problems),
    )


def _gpu_inventory(doc: Document, data: dict[str, Any], problems: list[Problem]) -> int | str | None:
    """A count of GPUs (1 to MOST_DECLARED_GPUS) or the absolute path of an nvidia-smi CSV."""
    if "gpu_inventory" not in data:
        return None
    value = data["gpu_inventory"]
    if isinstance(value, str) and value.strip().isdecimal():
        value = int(value.strip()) if len(value.strip()) <= 5 else MOST_DECLARED_GPUS + 1
    if _whole(value) and 1 <= value <= MOST_DECLARED_GPUS:
        return int(value)
    if isinstance(value, str) and value.startswith("/") and files.path_problem(value) is None:
        return os.path.normpath(value)
    problems.append(
        Problem(
            doc.origin(("gpu_inventory",)),
            f"gpu_inventory must be a number of GPUs from 1 to {MOST_DECLARED_GPUS} or the absolute "
            f"path of a CSV file, not {files.shown(repr(value), 40)}",
            "e.g. gpu_inventory: 8, or gpu_inventory: /etc/devbox/gpus.csv",
        )
    )
    return None


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
        elif key in _SIZE_LIMITS:
            shown = files.shown(repr(value), 40)
            size = sizes.parse_size(value)
            if size is None:
                problems.append(Problem(where, f"{key} {shown} is not a size", "e.g. 64g"))
            elif size > sizes.MAX_SIZE:
                problems.append(
                    Problem(where, f"{key} {shown} is more than Docker can take (8 EiB)", "e.g. 64g")
                )
            elif size < _SIZE_LIMITS[key]:
                # Boxes get this as their memory when they ask for none: Docker refuses < 6 MiB.
                problems.append(Problem(where, f"{key} {shown} is below Docker's 6 MiB minimum", "e.g. 64g"))
            else:
                values[key] = size
        elif key == "max_cpus" and (cpus := _finite(value)) is not None and 0.01 <= cpus <= MOST_CPUS:
            values[key] = cpus  # at least Docker's smallest quota: less rounds to 0, "no limit"
        elif _whole(value) and (
            1 <= value <= MOST_PIDS if key == "max_pids" else value >= 0 and key != "max_cpus"
        ):
            values[key] = value
        else:
            least = {
                "max_cpus": f"a number of CPUs from 0.01 to {MOST_CPUS}",
                "max_pids": f"a whole number from 1 to {MOST_PIDS} (the kernel's most)",
            }.get(key, "a whole number, 0 or more")
            problems.append(Problem(where, f"{key} must be {least}, not {files.shown(repr(value), 40)}"))
    return Limits(**values)


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _finite(value: Any) -> float | None:
    """A YAML number as a finite float; None for anything else (bools, inf, a 400-digit int)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def _string_list(doc: Document, data: dict[str, Any], key: str, problems: list[Problem]) -> list[str] | None:
    if key not in data:
        return None
    value = data[key]
    if isinstance(value, list) and all(isinstance(v, str) and v for v in value):
        return list(value)
    problems.append(Problem(doc.origin((key,)), f"{key} must be a list of strings"))
    return None
