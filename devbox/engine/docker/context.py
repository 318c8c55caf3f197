"""Which Docker engine the environment names, as the docker CLI picks it: contexts included.

Precedence, as `docker` has it: DOCKER_HOST, then DOCKER_CONTEXT, then the config's
`currentContext` (`docker context use NAME`), then the local socket. A context is read
from the CLI's own store: `$DOCKER_CONFIG/contexts/meta/<sha256 of the name>/meta.json`
(its `Endpoints.docker.Host` and `SkipTLSVerify`) and, for TLS, the `ca.pem`, `cert.pem`
and `key.pem` in `contexts/tls/<sha256>/docker/`. Reads files only; never raises but
ContextError.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from devbox.engine.docker.api import DEFAULT_HOST

DEFAULT_CONTEXT = "default"


class ContextError(Exception):
    """A context the environment names that cannot be used: `message` says why, `hint` the fix."""

    def __init__(self, message: str, hint: str) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


@dataclass(frozen=True)
class Endpoint:
    """The engine to talk to: its address, the context that named it (None: DOCKER_HOST or the
    default), and the variables that give docker-py and the docker CLI the same engine."""

    host: str
    context: str | None = None
    # "DOCKER_CONTEXT" or "docker context use": where the context came from; or, for DOCKER_HOST
    # set beside DOCKER_CONTEXT, that it overrides it.
    source: str = ""
    env: dict[str, str] = field(default_factory=dict)

    @property
    def shown(self) -> str:
        """The engine as errors name it: its address, and the context it came from."""
        if self.context:
            return f"{self.host} (docker context {self.context})"
        return f"{self.host} ({self.source})" if self.source else self.host


def config_dir(environ: Mapping[str, str]) -> Path:
    """The docker CLI's config folder: $DOCKER_CONFIG, else ~/.docker."""
    if environ.get("DOCKER_CONFIG"):
        return Path(environ["DOCKER_CONFIG"])
    home = environ.get("HOME") or os.path.expanduser("~")
    return Path(home) / ".docker"


def _current_context(folder: Path) -> str | None:
    try:
        data = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None  # no config, or one the docker CLI would refuse too: the default engine
    name = data.get("currentContext") if isinstance(data, dict) else None
    return name if isinstance(name, str) and name else None


def endpoint(environ: Mapping[str, str]) -> Endpoint:
    """The engine `environ` names, as the docker CLI would pick it (see the module doc)."""
    if environ.get("DOCKER_HOST"):
        ignored = environ.get("DOCKER_CONTEXT")
        # As the docker CLI; errors say so, or DOCKER_CONTEXT would look obeyed.
        said = f"DOCKER_HOST, which overrides DOCKER_CONTEXT={ignored}" if ignored else ""
        return Endpoint(environ["DOCKER_HOST"], source=said)
    folder = config_dir(environ)
    name, source = environ.get("DOCKER_CONTEXT"), "DOCKER_CONTEXT"
    if not name:
        name, source = _current_context(folder), "docker context use"
    if not name or name == DEFAULT_CONTEXT:
        return Endpoint(DEFAULT_HOST)
    return _read(folder, name, source)


def _read(folder: Path, name: str, source: str) -> Endpoint:
    digest = hashlib.sha256(name.encode()).hexdigest()
    meta = folder / "contexts" / "meta" / digest / "meta.json"
    other = "unset DOCKER_CONTEXT, or set it to one of them"
    if source != "DOCKER_CONTEXT":
        other = "docker context use default, or another of them"
    fix = f"docker context ls lists the contexts there are; {other}"
    said = f"docker context '{name}' (from {source})"
    try:
        data = json.loads(meta.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ContextError(f"{said} does not exist", fix) from None
    except (OSError, ValueError) as exc:
        raise ContextError(f"{said} cannot be read: {meta}: {exc}", fix) from None
    endpoints = data.get("Endpoints") if isinstance(data, dict) else None
    docker = endpoints.get("docker") if isinstance(endpoints, dict) else None
    docker = docker if isinstance(docker, dict) else {}
    host = docker.get("Host")
    if not isinstance(host, str) or not host:
        raise ContextError(
            f"{said} names no Docker engine (no Endpoints.docker.Host in {meta})",
            f"docker context inspect {name} shows it; docker context update --docker host=… fixes it",
        )
    env = {"DOCKER_HOST": host}
    tls = folder / "contexts" / "tls" / digest / "docker"
    if any((tls / f).is_file() for f in ("ca.pem", "cert.pem", "key.pem")):
        env["DOCKER_CERT_PATH"] = str(tls)
        if not docker.get("SkipTLSVerify"):
            env["DOCKER_TLS_VERIFY"] = "1"
    return Endpoint(host, name, source, env)
