"""Setting lab mode up and down: the sudoers drop-in, the root helper, lab.yaml, a starter policy.

`devbox lab install` (root) refuses before it writes anything when a user other than root
could change something lab mode would trust (ops/labcheck.py); a second run changes nothing.
lab.yaml, whose existence turns lab mode on, is written last and removed first.
"""

from __future__ import annotations

import contextlib
import grp
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from devbox import labmode
from devbox.errors import DevboxError, InvalidInput, Origin, Problem, Refused
from devbox.ops.labcheck import SYSTEM_PATH, Paths, refusal, weak_spots
from devbox.policy.labfile import LabConfig, read_config

# Group names as groupadd takes them (no leading digit: sudoers reads %123 as nothing useful).
_GROUP_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,31}$")


def sudoers_text(group: str, helper: Path) -> str:
    """The drop-in: the lab group may run the helper as root, with any arguments, no password.

    !use_pty keeps the user's own terminal for exec and ssh; closefrom_override lets the front
    end hand the helper its environment on descriptor 3 (`sudo -C 4`); env_reset clears the rest.
    """
    return (
        "# devbox lab mode: written by `devbox lab install`, removed by `devbox lab uninstall`.\n"
        "# Do not edit: the next `devbox lab install` rewrites it.\n"
        f"Defaults!{helper} !use_pty, env_reset, closefrom_override\n"
        f"%{group} ALL=(root) NOPASSWD: {helper}\n"
    )


def helper_text(interpreter: str) -> str:
    """The root helper: this Python, isolated (-I: no PYTHON* variables, no user site, no cwd)."""
    return (
        f"#!{interpreter} -I\n"
        "# devbox lab mode's root helper, run through sudo (devbox help lab); from devbox lab install.\n"
        "from devbox.cli.labhelper import main\n\n"
        "raise SystemExit(main())\n"
    )


def lab_text(config: LabConfig) -> str:
    """lab.yaml: the lab group, its admin groups and the engine (strings as JSON: valid YAML)."""
    lines = [
        "# devbox lab mode (devbox help lab): on while this file exists. Written by devbox lab install;",
        "# options a later `devbox lab install` is not given keep the values below.",
        f"group: {json.dumps(config.group)}",
        f"admins: {json.dumps(list(config.admin_groups))}",
    ]
    if config.engine:
        lines.append(f"engine: {json.dumps(config.engine)}")
    return "\n".join(lines) + "\n"


def policy_text(config: LabConfig) -> str:
    """A starter policy: the lab-mode keys set, the limits shown commented out."""
    admins = ", ".join(json.dumps("@" + g) for g in config.admin_groups) or '"@labadmins"'
    return f"""# The lab policy (devbox help policy). In lab mode devbox reads it only from here, and only
# root may change it. Check a change before it counts: devbox policy check {labmode.POLICY_FILE}
#
# defaults: {{shm_size: 8g}}
# limits:
#   max_gpus_per_user: 2
#   max_cpus: 16
#   max_memory: 64g
#   max_boxes_per_user: 3
# allow_build: false               # with allowed_images set, build: needs allow_build: true
# allowed_mounts: [/data, /scratch]  # besides each user's home and project folder
# gpu_inventory: 8                 # or an nvidia-smi CSV file: /etc/devbox/gpus.csv
# admins: [carol, {admins}]  # users, @groups; lab.yaml's admin groups count too

# Root in a box with a bind mount is root on the host: boxes run as their owner.
allow_root: false

# The images boxes may use (each box runs as its owner whatever the image, unless allow_root).
# A pattern trusts whoever can publish an image that matches it: prefer names only you control.
allowed_images:
  - "devbox/devbox:*"
  - "devbox/lab4:*"
"""


# --- install / uninstall --------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    """One thing install or uninstall looked at, and what it did: created, updated, kept, removed, absent."""

    what: str
    action: str
    note: str = ""


