"""Must show (issue 13): project-bound boxes, Docker contexts and host quotas on a real engine.

Two projects, each with `.devbox/NAME.yaml` extending the bundled `default` (whose `.` is
/workspace): `up`, `rebuild` and `switch` run from the other project's folder keep each box
on its own folder, as `docker inspect` shows, and say they acted on the recorded folder.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import RUN_ID, TEST_LABEL, Caller, Engine, docker, make_caller


def _project(root: Path, name: str) -> Path:
    """A project folder with a marker file and `.devbox/NAME.yaml` extending `default`."""
    folder = root / name
    (folder / ".devbox").mkdir(parents=True)
    (folder / "marker").write_text(f"{name}\n")
    (folder / ".devbox" / f"{name}.yaml").write_text(
        f'extends: default\nlabels: {{"{TEST_LABEL}": "{RUN_ID}"}}\n'
    )
    return folder


def _workspace(container: str) -> str:
    """The host folder on the box's /workspace, as `docker inspect` reports its mounts."""
    mounts = docker("inspect", "--format", "{{json .Mounts}}", container).stdout
    (source,) = [m["Source"] for m in json.loads(mounts) if m["Destination"] == "/workspace"]
    return str(source)


def _json(caller: Caller, *args: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(caller.devbox(*args, "--json").stdout)
    return data


def test_rebuild_and_switch_from_the_other_project_keep_each_box_on_its_folder(
    engine: Engine, tmp_path: Path
) -> None:
    who = make_caller(tmp_path, "proj")
    llm, detr = _project(tmp_path, "llm"), _project(tmp_path, "detr")
    in_llm, in_detr = dataclasses.replace(who, cwd=llm), dataclasses.replace(who, cwd=detr)
    _json(in_llm, "up", "llm")
    _json(in_detr, "up", "detr")
    assert (_workspace(who.container("llm")), _workspace(who.container("detr"))) == (str(llm), str(detr))
    note = f"acting on llm's project folder {llm} (recorded), not the current folder {detr}"

    # up from the other project: the same box, no drift, and it says where it acted.
    again = _json(in_detr, "up", "llm")
    assert again["action"] == "running" and again["changes"] == []
    assert again["warnings"][0] == note

    # rebuild from the other project: a new container, still on llm's folder.
    rebuilt = _json(in_detr, "rebuild", "llm")
    assert rebuilt["action"] == "rebuilt" and rebuilt["warnings"][0] == note
    assert _workspace(who.container("llm")) == str(llm)
    assert in_detr.devbox("exec", "llm", "--", "cat", "/workspace/marker").stdout == "llm\n"
    people = in_detr.devbox("rebuild", "llm")  # the panel says it too, on stderr
    assert "acting on llm's project folder" in people.stderr and str(llm) in people.stderr

    # switch from the other project: detr's box stops, llm's runs on llm's folder.
    switched = _json(in_detr, "switch", "llm")
    assert switched["stopped"] == ["detr"] and switched["warnings"][0] == note
    assert _workspace(who.container("llm")) == str(llm)
    # And back, from llm's folder: detr's box on detr's folder.
    back = _json(in_llm, "switch", "detr")
    assert back["stopped"] == ["llm"] and back["warnings"][0].startswith("acting on detr's project folder")
    assert _workspace(who.container("detr")) == str(detr)
    assert in_llm.devbox("exec", "detr", "--", "cat", "/workspace/marker").stdout == "detr\n"
    labels = json.loads(
        docker("inspect", "--format", "{{json .Config.Labels}}", who.container("detr")).stdout
    )
    assert labels["devbox.project"] == str(detr)


def test_another_projects_profile_of_the_same_name_never_re_points_the_box(
    engine: Engine, tmp_path: Path
) -> None:
    who = make_caller(tmp_path, "same")
    first, second = tmp_path / "a", tmp_path / "b"
    for folder in (first, second):
        (folder / ".devbox").mkdir(parents=True)
        (folder / "data").mkdir()
        (folder / ".devbox" / "llm.yaml").write_text(
            f'extends: default\nlabels: {{"{TEST_LABEL}": "{RUN_ID}"}}\n'
        )
    in_first, in_second = dataclasses.replace(who, cwd=first), dataclasses.replace(who, cwd=second)
    _json(in_first, "up", "llm")
    # b's own .devbox/llm.yaml names the same box: up says whose box it is, and leaves it.
    said = " ".join(in_second.devbox("up", ".devbox/llm.yaml").stderr.split())  # unwrapped
    assert f"project: box 'llm' belongs to {first}, not {second} (another project)" in said
    assert "devbox rebuild llm" not in said  # that would act on a's folder
    assert _workspace(who.container("llm")) == str(first)
    # A relative -v typed in b is b's folder, on a's box (acted on its recorded folder).
    flagged = _json(in_second, "up", "llm", "-v", "./data:/data")
    assert flagged["warnings"][0].startswith(f"acting on llm's project folder {first} (recorded)")
    assert any(f"{second}/data:/data:rw" in change for change in flagged["changes"])
    # The project moved away: by name, devbox says where the box came from.
    first.rename(tmp_path / "a-moved")
    gone = dataclasses.replace(who, cwd=tmp_path).devbox("up", "llm", check=False)
    assert gone.returncode == 5  # not found
    assert f"your box 'llm' was made from {first}, which is gone" in " ".join(gone.stderr.split())


def test_a_library_box_up_from_another_folder_names_the_current_folder(
    engine: Engine, tmp_path: Path
) -> None:
    who = make_caller(tmp_path, "lib")
    first, other = tmp_path / "first", tmp_path / "other"
    first.mkdir()
    other.mkdir()
    config = tmp_path / "config"  # the caller's own profile library, a library profile in it
    who = dataclasses.replace(who, environ={**who.environ, "DEVBOX_CONFIG_DIR": str(config)})
    profiles = config / "profiles"
    profiles.mkdir(parents=True)
    (profiles / "mylib.yaml").write_text(f'extends: default\nlabels: {{"{TEST_LABEL}": "{RUN_ID}"}}\n')
    _json(dataclasses.replace(who, cwd=first), "up", "mylib")
    drifted = _json(dataclasses.replace(who, cwd=other), "up", "mylib")
    assert drifted["changes"] == [
        f"/workspace would mount {other} (the current folder) instead of {first} (the box's):"
        f" run from {first}, or devbox up --recreate to re-point it"
    ]
    assert _workspace(who.container("mylib")) == str(first)  # reported, never re-pointed silently
    # A rebuild from there follows the current folder (a library profile), and says so.
    rebuilt = _json(dataclasses.replace(who, cwd=other), "rebuild", "mylib")
    assert rebuilt["warnings"][0].startswith(
        f"/workspace now mounts {other} (the current folder), not {first}"
    )
    assert _workspace(who.container("mylib")) == str(other)


def test_docker_context_picks_the_engine(engine: Engine, caller: Caller) -> None:
    name, dead = f"t{RUN_ID}-ok-{uuid.uuid4().hex[:4]}", f"t{RUN_ID}-dead-{uuid.uuid4().hex[:4]}"
    host = os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
    docker("context", "create", name, "--docker", f"host={host}")
    docker("context", "create", dead, "--docker", "host=unix:///nonexistent/docker.sock")
    try:
        env = {k: v for k, v in caller.environ.items() if k != "DOCKER_HOST"}
        through = dataclasses.replace(caller, environ={**env, "DOCKER_CONTEXT": name})
        assert json.loads(through.devbox("ls", "--json").stdout) == []
        doctor = through.devbox("doctor", check=False)
        assert f"(docker context {name})" in doctor.stdout
        broken = dataclasses.replace(caller, environ={**env, "DOCKER_CONTEXT": dead})
        failed = broken.devbox("ls", check=False)
        assert failed.returncode == 6
        assert (
            f"cannot reach the Docker engine at unix:///nonexistent/docker.sock (docker context {dead})"
            in (failed.stderr)
        )
        missing = dataclasses.replace(caller, environ={**env, "DOCKER_CONTEXT": f"{name}-gone"})
        gone = missing.devbox("ls", check=False)
        assert gone.returncode == 6
        assert f"docker context '{name}-gone' (from DOCKER_CONTEXT) does not exist" in gone.stderr
        assert "docker context ls" in gone.stderr
    finally:
        docker("context", "rm", "--force", name, dead, check=False)


def test_a_quota_above_the_host_is_a_located_error_and_nothing_is_made(
    engine: Engine, caller: Caller
) -> None:
    cpus = (os.cpu_count() or 1) + 62
    profile = caller.write_profile("huge", f"image: devbox/box:0.1\nresources:\n  cpus: {cpus}\n")
    result = caller.devbox("up", str(profile), check=False)
    assert result.returncode == 2, result.stderr
    assert (
        f"{profile}:3:3  resources.cpus {cpus} is more than this host's {os.cpu_count()} CPUs"
        in result.stderr
    )
    assert f"ask for at most cpus: {os.cpu_count()}" in result.stderr
    made = docker("ps", "-a", "--filter", f"label=devbox.owner={caller.owner}", "--format", "{{.Names}}")
    assert made.stdout.strip() == ""
    volumes = docker(
        "volume", "ls", "--filter", f"label=devbox.owner={caller.owner}", "--format", "{{.Name}}"
    )
    assert volumes.stdout.strip() == ""


@pytest.fixture(autouse=True)
def _no_context_left() -> Any:
    yield
    left = subprocess.run(
        ["docker", "context", "ls", "--format", "{{.Name}}"], capture_output=True, text=True, check=False
    ).stdout.split()
    assert not [c for c in left if c.startswith(f"t{RUN_ID}")]
