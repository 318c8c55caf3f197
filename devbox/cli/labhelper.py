"""Lab mode's root helper: the caller from sudo, a clean environment, then the usual CLI.

Started only as `sudo -n /usr/local/libexec/devbox/devbox-lab --env-fd N -- ARGS` by the
front end (cli/labgate.py). Before any command runs it: learns the caller from the kernel
(caller.from_sudo), refuses when anything lab mode trusts could be changed by a non-root
user (labmode.check_sound), rebuilds the environment from scratch (the engine is the lab's;
no variable declares GPUs, so the policy's `gpu_inventory:` does), and decides whether the
caller is an admin. Every command ends with one line in the audit log, whatever its outcome.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from devbox import audit, labmode
from devbox.errors import DevboxError, Refused

SECURE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# Values that are the caller's secrets even in an audit log: `-e KEY=VALUE` keeps only KEY.
_VALUE_FLAGS = ("-e", "--env")


def _parse(argv: list[str]) -> tuple[int | None, list[str]]:
    """(--env-fd, the devbox command line) from the helper's own arguments."""
    env_fd = None
    rest = list(argv)
    while rest and rest[0] != "--":
        flag = rest.pop(0)
        if flag == "--env-fd" and rest and rest[0].isdecimal() and int(rest[0]) >= 3:
            env_fd = int(rest.pop(0))  # never 0-2: those are the command's own streams
        else:
            raise Refused(f"the lab helper does not take {flag!r}", "run devbox as yourself: devbox COMMAND")
    return env_fd, rest[1:]


def _caller_environ(fd: int | None) -> dict[str, str]:
    """The caller's environment, handed over by the front end (data only; bounded)."""
    if fd is None:
        return {}
    import stat

    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):  # the front end's memfd is a regular file
            os.close(fd)
            return {}
        blob = os.pread(fd, 1 << 20, 0)
        os.close(fd)
        data = json.loads(blob.decode("utf-8", "surrogateescape"))
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {str(k): str(v) for k, v in data.items() if isinstance(k, str) and isinstance(v, str)}


def clean_environ(caller_env: dict[str, str], engine: str | None) -> dict[str, str]:
    """Root's environment for the command: fixed PATH and HOME, the caller's display settings only."""
    env = {"PATH": SECURE_PATH, "HOME": "/root", "USER": "root", "LOGNAME": "root"}
    env |= {k: v for k, v in caller_env.items() if k in labmode.PASSED_ENV}
    if engine:
        env["DOCKER_HOST"] = engine
    else:
        # The local socket, whatever context root's ~/.docker/config.json may have made current:
        # lab.yaml alone picks the engine.
        env["DOCKER_CONTEXT"] = "default"
    return env


def redacted(argv: list[str]) -> list[str]:
    """The command line as the audit log keeps it: `-e KEY=VALUE` becomes `-e KEY=…`."""
    shown: list[str] = []
    hide_next = False
    for arg in argv:
        kept = arg
        if hide_next and "=" in arg:
            kept = arg.split("=", 1)[0] + "=…"
        elif arg.startswith("--env=") and arg.count("=") >= 2:
            kept = "=".join(arg.split("=", 2)[:2]) + "=…"
        elif arg.startswith("-e") and not arg.startswith("--") and "=" in arg:  # -eKEY=VALUE
            kept = arg.split("=", 1)[0] + "=…"
        hide_next = arg in _VALUE_FLAGS
        shown.append(kept)
    return shown


def _outcome(code: int) -> tuple[str, str | None]:
    """("allowed" or the error kind, why) for an exit status."""
    from devbox.cli import errors

    if code == 0:
        return "allowed", None
    error = errors.state.get("last_error")
    if isinstance(error, DevboxError):
        return error.kind, error.message
    return ("invalid" if code == 2 else "failed"), None


def _write_audit(fields: dict[str, Any]) -> None:
    try:
        audit.append(labmode.AUDIT_LOG, audit.line(**fields))
    except OSError as exc:
        sys.stderr.write(f"warning: cannot write the audit log {labmode.AUDIT_LOG}: {exc.strerror}\n")


