"""Conda environments of a box (profile key `environments:`): created or updated at start.

Everything happens in the box, as its user, through `engine.exec`: the installer the image
has (mamba, micromamba, conda, else devbox's py-rattler script) makes each environment under
the owner's environments volume, devbox records what it did beside them, and writes a
kernelspec per environment where the box's Jupyter looks (JUPYTER_PATH, set in the spec).
An environment whose file is unchanged since its last good install is skipped; a failed one
is a warning naming the file with the installer's own message, and the rest go on.
docs/environments.md is the user's side of this.
"""

from __future__ import annotations

import json
import math
import re
import secrets
import shlex
import time
from dataclasses import dataclass
from typing import Any

from devbox.box import spec as boxspec
from devbox.box.resolved import Resolved
from devbox.box.state import Box
from devbox.engine.base import Engine
from devbox.errors import DevboxError
from devbox.ops.afterstart import Event, box_user
from devbox.ops.reporter import Reporter
from devbox.profile import environments as envkey
from devbox.profile.model import EnvironmentFile
from devbox.settings import Settings

# Looked for in this order; the last is devbox's own (images/rattler/devbox-rattler-env).
INSTALLERS = ("mamba", "micromamba", "conda", "devbox-rattler-env")
_TAIL = 20  # lines of a failed installer's output kept for the warning and `devbox env`
# Text goes into the box through exec's environment, and one variable holds at most 128 KiB
# (MAX_ARG_STRLEN): a file is written in pieces of at most 16384 characters (64 KiB of UTF-8).
_CHUNK = 16384
# The box's user owns the volume and may write anything into devbox's records: each is read
# capped (a record linked to a huge file cannot exhaust the host's devbox), and what they say
# is checked before it is shown.
_MAX_RECORD = 65536
STATUSES = ("ok", "failed", "pending")
_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")  # colours an installer prints: dropped
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")  # the rest shown as \xNN, never sent raw


@dataclass(frozen=True)
class EnvState:
    """What devbox recorded about one environment (STATE_DIR/NAME.json), for `devbox env`."""

    name: str
    file: str
    hash: str
    updated: float | None
    status: str  # ok, failed, pending (named by the box's profile, not made yet)
    message: str
    installer: str
    prefix: str
    kernel: bool


def installer_argv(tool: str, action: str, prefix: str, file: str) -> list[str]:
    """The command line that makes (`create`) or updates (`update`) `prefix` from `file`."""
    if tool == "micromamba":
        # micromamba has no `env update`; install -f adds what the file asks for.
        verb = "create" if action == "create" else "install"
        return [tool, verb, "-y", "-p", prefix, "-f", file]
    if tool in ("mamba", "conda"):
        if action == "create":
            return [tool, "env", "create", "-p", prefix, "-f", file]
        return [tool, "env", "update", "-p", prefix, "-f", file, "--prune"]
    return [tool, action, "-p", prefix, "-f", file]


def clean(line: str) -> str:
    """An installer's line fit for a terminal: colours dropped, other control characters
    (cursor moves, title changes: what a crafted line could use) shown escaped."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", _ANSI.sub("", line).replace("\r", ""))


def _sh(
    engine: Engine, box: Box, user: str, script: str, env: dict[str, str] | None = None
) -> tuple[int, str]:
    return engine.exec(box.id, ["/bin/sh", "-c", script], user=user, env=env)


def find_installer(engine: Engine, box: Box, user: str) -> str | None:
    """The first installer the box has on its PATH, or None."""
    names = " ".join(INSTALLERS)
    code, out = _sh(
        engine,
        box,
        user,
        f'for t in {names}; do command -v "$t" >/dev/null && {{ echo "$t"; exit 0; }}; done; exit 3',
    )
    tool = out.strip().splitlines()[-1] if code == 0 and out.strip() else ""
    return tool if tool in INSTALLERS else None


def read_states(engine: Engine, box: Box, user: str) -> dict[str, dict[str, Any]]:
    """Every environment's record in the volume, by name (unreadable ones left out)."""
    read = f'[ -f "$f" ] && head -c {_MAX_RECORD} "$f" && echo'
    script = f"for f in {envkey.STATE_DIR}/*.json; do {read}; done; true"
    _, out = _sh(engine, box, user, script)
    states: dict[str, dict[str, Any]] = {}
    for line in out.splitlines():
        try:
            data = json.loads(line)
        except (ValueError, RecursionError):  # RecursionError: [[[[… nested past Python's limit
            continue
        if isinstance(data, dict) and isinstance(data.get("name"), str):
            states[data["name"]] = data
    return states


