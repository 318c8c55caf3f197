"""The named volumes a new box mounts: made with devbox's labels before its container.

Two things could leave a volume without those labels, and both are closed here: a Ctrl-C
while the engine makes one (it is counted as made before it is asked for, so the undo takes
it back), and a `down --purge` that removes one between the check and the container's create
(the engine then makes it anew, bare; `unlabelled` finds it so the create is tried again).
`create_container` makes a box's container with them, `chown` hands them to an image's
numeric user.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

from devbox.box import labels
from devbox.engine.base import BoxFailed
from devbox.engine.docker import body
from devbox.engine.docker.api import DockerAPI
from devbox.errors import DevboxError, Refused

if TYPE_CHECKING:
    from devbox.box.spec import ContainerSpec
    from devbox.engine.docker.engine import DockerEngine

# Tries at making a box whose volumes a concurrent `down --purge` keeps removing.
VOLUME_ATTEMPTS = 3


def create_container(
    engine: DockerEngine, spec: ContainerSpec, env: dict[str, str], extra_labels: dict[str, str]
) -> str:
    """Create (not start) `spec`'s container with its named volumes; returns its id.

    Volumes made here are taken back if the create fails, and kept in `engine.volumes_made`
    once it worked (a box that then fails to start takes them back).
    """
    names = body.named_volumes(spec)
    for _ in range(VOLUME_ATTEMPTS):
        made: list[str] = []
        try:
            labelled = prepare(engine, spec, names, made)
            path = DockerAPI.path("/containers/create", name=spec.name)
            created = engine.call(
                "POST", path, body.create_body(spec, env, extra_labels), f"creating {spec.name}"
            )
            box_id = str(created["Id"])
            lost = unlabelled(engine, labelled)
            if lost:
                # Removed between the check and the create (a `down --purge` beside this
                # `up`): the engine made it anew without labels. Never started, so empty.
                engine.remove(box_id)
                engine.remove_volumes([*made, *lost])
                continue
        except BaseException:
            with contextlib.suppress(Exception):  # the error that got here is the one to show
                engine.remove_volumes(made)
            raise
        engine.volumes_made.extend(made)
        return box_id
    raise BoxFailed(
        f"the volumes of {spec.name} were removed again and again while it was made",
        "is a `devbox down --purge` of the same volumes running? run devbox up again when it is done",
    )


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


def chown(engine: DockerEngine, image: str, volumes: dict[str, str], owner: str) -> bool:
    """Give `volumes` ({name: mount point}) to `owner` (uid:gid, or name:) with a one-shot root
    container of `image`; False if it failed (see DockerEngine.chown_volumes)."""
    helper_body = {
        "Image": image,
        "User": "0:0",
        "Entrypoint": ["chown", owner, *volumes.values()],
        "Cmd": [],
        "Labels": {labels.HELPER: "chown"},
        "HostConfig": {"Mounts": [{"Type": "volume", "Source": n, "Target": t} for n, t in volumes.items()]},
    }
    helper = str(engine.call("POST", "/containers/create", helper_body, doing="preparing volumes")["Id"])
    try:
        engine.start(helper)
        path = DockerAPI.path("/containers/{}/wait", helper)
        return int(engine.call("POST", path, doing="preparing volumes").get("StatusCode", 1)) == 0
    except DevboxError:
        return False  # e.g. an image with no chown: the volume stays root's, as Docker makes it
    finally:
        engine.remove(helper)