def _working_folder() -> Path:
    """The caller's current folder; refused when it is gone (deleted while they stood in it)."""
    try:
        return Path.cwd()
    except OSError:
        raise Refused(
            "your current folder no longer exists", "cd to a folder that exists, then run devbox again"
        ) from None


def _on_signal(signum: int, frame: object) -> None:
    """A signal sudo relays (the caller may send them): stop as Ctrl-C does, cleaning up."""
    del frame
    raise KeyboardInterrupt(f"signal {signum}")


def _lift_limits() -> None:
    """Undo resource limits the caller set before sudo: they pass through to us, and a CPU or
    file-size limit could kill the helper half-way (pins mounted, no audit line)."""
    import resource

    for name in ("RLIMIT_CPU", "RLIMIT_FSIZE", "RLIMIT_AS", "RLIMIT_DATA", "RLIMIT_NPROC"):
        limit = getattr(resource, name, None)
        if limit is not None:
            with contextlib.suppress(ValueError, OSError):
                resource.setrlimit(limit, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (4096, 4096))


def _handle_signals() -> None:
    """The caller owns the sudo process and may make it relay signals to us. Each one ends the
    command through the Ctrl-C path (what was half made is undone, the audit line written), and
    a stop (Ctrl-Z) is ignored: a stopped helper would hold the lab's GPU lock for everyone."""
    import signal

    for name in ("SIGTERM", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2", "SIGALRM"):
        signal.signal(getattr(signal, name), _on_signal)
    for name in ("SIGTSTP", "SIGTTIN", "SIGTTOU"):
        signal.signal(getattr(signal, name), signal.SIG_IGN)


def _setup(argv: list[str], fields: dict[str, Any]) -> list[str]:
    """Everything before the command: who, soundness, environment, policy, admin.

    Returns the command line; fills `fields` (the audit line's) as it learns them, so a
    refusal part-way still names who was refused.
    """
    from devbox import caller, settings
    from devbox.policy import labfile, rules

    env_fd, command = _parse(argv)
    fields.update(command=(command or ["help"])[0], args=redacted(command))
    who = caller.from_sudo(os.environ)
    fields.update(user=who.name, uid=who.uid)
    labmode.check_sound()
    config = labfile.read_config()
    user_env = _caller_environ(env_fd)
    os.environ.clear()
    os.environ.update(clean_environ(user_env, config.engine))
    lab_settings = settings.for_caller(who, user_env, _working_folder(), labmode.ETC_DIR)
    policy = rules.load(lab_settings)
    admin = who.matches(tuple(policy.admins) + tuple(f"@{g}" for g in config.admin_groups))
    if not (admin or who.in_group(config.group)):
        raise Refused(
            f"you are not in the lab group '{config.group}'",
            f"ask your lab admin: usermod -aG {config.group} {who.name}",
        )
    # The GPU inventory needs nothing here: the environment is clean, so placement falls back to
    # the policy's `gpu_inventory:` itself (and names its line when it is wrong).
    settings.enter_lab(replace(lab_settings, admin=admin, environ=dict(os.environ)))
    fields["admin"] = admin
    return command


def main() -> None:
    """Entry point of the helper script lab install writes."""
    from devbox.cli import errors

    json_output = errors.json_requested(sys.argv[1:])
    fields: dict[str, Any] = {"user": os.environ.get("SUDO_USER", "?"), "command": "?"}
    _lift_limits()
    _handle_signals()
    try:
        command = _setup(sys.argv[1:], fields)
    except (Exception, KeyboardInterrupt) as exc:
        code = errors.report(exc, json_output)
        result, why = _outcome(code)
        if os.geteuid() == 0:
            _write_audit({**fields, "result": result, "exit": code, "why": why})
        sys.exit(code)
    errors.state["keep_process"] = True  # the fast path must return, so the audit line is written
    sys.argv = ["devbox", *command]
    code = 1
    written = [False]

    def write_once(exit_code: int) -> None:
        if not written[0]:
            written[0] = True
            result, why = _outcome(exit_code)
            _write_audit({**fields, "result": result, "exit": exit_code, "why": why})

    audit.at_exec(write_once)  # ssh and exec replace this process, a closed pipe ends it: say so first
    try:
        from devbox.cli import _main

        _main()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except KeyboardInterrupt:
        code = 130
    finally:
        write_once(code)
    sys.exit(code)
