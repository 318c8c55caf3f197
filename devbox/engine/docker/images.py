"""Images through docker-py: pulls (registry auth) and builds (context tarballs).

Docker's pull and build streams become PullEvents and output lines here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

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


def build(spec: ContainerSpec, no_cache: bool, on_line: Callable[[str], None]) -> None:
    """Build the image of a `build:` profile, streaming its output."""
    from devbox.engine.docker.dockerpy import client

    assert spec.build is not None
    tail: list[str] = []
    try:
        stream = client().build(
            path=spec.build.context,
            dockerfile=spec.build.dockerfile,
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
