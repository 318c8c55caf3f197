"""Where devbox looks for things, and who is asking: paths and environment in one object.

Built once at the edge (`from_environment`) and passed down, so the pure layers never read
`os.environ` themselves and tests can hand them any environment.
"""

from __future__ import annotations

import getpass
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from devbox.errors import InvalidInput, Origin, Problem

if TYPE_CHECKING:
    from devbox.caller import Caller

# Docker container and volume names allow [a-zA-Z0-9][a-zA-Z0-9_.-]*; an owner is part of both.
_NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$")


# Linux's limits: NAME_MAX bytes per component, PATH_MAX bytes for the whole path.
NAME_MAX = 255
PATH_MAX = 4095


def path_problem(text: str) -> str | None:
    """Why `text` cannot be a path on this host, or None when it can.

    Refused: control characters (a NUL ends the path early in every system call, a newline
    breaks `docker run -v` and the panels), bytes that are not UTF-8, a component longer
    than NAME_MAX and a path longer than PATH_MAX (the kernel answers ENAMETOOLONG, which
    pathlib's is_file() and friends raise instead of answering False).
    """
    for i, char in enumerate(text):
        if ord(char) < 32 or ord(char) == 127:
            return f"has a control character ({char!r} at position {i + 1})"
        if 0xD800 <= ord(char) <= 0xDFFF:
            return "is not valid UTF-8"
    encoded = text.encode("utf-8")
    if len(encoded) > PATH_MAX:
        return f"is {len(encoded)} bytes long, more than the {PATH_MAX} a path may have"
    for part in encoded.split(b"/"):
        if len(part) > NAME_MAX:
            shown = part[:20].decode("utf-8", "replace")
            return (
                f"has a name of {len(part)} bytes ({shown}…), more than the {NAME_MAX} a file name may have"
            )
    return None


def is_valid_name(name: str) -> bool:
    """True when `name` can be part of a Docker container or volume name."""
    return bool(_NAME_RE.match(name))


@dataclass(frozen=True)
class Settings:
    """The caller, their environment and the folders devbox reads."""

    environ: Mapping[str, str]
    cwd: Path
    home: Path
    owner: str
    uid: int
    gid: int
    user_config_dir: Path
    lab_dir: Path
    policy_path: Path
    policy_path_explicit: bool
    login: str = ""
    # Lab mode (docs/lab.md): `caller` is the kernel's word on who runs devbox (through sudo);
    # `environ` is then root's clean environment, and `user_environ` the caller's, used only
    # as data (${VAR} in profiles, `-e KEY`), never to choose the owner, policy or engine.
    caller: Caller | None = None
    user_environ: Mapping[str, str] | None = None
    admin: bool = True  # may act on others' boxes: outside lab mode, whoever holds the socket

    @property
    def lab(self) -> bool:
        """True in lab mode: a user acting through the root helper."""
        return self.caller is not None

    @property
    def caller_environ(self) -> Mapping[str, str]:
        """The caller's own environment: what `${VAR}` and `-e KEY` read."""
        return self.environ if self.user_environ is None else self.user_environ

    @property
    def user_profiles_dir(self) -> Path:
        """The caller's own profile library."""
        return self.user_config_dir / "profiles"

    @property
    def lab_profiles_dir(self) -> Path:
        """Profiles the lab admin provides to everyone on the host."""
        return self.lab_dir / "profiles"

    def interpolation_env(self) -> dict[str, str]:
        """Variables `${VAR}` may name: the environment plus the ones devbox always defines."""
        env = dict(self.caller_environ)
        env["PWD"] = str(self.cwd)
        env["HOME"] = str(self.home)
        env["DEVBOX_USER"] = self.owner
        return env


def bundled_profiles_dir() -> Path:
    """The profiles shipped with devbox: inside the wheel, or `profiles/` of a source checkout."""
    package_dir = Path(__file__).resolve().parent
    installed = package_dir / "bundled_profiles"
    if installed.is_dir():
        return installed
    return package_dir.parent / "profiles"


def _login() -> str | None:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # a uid with no passwd entry (a CI container)
        return None


