"""`devbox image build`: the reference image (devbox/devbox) built on the engine at hand."""

from __future__ import annotations

from typing import Annotated

import typer

from devbox.cli import shared
from devbox.cli.app import JsonOpt, Progress, ProgressOpt, app, handles_errors, stdout

image_app = typer.Typer(
    help="Build the reference image devbox/devbox on this engine (the default profile's)."
)
app.add_typer(image_app, name="image")


@image_app.command("build")
@handles_errors
def build(
    base: Annotated[
        str | None,
        typer.Option(
            "--base", help="The image to build on (default: debian:bookworm-slim; offline: one you have)."
        ),
    ] = None,
    tag: Annotated[
        str | None, typer.Option("--tag", help="Tag it so instead of devbox/devbox:VERSION.")
    ] = None,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Build without the layer cache.")] = False,
    json_output: JsonOpt = False,
    progress: ProgressOpt = Progress.auto,
) -> None:
    """Build the reference image devbox/devbox from its bundled Dockerfile on the current engine."""
    from devbox import engine
    from devbox.errors import Refused
    from devbox.ops import refimage
    from devbox.ui import to_json

    settings = shared.caller()
    if settings.lab and not settings.admin:
        raise Refused(
            "only lab admins may build the reference image", "ask your lab admin: devbox image build"
        )
    eng = engine.connect()
    with shared.reporter(json_output, progress) as reporter:
        built = refimage.build(eng, reporter, base or refimage.DEFAULT_BASE, tag, no_cache)
    if json_output:
        to_json.print_json(to_json.image_build_json(built.tag, built.base, built.image_id))
        return
    stdout().print(f"built {built.tag} from {built.base} ({built.image_id.removeprefix('sha256:')[:12]})")
