"""What runs in a box once it is up and ready: its conda environments, then its start commands.

One place for both, so every path that brings a box up (create, recreate, rebuild, a start of a
stopped box, an `up` that finds it running) runs them the same way and in the same order:
environments first, because a devcontainer.json's postCreateCommand may use them.
Each returns warnings for the report rather than raising: a failed solve or a failing
postStartCommand leaves the box usable, and says so.
"""

from __future__ import annotations

from typing import Literal

from devbox.box.resolved import Resolved
from devbox.box.spec import protocol_user
from devbox.box.state import Box
from devbox.engine.base import Engine
from devbox.ops.reporter import Reporter

# created: a new container (create, recreate, rebuild); started: an existing one started again;
# running: `up` found it running already.
Event = Literal["created", "started", "running"]


def after_start(engine: Engine, box: Box, resolved: Resolved, reporter: Reporter, event: Event) -> list[str]:
    """Bring the box's environments up to date and run its start commands; warnings to report."""
    warnings: list[str] = []
    if resolved.profile.environments:
        from devbox.ops import condaenvs

        warnings += condaenvs.ensure(engine, box, resolved, reporter, event)
    if resolved.profile.post_create or resolved.profile.post_start or resolved.profile.notes:
        from devbox.ops import startcommands

        warnings += startcommands.run(engine, box, resolved, reporter, event)
    return warnings


def box_user(resolved: Resolved) -> str:
    """Whom commands devbox runs in the box run as ("" = the image's own user).

    In lab mode always the caller, as `devbox exec` does: the box's environment is theirs to set.
    A devbox-protocol box starts as root and drops to its user: as that user too (by number, else
    by the name it was told to create), so environments and what postCreateCommand writes are
    theirs, never root's. Any other box: its `--user`.
    """
    spec = resolved.spec
    if resolved.settings.lab:
        return f"{resolved.settings.uid}:{resolved.settings.gid}"
    if spec.protocol:
        return protocol_user(spec.env) or spec.env.get("DEVBOX_USER_NAME", "") or spec.user or ""
    return spec.user or ""