def _write(engine: Engine, box: Box, user: str, path: str, text: str) -> None:
    """Write `text` to `path` in the box (through the environment: exec has no stdin here).

    In pieces (an environment variable holds at most 128 KiB), into a temporary file of this
    write's own, renamed over `path` at the end: a concurrent write of another box of the
    owner's (the volume is shared) never interleaves with it, and a reader sees old or new.
    """
    folder = path.rsplit("/", 1)[0]
    tmp = shlex.quote(f"{path}.{secrets.token_hex(4)}.tmp")
    pieces = [text[i : i + _CHUNK] for i in range(0, len(text), _CHUNK)] or [""]
    for i, piece in enumerate(pieces):
        if i == 0:
            script = f'mkdir -p {shlex.quote(folder)} && printf %s "$DEVBOX_TEXT" > {tmp}'
        else:
            script = f'printf %s "$DEVBOX_TEXT" >> {tmp}'
        if i == len(pieces) - 1:
            script += f" && mv -f {tmp} {shlex.quote(path)}"
        code, out = _sh(engine, box, user, script, env={"DEVBOX_TEXT": piece})
        if code != 0:
            _sh(engine, box, user, f"rm -f {tmp}")
            raise DevboxError(f"could not write {path} in the box: {clean(out.strip()[-300:])}")


