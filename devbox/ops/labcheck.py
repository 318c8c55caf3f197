"""What lab mode trusts and whether only root can change it: lab status, doctor's lab checks.

Lab mode is only as strong as the files it reads as the truth and the code it runs as root:
its config and policy, the sudoers drop-in, the helper, the Python the helper names and
every folder that Python imports from. A user other than root who can change any of them can
change the policy. Every path is a parameter (`Paths`), so the tests run under a temporary folder.
"""

from __future__ import annotations

import contextlib
import grp
import json
import os
import pwd
import stat
import subprocess
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Literal

from devbox import labmode
from devbox.errors import DevboxError, Origin, Problem, Refused
from devbox.policy.labfile import LabConfig, read_config

SYSTEM_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
DEFAULT_SOCKET = "/var/run/docker.sock"
# What Python can import from a folder on sys.path; .pth files run code when Python starts.
_IMPORTABLE = (".py", ".pyc", ".so", ".pth")
Level = Literal["ok", "warn", "fail"]
_SEARCH = "import json, sys; import devbox; print(json.dumps([sys.path, devbox.__file__]))"


@dataclass(frozen=True)
class Paths:
    """Where lab mode's pieces go (labmode's constants; tests point them below a temporary folder)."""

    etc_dir: Path = labmode.ETC_DIR
    lab_file: Path = labmode.LAB_FILE
    policy_file: Path = labmode.POLICY_FILE
    profiles_dir: Path = labmode.PROFILES_DIR
    sudoers_file: Path = labmode.SUDOERS_FILE
    helper: Path = labmode.HELPER
    audit_dir: Path = labmode.AUDIT_LOG.parent

    @classmethod
    def under(cls, root: Path) -> Paths:
        """The same places below `root` instead of /."""
        base = cls()
        return cls(**{f.name: root / getattr(base, f.name).relative_to("/") for f in fields(cls)})

    def trusted(self) -> list[Path]:
        """Everything lab mode reads as the truth, or runs as root."""
        return [
            self.etc_dir,
            self.lab_file,
            self.policy_file,
            self.profiles_dir,
            self.sudoers_file,
            self.helper,
            self.audit_dir,
        ]


@dataclass(frozen=True)
class Spot:
    """A path a user other than root could change (`checked` False: it could not be looked at)."""

    path: str
    why: str
    checked: bool = True

    @property
    def fix(self) -> str:
        """The command that makes it root's alone."""
        if not self.checked:
            return f"run the check as root, or make {self.path} readable"
        return f"chown root:root {self.path} && chmod go-w {self.path}"


def _existing(path: Path) -> Path:
    """`path`, or its nearest folder that exists: who may create it there matters too."""
    while not os.path.lexists(path) and path != path.parent:
        path = path.parent
    return path


def _chain(path: Path) -> Iterator[Path]:
    """`path` and every folder above it as written, the folders holding each symlink on the way,
    its real path and every folder above that."""
    path = _existing(path.absolute())
    yield from [path, *path.parents]
    for _ in range(40):  # the kernel's own limit on links followed
        if not path.is_symlink():
            break
        yield from [path.parent, *path.parent.parents]
        path = _existing(path.parent / os.readlink(path))
    real = Path(os.path.realpath(path))
    yield from [real, *real.parents]


def _tree(root: Path) -> Iterator[Path]:
    """`root` and everything importable below it (folders named like packages, modules, .pth)."""
    yield root
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if d.isidentifier()]
        yield from (Path(folder, d) for d in dirs)
        yield from (Path(folder, f) for f in files if f.endswith(_IMPORTABLE))


def _look(paths: Iterable[Path], found: dict[str, Spot]) -> None:
    for path in paths:
        key = str(path)
        if key in found:
            continue
        try:
            why = labmode.weak_reason(path.lstat())
        except FileNotFoundError:
            continue
        except OSError as exc:
            found[key] = Spot(key, f"cannot be checked ({exc.strerror})", checked=False)
            continue
        if why:
            found[key] = Spot(key, why)


def helper_interpreter(helper: Path) -> str | None:
    """The Python named on the installed helper's first line (None: no helper, or not ours)."""
    try:
        with helper.open("rb") as file:
            first = file.readline(512).decode("utf-8", "replace")
    except OSError:
        return None
    words = first[2:].split() if first.startswith("#!") else []
    return words[0] if words else None


def runtime_spots(interpreter: str) -> list[Spot]:
    """What the helper runs as root: the interpreter (and its links), pyvenv.cfg, every folder
    on its isolated sys.path with everything importable below it, and the devbox package."""
    found: dict[str, Spot] = {}
    exe = Path(interpreter)
    _look(_chain(exe), found)
    _look([exe.parent / "pyvenv.cfg", exe.parent.parent / "pyvenv.cfg"], found)
    try:
        done = subprocess.run(
            [interpreter, "-I", "-c", _SEARCH],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            cwd="/",
            env={"PATH": SYSTEM_PATH},
        )
        search, package = json.loads(done.stdout) if done.returncode == 0 else ([], "")
    except (OSError, subprocess.TimeoutExpired, ValueError):
        search, package = [], ""
    if not package:
        found[interpreter] = Spot(interpreter, "cannot run `-I -c 'import devbox'`", checked=False)
        return list(found.values())
    roots = [Path(p) for p in search if p and os.path.isabs(p)]
    roots.append(Path(package).parent)
    for root in roots:
        _look(_chain(root), found)
        if root.is_dir():
            _look(_tree(root), found)
    return list(found.values())


