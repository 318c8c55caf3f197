"""Lab mode's own small file, /etc/devbox/lab.yaml: the lab group, admin groups, the engine.

`devbox lab install` writes it; its existence is what turns lab mode on (devbox.labmode).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from devbox.errors import InvalidInput, Origin, Problem
from devbox.labmode import LAB_FILE

LAB_KEYS = ("group", "admins", "engine")


@dataclass(frozen=True)
class LabConfig:
    """What `devbox lab install` recorded: the lab group, admin groups, the engine to use."""

    group: str = "devbox"
    admin_groups: tuple[str, ...] = ()
    engine: str | None = None


def read_config(path: Path = LAB_FILE) -> LabConfig:
    """The lab file's settings; InvalidInput naming the line for anything wrong in it."""
    from devbox.profile.yamlsrc import load_file

    doc = load_file(path)
    problems = list(doc.problems)
    data = doc.data if doc.data is not None else {}
    if not isinstance(data, dict):
        raise InvalidInput(f"{path} is not a lab file", [Problem(Origin(str(path)), "it must be a mapping")])
    for key in data:
        if key not in LAB_KEYS:
            problems.append(
                Problem(doc.key_origin((key,)), f"unknown key '{key}'", "known: " + ", ".join(LAB_KEYS))
            )
    group = data.get("group", "devbox")
    admins = data.get("admins", [])
    engine = data.get("engine")
    if not isinstance(group, str) or not group:
        problems.append(Problem(doc.origin(("group",)), "group must be a group name"))
    if not isinstance(admins, list) or not all(isinstance(a, str) and a for a in admins):
        problems.append(Problem(doc.origin(("admins",)), "admins must be a list of group names"))
    if engine is not None and not (isinstance(engine, str) and engine.startswith("unix:///")):
        problems.append(Problem(doc.origin(("engine",)), "engine must be a unix:// socket URL"))
    if problems:
        raise InvalidInput(f"lab file {path} is invalid", problems, hint="devbox lab install rewrites it")
    return LabConfig(str(group), tuple(admins), engine)
