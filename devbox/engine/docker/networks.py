"""The bridge network of one owner's boxes (lab mode), made on demand before a box joins it.

Docker keeps user-defined bridges apart: a box on `devbox-alice` cannot reach one on
`devbox-bob`, so nobody's Jupyter or sshd is open to another user's box. Two `up`s of the
same owner may make the network at once: the create asks Docker to refuse a duplicate name
(CheckDuplicate; always refused from API 1.44 on), and a 409 means the other one made it,
which is as good. Boxes then name the network, never its id. A network of that name devbox
did not make for that owner is refused: a box must not join a network someone else set up.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from devbox.box import labels
from devbox.engine.base import BoxFailed
from devbox.engine.docker.api import ApiError, DockerAPI, unreachable
from devbox.errors import Refused

if TYPE_CHECKING:
    from devbox.engine.docker.engine import DockerEngine

# Tries when the network vanishes between a create that found it taken and the look that follows.
ATTEMPTS = 3


def network_labels(owner: str) -> dict[str, str]:
    """The labels of `owner`'s network: whose it is, and that devbox made it."""
    return {labels.OWNER: owner, labels.NETWORK: "1"}


def find(engine: DockerEngine, name: str) -> list[dict[str, Any]]:
    """Networks named exactly `name` (Docker's name filter also matches longer names)."""
    path = DockerAPI.path("/networks", filters={"name": [name]})
    found = engine.call("GET", path, doing=f"looking for network {name}") or []
    return [n for n in found if n.get("Name") == name]


def _check(found: list[dict[str, Any]], name: str, owner: str) -> None:
    """Refuse a network devbox did not make for `owner`, or more than one of that name."""
    if len(found) > 1:
        raise BoxFailed(
            f"{len(found)} networks are named {name}, so a box cannot name one",
            f"an admin removes the extra ones: docker network ls --filter name={name}, "
            "then docker network rm ID",
        )
    seen = found[0].get("Labels") or {}
    if seen.get(labels.OWNER) != owner or seen.get(labels.NETWORK) != "1":
        raise Refused(
            f"network {name} exists, but devbox did not make it for {owner}: a box will not join it",
            f"an admin removes it (docker network rm {name}); devbox makes it anew",
        )


def ensure(engine: DockerEngine, network: str, owner: str) -> None:
    """Make `owner`'s bridge network `network` unless it exists; refuse one that is not theirs."""
    body = {
        "Name": network,
        "Driver": "bridge",
        "CheckDuplicate": True,
        "Labels": network_labels(owner),
    }
    for _ in range(ATTEMPTS):
        found = find(engine, network)
        if found:
            _check(found, network, owner)
            return
        try:
            engine.api.call("POST", "/networks/create", body)
            return
        except ApiError as exc:
            if exc.status != 409 or not exc.from_docker:
                raise engine.error(exc, f"creating network {network}") from None
            # Another `up` made it meanwhile: look again, and check it is the owner's.
        except OSError as exc:
            raise unreachable(engine.host, exc) from None
    raise BoxFailed(
        f"network {network} was removed again and again while devbox made it",
        "is a `docker network prune` running? run devbox up again when it is done",
    )
