"""Command-line overrides (`--image --gpus --shm-size --cpus --memory -p -v -e`) as a profile layer.

Flags go through the same parsers as profile files, so a bad flag gets the same checks and
a message that names the flag.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from devbox.errors import Origin, Problem
from devbox.profile.fields import Layer
from devbox.profile.loader import parse_document
from devbox.profile.yamlsrc import Document
from devbox.settings import Settings


@dataclass(frozen=True)
class Overrides:
    """Raw flag values as typed by the user; None / empty = not given."""

    image: str | None = None
    gpus: str | None = None
    shm_size: str | None = None
    cpus: str | None = None
    memory: str | None = None
    ports: list[str] = field(default_factory=list)
    volumes: list[str] = field(default_factory=list)
    env: list[str] = field(default_factory=list)


def _ports(values: list[str], problems: list[Problem]) -> dict[str, str]:
    ports: dict[str, str] = {}
    for value in values:
        name, sep, port = value.partition("=")
        if not sep:
            port = value
            name = "port" + value.rpartition(":")[2]
        if not port:
            problems.append(Problem(Origin("-p"), f"'{value}' has no port", "e.g. -p tensorboard=6006"))
            continue
        ports[name] = port
    return ports


def _env(values: list[str], settings: Settings, problems: list[Problem]) -> dict[str, str]:
    env: dict[str, str] = {}
    for value in values:
        key, sep, val = value.partition("=")
        if not sep:
            # Like `docker run -e KEY`: take the value from the caller's environment.
            if key not in settings.caller_environ:
                problems.append(
                    Problem(Origin("-e"), f"-e {key}: {key} is not set here", f"write -e {key}=VALUE")
                )
                continue
            val = settings.caller_environ[key]
        env[key] = val
    return env


def to_layers(overrides: Overrides, settings: Settings) -> tuple[list[Layer], list[Problem]]:
    """One layer per flag given (so each problem names its flag), and the problems found."""
    problems: list[Problem] = []
    given: list[tuple[str, dict[str, Any]]] = []
    gpus: str | int | list[str] | None = overrides.gpus
    text = (overrides.gpus or "").strip()
    if text.isdecimal() and len(text) <= 6 and int(text) > 0:
        # `--gpus 2` is a count, as for `docker run`; in a profile gpus: "2" (text) is refused
        # as ambiguous. `--gpus 0` stays text, refused likewise: it reads like GPU 0.
        gpus = int(text)
    elif text.lower().startswith("device="):
        # docker run's own way to name GPUs: --gpus device=0 (one index), device=0,3.
        gpus = [part.strip() for part in text.split("=", 1)[1].split(",")]  # a list: never a count
    scalars = (
        ("--image", "image", overrides.image),
        ("--gpus", "gpus", gpus),
        ("--shm-size", "shm_size", overrides.shm_size),
    )
    given += [(flag, {key: value}) for flag, key, value in scalars if value is not None]
    # resources merge key by key across layers, so each flag stays its own origin.
    if overrides.cpus is not None:
        given.append(("--cpus", {"resources": {"cpus": overrides.cpus}}))
    if overrides.memory is not None:
        given.append(("--memory", {"resources": {"memory": overrides.memory}}))
    if overrides.ports:
        given.append(("-p", {"ports": _ports(overrides.ports, problems)}))
    if overrides.volumes:
        given.append(("-v", {"volumes": list(overrides.volumes)}))
    if overrides.env:
        given.append(("-e", {"env": _env(overrides.env, settings, problems)}))
    layers = []
    for flag, data in given:
        layer, found = parse_document(Document(flag, data), settings, settings.cwd, settings.cwd)
        layers.append(layer)
        problems += found
    return layers, problems
