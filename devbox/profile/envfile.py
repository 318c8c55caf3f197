"""`.env` files: KEY=VALUE lines, as `docker run --env-file` reads them plus the usual quoting."""

from __future__ import annotations

import re

from devbox.errors import InvalidInput, Origin, Problem
from devbox.profile import files

# Variables that pick a box's GPUs, refused in env:, env files and -e. The NVIDIA runtime hands
# a box whatever NVIDIA_VISIBLE_DEVICES names, past allocation and the lab's limits; and
# CUDA_VISIBLE_DEVICES numbers the box's own GPUs from 0, so a host's index there is wrong.
GPU_VARIABLES = {
    "NVIDIA_VISIBLE_DEVICES": "NVIDIA_VISIBLE_DEVICES is set by devbox from gpus:",
    "CUDA_VISIBLE_DEVICES": "CUDA_VISIBLE_DEVICES would pick among the box's own GPUs, which are "
    "numbered from 0 inside it: a host's GPU index there names another GPU or none",
}
GPU_VARIABLES_FIX = "ask for the host's GPUs with gpus: 2 (any two) or gpus: [0, 3] (those two)"
_LINE_RE = re.compile(r"^\s*(?:export\s+)?(?P<key>[A-Za-z_][A-Za-z0-9_]*)\s*=\s*(?P<value>.*?)\s*$")


def parse(text: str) -> dict[str, str]:
    """Variables of an env file; comments, blank and malformed lines are skipped."""
    env: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = _LINE_RE.match(line)
        if not match:
            continue
        value = match.group("value")
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        env[match.group("key")] = value
    return env


def load(path: str) -> dict[str, str]:
    """Variables of the env file at `path`; InvalidInput naming it if it cannot be read as UTF-8 text."""
    try:
        return parse(files.read_text(path))
    except ValueError as exc:
        shown = files.shown(path)
        raise InvalidInput(
            f"env file {shown} {exc}",
            [Problem(Origin(shown), str(exc), "make it a readable UTF-8 KEY=VALUE file")],
        ) from None
