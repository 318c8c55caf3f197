"""Images through docker-py: pulls (registry auth) and builds (context tarballs).

Docker's pull and build streams become PullEvents and output lines here. A build context
is read into its tarball with the caller's rights (lab mode, docs/lab.md): the caller's
files as they may read them, while the engine's socket is talked to as root.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import IO, TYPE_CHECKING, Any

from devbox import caller, settings
from devbox.box import labels
from devbox.engine.base import BoxFailed, PullEvent
from devbox.errors import DevboxError

if TYPE_CHECKING:
    from devbox.box.spec import ContainerSpec


def _pull_hint(ref: str) -> str:
    return (
        "check the image name, that the engine reaches its registry, and that you are logged in "
        f"(docker login); or build it locally and tag it {ref}"
    )


def _pull_event(event: dict[str, Any]) -> PullEvent:
    """One line of Docker's pull stream as devbox's PullEvent."""
    detail = event.get("progressDetail") or {}
    total = detail.get("total")
    return PullEvent(
        str(event.get("status") or ""),
        str(event.get("id") or ""),
        int(detail.get("current") or 0) if total is not None else None,
        int(total) if total is not None else None,
    )


def pull(ref: str, on_event: Callable[[PullEvent], None]) -> None:
    """Pull `ref`, reporting each step; errors inside the stream are raised."""
    from devbox.engine.docker.dockerpy import client

    last_segment = ref.rsplit("/", 1)[-1]
    repo, tag = ref.rsplit(":", 1) if ":" in last_segment and "@" not in ref else (ref, None)
    try:
        for event in client().pull(repo, tag=tag, stream=True, decode=True):
            if "error" in event or "errorDetail" in event:
                detail = (event.get("errorDetail") or {}).get("message") or event.get("error")
                raise BoxFailed(f"cannot pull {ref}: {detail}", _pull_hint(ref))
            on_event(_pull_event(event))
    except DevboxError:
        raise
    except Exception as exc:  # docker-py raises APIError, requests errors, ...
        explanation = getattr(exc, "explanation", None) or str(exc)
        raise BoxFailed(f"cannot pull {ref}: {explanation}", _pull_hint(ref)) from None


def _context(context: str, dockerfile: str) -> tuple[IO[bytes], str]:
    """The build context as a tarball, read with the caller's rights, and the Dockerfile's name in it.

    As `docker build` sends it: `.dockerignore` applied, symlinks kept as links (never
    followed out of the context).
    """
    from devbox.engine.docker.dockerpy import import_docker

    docker = import_docker()
    name = os.path.relpath(dockerfile, context) if os.path.isabs(dockerfile) else dockerfile
    with caller.rights(settings.lab_caller()):
        if not os.path.isdir(context) or not os.access(context, os.R_OK | os.X_OK, effective_ids=True):
            raise BoxFailed(f"the build context {context} is not a folder you can read")
        exclude = None
        ignore = os.path.join(context, ".dockerignore")
        if os.path.exists(ignore):
            with open(ignore, encoding="utf-8", errors="replace") as handle:
                lines = (line.strip() for line in handle.read().splitlines())
                exclude = [line for line in lines if line and not line.startswith("#")]
        tarball: IO[bytes] = docker.utils.tar(context, exclude=exclude, dockerfile=(name, None))
    return tarball, name


def build(spec: ContainerSpec, no_cache: bool, on_line: Callable[[str], None]) -> None:
    """Build the image of a `build:` profile, streaming its output."""
    from devbox.engine.docker.dockerpy import client

    assert spec.build is not None
    tail: list[str] = []
    context = None
    try:
        context, dockerfile = _context(spec.build.context, spec.build.dockerfile)
        stream = client().build(
            fileobj=context,
            custom_context=True,
            dockerfile=dockerfile,
            tag=spec.image,
            buildargs=spec.build.args,
            nocache=no_cache,
            rm=True,
            decode=True,
            labels={labels.OWNER: spec.owner, labels.BOX: spec.box},
        )
        for event in stream:
            if "error" in event:
                raise BoxFailed(
                    f"building {spec.image} failed: {str(event['error']).strip()}",
                    "last build output:\n" + "\n".join(tail[-10:]),
                )
            for line in str(event.get("stream", "")).splitlines():
                tail.append(line)
                on_line(line)
    except DevboxError:
        raise
    except Exception as exc:
        raise BoxFailed(f"building {spec.image} failed: {exc}") from None
    finally:
        if context is not None:
            context.close()