@dataclass
class Report:
    """What install or uninstall did, in order, and the lab config in force."""

    steps: list[Step] = field(default_factory=list)
    config: LabConfig = field(default_factory=LabConfig)

    @property
    def changed(self) -> bool:
        """False when the run found everything as it should be."""
        return any(s.action not in ("kept", "absent") for s in self.steps)


def require_root(command: str, in_helper: bool) -> None:
    """Refused (exit 3) unless root runs this directly (not a lab user through the helper)."""
    if os.geteuid() != 0 or in_helper:
        raise Refused(
            f"devbox lab {command} changes /etc: only root may run it",
            f"run it as root: sudo devbox lab {command}",
        )


def _names(values: list[str], flag: str) -> list[str]:
    problems = [
        Problem(Origin(flag), f"{v!r} is not a group name", "letters, digits, '_', '.', '-'; at most 32")
        for v in values
        if not _GROUP_RE.match(v)
    ]
    if problems:
        raise InvalidInput(f"{flag} is invalid", problems)
    return values


def wanted_config(group: str | None, admins: list[str] | None, engine: str | None, paths: Paths) -> LabConfig:
    """The config to install: the options given, else what lab.yaml says, else the defaults."""
    try:
        old = read_config(paths.lab_file) if paths.lab_file.is_file() else LabConfig()
    except DevboxError:
        old = LabConfig()  # a broken lab.yaml is rewritten
    group = _names([group], "--group")[0] if group is not None else old.group
    admin_groups = (
        tuple(_names([a.removeprefix("@") for a in admins], "--admins")) if admins else old.admin_groups
    )
    if engine is not None:
        socket = engine.removeprefix("unix://")
        if not engine.startswith("unix:///") or any(c.isspace() or c in "\"'\\" for c in engine):
            problem = Problem(
                Origin("--engine"),
                f"{engine!r} is not a unix:// socket URL",
                "e.g. unix:///var/run/docker.sock",
            )
            raise InvalidInput("--engine is invalid", [problem])
        if not os.path.exists(socket):
            raise InvalidInput("--engine is invalid", [Problem(Origin("--engine"), f"no socket at {socket}")])
    return LabConfig(group, admin_groups, engine if engine is not None else old.engine)


def _dirs(path: Path, mode: int) -> str:
    """Make `path` and missing folders above it, root's with `mode`; created / updated / kept."""
    if path.is_dir():
        st = path.stat()
        if stat.S_IMODE(st.st_mode) == mode and st.st_uid == 0:
            return "kept"
        os.chown(path, 0, 0)
        path.chmod(mode)
        return "updated"
    if not path.parent.is_dir():
        _dirs(path.parent, 0o755)
    path.mkdir(mode=mode)
    os.chown(path, 0, 0)
    path.chmod(mode)  # mkdir's mode goes through the umask
    return "created"


def _same(path: Path, st: os.stat_result, data: bytes, mode: int) -> bool:
    """True when `path` (with lstat `st`) is a plain file of root's, with `mode`, holding `data`."""
    owners = (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode))
    return stat.S_ISREG(st.st_mode) and owners == (0, 0, mode) and path.read_bytes() == data


