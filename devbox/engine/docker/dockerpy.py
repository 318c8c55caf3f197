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
    if _environment().get("DOCKER_HOST", "").startswith("ssh://") or "docker" in sys.modules:
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


def _environment() -> dict[str, str]:
    """The environment with the docker context it names spelled out (DOCKER_HOST and TLS),
    so docker-py reaches the engine devbox and the docker CLI pick (engine/docker/context.py)."""
    from devbox.engine.docker import context

    try:
        return {**os.environ, **context.endpoint(os.environ).env}
    except context.ContextError:
        return dict(os.environ)  # connect() said so already


def client(timeout: int = 60) -> Any:
    """A docker-py low-level client for the engine the environment names."""
    docker = import_docker()
    env = docker.utils.kwargs_from_env(environment=_environment())
    tls = env.get("tls")
    if tls is None or not tls.verify or not tls.ca_cert:
        return docker.APIClient(version="auto", timeout=timeout, **env)
    # The version is asked once the CA is pinned: "auto" asks before.
    api = docker.APIClient(version=docker.constants.DEFAULT_DOCKER_API_VERSION, timeout=timeout, **env)
    _pin_ca(api, tls.ca_cert)
    api._version = api._retrieve_server_version()
    return api


def _pin_ca(api: Any, ca: str) -> None:
    """Keep the engine's CA (its context's, or DOCKER_CERT_PATH's) on every request.

    requests puts REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE (set on many hosts, for a proxy's CA)
    before a session's own CA: no TLS engine could be reached where they are set, while the
    docker CLI reaches it.
    """
    merge = api.merge_environment_settings

    def merged(url: str, proxies: Any, stream: Any, verify: Any, cert: Any) -> Any:
        settings = merge(url, proxies, stream, verify, cert)
        settings["verify"] = ca
        return settings

    api.merge_environment_settings = merged


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
