"""The engines devbox runs boxes on; `connect()` picks one. Backends live in subpackages."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from devbox.box.spec import ContainerSpec
    from devbox.engine.base import Engine, RunCommands


def connect(timeout: float = 60) -> Engine:
    """The engine DOCKER_HOST names (default: the local socket). Nothing is sent yet."""
    from devbox.engine.docker import api, engine

    return engine.connect(os.environ.get("DOCKER_HOST") or api.DEFAULT_HOST, timeout)


def run_commands(spec: ContainerSpec) -> RunCommands:
    """The `docker build` / `docker run` lines that make `spec` by hand (`devbox render`)."""
    from devbox.engine.base import RunCommands
    from devbox.engine.docker import argv

    return RunCommands(argv.docker_build_argv(spec), argv.docker_run_argv(spec))