def _home() -> Path:
    try:
        return Path.home()
    except (KeyError, RuntimeError):
        raise InvalidInput(
            "no home folder",
            [Problem(Origin("HOME"), "not set, and this uid is not in the passwd database")],
            hint="set HOME to a folder you own",
        ) from None


_lab_settings: list[Settings] = []


def enter_lab(lab_settings: Settings) -> None:
    """Make `from_environment` answer `lab_settings` from now on (the lab helper, once, at start)."""
    _lab_settings[:] = [lab_settings]


def lab_caller() -> Caller | None:
    """The caller the lab helper acts for (`enter_lab`); None outside lab mode."""
    return _lab_settings[0].caller if _lab_settings else None


def for_caller(
    caller: Caller, user_environ: Mapping[str, str], cwd: Path, lab_dir: Path = Path("/etc/devbox")
) -> Settings:
    """Lab mode's settings: the kernel's caller, the lab's own folder and policy, root's environment."""
    if not is_valid_name(caller.name):
        raise InvalidInput(
            f"{caller.name!r} cannot be a box owner",
            [Problem(Origin("your login name"), "an owner name is letters, digits, '_', '.' and '-'")],
            hint="ask your lab admin",
        )
    return Settings(
        environ=dict(os.environ),
        cwd=cwd,
        home=caller.home,
        owner=caller.name,
        uid=caller.uid,
        gid=caller.gid,
        user_config_dir=caller.home / ".config" / "devbox",
        lab_dir=lab_dir,
        policy_path=lab_dir / "policy.yaml",
        policy_path_explicit=False,
        login=caller.name,
        caller=caller,
        user_environ=dict(user_environ),
        admin=False,
    )


def from_environment(environ: Mapping[str, str] | None = None, cwd: Path | None = None) -> Settings:
    """Read the caller's identity and devbox's folders from the environment.

    In lab mode (the helper called `enter_lab`) the answer is the lab's settings, whatever
    the environment says: that is the point of lab mode.
    """
    if _lab_settings:
        return _lab_settings[0]
    env = dict(os.environ if environ is None else environ)
    home = Path(env.get("HOME") or _home())
    login = _login()
    owner = env.get("DEVBOX_USER") or login
    if owner is None:
        raise InvalidInput(
            f"uid {os.getuid()} has no login name",
            [Problem(Origin("DEVBOX_USER"), "not set, and this uid is not in the passwd database")],
            hint="set DEVBOX_USER to a simple name, e.g. DEVBOX_USER=alice",
        )
    if not is_valid_name(owner):
        source = "DEVBOX_USER" if env.get("DEVBOX_USER") else "your login name"
        raise InvalidInput(
            f"{owner!r} cannot be a box owner",
            [
                Problem(
                    Origin(source),
                    "an owner name is letters, digits, '_', '.' and '-', starting with a letter or digit",
                )
            ],
            hint="set DEVBOX_USER to a simple name, e.g. DEVBOX_USER=alice",
        )
    for variable in ("HOME", "XDG_CONFIG_HOME", "DEVBOX_CONFIG_DIR", "DEVBOX_LAB_DIR", "DEVBOX_POLICY"):
        problem = path_problem(env.get(variable) or "")
        if problem is not None:
            raise InvalidInput(
                f"{variable} cannot be a path",
                [Problem(Origin(variable), f"it {problem}")],
                hint=f"fix {variable}",
            )
    config_home = Path(env.get("XDG_CONFIG_HOME") or home / ".config")
    lab_dir = Path(env.get("DEVBOX_LAB_DIR") or "/etc/devbox")
    policy_env = env.get("DEVBOX_POLICY")
    return Settings(
        environ=env,
        cwd=cwd or Path.cwd(),
        home=home,
        owner=owner,
        uid=os.getuid(),
        gid=os.getgid(),
        user_config_dir=Path(env.get("DEVBOX_CONFIG_DIR") or config_home / "devbox"),
        lab_dir=lab_dir,
        policy_path=Path(policy_env) if policy_env else lab_dir / "policy.yaml",
        policy_path_explicit=bool(policy_env),
        login=login or owner,
    )
