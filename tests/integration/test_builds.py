"""Builds that notice their inputs, on the real engine: an edited environment.yml is named by `up`
and rebuilt into a new tag, the old image goes; BuildKit's cache mounts; `prune --images`;
`devbox image build`."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devbox.ui import json as shapes
from tests import shapes as contract
from tests.integration.conftest import RUN_ID, Caller, Engine, docker

pytestmark = pytest.mark.integration

BASE = "devbox/debian:bookworm"  # scripts/build-images makes it, offline
ENVIRONMENT = "name: demo\ndependencies: [numpy]\n"


@pytest.fixture
def built(caller: Caller) -> Iterator[Caller]:
    """The caller; every image devbox built for them is removed at the end (their boxes first)."""
    yield caller
    for box in json.loads(caller.devbox("ls", "--json", check=False).stdout or "[]"):
        caller.devbox("down", box["name"], check=False)
    listed = docker("image", "ls", "-q", "--filter", f"label=devbox.owner={caller.owner}", check=False)
    for image in set(listed.stdout.split()):
        docker("image", "rm", "-f", image, check=False)


def context(caller: Caller, name: str, dockerfile: str, files: dict[str, str]) -> Path:
    folder = caller.cwd / name
    folder.mkdir()
    (folder / "Dockerfile").write_text(dockerfile)
    for rel, text in files.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_text(text)
    return folder


def built_profile(caller: Caller, name: str, folder: Path) -> Path:
    return caller.write_profile(name, f"build: {folder.name}\ngpus: none\ncommand: [sleep, infinity]")


def up_json(caller: Caller, profile: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(caller.devbox("up", str(profile), "--json").stdout)
    return data


def image_of(engine: Engine, container: str) -> str:
    return str(engine.inspect("container", container)["Config"]["Image"])


def image_exists(ref: str) -> bool:
    return docker("image", "inspect", ref, check=False).returncode == 0


def cat(caller: Caller, box: str, path: str) -> str:
    return caller.devbox("exec", box, "cat", path).stdout


@pytest.mark.parametrize("builder", ["buildkit", "classic"])
def test_an_edited_environment_yml_is_named_and_rebuilt_into_a_new_tag(
    built: Caller, engine: Engine, builder: str
) -> None:
    caller = built
    if builder == "classic":
        caller.environ["DEVBOX_BUILDER"] = "classic"
    folder = context(
        caller,
        "proj",
        f"FROM {BASE}\nCOPY environment.yml /env.yml\n",
        {"environment.yml": ENVIRONMENT, ".dockerignore": ".git\ndata\n", ".git/HEAD": "main\n"},
    )
    profile = built_profile(caller, "conda", folder)
    first = up_json(caller, profile)
    old_image = image_of(engine, first["id"])
    labels = engine.inspect("image", old_image)["Config"]["Labels"]
    assert "environment.yml" in json.loads(labels["devbox.build.inputs"])["files"]
    # What .dockerignore leaves out changes nothing.
    (folder / ".git/HEAD").write_text("other\n")
    assert up_json(caller, profile)["changes"] == []

    (folder / "environment.yml").write_text(ENVIRONMENT.replace("numpy", "scipy"))
    stale = caller.devbox("up", str(profile))
    assert stale.returncode == 0  # reported, not replaced: the box keeps running as it was
    assert "image inputs changed: environment.yml" in stale.stderr
    assert "devbox rebuild conda" in stale.stderr
    assert image_of(engine, caller.container("conda")) == old_image

    rebuilt = json.loads(caller.devbox("rebuild", "conda", "--json").stdout)
    new_image = image_of(engine, rebuilt["id"])
    assert new_image != old_image and new_image.startswith(f"devbox/{caller.owner}-conda:")
    assert "scipy" in cat(caller, "conda", "/env.yml")
    assert not image_exists(old_image)  # nothing used it any more
    assert up_json(caller, profile)["changes"] == []


def test_a_rebuild_keeps_an_image_another_box_still_uses(built: Caller, engine: Engine) -> None:
    caller = built
    folder = context(
        caller, "shared", f"FROM {BASE}\nCOPY environment.yml /env.yml\n", {"environment.yml": "a\n"}
    )
    first = up_json(caller, built_profile(caller, "one", folder))
    old_image = image_of(engine, first["id"])
    caller.devbox(
        "up", str(caller.write_profile("two", f"image: {old_image}\ngpus: none\ncommand: [sleep, infinity]"))
    )
    (folder / "environment.yml").write_text("b\n")
    caller.devbox("rebuild", "one")
    assert image_exists(old_image)
    assert image_of(engine, caller.container("two")) == old_image


def test_buildkit_cache_mounts_last_from_build_to_build(built: Caller, engine: Engine) -> None:
    caller = built
    cache = f"devbox-test-{RUN_ID}-{caller.owner}"
    folder = context(
        caller,
        "cached",
        f"FROM {BASE}\nARG GREETING\nCOPY stamp /stamp\n"
        f"RUN --mount=type=cache,id={cache},target=/root/.cache "
        "sh -c 'cat /stamp >> /root/.cache/runs && wc -l < /root/.cache/runs > /runs'\n"
        'RUN echo "$GREETING" > /greeting\n',
        {"stamp": "1\n"},
    )
    profile = caller.write_profile(
        "cached",
        "build: {context: cached, args: {GREETING: hello there}}\ngpus: none\ncommand: [sleep, infinity]",
    )
    made = caller.devbox("up", str(profile), "--progress", "plain")
    assert "#1 [internal] load remote build context" in made.stderr  # BuildKit's progress, shown
    assert cat(caller, "cached", "/runs").strip() == "1"
    assert cat(caller, "cached", "/greeting") == "hello there\n"  # from the CLI's environment
    (folder / "stamp").write_text("2\n")
    caller.devbox("rebuild", "cached")
    assert cat(caller, "cached", "/runs").strip() == "2"  # the cache held the first build's line


def test_prune_images_removes_only_built_images_no_box_uses(built: Caller, engine: Engine) -> None:
    caller = built
    kept = up_json(caller, built_profile(caller, "kept", context(caller, "k", f"FROM {BASE}\nENV K=1\n", {})))
    gone = up_json(caller, built_profile(caller, "gone", context(caller, "g", f"FROM {BASE}\nENV G=1\n", {})))
    kept_image, gone_image = image_of(engine, kept["id"]), image_of(engine, gone["id"])
    caller.devbox("down", "gone")
    result = contract.parse(
        caller.devbox("prune", "--images", "--yes", "--json").stdout, shapes.PruneImagesJson
    )
    assert [image["tags"] for image in result["images_removed"]] == [[gone_image]]
    assert result["images_removed"][0]["owner"] == caller.owner and result["images_removed"][0]["size"] > 0
    assert not image_exists(gone_image) and image_exists(kept_image)
    assert image_exists(BASE)  # never devbox's to remove
    assert "no unused image" in caller.devbox("prune", "--images", "--yes").stdout


def test_an_image_committed_from_a_box_is_never_devbox_s_to_prune(built: Caller, engine: Engine) -> None:
    # `docker commit` copies the box's devbox.owner label: only devbox's tag marks its builds.
    caller = built
    made = up_json(caller, built_profile(caller, "snap", context(caller, "s", f"FROM {BASE}\nENV S=1\n", {})))
    snapshot = f"devbox-test/snapshot-{RUN_ID}:{caller.owner}"
    docker("commit", made["id"], snapshot)
    try:
        assert (
            json.loads(docker("image", "inspect", snapshot).stdout)[0]["Config"]["Labels"]["devbox.owner"]
            == caller.owner
        )
        caller.devbox("down", "snap")
        result = contract.parse(
            caller.devbox("prune", "--images", "--yes", "--json").stdout, shapes.PruneImagesJson
        )
        assert snapshot not in [tag for image in result["images_removed"] for tag in image["tags"]]
        assert image_exists(snapshot)
    finally:
        docker("image", "rm", snapshot, check=False)


def test_image_build_makes_the_reference_image_from_a_base_the_engine_has(caller: Caller) -> None:
    tag = f"devbox-test/devbox:{RUN_ID}"
    # The classic builder reuses the layers scripts/build-images made from the same base and files.
    environ = {**caller.environ, "DEVBOX_BUILDER": "classic"}
    try:
        result = Caller(caller.owner, caller.cwd, environ).devbox(
            "image", "build", "--base", BASE, "--tag", tag, "--json", timeout=900
        )
        data = contract.parse(result.stdout, shapes.ImageBuildJson)
        assert data["image"] == tag and data["base"] == BASE
        labels = json.loads(docker("image", "inspect", tag).stdout)[0]["Config"]["Labels"]
        assert labels["devbox.protocol"] == "1" and "devbox.owner" not in labels
    finally:
        docker("image", "rm", tag, check=False)


def test_up_of_the_default_profile_without_its_image_says_how_to_build_it(
    caller: Caller, tmp_path: Path
) -> None:
    import shutil

    import devbox

    # devbox as a wheel installs it, its reference image tagged with a TAG no engine has.
    site = tmp_path / "site"
    copy = site / "devbox"
    shutil.copytree(Path(devbox.__file__).parent, copy, ignore=shutil.ignore_patterns("__pycache__"))
    checkout = Path(devbox.__file__).parent.parent
    shutil.copytree(checkout / "images/devbox", copy / "bundled_images/devbox")
    shutil.copytree(checkout / "profiles", copy / "bundled_profiles")
    tag = f"missing-{RUN_ID}"
    (copy / "bundled_images/devbox/TAG").write_text(f"{tag}\n")
    default = copy / "bundled_profiles/default.yaml"
    default.write_text(default.read_text().replace("image: devbox/devbox:0.1", f"image: devbox/devbox:{tag}"))
    caller.environ["PYTHONPATH"] = str(site)
    result = caller.devbox("up", check=False)
    assert result.returncode == 1
    assert f"the image devbox/devbox:{tag} is not on this engine: devbox image build" in result.stderr
    assert "pull" not in result.stderr.lower()
    assert docker("container", "inspect", caller.container("default"), check=False).returncode != 0