def _kernel(engine: Engine, box: Box, user: str, env: EnvironmentFile, kernels: str) -> tuple[bool, str]:
    """Write the environment's kernelspec; (written, a note when the kernel would not start)."""
    prefix = envkey.prefix(env.name)
    python = f"{prefix}/bin/python"
    code, _ = _sh(engine, box, user, f"test -x {shlex.quote(python)}")
    if code != 0:
        return False, "no python in the environment: no Jupyter kernel (add python and ipykernel)"
    spec = {
        "argv": [python, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": env.name,
        "language": "python",
        "metadata": {"devbox": {"file": env.path}},
    }
    if env.variables:
        spec["env"] = env.variables  # the file's variables:, as `conda activate` would set them
    _write(engine, box, user, f"{kernels}/{env.name}/kernel.json", json.dumps(spec, indent=1))
    code, _ = _sh(engine, box, user, f"{shlex.quote(python)} -c 'import ipykernel' 2>/dev/null")
    if code != 0:
        return True, "no ipykernel in the environment: its Jupyter kernel will not start (add ipykernel)"
    return True, ""


def _locked(name: str, tool: str, prefix: str, copy: str) -> str:
    """The installer's shell line, under a lock in the volume: the volume is shared by all the
    owner's boxes, so two `up`s (or an installer a Ctrl-C'd `up` left running in its box) must
    not write one prefix at once. The lock is the installer's own (flock on an inherited fd),
    so it is released when the installer ends, however devbox ended. Create or update is
    decided once the lock is held: the other install may have made the prefix meanwhile.
    An image without flock(1) installs unlocked."""
    lock = shlex.quote(f"{envkey.STATE_DIR}/{name}.lock")
    waiting = shlex.quote(
        f"environment {name}: waiting for another install of it "
        "(another box of yours, or an interrupted devbox up) to finish"
    )
    create = shlex.join(installer_argv(tool, "create", prefix, copy))
    update = shlex.join(installer_argv(tool, "update", prefix, copy))
    return (
        f"if command -v flock >/dev/null 2>&1; then exec 9>>{lock} || exit 1; "
        f"flock -n 9 || {{ echo {waiting}; flock 9; }}; fi; "
        f"if [ -d {shlex.quote(prefix)}/conda-meta ]; then exec {update}; else exec {create}; fi"
    )


def _tail(output: str) -> str:
    lines = [clean(line).rstrip() for line in output.splitlines() if line.strip()]
    return "\n".join(lines[-_TAIL:])


def _one(
    engine: Engine,
    box: Box,
    user: str,
    tool: str,
    env: EnvironmentFile,
    kernels: str,
    reporter: Reporter,
) -> tuple[dict[str, Any], str | None]:
    """Make or update one environment; its new record and a warning if it failed."""
    prefix = envkey.prefix(env.name)
    copy = f"{envkey.STATE_DIR}/{env.name}.yml"
    record: dict[str, Any] = {
        "name": env.name,
        "file": env.path,
        "hash": envkey.digest(env.text),
        "updated": time.time(),
        "installer": tool,
        "prefix": prefix,
    }
    # Recorded before the installer runs: a Ctrl-C, a stopped box or a crash leaves `pending`
    # with the new file's hash (tried again at the next start), never the old `ok`.
    _write(
        engine,
        box,
        user,
        f"{envkey.STATE_DIR}/{env.name}.json",
        json.dumps(
            {
                **record,
                "status": "pending",
                "kernel": False,
                "message": "being installed, or its install did not finish; the next devbox up tries again",
            }
        ),
    )
    _write(engine, box, user, copy, env.text)
    exists, _ = _sh(engine, box, user, f"test -d {shlex.quote(prefix)}/conda-meta")
    action = "update" if exists == 0 else "create"
    reporter.step(f"environment {env.name}: {'updating' if action == 'update' else 'creating'} with {tool}")
    argv = installer_argv(tool, action, prefix, copy)
    code, output = engine.exec(
        box.id,
        ["/bin/sh", "-c", _locked(env.name, tool, prefix, copy)],
        user=user,
        env={"CONDA_PKGS_DIRS": envkey.PKGS_ROOT, "PYTHONUNBUFFERED": "1", "MAMBA_NO_BANNER": "1"},
        on_line=lambda line: reporter.build_line(clean(line)),
    )
    record["updated"] = time.time()
    if code != 0:
        message = _tail(output) or f"{tool} exited with {code}"
        record.update(status="failed", message=message, kernel=False)
        return record, f"environment {env.name} ({env.path}): {argv[0]} {action} failed:\n{message}"
    written, note = _kernel(engine, box, user, env, kernels)
    record.update(status="ok", message=note, kernel=written)
    return record, (f"environment {env.name}: {note}" if note else None)


def ensure(engine: Engine, box: Box, resolved: Resolved, reporter: Reporter, event: Event) -> list[str]:
    """Create or update each environment whose file changed; warnings for those that failed.

    Runs on every start, and when `up` finds the box running (`event` does not matter: the
    recorded hash does), so editing a file and running `up` is enough to update it.
    """
    try:
        return _ensure(engine, box, resolved, reporter)
    except DevboxError as exc:  # the volume unwritable, the engine gone: the box still works
        warning = f"environments were not brought up to date: {exc}"
        if "Permission denied" in str(exc):
            # The volume is the owner's, shared by their boxes: made by a box of another user.
            volume = boxspec.volume_name(resolved.spec.owner, envkey.ENVS_VOLUME)
            user = box_user(resolved) or "root"
            warning += (
                f"; {volume} was made by a box running as another user than this one ({user}): "
                "run your boxes with environments: as one user (user: in their profiles)"
            )
        return [warning]


def _ensure(engine: Engine, box: Box, resolved: Resolved, reporter: Reporter) -> list[str]:
    envs = resolved.profile.environments
    if box.mounts and not any(m.target == envkey.ENVS_ROOT for m in box.mounts):
        # A running box made before the profile named environments: `up` reports the change;
        # made here they would live in the container, not the volume, and vanish with it.
        return [
            f"environments {', '.join(e.name for e in envs)} were not made: the box has no "
            f"{envkey.ENVS_ROOT} volume yet; devbox up --recreate (or rebuild) adds it"
        ]
    user = box_user(resolved)
    kernels = f"{envkey.jupyter_path(box.name)}/kernels"
    # This box's list first: `devbox env` shows what the profile names, made or not.
    _write(engine, box, user, f"{envkey.STATE_DIR}/boxes/{box.name}.json", json.dumps([e.name for e in envs]))
    # Kernels of environments the profile no longer names go; the others are rewritten below.
    keep = " ".join(shlex.quote(e.name) for e in envs)
    folder = shlex.quote(kernels)
    _sh(
        engine,
        box,
        user,
        f'mkdir -p {folder} && cd {folder} && for d in *; do case " {keep} " in *" $d "*) ;; '
        f'*) [ -d "$d" ] && rm -rf -- "$d";; esac; done; true',
    )
    states = read_states(engine, box, user)
    tool: str | None = None
    warnings: list[str] = []
    for index, env in enumerate(envs):
        state = states.get(env.name, {})
        if _recorded_ok(state, env):
            code, _ = _sh(engine, box, user, f"test -d {shlex.quote(envkey.prefix(env.name))}/conda-meta")
            if code == 0:
                reporter.step(f"environment {env.name}: file unchanged, skipped")
                _kernel(engine, box, user, env, kernels)
                continue
        if tool is None:
            tool = find_installer(engine, box, user)
            if tool is None:
                # Only those still to make: another box (with an installer) may have made the rest.
                missing = [env.name] + [
                    e.name for e in envs[index + 1 :] if not _recorded_ok(states.get(e.name, {}), e)
                ]
                return [
                    *warnings,
                    f"image {resolved.spec.image} has no conda installer ({', '.join(INSTALLERS)} on its "
                    f"PATH): environments {', '.join(missing)} were not made; use an image "
                    "with micromamba or conda, or add devbox-rattler-env (devbox help environments)",
                ]
        try:
            record, warning = _one(engine, box, user, tool, env, kernels, reporter)
            _write(engine, box, user, f"{envkey.STATE_DIR}/{env.name}.json", json.dumps(record))
        except DevboxError as exc:  # this one could not be written or run: the others still are
            warning = f"environment {env.name} ({env.path}): {exc}"
        if warning:
            warnings.append(warning)
    return warnings


def _recorded_ok(state: dict[str, Any], env: EnvironmentFile) -> bool:
    """Whether the record says `env` was made from this very file."""
    return state.get("hash") == envkey.digest(env.text) and state.get("status") == "ok"


def _state(name: str, data: dict[str, Any] | None) -> EnvState:
    """A record as `devbox env` shows it; anything devbox would not have written (the box's
    user may write the volume) is dropped: a time out of range, a status or hash of another
    shape, a text longer than devbox keeps. Control characters are escaped where shown."""
    data = data or {}
    raw = data.get("updated")
    updated = float(raw) if isinstance(raw, int | float) and not isinstance(raw, bool) else None
    if updated is not None and not (math.isfinite(updated) and 0 <= updated < 1e11):  # to year 5138
        updated = None
    status = data.get("status")
    digest = data.get("hash")

    def text(key: str, limit: int = 4096) -> str:
        value = data.get(key)
        return value[:limit] if isinstance(value, str) else ""

    return EnvState(
        name=name,
        file=text("file"),
        hash=digest if isinstance(digest, str) and re.fullmatch(r"[0-9a-f]{16}", digest) else "",
        updated=updated,
        status=status if status in STATUSES else "pending",
        message=text("message"),
        installer=text("installer", 64),
        prefix=envkey.prefix(name),
        kernel=data.get("kernel") is True,
    )


def status(engine: Engine, settings: Settings, name: str) -> list[EnvState]:
    """`devbox env NAME`: the environments box `name` keeps, as recorded in its volume."""
    from devbox.ops import boxes

    target = boxes.exec_target(engine, settings, name)
    box, user = target.box, target.user
    if not any(m.target == envkey.ENVS_ROOT for m in box.mounts):
        return []
    return recorded(engine, box, user)


def recorded(engine: Engine, box: Box, user: str) -> list[EnvState]:
    """The environments `box` keeps (as its last start listed them), each with its record."""
    listing = shlex.quote(f"{envkey.STATE_DIR}/boxes/{box.name}.json")
    code, out = _sh(engine, box, user, f"head -c {_MAX_RECORD} {listing}")
    try:
        names = json.loads(out) if code == 0 else []
    except (ValueError, RecursionError):
        names = []
    if not isinstance(names, list):
        names = []
    states = read_states(engine, box, user)
    valid = [n for n in names if isinstance(n, str) and envkey.valid_name(n)]
    return [_state(n, states.get(n)) for n in dict.fromkeys(valid)]
