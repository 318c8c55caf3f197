"""Builds that notice their inputs: the context's digest, .dockerignore as docker reads it, what
`up` says changed, the image a rebuild replaced, `prune --images`, the reference image's hint."""

from __future__ import annotations

import json
import os
import tarfile
from pathlib import Path
from typing import Any

import pytest

from devbox.box import labels
from devbox.engine.base import BoxFailed
from devbox.engine.fake import FakeEngine
from devbox.errors import InvalidInput
from devbox.ops import builtimages, lifecycle, refimage, resolve
from devbox.ops.reporter import QuietReporter
from devbox.profile import buildcontext
from tests.conftest import Sandbox


def tree(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


PROJECT = {
    "Dockerfile": "FROM devbox/box:0.1\nCOPY environment.yml /env.yml\n",
    "environment.yml": "dependencies: [numpy]\n",
    "src/app.py": "print('hi')\n",
    "src/notes.md": "notes\n",
    "data/big.bin": "x" * 100,
    "data/keep/README": "kept\n",
    ".git/HEAD": "ref: refs/heads/main\n",
    "build/out.o": "o",
    "Logs/a.log": "log",
}


# --- .dockerignore and the walk -----------------------------------------------------------------


@pytest.mark.parametrize(
    "ignore",
    [
        "",
        ".git\ndata\n",
        "data\n!data/keep\n",
        "**/*.md\n",
        "*\n!Dockerfile\n!environment.yml\n",
        "# comment\n/build/\nsrc/*.py\n",
        "data/../build\n",
        "[Ll]ogs\n",
    ],
)
def test_the_walk_keeps_what_docker_sends(tmp_path: Path, ignore: str) -> None:
    from docker.utils import build as dockerbuild

    root = tree(tmp_path, {**PROJECT, ".dockerignore": ignore})
    patterns = buildcontext.ignore_patterns(str(root))
    # docker-py lower-cases names and patterns; the engine does not: these names agree either way.
    expected = sorted(dockerbuild.exclude_paths(str(root), list(patterns), dockerfile="Dockerfile"))
    assert buildcontext.walk(str(root), "Dockerfile") == expected


def test_the_dockerfile_and_dockerignore_are_always_sent(tmp_path: Path) -> None:
    root = tree(tmp_path, {**PROJECT, ".dockerignore": "*\n"})
    assert buildcontext.walk(str(root), "Dockerfile") == [".dockerignore", "Dockerfile"]


def test_an_excluded_folder_is_never_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tree(tmp_path, {**PROJECT, ".dockerignore": ".git\ndata\n"})
    opened: list[str] = []
    real = os.scandir

    def spy(path: str) -> object:
        opened.append(os.path.relpath(path, root))
        return real(path)

    monkeypatch.setattr(buildcontext.os, "scandir", spy)
    buildcontext.scan(str(root), "Dockerfile")
    assert ".git" not in opened and "data" not in opened
    assert "src" in opened


def test_the_digest_follows_contents_and_modes_not_times(tmp_path: Path) -> None:
    root = tree(tmp_path, PROJECT)
    first = buildcontext.scan(str(root), "Dockerfile")
    os.utime(root / "environment.yml", (1, 1))
    assert buildcontext.scan(str(root), "Dockerfile") == first
    (root / "environment.yml").write_text("dependencies: [numpy, scipy]\n")
    second = buildcontext.scan(str(root), "Dockerfile")
    assert second.digest != first.digest
    assert [p for p in first.files if first.files[p] != second.files[p]] == ["environment.yml"]
    (root / "src/app.py").chmod(0o755)
    assert buildcontext.scan(str(root), "Dockerfile").digest != second.digest


def test_an_ignored_file_changes_nothing(tmp_path: Path) -> None:
    root = tree(tmp_path, {**PROJECT, ".dockerignore": "data\n"})
    first = buildcontext.scan(str(root), "Dockerfile")
    (root / "data/big.bin").write_text("changed")
    assert buildcontext.scan(str(root), "Dockerfile") == first


def test_links_are_hashed_as_links_and_fifos_are_never_read(tmp_path: Path) -> None:
    root = tree(tmp_path, PROJECT)
    os.symlink("missing", root / "src/dangling")  # a link is sent as a link: fine
    buildcontext.scan(str(root), "Dockerfile")
    os.mkfifo(root / "src/pipe")
    assert "src/pipe" in buildcontext.walk(str(root), "Dockerfile")  # named, never read


# --- the label and what changed ----------------------------------------------------------------


def test_changed_names_the_files() -> None:
    old = {"Dockerfile": "a", "environment.yml": "b", "gone.txt": "c"}
    new = {"Dockerfile": "a", "environment.yml": "B", "added.py": "d"}
    label = buildcontext.manifest_label(old)
    assert buildcontext.changed(label, new) == "added.py, environment.yml, gone.txt (removed)"
    assert buildcontext.changed(label, old) == ""
    assert buildcontext.changed(None, new) == ""  # an image built before the label
    assert buildcontext.changed("not json", new) == ""


def test_many_changes_are_counted_and_a_huge_context_keeps_a_count() -> None:
    old = {f"f{i}.py": "a" for i in range(10)}
    new = {f"f{i}.py": "b" for i in range(10)}
    assert buildcontext.changed(buildcontext.manifest_label(old), new).startswith("10 files changed (f0.py")
    huge = {f"f{i}.py": "a" for i in range(buildcontext.MANIFEST_CAP + 1)}
    label = buildcontext.manifest_label(huge)
    assert json.loads(label) == {"count": buildcontext.MANIFEST_CAP + 1}
    assert buildcontext.changed(label, new) == f"{buildcontext.MANIFEST_CAP + 1}+ files in the build context"


# --- the tag, up, rebuild, prune --------------------------------------------------------------


def build_profile(sandbox: Sandbox) -> str:
    tree(sandbox.root / "work/ctx", {**PROJECT, ".dockerignore": ".git\n"})
    return str(sandbox.write("work/built.yaml", "build: {context: ctx, target: dev}\ngpus: none\n"))


def test_the_tag_changes_with_a_file_and_not_with_an_ignored_one(sandbox: Sandbox) -> None:
    ref = build_profile(sandbox)
    first = resolve.resolve(ref, sandbox.settings()).spec
    assert first.build is not None and first.build.target == "dev"
    assert first.build.files["environment.yml"]
    (sandbox.root / "work/ctx/.git/HEAD").write_text("changed\n")
    assert resolve.resolve(ref, sandbox.settings()).spec.image == first.image
    (sandbox.root / "work/ctx/environment.yml").write_text("dependencies: [scipy]\n")
    assert resolve.resolve(ref, sandbox.settings()).spec.image != first.image


def test_up_names_the_changed_file_and_rebuild_drops_the_old_image(
    sandbox: Sandbox, engine: FakeEngine
) -> None:
    ref = build_profile(sandbox)
    me = sandbox.settings()
    made = lifecycle.up(engine, resolve.resolve(ref, me), QuietReporter())
    old_image = made.box.image
    assert buildcontext.LABEL in (engine.image_labels(old_image) or {})
    (sandbox.root / "work/ctx/environment.yml").write_text("dependencies: [scipy]\n")
    again = lifecycle.up(engine, resolve.resolve(ref, me), QuietReporter())
    assert again.action == "running"
    assert again.changes == ("image inputs changed: environment.yml",)
    rebuilt = lifecycle.rebuild(engine, resolve.resolve(ref, me), QuietReporter(), pull=False, no_cache=False)
    assert rebuilt.box.image != old_image
    assert not engine.image_exists(old_image)
    assert lifecycle.up(engine, resolve.resolve(ref, me), QuietReporter()).changes == ()


def test_a_rebuild_keeps_an_image_another_container_uses(sandbox: Sandbox, engine: FakeEngine) -> None:
    ref = build_profile(sandbox)
    me = sandbox.settings()
    old_image = lifecycle.up(engine, resolve.resolve(ref, me), QuietReporter()).box.image
    other = resolve.resolve(str(sandbox.write("work/other.yaml", f"image: {old_image}\ngpus: none\n")), me)
    lifecycle.up(engine, other, QuietReporter())
    (sandbox.root / "work/ctx/environment.yml").write_text("dependencies: [scipy]\n")
    lifecycle.rebuild(engine, resolve.resolve(ref, me), QuietReporter(), pull=False, no_cache=False)
    assert engine.image_exists(old_image)


def test_a_pulled_image_is_never_removed(sandbox: Sandbox, engine: FakeEngine) -> None:
    resolved = resolve.resolve(build_profile(sandbox), sandbox.settings())
    removed = builtimages.drop_replaced(engine, resolved, ["sha256:devbox/box:0.1"], QuietReporter())
    assert removed == [] and engine.image_exists("devbox/box:0.1")


def test_prune_images_takes_only_unused_built_images_of_the_owner(
    sandbox: Sandbox, engine: FakeEngine
) -> None:
    me = sandbox.settings()
    used = lifecycle.up(engine, resolve.resolve(build_profile(sandbox), me), QuietReporter()).box.image
    engine.add_image("devbox/alice-old:1", {labels.OWNER: me.owner, labels.BOX: "old"})
    engine.add_image("devbox/bob-old:1", {labels.OWNER: "bob", labels.BOX: "old"})
    mine = builtimages.unused(engine, me.owner)
    assert [i.tags for i in mine] == [("devbox/alice-old:1",)]
    removed, kept = builtimages.prune(engine, mine)
    assert len(removed) == 1 and kept == []
    assert not engine.image_exists("devbox/alice-old:1")
    assert engine.image_exists(used) and engine.image_exists("devbox/bob-old:1")
    assert [i.owner for i in builtimages.unused(engine, None)] == ["bob"]  # --all


# --- the reference image ------------------------------------------------------------------------


def test_a_missing_reference_image_says_how_to_build_it(sandbox: Sandbox) -> None:
    engine = FakeEngine()
    resolved = resolve.resolve("default", sandbox.settings())
    assert resolved.spec.image == refimage.default_tag()
    with pytest.raises(BoxFailed) as caught:
        lifecycle.up(engine, resolved, QuietReporter())
    assert "devbox image build" in caught.value.message
    assert "--base" in (caught.value.hint or "")
    assert engine.list_boxes(None) == []


def test_image_build_builds_the_bundled_dockerfile(engine: FakeEngine) -> None:
    built = refimage.build(engine, QuietReporter(), "devbox/debian:bookworm", "devbox/devbox:try", False)
    assert built.tag == "devbox/devbox:try" and engine.image_exists("devbox/devbox:try")
    assert (refimage.folder() / "Dockerfile").is_file()
    assert labels.OWNER not in (engine.image_labels("devbox/devbox:try") or {})  # prune leaves it


def test_the_tarball_holds_exactly_the_walk(tmp_path: Path) -> None:
    from devbox.engine.docker import images

    root = tree(tmp_path / "ctx", {**PROJECT, ".dockerignore": ".git\ndata\n!data/keep\n"})
    with images.tarball(str(root), "Dockerfile") as handle, tarfile.open(fileobj=handle) as tar:
        names = sorted(tar.getnames())
    assert names == buildcontext.walk(str(root), "Dockerfile")


def test_the_cache_skips_reading_unchanged_files_and_sees_an_edit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(buildcontext, "_RACY_NS", 0)  # the files count as written long ago
    root = tree(tmp_path / "ctx", PROJECT)
    cache = buildcontext.cache_file(tmp_path / "cache", str(root))
    first = buildcontext.scan(str(root), "Dockerfile", cache)
    assert cache.is_file()
    assert buildcontext.scan(str(root), "Dockerfile", cache) == first
    (root / "environment.yml").write_text("dependencies: [scipy]\n")
    second = buildcontext.scan(str(root), "Dockerfile", cache)
    assert second.files["environment.yml"] != first.files["environment.yml"]
    assert second == buildcontext.scan(str(root), "Dockerfile")  # as without a cache


def test_buildkit_build_args_stay_off_the_command_line() -> None:
    from devbox.engine.base import ImageBuild
    from devbox.engine.docker import buildkit

    request = ImageBuild("/ctx", "Dockerfile", "t:1", {"TOKEN": "s3cret", "PATH": "/x"}, {}, "dev")
    line = buildkit.argv("docker", request, no_cache=True)
    assert "s3cret" not in " ".join(line)  # `ps` shows a command line to everyone
    assert line[line.index("TOKEN") - 1] == "--build-arg"
    assert "PATH=/x" in line  # what the CLI itself reads goes inline
    assert line[-4:] == ["--target", "dev", "--no-cache", "-"]


def test_up_recreate_builds_the_new_inputs_and_drops_the_old_image(
    sandbox: Sandbox, engine: FakeEngine
) -> None:
    ref = build_profile(sandbox)
    me = sandbox.settings()
    old_image = lifecycle.up(engine, resolve.resolve(ref, me), QuietReporter()).box.image
    (sandbox.root / "work/ctx/src/app.py").write_text("print('changed')\n")
    recreated = lifecycle.up(engine, resolve.resolve(ref, me), QuietReporter(), recreate=True)
    assert recreated.action == "recreated" and recreated.box.image != old_image
    assert not engine.image_exists(old_image)


def test_a_file_written_just_now_is_not_cached(tmp_path: Path) -> None:
    # Written within the clock's granularity, a same-size edit may keep its size and times.
    root = tree(tmp_path / "ctx", PROJECT)
    cache = buildcontext.cache_file(tmp_path / "cache", str(root))
    buildcontext.scan(str(root), "Dockerfile", cache)
    assert not cache.exists() or "environment.yml" not in json.loads(cache.read_text())


@pytest.mark.parametrize(
    "poison",
    [
        '{"environment.yml": 5}',
        '{"environment.yml": [1, 2]}',
        "[1, 2]",
        '{"environment.yml": [0,0,0,0,7]}',
        "\x00",
    ],
)
def test_a_corrupt_cache_is_read_past(tmp_path: Path, poison: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(buildcontext, "_RACY_NS", 0)
    root = tree(tmp_path / "ctx", PROJECT)
    cache = buildcontext.cache_file(tmp_path / "cache", str(root))
    cache.parent.mkdir(parents=True)
    cache.write_text(poison)
    assert buildcontext.scan(str(root), "Dockerfile", cache) == buildcontext.scan(str(root), "Dockerfile")


def test_an_unreadable_folder_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tree(tmp_path / "ctx", {**PROJECT, "locked/f": "x"})
    real = os.scandir

    def scandir(path: str) -> Any:  # as for anyone but root on a mode 000 folder
        if path.endswith("locked"):
            raise PermissionError(13, "Permission denied", path)
        return real(path)

    monkeypatch.setattr(os, "scandir", scandir)
    with pytest.raises(InvalidInput) as caught:
        buildcontext.scan(str(root), "Dockerfile")
    assert caught.value.message == f"cannot read {root / 'locked'} in the build context: Permission denied"


def test_prune_and_rebuild_leave_an_image_made_from_a_box(sandbox: Sandbox, engine: FakeEngine) -> None:
    # `docker commit` of a box (or FROM its image) inherits its devbox labels, not its tag.
    me = sandbox.settings()
    snapshot = {labels.OWNER: me.owner, labels.BOX: "old", buildcontext.LABEL: "{}"}
    engine.add_image("mysnapshot:keep", snapshot)
    engine.add_image(f"devbox/{me.owner}-old:1", snapshot)
    assert [i.tags for i in builtimages.unused(engine, me.owner)] == [(f"devbox/{me.owner}-old:1",)]
    resolved = resolve.resolve(build_profile(sandbox), me)
    removed = builtimages.drop_replaced(engine, resolved, ["sha256:mysnapshot:keep"], QuietReporter())
    assert removed == [] and engine.image_exists("mysnapshot:keep")


def test_a_dockerfile_linked_from_outside_the_context_is_located(sandbox: Sandbox) -> None:
    # The context goes with its links as links: the engine could not read the link's target.
    sandbox.write("work/Dockerfile.real", "FROM scratch\n")
    (sandbox.root / "work/ctx").mkdir(parents=True)
    (sandbox.root / "work/ctx/Dockerfile").symlink_to("../Dockerfile.real")
    ref = str(sandbox.write("work/linked.yaml", "build: ctx\ngpus: none\n"))
    with pytest.raises(InvalidInput) as caught:
        resolve.resolve(ref, sandbox.settings())
    (problem,) = caught.value.problems
    assert problem.origin.line == 1 and "is a link to" in problem.message
    assert "outside the build context" in problem.message


def test_a_changed_build_arg_is_worded_as_a_build_setting(sandbox: Sandbox, engine: FakeEngine) -> None:
    ref = build_profile(sandbox)
    me = sandbox.settings()
    lifecycle.up(engine, resolve.resolve(ref, me), QuietReporter())
    sandbox.write("work/built.yaml", "build: {context: ctx, target: dev, args: {X: '2'}}\ngpus: none\n")
    again = lifecycle.up(engine, resolve.resolve(ref, me), QuietReporter())
    assert again.changes == (
        "image inputs changed: build args, target, dockerfile or folders (no file's content)",
    )


def test_a_file_name_that_is_not_utf8_is_hashed_and_sent(tmp_path: Path) -> None:
    from devbox.engine.docker import images

    root = tree(tmp_path / "ctx", PROJECT)
    (root / os.fsdecode(b"\xffraw.txt")).write_text("x")
    found = buildcontext.scan(str(root), "Dockerfile")
    assert os.fsdecode(b"\xffraw.txt") in found.files
    assert json.loads(buildcontext.manifest_label(found.files))["files"]
    with images.tarball(str(root), "Dockerfile") as handle, tarfile.open(fileobj=handle) as tar:
        assert os.fsdecode(b"\xffraw.txt") in tar.getnames()