def weak_spots(paths: Paths, interpreter: str | None) -> list[Spot]:
    """Everything a user other than root could change that lab mode would trust, in order."""
    found: dict[str, Spot] = {}
    for path in paths.trusted():
        _look(_chain(path), found)
    if paths.profiles_dir.is_dir():
        _look(_tree(paths.profiles_dir), found)
        _look(paths.profiles_dir.rglob("*.y*ml"), found)
    spots = list(found.values())
    if interpreter:
        spots += [s for s in runtime_spots(interpreter) if s.path not in found]
    return spots


def refusal(spots: list[Spot], what: str) -> Refused:
    """The error listing each spot with its fix (exit 3)."""
    shown = spots[:20]
    problems = [Problem(Origin(s.path), s.why, s.fix) for s in shown]
    more = f" ({len(spots) - len(shown)} more not shown)" if len(spots) > len(shown) else ""
    return Refused(
        f"{what}: {len(spots)} place(s) a user other than root could change{more}",
        "make each one root's alone (the fixes above), then run it again",
        problems=problems,
    )


def members(group: str) -> list[str]:
    """Every user in `group`: listed members and those whose primary group it is."""
    try:
        entry = grp.getgrnam(group)
    except KeyError:
        return []
    primary = [p.pw_name for p in pwd.getpwall() if p.pw_gid == entry.gr_gid]
    return sorted(set(entry.gr_mem) | set(primary))


def socket_users(socket: str) -> list[str]:
    """Users other than root who can use the engine's socket directly, around any policy.

    "everyone" when others may write to it.
    """
    try:
        st = os.stat(socket)
    except OSError:
        return []
    found: set[str] = set()
    if st.st_mode & stat.S_IWOTH:
        return ["everyone"]
    if st.st_uid != 0:
        try:
            found.add(pwd.getpwuid(st.st_uid).pw_name)
        except KeyError:
            found.add(f"uid {st.st_uid}")
    if st.st_mode & stat.S_IWGRP:
        with contextlib.suppress(KeyError):
            found |= set(members(grp.getgrgid(st.st_gid).gr_name))
    found.discard("root")
    return sorted(found)


@dataclass(frozen=True)
class Status:
    """Lab mode on this host: installed or not, its pieces, whether only root can change them."""

    installed: bool
    present: dict[str, bool]
    spots: list[Spot]
    config: LabConfig | None
    config_error: str | None
    interpreter: str | None
    members: list[str]
    admins: dict[str, list[str]]
    socket: str
    socket_users: list[str]

    @property
    def weak(self) -> list[Spot]:
        """The spots a user could change (not those that could not be looked at)."""
        return [s for s in self.spots if s.checked]

    @property
    def missing(self) -> list[str]:
        """The pieces lab mode needs that are not there (the policy is optional)."""
        return [path for path, there in self.present.items() if not there]

    @property
    def sound(self) -> bool:
        """Installed, complete, valid and root's alone."""
        return self.installed and not self.missing and not self.weak and self.config_error is None


def status(paths: Paths | None = None, engine: str | None = None) -> Status:
    """Look at lab mode without changing anything (any user; root sees everything).

    `engine` is the engine's address in use (for who can reach its socket); by default the
    one lab.yaml names, else Docker's default socket.
    """
    paths = paths or Paths()
    installed = os.path.lexists(paths.lab_file)
    config, error = None, None
    if installed:
        try:
            config = read_config(paths.lab_file)
        except DevboxError as exc:
            error = exc.message + "".join(f"; {p.origin}: {p.message}" for p in exc.problems)
    needed = [paths.lab_file, paths.sudoers_file, paths.helper] if installed else []
    interpreter = helper_interpreter(paths.helper) if installed else None
    spots = weak_spots(paths, interpreter) if installed else []
    address = engine or (config.engine if config else None) or f"unix://{DEFAULT_SOCKET}"
    socket = address.removeprefix("unix://") if address.startswith("unix://") else ""
    return Status(
        installed=installed,
        present={str(p): os.path.lexists(p) for p in needed},
        spots=spots,
        config=config,
        config_error=error,
        interpreter=interpreter,
        members=members(config.group) if config else [],
        admins={g: members(g) for g in config.admin_groups} if config else {},
        socket=socket,
        socket_users=socket_users(socket) if socket else [],
    )


def doctor_checks(found: Status) -> list[tuple[str, Level, str, str]]:
    """(name, status, detail, fix) of doctor's lab checks."""
    if not found.installed:
        return [("lab", "ok", "lab mode is off (devbox lab install sets it up)", "")]
    if found.config_error:
        return [("lab", "fail", found.config_error, "as root: devbox lab install")]
    if found.missing:
        return [
            (
                "lab",
                "fail",
                f"lab mode is on but {found.missing[0]} is missing",
                "as root: devbox lab install",
            )
        ]
    checks: list[tuple[str, Level, str, str]] = []
    if found.weak:
        first = found.weak[0]
        more = f" (and {len(found.weak) - 1} more: devbox lab status)" if len(found.weak) > 1 else ""
        checks.append(("lab", "fail", f"lab mode is not sound: {first.path} {first.why}{more}", first.fix))
    elif found.spots:
        first = found.spots[0]
        checks.append(("lab", "warn", f"lab mode: {first.path} {first.why}", first.fix))
    else:
        config = found.config or LabConfig()
        admins = ", ".join(config.admin_groups) or "none"
        text = f"lab mode is on: group {config.group} ({len(found.members)} member(s)), admin groups {admins}"
        checks.append(("lab", "ok", text, ""))
    if found.socket_users:
        who = ", ".join(found.socket_users)
        checks.append(
            (
                "lab bypass",
                "warn",
                f"{who} can use {found.socket} directly, around the lab policy",
                "lab users need no docker group: gpasswd -d USER docker (for each), then they log in again",
            )
        )
    return checks
