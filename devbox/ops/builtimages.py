"""Images devbox built: the one a rebuild replaced goes when nothing uses it; `prune --images`.

A `build:` profile's image is tagged by its inputs (profile/buildcontext.py), so each change
makes a new image and the old one would stay behind (hundreds of MB each). Only images devbox
built for the same owner are removed, never forced: the engine refuses one a container (any
state, anyone's) was made from, and an id that other tags still name.
"""

from __future__ import annotations

from devbox.box.resolved import Resolved
from devbox.box.state import Box
from devbox.engine.base import BuiltImage, Engine
from devbox.ops.reporter import Reporter


def before_build(engine: Engine, resolved: Resolved, box: Box | None) -> list[str]:
    """Ids of the images a build of `resolved` may leave unused: the box's, and its tag's now."""
    if resolved.spec.build is None:
        return []
    refs = [resolved.spec.image, *([box.image] if box is not None else [])]
    found = (engine.image_id(ref) for ref in refs)
    return sorted({image for image in found if image is not None})


def built_by_devbox(image: BuiltImage) -> bool:
    """True when devbox made `image` for its box, not only when it carries devbox's labels.

    Labels are inherited: `docker commit` of a box, or a user's `FROM devbox/ME-BOX:...`, makes
    an image with the box's devbox.owner label. Only the tag devbox gives a build
    (`devbox/OWNER-BOX:HASH`, spec.build) tells them apart; an untagged one is a build a
    rebuild of its tag left behind.
    """
    repository = f"devbox/{image.owner}-{image.box}".lower()
    return bool(image.owner) and all(tag.rpartition(":")[0] == repository for tag in image.tags)


def drop_replaced(engine: Engine, resolved: Resolved, ids: list[str], reporter: Reporter) -> list[str]:
    """Remove the images in `ids` that `resolved`'s box no longer runs, when devbox built them
    for the same owner and nothing else uses them; returns those removed."""
    current = engine.image_id(resolved.spec.image)
    ours = {image.id: image for image in engine.built_images(resolved.spec.owner)}
    removed = []
    for image in ids:
        if image == current:
            continue  # rebuilt to the very same image
        found = ours.get(image)
        if found is None or found.owner != resolved.spec.owner or not built_by_devbox(found):
            continue  # pulled, committed from a box, or someone else's: not ours to remove
        if engine.remove_image(image):
            reporter.step(f"removed the image it replaced ({image.removeprefix('sha256:')[:12]})")
            removed.append(image)
    return removed


def unused(engine: Engine, owner: str | None) -> list[BuiltImage]:
    """Images devbox built that no container uses (`owner`'s only, unless None)."""
    return [image for image in engine.built_images(owner) if not image.in_use and built_by_devbox(image)]


def prune(engine: Engine, images: list[BuiltImage]) -> tuple[list[BuiltImage], list[BuiltImage]]:
    """Remove `images`; returns (removed, kept: a container was made from it meanwhile)."""
    removed: list[BuiltImage] = []
    kept: list[BuiltImage] = []
    for image in images:
        (removed if engine.remove_image(image.id) else kept).append(image)
    return removed, kept
