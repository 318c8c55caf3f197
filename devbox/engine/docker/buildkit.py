"""Builds through BuildKit: the `docker` CLI's `docker build`, when it and the engine have it.

docker-py speaks only the classic builder (no `RUN --mount=type=cache`, a dangling image per
rebuild of a tag). A CLI whose `docker build` is BuildKit (built in before Docker 23, the
buildx plugin since) builds instead, its context a tarball on stdin: the CLI never reads the
caller's files itself, which matters in lab mode, where devbox runs as root.
`DEVBOX_BUILDER=classic` (or `DOCKER_BUILDKIT=0`) keeps the classic builder.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from typing import IO, TYPE_CHECKING

from devbox.engine.base import BoxFailed

if TYPE_CHECKING:
    from devbox.engine.base import ImageBuild

_PROBE_TIMEOUT = 20
# What the CLI itself reads: a build arg of that name goes on the command line instead.
_CLI_VARIABLES = frozenset({"PATH", "HOME", "XDG_CONFIG_HOME", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY"})


def _candidates() -> list[str]:
    """Every `docker` on PATH, first first (an older CLI behind a newer one may have BuildKit)."""
    found: list[str] = []
    seen: set[str] = set()
    for folder in os.environ.get("PATH", "").split(os.pathsep):
        path = os.path.join(folder or ".", "docker")
        real = os.path.realpath(path)
        if real not in seen and os.path.isfile(path) and os.access(path, os.X_OK):
            seen.add(real)
            found.append(path)
    return found


def _env(host: str) -> dict[str, str]:
    """The CLI's environment: the engine devbox talks to, its TLS material included (a
    context's, engine/docker/context.py), else the CLI would reach it without TLS and fail."""
    from devbox.engine.docker import context

    try:
        found = context.endpoint(os.environ).env
    except context.ContextError:
        found = {}
    return {**os.environ, **found, "DOCKER_HOST": host, "DOCKER_BUILDKIT": "1"}


def _major(version: str) -> tuple[int, int]:
    core = version.partition("+")[0].partition("-")[0]
    parts = [*core.split("."), "0", "0"][:2]
    try:
        return int(parts[0]), int(parts[1])
    except ValueError:
        return 0, 0


def _has_buildkit(cli: str, host: str) -> bool:
    """True when this CLI's `docker build` is BuildKit and the engine at `host` has it too."""
    try:
        done = subprocess.run(
            [cli, "version", "--format", "{{.Client.Version}}|{{.Server.Version}}|{{.Server.Os}}"],
            env=_env(host),
            capture_output=True,
            text=True,
            timeout=_PROBE_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    client, _, rest = done.stdout.strip().partition("|")
    server, _, system = rest.partition("|")
    if done.returncode != 0 or system != "linux" or _major(server) < (18, 9):
        return False
    if _major(client) < (23, 0):
        return _major(client) >= (18, 9)  # BuildKit built in
    try:
        buildx = subprocess.run(
            [cli, "buildx", "version"],
            env=_env(host),
            capture_output=True,
            timeout=_PROBE_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return buildx.returncode == 0  # without buildx, a new CLI's BuildKit build refuses to run


def cli(host: str) -> str | None:
    """The `docker` CLI to build with through BuildKit, or None for the classic builder."""
    if os.environ.get("DEVBOX_BUILDER") == "classic" or os.environ.get("DOCKER_BUILDKIT") == "0":
        return None
    return next((c for c in _candidates() if _has_buildkit(c, host)), None)


def _in_environment(key: str) -> bool:
    """A build arg whose value the CLI takes from its environment (`--build-arg KEY`)."""
    return key.isidentifier() and key not in _CLI_VARIABLES and not key.startswith("DOCKER_")


def argv(cli: str, request: ImageBuild, no_cache: bool) -> list[str]:
    """`docker build` of `request` from a tarball on stdin.

    Build args go in the CLI's environment, not its command line, which anyone on the host
    can read in `ps` (a token passed as a build arg would be theirs to see).
    """
    line = [cli, "build", "--progress=plain", "-f", request.dockerfile, "-t", request.tag]
    for key, value in request.args.items():
        line += ["--build-arg", key if _in_environment(key) else f"{key}={value}"]
    for key, value in request.labels.items():
        line += ["--label", f"{key}={value}"]
    if request.target:
        line += ["--target", request.target]
    if no_cache:
        line.append("--no-cache")
    return [*line, "-"]


def build(
    cli: str,
    host: str,
    request: ImageBuild,
    no_cache: bool,
    context: IO[bytes],
    on_line: Callable[[str], None],
) -> None:
    """Run the build, each output line to `on_line`; a failure raises with the last lines."""
    tail: list[str] = []
    try:
        process = subprocess.Popen(
            argv(cli, request, no_cache),
            stdin=context,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env={**_env(host), **{k: v for k, v in request.args.items() if _in_environment(k)}},
        )
    except OSError as exc:
        raise BoxFailed(f"building {request.tag} failed: cannot run {cli}: {exc}") from None
    assert process.stdout is not None
    try:
        for raw in process.stdout:
            line = raw.decode("utf-8", errors="replace").rstrip("\n")
            tail.append(line)
            del tail[:-40]
            on_line(line)
        code = process.wait()
    except BaseException:
        process.kill()  # Ctrl-C: the CLI cancels the build with it
        process.wait()
        raise
    if code != 0:
        errors = [t for t in tail if t.lower().startswith("error")] or tail[-1:] or [f"exit status {code}"]
        raise BoxFailed(
            f"building {request.tag} failed: {errors[-1].strip()}",
            "last build output:\n" + "\n".join(tail[-10:]),
        )
