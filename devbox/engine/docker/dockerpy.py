"""docker-py as a transport for DockerAPI: for engines behind ssh:// or TLS, and for pulls and
builds, where its registry auth and build-context handling earn its import time."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from typing import Any


def import_docker() -> Any:
    """docker-py, without paramiko unless the engine is reached over SSH.

    docker-py imports paramiko at load for its ssh:// transport (~300 ms); paramiko stays
    importable for devbox's own use afterwards.
    """
    if os.environ.get("DOCKER_HOST", "").startswith("ssh://") or "docker" in sys.modules:
        import docker

        return docker
    hidden = sys.modules.get("paramiko", ...)
    sys.modules["paramiko"] = None  # type: ignore[assignment]
    try:
        import docker
    finally:
        if hidden is ...:
            del sys.modules["paramiko"]
        else:
            sys.modules["paramiko"] = hidden
    return docker


def client(timeout: int = 60) -> Any:
    """A docker-py low-level client for the engine the environment names."""
    docker = import_docker()
    return docker.APIClient(version="auto", timeout=timeout, **docker.utils.kwargs_from_env())


class _RequestsResponse:
    def __init__(self, response: Any) -> None:
        self.status: int = response.status_code
        self._response = response

    def read(self) -> bytes:
        return bytes(self._response.content)

    def chunks(self) -> Iterator[bytes]:
        try:
            yield from self._response.iter_content(chunk_size=None)
        except Exception:  # a dropped stream ends like EOF; the caller checks the container's state
            return

    def close(self) -> None:
        self._response.close()


class DockerPyTransport:
    """Sends DockerAPI requests through docker-py's session (ssh://, TLS, npipe)."""

    def __init__(self, timeout: int = 60) -> None:
        self.api = client(timeout)

    def open(
        self,
        method: str,
        path: str,
        body: bytes | None,
        timeout: float | None,
        content_type: str = "application/json",
    ) -> _RequestsResponse:
        url = f"{self.api.base_url}/v{self.api._version}{path}"
        headers = {"Content-Type": content_type} if body is not None else None
        response = self.api.request(method, url, data=body, headers=headers, stream=True, timeout=timeout)
        return _RequestsResponse(response)
