"""What an error of the Docker engine means for a box, said once, with its fix (pure)."""

from __future__ import annotations

import re

from devbox.engine.base import BoxFailed, EngineUnavailable, NameTaken
from devbox.engine.docker.api import ApiError
from devbox.errors import DevboxError

_PORT_IN_USE_RE = re.compile(r"(?:Bind for |listen tcp[46]? )\[?([0-9a-fA-F:.]*?)\]?:(\d+)")


def engine_error(exc: ApiError, host: str, doing: str) -> DevboxError:
    """The DevboxError (with its fix) for an engine error."""
    explanation = exc.message
    if not exc.from_docker:
        # Docker always says why; a bare status comes from something else on that address.
        return EngineUnavailable(
            f"{host} answered HTTP {exc.status} without a Docker error: not a Docker engine?",
            "point DOCKER_HOST at a running engine (docker context ls shows yours)",
        )
    if exc.status == 409 and "is already in use" in explanation:
        return NameTaken(f"Docker refused {doing}: the name is taken (another devbox made it meanwhile)")
    if "could not select device driver" in explanation:
        return BoxFailed(
            "the engine has no GPU runtime, so it cannot attach GPUs",
            "install the NVIDIA Container Toolkit and register it with Docker "
            "(nvidia-ctk runtime configure --runtime=docker, then restart dockerd), "
            "or start the box without GPUs: --gpus none",
        )
    port = _PORT_IN_USE_RE.search(explanation)
    if port and ("already allocated" in explanation or "address already in use" in explanation):
        return BoxFailed(
            f"host port {port.group(2)} is already taken",
            f"free port {port.group(2)}, or change it in the profile's ports: (or drop the host "
            "part so the engine picks a free port)",
        )
    return BoxFailed(f"Docker refused {doing}: {explanation}")
