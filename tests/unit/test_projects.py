"""Project-bound boxes (ops/project.py): a project profile's binds, inherited ones included,
resolve against its project folder, the box records it, and up/rebuild/switch from another
folder act on the recorded folder and say so; a library profile's drift that comes only from
the current folder is worded as such."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from devbox.box import labels, spec
from devbox.engine.fake import FakeEngine
from devbox.ops import lifecycle, project, resolve
from devbox.ops.reporter import QuietReporter
from devbox.profile import loader
from devbox.profile.model import VolumeSpec
from devbox.settings import Settings
from tests.conftest import Sandbox
from tests.unit.conftest import PLAIN


def _projects(sandbox: Sandbox) -> tuple[Path, Path]:
    """Two project folders, each with .devbox/llm.yaml extending the bundled default."""
    folders = []
    for name in ("llm", "detr"):
        sandbox.write(f"{name}/.devbox/llm.yaml", f"extends: default\nimage: {PLAIN}\n")
        folders.append(sandbox.root / name)
    return folders[0], folders[1]


def _in(sandbox: Sandbox, folder: Path) -> Settings:
    return dataclasses.replace(sandbox.settings(), cwd=folder)


def _workspace(binds: dict[str, str]) -> str:
    return binds["/workspace"]


def _binds(profile_volumes: tuple[VolumeSpec, ...]) -> dict[str, str]:
    return {v.target: v.source for v in profile_volumes if v.kind == "bind"}


def test_a_project_profile_mounts_its_project_even_from_another_folder(sandbox: Sandbox) -> None:
    llm, detr = _projects(sandbox)
    # By path, from the other project: the bundled parent's `.` is still llm's folder.
    profile = loader.load(str(llm / ".devbox" / "llm.yaml"), _in(sandbox, detr))
    assert _workspace(_binds(profile.volumes)) == str(llm)
    assert profile.project == str(llm)
    # Found by name in the current project: that project.
    here = loader.load("llm", _in(sandbox, detr))
    assert _workspace(_binds(here.volumes)) == str(detr) and here.project == str(detr)


def test_a_library_profile_follows_the_current_folder_and_records_no_project(sandbox: Sandbox) -> None:
    profile = loader.load("default", sandbox.settings())
    assert _workspace(_binds(profile.volumes)) == str(sandbox.cwd)
    assert profile.project is None


def test_the_project_label_leaves_the_spec_hash_of_older_boxes_alone(sandbox: Sandbox) -> None:
    llm, _ = _projects(sandbox)
    profile = loader.load("llm", _in(sandbox, llm))
    ctx = spec.HostContext("alice", 1000, 1000)
    made = spec.build(profile, ctx)
    assert made.labels[labels.PROJECT] == str(llm)
    # A box made before the label: the same profile without it hashes the same.
    older = spec.build(dataclasses.replace(profile, project=None), ctx)
    assert labels.PROJECT not in older.labels and older.spec_hash == made.spec_hash


def _up(engine: FakeEngine, ref: str, settings: Settings) -> None:
    lifecycle.up(engine, resolve.resolve(ref, settings), QuietReporter())


def test_up_from_another_folder_acts_on_the_recorded_project(sandbox: Sandbox, engine: FakeEngine) -> None:
    llm, detr = _projects(sandbox)
    _up(engine, "llm", _in(sandbox, llm))
    bound = project.bound(engine, "llm", _in(sandbox, detr))
    assert bound.settings.cwd == llm
    assert bound.note is not None and f"project folder {llm} (recorded)" in bound.note
    assert str(detr) in bound.note
    resolved = resolve.resolve(bound.ref, bound.settings)
    assert _workspace({m.target: m.source for m in resolved.spec.mounts}) == str(llm)
    box = engine.find(resolved.spec.name, "alice")
    assert box is not None and box.spec_hash == resolved.spec.spec_hash  # no drift: the same box


def test_no_note_from_the_project_itself_nor_for_a_path(sandbox: Sandbox, engine: FakeEngine) -> None:
    llm, detr = _projects(sandbox)
    _up(engine, "llm", _in(sandbox, llm))
    assert project.bound(engine, "llm", _in(sandbox, llm)).note is None
    path = str(detr / ".devbox" / "llm.yaml")
    assert project.bound(engine, path, _in(sandbox, llm)) == project.Bound(path, _in(sandbox, llm))


def test_a_recorded_folder_that_is_gone_binds_nothing(sandbox: Sandbox, engine: FakeEngine) -> None:
    llm, detr = _projects(sandbox)
    _up(engine, "llm", _in(sandbox, llm))
    box = engine.find("devbox-alice-llm", "alice")
    assert box is not None
    moved = dataclasses.replace(box, labels={**box.labels, labels.PROJECT: str(sandbox.root / "gone")})
    assert project.bind(moved, "llm", _in(sandbox, detr)).note is None


def test_a_library_box_up_from_another_folder_says_the_current_folder_caused_it(
    sandbox: Sandbox, engine: FakeEngine
) -> None:
    sandbox.write("work/.devbox/nb.yaml", f"image: {PLAIN}\n")  # not used: the library one is
    user_dir = sandbox.settings().user_profiles_dir
    user_dir.mkdir(parents=True)
    (user_dir / "lib.yaml").write_text(f"extends: default\nimage: {PLAIN}\n")
    first, other = sandbox.root / "first", sandbox.root / "other"
    first.mkdir()
    other.mkdir()
    _up(engine, "lib", _in(sandbox, first))
    result = lifecycle.up(engine, resolve.resolve("lib", _in(sandbox, other)), QuietReporter())
    assert result.action == "running"
    assert result.changes == (
        f"/workspace would mount {other} (the current folder) instead of {first} (the box's):"
        f" run from {first}, or devbox up --recreate to re-point it",
    )


def test_a_real_volume_change_is_still_worded_as_one(sandbox: Sandbox, engine: FakeEngine) -> None:
    user_dir = sandbox.settings().user_profiles_dir
    user_dir.mkdir(parents=True)
    (user_dir / "lib.yaml").write_text(f"image: {PLAIN}\nvolumes: [./a:/a]\n")
    _up(engine, "lib", sandbox.settings())
    (user_dir / "lib.yaml").write_text(f"image: {PLAIN}\nvolumes: [./b:/a]\n")
    result = lifecycle.up(engine, resolve.resolve("lib", sandbox.settings()), QuietReporter())
    assert result.changes == (f"volumes: {sandbox.cwd}/a:/a:rw → {sandbox.cwd}/b:/a:rw",)


def test_a_library_box_rebuilt_from_another_folder_says_it_moved(
    sandbox: Sandbox, engine: FakeEngine
) -> None:
    user_dir = sandbox.settings().user_profiles_dir
    user_dir.mkdir(parents=True)
    (user_dir / "lib.yaml").write_text(f"extends: default\nimage: {PLAIN}\n")
    first, other = sandbox.root / "first", sandbox.root / "other"
    first.mkdir()
    other.mkdir()
    _up(engine, "lib", _in(sandbox, first))
    before = engine.inspect("devbox-alice-lib")
    resolved = resolve.resolve("lib", _in(sandbox, other))
    lifecycle.rebuild(engine, resolved, QuietReporter(), pull=False, no_cache=False)
    assert project.repointed(before, resolved.spec, other) == (
        f"/workspace now mounts {other} (the current folder), not {first}: a library profile follows"
        f" the folder devbox runs from; rebuild from {first} to go back"
    )
    assert project.repointed(before, resolve.resolve("lib", _in(sandbox, first)).spec, first) is None


def test_another_projects_profile_of_the_same_name_says_whose_box_it_is(
    sandbox: Sandbox, engine: FakeEngine
) -> None:
    # detr's own .devbox/llm.yaml, given by path, names llm's box: up says so and keeps it.
    llm, detr = _projects(sandbox)
    _up(engine, "llm", _in(sandbox, llm))
    path = str(detr / ".devbox" / "llm.yaml")
    result = lifecycle.up(engine, resolve.resolve(path, _in(sandbox, detr)), QuietReporter())
    assert result.action == "running"
    assert result.changes[0].startswith(f"project: box 'llm' belongs to {llm}, not {detr} (another project)")
    box = engine.find("devbox-alice-llm", "alice")
    assert box is not None and box.labels[labels.PROJECT] == str(llm)


def test_a_moved_project_is_named_when_its_box_name_finds_no_profile(
    sandbox: Sandbox, engine: FakeEngine
) -> None:
    llm, _ = _projects(sandbox)
    _up(engine, "llm", _in(sandbox, llm))
    assert project.gone_hint(engine, "llm", _in(sandbox, sandbox.root)) is None  # still there
    llm.rename(sandbox.root / "llm-moved")
    hint = project.gone_hint(engine, "llm", _in(sandbox, sandbox.root))
    assert hint is not None and hint.startswith(f"your box 'llm' was made from {llm}, which is gone")
    assert "devbox down llm" in hint


def test_a_relative_volume_flag_is_the_shells_when_acting_on_the_recorded_project(
    sandbox: Sandbox, engine: FakeEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `devbox up llm -v ./data:/data` typed in detr: detr's data, on llm's box and project.
    from devbox.cli import shared
    from devbox.profile.flags import Overrides

    monkeypatch.setattr("devbox.engine.connect", lambda timeout=60: engine)
    llm, detr = _projects(sandbox)
    _up(engine, "llm", _in(sandbox, llm))
    resolved, note = shared.resolve_bound("llm", _in(sandbox, detr), Overrides(volumes=["./data:/data"]))
    mounts = {m.target: m.source for m in resolved.spec.mounts}
    assert note is not None
    assert mounts["/data"] == str(detr / "data") and mounts["/workspace"] == str(llm)


def test_a_rebuild_from_another_projects_profile_path_says_the_box_moved(
    sandbox: Sandbox, engine: FakeEngine
) -> None:
    llm, detr = _projects(sandbox)
    _up(engine, "llm", _in(sandbox, llm))
    before = engine.inspect("devbox-alice-llm")
    resolved = resolve.resolve(str(detr / ".devbox" / "llm.yaml"), _in(sandbox, llm))
    assert project.repointed(before, resolved.spec, llm) == (
        f"box 'llm' moved from project {llm} to {detr}: its binds are {detr}'s now"
    )
