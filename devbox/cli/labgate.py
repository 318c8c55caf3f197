"""Lab mode's front end: a user's command goes to the root helper through sudo.

When lab mode is set up (/etc/devbox/lab.yaml exists) and the caller is not root, every
command that may touch the engine is handed, unchanged, to the root-owned helper with
`sudo -n`. sudo clears the environment; the caller's own environment travels as data in an
inherited memory file (for `${VAR}` in profiles and `-e KEY`), never as settings. Help,
version and completion stay here, as the user: they need nothing privileged.
"""

from __future__ import annotations

import os
import sys
from typing import NoReturn

SUDO = "/usr/bin/sudo"
# labmode.LAB_FILE, spelt out: every devbox command asks this, and importing labmode (errors,
# dataclasses, pathlib) would cost ~30 ms of each `devbox --help`. A unit test keeps them equal.
LAB_FILE = "/etc/devbox/lab.yaml"
# Answered without the helper: nothing here touches the engine or the policy's secrets.
LOCAL_COMMANDS = {"version", "completion", "help", "__complete", "lab", "--help", "-h", "--version"}
ENV_FD = 3  # sudo -C 4 keeps descriptors below 4 open for the helper (closefrom_override)


def needed(argv: list[str]) -> bool:
    """True when this command line must run through the lab helper."""
    if not argv or argv[0] in LOCAL_COMMANDS or os.geteuid() == 0:
        return False
    before = argv[: argv.index("--")] if "--" in argv else argv
    if "--help" in before or "-h" in before:
        return False  # a command's own help: typer answers it here
    if elsewhere(before):
        return False  # other servers are reached as the user, over their own ssh (docs/hosts.md)
    return os.path.lexists(LAB_FILE)


def elsewhere(argv: list[str]) -> bool:
    """True for a command line about other servers: `hosts`, `--all-hosts`, `--host NAME` (not local)."""
    if argv[:1] == ["hosts"] or "--all-hosts" in argv:
        return True
    for i, arg in enumerate(argv):
        if arg == "--host" and i + 1 < len(argv):
            return argv[i + 1] != "local"
        if arg.startswith("--host="):
            return arg != "--host=local"
    return False


def ignored_variables(environ: dict[str, str]) -> list[str]:
    """The variables set by the caller that lab mode does not let them decide with."""
    from devbox import labmode

    return [name for name in labmode.IGNORED_ENV if environ.get(name)]


def warning(names: list[str]) -> str:
    """The one-line warning for ignored variables."""
    from devbox import labmode

    return (
        f"warning: lab mode ignores {', '.join(names)} from your environment: you act as yourself, "
        f"under the policy in {labmode.POLICY_FILE}, on the lab's engine"
    )


def _fail(message: str, hint: str, argv: list[str]) -> NoReturn:
    from devbox.cli import errors
    from devbox.errors import Refused

    sys.exit(errors.report(Refused(message, hint), errors.json_requested(argv)))


def _env_fd(environ: dict[str, str]) -> int:
    """A memory file holding the caller's environment as JSON, at descriptor ENV_FD."""
    fd = os.memfd_create("devbox-env", 0)  # no MFD_CLOEXEC: it must reach the helper
    import json

    os.write(fd, json.dumps(environ).encode("utf-8", "surrogateescape"))
    os.lseek(fd, 0, os.SEEK_SET)
    if fd != ENV_FD:
        os.dup2(fd, ENV_FD, inheritable=True)
        os.close(fd)
    return ENV_FD


def redirect(argv: list[str]) -> NoReturn:
    """Replace this process with `sudo -n HELPER ... -- argv`; explain instead when it cannot work."""
    from devbox import labmode

    environ = dict(os.environ)
    names = ignored_variables(environ)
    if names:
        sys.stderr.write(warning(names) + "\n")
    try:
        from devbox.policy import labfile

        config = labfile.read_config()
    except Exception as exc:  # unreadable or broken: the helper would refuse the same way
        _fail(f"lab mode is set up but {labmode.LAB_FILE} cannot be read: {exc}", "ask your lab admin", argv)
    import grp

    try:
        group_id = grp.getgrnam(config.group).gr_gid
    except KeyError:
        hint = "ask your lab admin: devbox lab install"
        _fail(f"the lab group '{config.group}' does not exist", hint, argv)
    if group_id not in os.getgroups() and group_id != os.getgid():
        _fail(
            f"you are not in the lab group '{config.group}'",
            f"ask your lab admin: usermod -aG {config.group} $USER (then log in again)",
            argv,
        )
    if not os.access(SUDO, os.X_OK):
        _fail("lab mode needs sudo, and it is not installed", "ask your lab admin: apt install sudo", argv)
    fd = _env_fd(environ)
    sys.stdout.flush()
    sys.stderr.flush()
    helper = [str(labmode.HELPER), "--env-fd", str(fd), "--", *argv]
    os.execv(SUDO, [SUDO, "-n", "-C", str(fd + 1), "--", *helper])
