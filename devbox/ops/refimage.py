"""The reference image, devbox/devbox, built on the engine at hand (`devbox image build`).

Its Dockerfile ships with devbox (images/devbox of a checkout, devbox/bundled_images/devbox of
the wheel), so a pip-installed devbox can make the image its default profile runs. The base
is a public Debian image unless the lab passes its own (offline: one its engine has).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from devbox.box import labels
from devbox.engine.base import BoxFailed, Engine, ImageBuild
from devbox.errors import NotFound
from devbox.ops.reporter import Reporter

DEFAULT_BASE = "debian:bookworm-slim"
REPOSITORY = "devbox/devbox"
BUILD_COMMAND = "devbox image build"


def folder() -> Path:
    """The reference image's build folder: in the installed package, or the checkout's."""
    package_dir = Path(__file__).resolve().parent.parent
    installed = package_dir / "bundled_images" / "devbox"
    if installed.is_dir():
        return installed
    return package_dir.parent / "images" / "devbox"


def default_tag() -> str:
    """devbox/devbox:<the TAG file>: what the bundled default profile runs."""
    try:
        version = (folder() / "TAG").read_text(encoding="utf-8").strip()
    except OSError:
        return f"{REPOSITORY}:latest"
    return f"{REPOSITORY}:{version or 'latest'}"


@dataclass(frozen=True)
class Built:
    """What `devbox image build` made."""

    tag: str
    base: str
    image_id: str


def build(engine: Engine, reporter: Reporter, base: str, tag: str | None, no_cache: bool) -> Built:
    """Build the reference image from `base`, tagged `tag` (default: default_tag())."""
    where = folder()
    if not (where / "Dockerfile").is_file():
        raise NotFound(
            f"the reference image's Dockerfile is not in {where}",
            "reinstall devbox (its wheel carries images/devbox), or run it from a source checkout",
        )
    tag = tag or default_tag()
    reporter.step(f"building {tag} from {base}")
    # No devbox.owner label: it belongs to no box, so `prune --images` never takes it.
    request = ImageBuild(str(where), "Dockerfile", tag, {"BASE": base}, {labels.VERSION: _version()})
    engine.build_image(request, no_cache, reporter.build_line)
    image_id = engine.image_id(tag)
    if image_id is None:
        raise BoxFailed(f"building {tag} finished but the engine has no such image")
    return Built(tag, base, image_id)


def _version() -> str:
    from devbox import __version__

    return __version__


def missing_hint(image: str) -> str | None:
    """For the reference image that cannot be pulled: the command that makes it here."""
    if image != default_tag():
        return None
    return f"build it on this engine: {BUILD_COMMAND} (offline: {BUILD_COMMAND} --base IMAGE your engine has)"
