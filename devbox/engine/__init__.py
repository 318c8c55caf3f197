"""The engines devbox runs boxes on; `connect()` picks one. Backends live in subpackages."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from devbox.engine.docker.engine import DockerEngine


def connect(timeout: float = 60) -> DockerEngine:
    """The engine DOCKER_HOST names (default: the local socket). Nothing is sent yet."""
    from devbox.engine.docker import api, engine

    return engine.connect(os.environ.get("DOCKER_HOST") or api.DEFAULT_HOST, timeout)
