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

from devbox.errors import InvalidInput, Origin, Problem

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
        env = dict(self.environ)
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


def from_environment(environ: Mapping[str, str] | None = None, cwd: Path | None = None) -> Settings:
    """Read the caller's identity and devbox's folders from the environment."""
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
