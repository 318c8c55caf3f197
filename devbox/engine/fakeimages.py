"""The fake engine's images: local ones and the registry's, pulls, builds, listing and removal.

A mixin of FakeEngine (devbox/engine/fake.py): the same state (`store`), the image half of
the `Engine` protocol. An image's id is its name there (`sha256:NAME`).
"""

from __future__ import annotations

from collections.abc import Callable

from devbox.box import labels
from devbox.box.spec import ContainerSpec
from devbox.engine.base import BoxFailed, BuiltImage, ImageBuild, PullEvent
from devbox.engine.fakestore import FakeStore
from devbox.profile import buildcontext


class FakeImages:
    """Images in memory: what a test added (`add_image`), pulled or built."""

    store: FakeStore

    # --- steering (tests only) ---------------------------------------------------------

    def add_image(self, ref: str, image_labels: dict[str, str] | None = None, local: bool = True) -> None:
        """An image the registry has; `local`: the engine has pulled it already."""
        self.store.registry[ref] = dict(image_labels or {})
        if local:
            self.store.images[ref] = dict(image_labels or {})

    # --- reading -------------------------------------------------------------------------

    def image_exists(self, ref: str) -> bool:
        """True for a local image."""
        return ref in self.store.images

    def image_labels(self, ref: str) -> dict[str, str] | None:
        """A local image's labels."""
        found = self.store.images.get(ref.removeprefix("sha256:"))  # a name, or an id (image_id)
        return None if found is None else dict(found)

    def image_env(self, ref: str) -> dict[str, str] | None:
        """A local image's environment (what `image_envs` says; none by default)."""
        if ref not in self.store.images:
            return None
        return dict(self.store.image_envs.get(ref, {}))

    # --- pulls, builds, removal ----------------------------------------------------------

    def pull(self, ref: str, on_event: Callable[[PullEvent], None]) -> None:
        """Copy `ref` from the registry, or fail as a registry without it would."""
        if ref not in self.store.registry:
            raise BoxFailed(f"cannot pull {ref}: manifest unknown", "check the image name")
        on_event(PullEvent("Pulling fs layer", "layer0"))
        on_event(PullEvent("Downloading", "layer0", 1, 1))
        self.store.images[ref] = dict(self.store.registry[ref])

    def build(self, spec: ContainerSpec, no_cache: bool, on_line: Callable[[str], None]) -> None:
        """Make the image at once."""
        on_line(f"Successfully tagged {spec.image}")
        made = {labels.OWNER: spec.owner, labels.BOX: spec.box}
        if spec.build is not None:
            made[buildcontext.LABEL] = buildcontext.manifest_label(spec.build.files)
        self.store.images[spec.image] = made

    def build_image(self, request: ImageBuild, no_cache: bool, on_line: Callable[[str], None]) -> None:
        """Make the image at once, with its labels."""
        on_line(f"Successfully tagged {request.tag}")
        self.store.images[request.tag] = dict(request.labels)

    def image_id(self, ref: str) -> str | None:
        """A local image's id: its name, in the fake."""
        return f"sha256:{ref}" if ref in self.store.images else None

    def remove_image(self, ref: str) -> bool:
        """Remove a local image unless a container was made from it."""
        ref = ref.removeprefix("sha256:")
        with self.store.lock:
            if any(c.spec.image == ref for c in self.store.containers.values()):
                return False
            self.store.images.pop(ref, None)
        return True

    def built_images(self, owner: str | None) -> list[BuiltImage]:
        """Local images with a devbox.owner label (`owner`'s only unless None)."""
        used = {c.spec.image for c in self.store.containers.values()}
        return [
            BuiltImage(
                f"sha256:{ref}", (ref,), found[labels.OWNER], found.get(labels.BOX, ""), 0, 0.0, ref in used
            )
            for ref, found in sorted(self.store.images.items())
            if labels.OWNER in found and owner in (None, found[labels.OWNER])
        ]
