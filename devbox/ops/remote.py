"""Running devbox on another server: `ssh HOST devbox ARGS --json`, its answer decoded.

OpenSSH, not a library: the user's ~/.ssh/config applies (ProxyJump, agents, keys, aliases;
no -F is passed). One ControlMaster per server, kept 60 s, so a command after the first costs
a round trip instead of a handshake. BatchMode: a password prompt would hang a fan-out, so a
host that needs one fails at once, with ssh's own words. The server's devbox does the work,
under its own policy and lock; its `{"error": {...}}` object comes back here as the same
DevboxError kind (NoCapacity stays NoCapacity), and ssh failing (exit 255, a timeout) is
EngineUnreachable naming the host. A server whose devbox differs in major.minor is refused.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

from devbox import __version__
from devbox.errors import (
    DevboxError,
    EngineUnreachable,
    Interrupted,
    InvalidInput,
    NoCapacity,
    NotFound,
    Origin,
    Problem,
    Refused,
)
from devbox.ops.hosts import Host

CONTROL_PERSIST_S = 60  # how long an idle master stays; also how long a version check holds
CONNECT_TIMEOUT_S = 10
REMOTE_DEVBOX = "devbox"  # on the server's PATH for a non-interactive ssh command (docs/hosts.md)
PACKAGE = "devbox-gpu"
# A unix socket path holds 107 bytes (and a NUL); ssh adds ".XXXXXXXXXXXXXXXX" to the path
# ("/" and the 40 hex digits of %C) while it makes the master's socket.
_SOCKET_ROOM = 107 - 41 - 17
_ERRORS: dict[str, type[DevboxError]] = {
    "failed": DevboxError,
    "invalid": InvalidInput,
    "refused": Refused,
    "no-capacity": NoCapacity,
    "not-found": NotFound,
    "engine-unreachable": EngineUnreachable,
    "interrupted": Interrupted,
}


def _private_dir(path: Path) -> Path | None:
    """`path` as a folder only this user can enter (made 0700 if new); None if it cannot be."""
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = path.lstat()
        if info.st_uid != os.getuid() or not path.is_dir() or path.is_symlink():
            return None
        if info.st_mode & 0o077:
            os.chmod(path, 0o700)
    except OSError:
        return None
    return path


def control_dir() -> Path | None:
    """Where the ControlMaster sockets live: $XDG_RUNTIME_DIR/devbox-ssh, else
    ~/.cache/devbox/ssh (0700); a short folder in /tmp when those paths are too long for a
    socket; None when none can be made (then no connection sharing)."""
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    home = os.environ.get("HOME") or os.path.expanduser("~")
    candidates = [Path(runtime) / "devbox-ssh"] if runtime and os.path.isdir(runtime) else []
    candidates += [Path(home) / ".cache" / "devbox" / "ssh", Path(f"/tmp/devbox-ssh-{os.getuid()}")]
    for candidate in candidates:
        if len(str(candidate).encode()) <= _SOCKET_ROOM:
            made = _private_dir(candidate)
            if made is not None:
                return made
    return None


def ssh_argv(
    host: Host, remote_args: list[str], tty: bool = False, extra: list[str] | None = None
) -> list[str]:
    """The ssh command line running `remote_args` (a command and its arguments, quoted here for
    the server's shell) on `host`; no command with `remote_args` empty (e.g. -N with `extra`).
    `tty`: a terminal on the server (interactive exec, ssh); `extra`: more ssh options (-L …)."""
    if host.target is None:
        raise DevboxError(f"{host.name} is this machine: there is nothing to ssh to")
    argv = ["ssh", "-o", "BatchMode=yes", "-o", f"ConnectTimeout={CONNECT_TIMEOUT_S}"]
    folder = control_dir()
    if folder is not None:
        argv += ["-o", "ControlMaster=auto", "-o", f"ControlPath={folder}/%C"]
        argv += ["-o", f"ControlPersist={CONTROL_PERSIST_S}"]
    if host.port is not None:
        argv += ["-p", str(host.port)]
    if host.jump is not None:
        argv += ["-J", host.jump]  # a Slurm node, through its cluster's login node
    # -t: a terminal for interactive commands, without ssh's "Connection closed" line after.
    argv += ["-t", "-o", "LogLevel=ERROR"] if tty else ["-T"]
    argv += [*(extra or []), host.target]
    if remote_args:
        argv.append(shlex.join(remote_args))  # ssh hands the server's shell one string
    return argv


def local_argv(devbox_args: list[str]) -> list[str]:
    """This machine's devbox, as a command (a `local` host in a fan-out)."""
    return [sys.executable, "-m", "devbox", *devbox_args]


class _Ran:
    """What a command printed and how it ended."""

    def __init__(self, code: int, out: str, err: list[str]) -> None:
        self.code, self.out, self.err = code, out, err

    @property
    def last_err(self) -> str:
        lines = [line.strip() for line in self.err if line.strip()]
        return lines[-1] if lines else ""


def _execute(
    argv: list[str], timeout: float | None, stdin: bytes | None, progress: Callable[[str], None] | None
) -> _Ran | None:
    """Run `argv`; its stderr lines go to `progress` as they come. None when `timeout` passed
    (the process is killed)."""
    proc = subprocess.Popen(
        argv,
        stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    out: list[bytes] = []
    tail: deque[str] = deque(maxlen=30)
    err_stream, out_stream = proc.stderr, proc.stdout

    def read_err() -> None:
        for raw in err_stream:
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            tail.append(line)
            if progress is not None:
                progress(line)

    readers = [
        threading.Thread(target=read_err, daemon=True),
        threading.Thread(target=lambda: out.append(out_stream.read()), daemon=True),
    ]
    for reader in readers:
        reader.start()
    try:
        if stdin is not None and proc.stdin is not None:
            try:
                proc.stdin.write(stdin)
                proc.stdin.close()
            except BrokenPipeError:
                pass
        code = proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return None
    except BaseException:  # Ctrl-C: ssh goes with us (the server's devbox ends at its next write)
        proc.kill()
        proc.wait()
        raise
    for reader in readers:
        reader.join(5)  # a child that kept the pipes open must not hold devbox
    return _Ran(code, b"".join(out).decode("utf-8", "replace"), list(tail))


def host_command(host: Host) -> str:
    """`ssh [-p PORT] TARGET`, for hints."""
    return f"ssh -p {host.port} {host.target}" if host.port is not None else f"ssh {host.target}"


def _ssh_hint(host: Host, said: str) -> str:
    """What to do about ssh's last words."""
    address = host_command(host)
    if "Permission denied" in said:
        return f"`{address}` must log in without a prompt (BatchMode): a key in your agent or ~/.ssh/config"
    if "Host key verification failed" in said or "No matching host key" in said:
        return f"log in once by hand to check and record its host key: {address} true"
    if "Could not resolve" in said:
        return f"check the address of {host.name} in devbox's hosts or your ~/.ssh/config"
    return f"is the server up and its sshd running? `{address} true` shows what ssh sees"


def error_from_json(name: str, body: dict[str, Any]) -> DevboxError:
    """The DevboxError for a server's `{"error": body}`, its message prefixed with the host name."""
    kind = body.get("kind")
    cls = _ERRORS.get(kind, DevboxError) if isinstance(kind, str) else DevboxError
    message = f"{name}: {body.get('message') or 'failed'}"
    hint = body.get("hint") if isinstance(body.get("hint"), str) else None
    problems = []
    for item in body.get("problems") or []:
        if isinstance(item, dict):
            line, column = item.get("line"), item.get("column")
            origin = Origin(
                str(item.get("file", "")),
                line if isinstance(line, int) else None,
                column if isinstance(column, int) else None,
            )
            fix = item.get("fix")
            problems.append(
                Problem(origin, str(item.get("message", "")), fix if isinstance(fix, str) else None)
            )
    if cls is InvalidInput:
        return InvalidInput(message, problems, hint)
    return cls(message, hint, problems=problems)


def _reached(host: Host, ran: _Ran) -> str:
    """The output of a command that ran on `host`; EngineUnreachable when ssh or devbox was not there."""
    text = ran.out.strip()
    if not host.local and ran.code == 255 and not text:
        said = ran.last_err or "ssh exited 255"
        raise EngineUnreachable(
            f"cannot reach {host.name} ({host.address}) over ssh: {said}", _ssh_hint(host, said)
        )
    if ran.code == 127 and not text:
        raise EngineUnreachable(
            f"{host.name} has no devbox on the PATH of an ssh command: {ran.last_err or 'command not found'}",
            f"install devbox {__version__} there where a non-interactive login finds it "
            f"(e.g. pipx install --global {PACKAGE}=={__version__}); devbox help hosts",
        )
    return text


def _decode(host: Host, ran: _Ran) -> Any:
    text = _reached(host, ran)
    try:
        data = json.loads(text)
    except ValueError:
        said = text.splitlines()[0][:200] if text else ran.last_err or "nothing"
        raise DevboxError(
            f"{host.name}: devbox answered something that is not JSON (exit {ran.code}): {said}",
            f"is it devbox {__version__}? devbox hosts shows each host's version",
        ) from None
    if isinstance(data, dict) and set(data) == {"error"} and isinstance(data["error"], dict):
        raise error_from_json(host.name, data["error"])
    return data


# The commands that follow boxes.yaml: on the server they must act on its own engine, even when
# it shares this client's home (NFS, the test bed) and so reads the same boxes.yaml, which
# would send them on to the box's server, itself, again and again.
_PINNED_HERE = {
    "up",
    "info",
    "down",
    "rebuild",
    "logs",
    "exec",
    "render",
    "ssh",
    "tunnel",
    "proxy",
    "ssh-config",
}


def here(devbox_args: list[str]) -> list[str]:
    """`devbox_args` with `--host local` after its options (before a `--`), for those commands.

    On the server, devbox acts there: a server sharing the client's home (NFS) reads the same
    boxes.yaml, and without this would send the command on to the recorded host, itself.
    """
    end = devbox_args.index("--") if "--" in devbox_args else len(devbox_args)
    if devbox_args[:1] and devbox_args[0] in _PINNED_HERE and "--host" not in devbox_args[:end]:
        if devbox_args[0] in ("exec", "ssh"):
            # Right after the command word: these take everything after NAME as the command's.
            return [devbox_args[0], "--host", "local", *devbox_args[1:]]
        return [*devbox_args[:end], "--host", "local", *devbox_args[end:]]
    return devbox_args


def _ran(
    host: Host,
    devbox_args: list[str],
    timeout: float | None,
    stdin: bytes | None = None,
    progress: Callable[[str], None] | None = None,
) -> _Ran:
    argv = local_argv(devbox_args) if host.local else ssh_argv(host, [REMOTE_DEVBOX, *here(devbox_args)])
    try:
        ran = _execute(argv, timeout, stdin, progress)
    except FileNotFoundError:
        raise EngineUnreachable(
            "ssh is not installed on this machine", "install the OpenSSH client (apt install openssh-client)"
        ) from None
    if ran is None:
        raise EngineUnreachable(
            f"{host.name} ({host.address}) did not answer within {timeout:g} s",
            f"is the server up? `{host_command(host)} true` shows what ssh sees; "
            "a slow link: give more time with --timeout SECONDS",
        )
    return ran


def run_json(
    host: Host,
    devbox_args: list[str],
    timeout: float | None,
    stdin: bytes | None = None,
    progress: Callable[[str], None] | None = None,
) -> Any:
    """devbox's JSON answer to `devbox_args` (which must ask for JSON) on `host`.

    Raises the DevboxError subclass of the server's error kind, EngineUnreachable when ssh
    fails or `timeout` seconds pass (None: no limit), Refused when the server's devbox is
    another major.minor version (checked once per ControlPersist period). `progress` gets the
    server's stderr lines (ssh's own included) as they come."""
    if not host.local:
        ensure_version(host, timeout)
    return _decode(host, _ran(host, devbox_args, timeout, stdin, progress))


def same_release(a: str, b: str) -> bool:
    """True when versions `a` and `b` agree in major.minor (0.1.0 and 0.1.3 do)."""
    return a.split(".")[:2] == b.split(".")[:2]


def skew(host: Host, version: str) -> Refused:
    """The refusal of a server running devbox `version`, with the fix."""
    return Refused(
        f"{host.name} runs devbox {version}, this is {__version__}: install the same version on both "
        f"(pipx install {PACKAGE}=={__version__})",
        "devbox hosts shows every host's version",
    )


def remote_version(host: Host, timeout: float | None) -> str:
    """The devbox version `host` runs: `devbox --version` there (`version --json` would also ask
    the server's engine, up to 2 s, for nothing)."""
    ran = _ran(host, ["--version"], timeout)
    words = _reached(host, ran).split()
    if ran.code != 0 or len(words) != 2 or words[0] != "devbox":
        said = " ".join(words)[:100] or ran.last_err or f"exit {ran.code}"
        raise DevboxError(
            f"{host.name}: `devbox --version` did not name a devbox version: {said}",
            f"install devbox {__version__} there (pipx install {PACKAGE}=={__version__})",
        )
    return words[1]


def _cache_file(host: Host) -> Path | None:
    import hashlib

    folder = control_dir()
    if folder is None:
        return None
    key = hashlib.sha256(f"{host.target}:{host.port}".encode()).hexdigest()[:16]
    return folder / f"{key}.version"


def _master(host: Host) -> str | None:
    """The pid of the ControlMaster now serving `host` (`ssh -O check`: no network), or None."""
    if control_dir() is None:
        return None
    try:
        found = subprocess.run(
            ssh_argv(host, [], extra=["-O", "check"]), capture_output=True, text=True, timeout=5, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = re.search(r"pid=(\d+)", found.stderr)
    return match[1] if found.returncode == 0 and match else None


def ensure_version(host: Host, timeout: float | None) -> None:
    """check_version, unless it passed on the connection (ControlMaster) still serving `host`,
    within the last ControlPersist period: a new connection (the server restarted, or a new
    devbox was installed and the master closed) is checked again."""
    cache = _cache_file(host)
    try:
        if cache is not None and time.time() - cache.stat().st_mtime < CONTROL_PERSIST_S:
            known, _, pid = cache.read_text(encoding="utf-8").strip().partition(" ")
            if pid and same_release(known, __version__) and _master(host) == pid:
                return
    except OSError:
        pass
    check_version(host, 30.0 if timeout is None else timeout)


def check_version(host: Host, timeout: float) -> str:
    """The devbox version `host` runs; Refused, with the fix, when its major.minor differs."""
    version = remote_version(host, timeout)
    if not same_release(version, __version__):
        raise skew(host, version)
    cache = _cache_file(host)
    pid = _master(host) if cache is not None else None
    if cache is not None and pid is not None:
        try:
            temp = cache.with_name(f".{cache.name}.{os.getpid()}")
            temp.write_text(f"{version} {pid}", encoding="utf-8")
            os.replace(temp, cache)
        except OSError:
            pass  # no cache: the next command checks again
    return version
