"""The engines devbox runs boxes on; `connect()` picks one. Backends live in subpackages."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from devbox.box.spec import ContainerSpec
    from devbox.engine.base import Engine, RunCommands


def connect(timeout: float = 60) -> Engine:
    """The engine the environment names, as the docker CLI picks it: DOCKER_HOST, else
    DOCKER_CONTEXT, else `docker context use`'s context, else the local socket. Nothing is
    sent yet; a context that does not exist is EngineUnavailable naming it."""
    from devbox.engine.base import EngineUnavailable
    from devbox.engine.docker import context, engine

    try:
        found = context.endpoint(os.environ)
    except context.ContextError as exc:
        raise EngineUnavailable(exc.message, exc.hint) from None
    return engine.connect(found.host, timeout, found.shown, tls="DOCKER_CERT_PATH" in found.env)


def context_name() -> str | None:
    """The docker context that picks the engine (DOCKER_CONTEXT or `docker context use`), for
    doctor to name; None when DOCKER_HOST, the default context or an unusable one does."""
    from devbox.engine.docker import context

    try:
        return context.endpoint(os.environ).context
    except context.ContextError:
        return None


def run_commands(spec: ContainerSpec) -> RunCommands:
    """The `docker build` / `docker run` lines that make `spec` by hand (`devbox render`)."""
    from devbox.engine.base import RunCommands
    from devbox.engine.docker import argv

    return RunCommands(argv.docker_build_argv(spec), argv.docker_run_argv(spec))
