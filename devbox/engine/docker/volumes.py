"""The named volumes a new box mounts: made with devbox's labels before its container.

Two things could leave a volume without those labels, and both are closed here: a Ctrl-C
while the engine makes one (it is counted as made before it is asked for, so the undo takes
it back), and a `down --purge` that removes one between the check and the container's create
(the engine then makes it anew, bare; `unlabelled` finds it so the create is tried again).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from devbox.box import labels
from devbox.engine.docker.api import DockerAPI
from devbox.errors import Refused

if TYPE_CHECKING:
    from devbox.box.spec import ContainerSpec
    from devbox.engine.docker.engine import DockerEngine


def prepare(engine: DockerEngine, spec: ContainerSpec, names: list[str], made: list[str]) -> set[str]:
    """Make the missing volumes of `names` (each added to `made` first); refuse another owner's.

    Returns the volumes that carry devbox's labels now (made just now, or the owner's own):
    those must still carry them once the container exists.
    """
    labelled: set[str] = set()
    for volume in names:
        existing = engine.get_or_none(DockerAPI.path("/volumes/{}", volume))
        if existing is None:
            # Counted before asking: a Ctrl-C while the engine makes it must still undo it.
            made.append(volume)
            volume_body = {"Name": volume, "Labels": spec.volume_labels}
            engine.call("POST", "/volumes/create", volume_body, doing=f"creating volume {volume}")
            labelled.add(volume)
            continue
        holder = (existing.get("Labels") or {}).get(labels.OWNER)
        if holder and holder != spec.owner:
            raise Refused(
                f"volume {volume} belongs to {holder}, not to {spec.owner}",
                "rename the volume in your profile (volumes: NAME:/path)",
            )
        if holder:
            labelled.add(volume)
    return labelled


def unlabelled(engine: DockerEngine, names: set[str]) -> list[str]:
    """Those of `names` that lost devbox's labels: removed meanwhile and made anew by the engine."""
    lost = []
    for volume in sorted(names):
        found = engine.get_or_none(DockerAPI.path("/volumes/{}", volume)) or {}
        if not (found.get("Labels") or {}).get(labels.OWNER):
            lost.append(volume)
    return lost
