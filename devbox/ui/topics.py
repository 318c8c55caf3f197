"""`devbox help TOPIC`: the guides under docs/, shipped inside the wheel. Standard library only.

A pip user has no repository checkout, so hints and help point here (`devbox help profiles`)
rather than at docs/ paths. pyproject.toml puts docs/*.md into the wheel as
devbox/bundled_docs; a source checkout reads docs/ itself.
"""

from __future__ import annotations

import re
from pathlib import Path

# topic -> what it covers; each is docs/<topic>.md
TOPICS = {
    "cli": "every command and option, the --json output, environment, exit codes",
    "profiles": "writing a profile: image, GPUs, ports, volumes, env, extends; where they are found",
    "devcontainer": "a project's .devcontainer/devcontainer.json as a profile: what maps, what is skipped",
    "environments": "conda environments from environment.yml files: made at start, kernels, devbox env",
    "policy": "the lab policy file: defaults, limits, allowed images, mounts",
    "lab": "lab mode: users outside the docker group, through sudo; setting it up, its threat model",
    "gpus": "how GPUs are given out, shown and checked on a shared server",
    "hosts": "several servers: hosts:, --host, --host auto, --all-hosts, what is race-free",
    "slurm": "boxes as Slurm jobs: slurm:// hosts, pending reasons, the Epilog, QOS limits",
    "image": "the devbox image protocol: user, SSH key, Jupyter token, credentials line",
    "scaling": "one server, several, Slurm or Kubernetes; render --format k8s, per-user quotas",
}


def docs_dir() -> Path:
    """The guides: inside the wheel, or `docs/` of a source checkout."""
    package_dir = Path(__file__).resolve().parent.parent
    installed = package_dir / "bundled_docs"
    if installed.is_dir():
        return installed
    return package_dir.parent / "docs"


def listing() -> str:
    """What `devbox help` alone prints: the topics and where command help is."""
    width = max(len(name) for name in TOPICS) + 2
    lines = ["Help topics (devbox help TOPIC):", ""]
    lines += [f"  {name:<{width}}{text}" for name, text in TOPICS.items()]
    lines += ["", "A command's options: devbox COMMAND --help (or devbox help COMMAND)."]
    return "\n".join(lines)


# A link to another guide, as the repository writes it: [docs/gpus.md](docs/gpus.md) or docs/gpus.md.
_GUIDE_LINK = re.compile(
    r"\[(?:docs/)?([a-z]+)\.md\]\((?:docs/)?[a-z]+\.md(#[^)]*)?\)|(?<![\w/])(?:docs/)?([a-z]+)\.md\b"
)


def _as_topic(match: re.Match[str]) -> str:
    name = match.group(1) or match.group(3)
    return f"`devbox help {name}`" if name in TOPICS else match.group(0)


def text(topic: str) -> str | None:
    """The guide `topic` as Markdown; None for no such topic (or a wheel without the guides).

    Links between guides become `devbox help NAME`: a pip user has the topics, not docs/.
    """
    if topic not in TOPICS:
        return None
    try:
        guide = (docs_dir() / f"{topic}.md").read_text(encoding="utf-8")
    except OSError:
        return None
    return _GUIDE_LINK.sub(_as_topic, guide)