def _put(path: Path, text: str, mode: int, check: Callable[[Path], None] | None = None) -> str:
    """Write `path` atomically (root's, `mode`) unless it already says `text`; created / updated / kept."""
    data = text.encode("utf-8")
    try:
        st: os.stat_result | None = path.lstat()
    except FileNotFoundError:
        st = None
    if st is not None and _same(path, st, data, mode):
        return "kept"
    if not path.parent.is_dir():
        _dirs(path.parent, 0o755)
    # A name with a dot: sudo skips it in sudoers.d should it ever be left behind.
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            os.fchown(file.fileno(), 0, 0)
            os.fchmod(file.fileno(), mode)
            file.flush()
            os.fsync(file.fileno())
        if check:
            check(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return "created" if st is None else "updated"


def visudo() -> str:
    """The path of visudo; DevboxError naming the package when sudo is missing."""
    found = shutil.which("visudo", path=SYSTEM_PATH)
    if not found:
        raise DevboxError(
            "lab mode needs sudo, and visudo is not installed", "install sudo: apt-get install sudo"
        )
    return found


def _visudo_check(program: str) -> Callable[[Path], None]:
    def check(path: Path) -> None:
        done = subprocess.run([program, "-cf", str(path)], check=False, capture_output=True, text=True)
        if done.returncode != 0:
            raise DevboxError(
                "visudo rejects the sudoers drop-in; nothing was installed",
                details=tuple((done.stdout + done.stderr).splitlines()),
            )

    return check


def _groupadd(name: str) -> None:
    program = shutil.which("groupadd", path=SYSTEM_PATH) or "groupadd"
    done = subprocess.run([program, "--system", name], check=False, capture_output=True, text=True)
    if done.returncode != 0:
        raise DevboxError(f"groupadd --system {name} failed: {done.stderr.strip()}")


def group_exists(name: str) -> bool:
    """True when the group database knows `name`."""
    try:
        grp.getgrnam(name)
    except KeyError:
        return False
    return True


def install(
    config: LabConfig,
    paths: Paths | None = None,
    interpreter: str = sys.executable,
    make_group: Callable[[str], None] = _groupadd,
) -> Report:
    """Set lab mode up for `config`; lab.yaml last, so it is on only once the rest is in place.

    Refused before anything is written when something it would trust is not root's alone.
    """
    paths = paths or Paths()
    if not interpreter or any(c.isspace() for c in interpreter) or len(interpreter) > 200:
        raise Refused(
            f"the helper cannot name this Python on its #! line: {interpreter!r}",
            "install devbox under a path without spaces",
        )
    check = _visudo_check(visudo())
    spots = weak_spots(paths, interpreter)
    if spots:
        raise refusal(spots, "devbox lab install refused")
    text = sudoers_text(config.group, paths.helper)
    with tempfile.TemporaryDirectory() as scratch:  # visudo's word before anything is written
        draft = Path(scratch, "devbox")
        draft.write_text(text, encoding="utf-8")
        check(draft)
    report = Report(config=config)
    for name in (config.group, *config.admin_groups):
        if group_exists(name):
            report.steps.append(Step(f"group {name}", "kept"))
        else:
            make_group(name)
            report.steps.append(Step(f"group {name}", "created"))
    if os.path.lexists(paths.policy_file):
        report.steps.append(Step(str(paths.policy_file), "kept", "never rewritten"))
    else:
        report.steps.append(
            Step(
                str(paths.policy_file),
                _put(paths.policy_file, policy_text(config), 0o644),
                "a starter policy",
            )
        )
    report.steps.append(
        Step(str(paths.helper), _put(paths.helper, helper_text(interpreter), 0o755), f"runs {interpreter}")
    )
    report.steps.append(Step(str(paths.audit_dir), _dirs(paths.audit_dir, 0o700), "the audit log's folder"))
    report.steps.append(
        Step(str(paths.sudoers_file), _put(paths.sudoers_file, text, 0o440, check), "checked with visudo")
    )
    report.steps.append(Step(str(paths.lab_file), _put(paths.lab_file, lab_text(config), 0o644)))
    return report


def _remove(path: Path) -> str:
    try:
        path.unlink()
    except FileNotFoundError:
        return "absent"
    return "removed"


def uninstall(paths: Paths | None = None) -> Report:
    """Turn lab mode off: lab.yaml first, then the sudoers drop-in and the helper.

    The policy, the lab profiles, the audit log and the groups stay.
    """
    paths = paths or Paths()
    report = Report()
    for path in (paths.lab_file, paths.sudoers_file, paths.helper):
        report.steps.append(Step(str(path), _remove(path)))
    with contextlib.suppress(OSError):  # not empty, or already gone: leave it
        paths.helper.parent.rmdir()
    for path, note in ((paths.policy_file, "the policy"), (paths.audit_dir, "the audit log")):
        if path.exists():
            report.steps.append(Step(str(path), "kept", note))
    return report
