"""CUDA against the driver: what an image needs, what the host's driver gives, and the refusal.

The NVIDIA runtime refuses to start a container whose `NVIDIA_REQUIRE_CUDA` asks for more
than the driver supports ("unsatisfied condition: cuda>=12.8"), and a CUDA program without
that variable fails later with "CUDA driver version is insufficient". devbox checks before it
creates anything, so the user learns both versions and the two ways out at once. Pure.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from devbox.errors import Refused

IMAGE_LABEL = "devbox.image.cuda"  # an image's own statement of the CUDA version it needs
_REQUIRE_RE = re.compile(r"\bcuda>=\s*([0-9]+(?:\.[0-9]+)*)")
_VERSION_RE = re.compile(r"^\s*([0-9]+)(?:\.([0-9]+))?")
# The oldest Linux driver of each CUDA release (CUDA Toolkit release notes, table 3), for the fix.
MIN_DRIVER = {
    (11, 0): "450.36.06", (11, 1): "455.23", (11, 2): "460.27.03", (11, 3): "465.19.01",
    (11, 4): "470.42.01", (11, 5): "495.29.05", (11, 6): "510.39.01", (11, 7): "515.43.04",
    (11, 8): "520.61.05", (12, 0): "525.60.13", (12, 1): "530.30.02", (12, 2): "535.54.03",
    (12, 3): "545.23.06", (12, 4): "550.54.14", (12, 5): "555.42.02", (12, 6): "560.28.03",
    (12, 8): "570.26", (12, 9): "575.51.03", (13, 0): "580.65.06",
}  # fmt: skip


class CudaTooNew(Refused):
    """The image needs a newer CUDA than the host's driver supports (kind refused)."""


@dataclass(frozen=True)
class Need:
    """The CUDA version an image needs, and where it says so."""

    version: str  # "12.8"
    source: str  # "NVIDIA_REQUIRE_CUDA=cuda>=12.8", "CUDA_VERSION=12.8.0", "label devbox.image.cuda"


def version_key(text: str) -> tuple[int, int] | None:
    """ "12.8.1" → (12, 8); None when it is no version."""
    match = _VERSION_RE.match(text)
    return (int(match.group(1)), int(match.group(2) or 0)) if match else None


def _short(key: tuple[int, int]) -> str:
    return f"{key[0]}.{key[1]}"


def image_need(image_env: Mapping[str, str], image_labels: Mapping[str, str]) -> Need | None:
    """What CUDA the image needs: its devbox.image.cuda label, else NVIDIA_REQUIRE_CUDA's
    `cuda>=X.Y` (what the NVIDIA runtime enforces), else its CUDA_VERSION (the nvidia/cuda images)."""
    label = image_labels.get(IMAGE_LABEL, "")
    if key := version_key(label):
        return Need(_short(key), f"label {IMAGE_LABEL}={label}")
    require = image_env.get("NVIDIA_REQUIRE_CUDA", "")
    if (match := _REQUIRE_RE.search(require)) and (key := version_key(match.group(1))):
        return Need(_short(key), f"NVIDIA_REQUIRE_CUDA=cuda>={match.group(1)}")
    cuda = image_env.get("CUDA_VERSION", "")
    if key := version_key(cuda):
        return Need(_short(key), f"CUDA_VERSION={cuda}")
    return None


def check(need: Need, driver_cuda: str, driver_version: str | None, image: str) -> None:
    """Refuse when `need` is newer than the driver's CUDA, naming both versions and the fixes."""
    needed, have = version_key(need.version), version_key(driver_cuda)
    if needed is None or have is None or needed <= have:
        return
    driver = f"driver {driver_version}" if driver_version else "the driver"
    newer = MIN_DRIVER.get(needed)
    upgrade = f"a driver ≥ {newer}" if newer else f"a driver that supports CUDA {need.version}"
    raise CudaTooNew(
        f"{image} needs CUDA {need.version} ({need.source}), but this host's {driver} "
        f"supports CUDA {driver_cuda} at most",
        f"use an image tag built for CUDA {driver_cuda} or older, or upgrade the NVIDIA "
        f"driver to {upgrade} (nvidia-smi shows the CUDA version it supports)",
    )


def disabled(*envs: Mapping[str, str]) -> bool:
    """NVIDIA_DISABLE_REQUIRE set (in the image or the box): the runtime skips the check too."""
    return any(env.get("NVIDIA_DISABLE_REQUIRE", "").lower() in ("1", "true", "yes") for env in envs)
