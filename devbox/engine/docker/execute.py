"""A command run in a box (Docker's exec): created, started, its output collected and handed
on line by line as it comes, then its exit code read."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from devbox.engine.docker.api import ApiError, DockerAPI, demux

if TYPE_CHECKING:
    from devbox.engine.docker.engine import DockerEngine


def run(
    engine: DockerEngine,
    container: str,
    argv: list[str],
    user: str,
    env: dict[str, str],
    on_line: Callable[[str], None] | None,
    workdir: str,
) -> tuple[int, str]:
    """Run `argv` in `container` (non-interactive): its exit code and its whole output."""
    body: dict[str, Any] = {"AttachStdout": True, "AttachStderr": True, "Cmd": argv, "User": user}
    if env:
        body["Env"] = [f"{key}={value}" for key, value in env.items()]
    if workdir:
        body["WorkingDir"] = workdir
    exec_id = engine.call("POST", DockerAPI.path("/containers/{}/exec", container), body)["Id"]
    try:
        response = engine.api.stream(
            "POST", DockerAPI.path("/exec/{}/start", exec_id), {"Detach": False, "Tty": False}
        )
    except ApiError as exc:
        raise engine.error(exc, "running a command in the box") from None
    collected: list[bytes] = []
    pending = b""
    for payload in demux(response.chunks()):
        collected.append(payload)
        if on_line is not None:
            pending += payload
            *lines, pending = pending.split(b"\n")
            for line in lines:
                on_line(line.decode("utf-8", "replace").rstrip("\r"))
    if on_line is not None and pending:
        on_line(pending.decode("utf-8", "replace").rstrip("\r"))
    output = b"".join(collected).decode("utf-8", "replace")
    code = engine.call("GET", DockerAPI.path("/exec/{}/json", exec_id)).get("ExitCode")
    return int(code if code is not None else 1), output
