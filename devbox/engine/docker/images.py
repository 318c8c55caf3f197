"""Images: pulls (docker-py: registry auth), builds (BuildKit or classic), listing and removal.

Docker's pull and build streams become PullEvents and output lines here. A build context
is read into its tarball with the caller's rights (lab mode, docs/lab.md): the caller's
files as they may read them, while the engine's socket is talked to as root.
"""

from __future__ import annotations

import os
import tarfile
import tempfile
from collections.abc import Callable
from typing import IO, TYPE_CHECKING, Any

from devbox import caller, settings
from devbox.box import labels
from devbox.engine.base import BoxFailed, BuiltImage, ImageBuild, PullEvent
from devbox.engine.docker import buildkit
from devbox.engine.docker.api import DockerAPI
from devbox.errors import DevboxError
from devbox.profile import buildcontext

if TYPE_CHECKING:
    from devbox.box.spec import ContainerSpec
    from devbox.engine.docker.engine import DockerEngine


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


def tarball(context: str, dockerfile: str) -> IO[bytes]:
    """The build context as the tarball `docker build` sends, read with the caller's rights.

    The files profile/buildcontext.py walks (`.dockerignore` applied, the Dockerfile and
    `.dockerignore` always kept), so the image tag's digest is of what is sent; symlinks are
    kept as links, never followed out of the context.
    """
    with caller.rights(settings.lab_caller()):
        if not os.path.isdir(context) or not os.access(context, os.R_OK | os.X_OK, effective_ids=True):
            raise BoxFailed(f"the build context {context} is not a folder you can read")
        handle: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115 - returned to the caller
        try:
            # GNU headers and whole-second times: no PAX header before the first file, whose
            # absence is how the docker CLI tells a tarball on stdin from a Dockerfile there.
            with tarfile.open(mode="w", fileobj=handle, format=tarfile.GNU_FORMAT) as tar:
                paths = buildcontext.walk(context, dockerfile)
                for rel in sorted(paths, key=lambda rel: rel != dockerfile):  # the Dockerfile first
                    _add(tar, context, rel)
        except BaseException:
            handle.close()
            raise
    handle.seek(0)
    return handle


def _add(tar: tarfile.TarFile, context: str, rel: str) -> None:
    full = os.path.join(context, rel)
    try:
        info = tar.gettarinfo(full, arcname=rel)
        if info is None:
            return  # a socket: tar has no such thing, docker leaves it out too
        info.mtime = int(info.mtime)  # python/cpython#76894, and see above
        if info.isfile():
            with open(full, "rb") as source:
                tar.addfile(info, source)
        else:
            tar.addfile(info)
    except OSError as exc:
        raise BoxFailed(
            f"cannot read {full} in the build context: {exc.strerror or exc}",
            "make it readable, or leave it out of the build with .dockerignore",
        ) from None


def _build_labels(spec: ContainerSpec) -> dict[str, str]:
    """An image devbox built says whose and for which box, and what its context held."""
    assert spec.build is not None
    return {
        labels.OWNER: spec.owner,
        labels.BOX: spec.box,
        buildcontext.LABEL: buildcontext.manifest_label(spec.build.files),
    }


def build(spec: ContainerSpec, no_cache: bool, on_line: Callable[[str], None], host: str) -> None:
    """Build the image of a `build:` profile, streaming its output."""
    assert spec.build is not None
    request = ImageBuild(
        spec.build.context,
        spec.build.dockerfile,
        spec.image,
        spec.build.args,
        _build_labels(spec),
        spec.build.target,
    )
    build_image(request, no_cache, on_line, host)


def build_image(request: ImageBuild, no_cache: bool, on_line: Callable[[str], None], host: str) -> None:
    """Build an image, streaming its output.

    Through BuildKit (`docker build` of a CLI that has it, the tarball on its stdin, so it
    never reads the caller's files itself) when the engine has it, else the classic builder.
    """
    context = tarball(request.context, request.dockerfile)
    try:
        cli = buildkit.cli(host)
        if cli is not None:
            buildkit.build(cli, host, request, no_cache, context, on_line)
        else:
            _classic(request, no_cache, context, on_line)
    finally:
        context.close()


def _classic(request: ImageBuild, no_cache: bool, context: IO[bytes], on_line: Callable[[str], None]) -> None:
    """The classic builder through docker-py (engines or clients without BuildKit)."""
    from devbox.engine.docker.dockerpy import client

    tail: list[str] = []
    try:
        stream = client(timeout=600).build(
            fileobj=context,
            custom_context=True,
            dockerfile=request.dockerfile,
            tag=request.tag,
            buildargs=request.args,
            target=request.target,
            nocache=no_cache,
            rm=True,
            forcerm=True,  # a failed step's container goes too
            decode=True,
            labels=request.labels,
        )
        for event in stream:
            if "error" in event:
                raise BoxFailed(
                    f"building {request.tag} failed: {str(event['error']).strip()}",
                    "last build output:\n" + "\n".join(tail[-10:]),
                )
            for line in str(event.get("stream", "")).splitlines():
                tail.append(line)
                on_line(line)
    except DevboxError:
        raise
    except Exception as exc:
        raise BoxFailed(f"building {request.tag} failed: {exc}") from None


def built_images(engine: DockerEngine, owner: str | None) -> list[BuiltImage]:
    """Images devbox built (the devbox.owner label), `owner`'s only unless None."""
    label = f"{labels.OWNER}={owner}" if owner is not None else labels.OWNER
    path = DockerAPI.path("/images/json", filters={"label": [label]})
    found = engine.call("GET", path, doing="listing images")
    containers = engine.call("GET", DockerAPI.path("/containers/json", all=1), doing="listing containers")
    used = {str(c.get("ImageID", "")) for c in containers or []}
    images = []
    for item in found or []:
        item_labels = item.get("Labels") or {}
        tags = tuple(t for t in item.get("RepoTags") or () if t != "<none>:<none>")
        images.append(
            BuiltImage(
                str(item.get("Id", "")),
                tags,
                str(item_labels.get(labels.OWNER, "")),
                str(item_labels.get(labels.BOX, "")),
                int(item.get("Size") or 0),
                float(item.get("Created") or 0),
                str(item.get("Id", "")) in used,
            )
        )
    return images


def image_id(engine: DockerEngine, ref: str) -> str | None:
    """The id of a local image (None when the engine does not have it)."""
    info = engine.get_or_none(DockerAPI.path("/images/{}/json", ref))
    return str(info.get("Id")) if info else None


def remove_image(engine: DockerEngine, ref: str) -> bool:
    """Remove an image (a tag, or an id with one tag); False when a container uses it.

    Never forced: the engine refuses (409) for an image any container, running or not, was
    made from, or an id that more than one tag names. Gone already is fine.
    """
    return engine.delete_unless_used(DockerAPI.path("/images/{}", ref), f"removing image {ref}")
