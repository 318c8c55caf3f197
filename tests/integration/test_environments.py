"""Must show (issue 13): `environments:` on a real engine, with a real Jupyter, offline.

The channel is a local one made here (tests/condachannel.py: packages written and indexed
with py-rattler), bind-mounted read-only into the box at /channel; the image is
devbox/rattler (images/rattler: the reference box plus devbox-rattler-env), whose installer
solves and installs from file:///channel with no network. `python` in the channel is a
stand-in that makes each environment a venv over the image's Python 3.11 (see
tests/condachannel.py), so the environment's packages import from PREFIX/bin/python and the
image's ipykernel serves its Jupyter kernel.
"""

from __future__ import annotations

import json
import os
import subprocess
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from devbox.ui import json as shapes
from tests import shapes as contract
from tests.condachannel import PYTHON, make_channel, module
from tests.integration.conftest import Caller, Engine, docker

IMAGE = "devbox/rattler:0.1"


def _image_present() -> None:
    if docker("image", "inspect", IMAGE, check=False).returncode != 0:
        message = f"{IMAGE} is not built: run scripts/build-images"
        if os.environ.get("CI"):
            pytest.fail(message, pytrace=False)
        pytest.skip(message)


def _env_file(folder: Path, name: str, deps: list[str], extra: str = "") -> None:
    (folder / f"{name}.yml").write_text(
        f"name: {name}\nchannels: [file:///channel, nodefaults]\ndependencies: [{', '.join(deps)}]\n{extra}"
    )


def _envs(caller: Caller, box: str) -> dict[str, dict[str, Any]]:
    data = contract.parse(caller.devbox("env", box, "--json").stdout, shapes.EnvironmentsJson)
    assert data["name"] == box
    return {e["environment"]: e for e in data["environments"]}


def _in_box(caller: Caller, box: str, *argv: str) -> str:
    return caller.devbox("exec", box, "--", *argv).stdout


def _kernels(box: dict[str, Any]) -> dict[str, Any]:
    """The kernelspecs the box's Jupyter lists, by name."""
    url = urlsplit(box["jupyter"]["url"])
    api = f"{url.scheme}://{url.netloc}{url.path}api/kernelspecs?token={box['jupyter']['token']}"
    with urllib.request.urlopen(api, timeout=10) as response:
        found: dict[str, Any] = json.load(response)["kernelspecs"]
        return found


def test_environments_from_a_local_channel(caller: Caller, engine: Engine, tmp_path: Path) -> None:
    _image_present()
    channel = make_channel(
        tmp_path / "channel",
        [PYTHON, module("dbxpkga", "1.0"), module("dbxpkgb", "1.0"), module("dbxpkgc", "2.0")],
    )
    subprocess.run(["chmod", "-R", "a+rX", str(tmp_path)], check=True)  # the box's user reads it
    _env_file(caller.cwd, "one", ["python", "dbxpkga"])
    _env_file(caller.cwd, "two", ["python", "dbxpkgb"], "variables: {OMP_NUM_THREADS: 4}\n")
    profile = caller.write_profile(
        "envbox",
        f"image: {IMAGE}\nports: {{jupyter: 8888}}\nready: {{timeout: 120}}\n"
        f"volumes: [{{source: {channel}, target: /channel, readonly: true}}]\n"
        "environments: [one.yml, two.yml]",
    )

    box = json.loads(caller.devbox("up", str(profile), "--json").stdout)
    assert box["warnings"] == []
    # The environments exist, their packages import in the box, Jupyter lists their kernels.
    assert "dbxpkga-1.0-0.json" in _in_box(caller, "envbox", "ls", "/opt/devbox/envs/one/conda-meta")
    code = "import dbxpkga, sys; print(dbxpkga.NAME, dbxpkga.VERSION, sys.prefix)"
    out = _in_box(caller, "envbox", "/opt/devbox/envs/one/bin/python", "-c", code)
    assert out.split() == ["dbxpkga", "1.0", "/opt/devbox/envs/one"]
    kernels = _kernels(box)
    assert {"one", "two"} <= kernels.keys()
    assert kernels["two"]["spec"]["env"] == {"OMP_NUM_THREADS": "4"}  # the file's variables:
    first = _envs(caller, "envbox")
    assert {n: e["status"] for n, e in first.items()} == {"one": "ok", "two": "ok"}
    assert first["one"]["file"] == str(caller.cwd / "one.yml")
    assert first["one"]["installer"] == "devbox-rattler-env" and first["one"]["kernel"]

    # An edit adding a package: `up --recreate` updates that environment only.
    _env_file(caller.cwd, "one", ["python", "dbxpkga", "dbxpkgc"])
    recreated = caller.devbox("up", str(profile), "--recreate", "--progress", "plain")
    assert "environment one: updating with devbox-rattler-env" in recreated.stderr
    assert "environment two: file unchanged, skipped" in recreated.stderr
    assert "+ dbxpkgc 2.0" in recreated.stderr  # the installer's lines stream as progress
    second = _envs(caller, "envbox")
    assert second["two"]["updated"] == first["two"]["updated"]
    assert second["two"]["hash"] == first["two"]["hash"]
    assert second["one"]["hash"] != first["one"]["hash"]
    assert second["one"]["updated"] >= first["one"]["updated"]
    out = _in_box(caller, "envbox", "/opt/devbox/envs/one/bin/python", "-c", "import dbxpkgc; print('ok')")
    assert out.strip() == "ok"

    # The environments volume outlives the container: a file in it survives `rebuild`.
    _in_box(caller, "envbox", "sh", "-c", "echo kept > /opt/devbox/envs/one/marker")
    rebuilt = json.loads(caller.devbox("rebuild", "envbox", "--json").stdout)
    assert rebuilt["id"] != box["id"] and rebuilt["warnings"] == []
    assert _in_box(caller, "envbox", "cat", "/opt/devbox/envs/one/marker").strip() == "kept"
    assert _envs(caller, "envbox")["two"]["updated"] == first["two"]["updated"]
    assert {"one", "two"} <= _kernels(rebuilt).keys()

    # A file no channel can satisfy: a warning with the solver's words and the file; the other
    # environment and the box stay usable.
    _env_file(caller.cwd, "two", ["python", "dbxpkgb", "nosuchpkg >=9"], "variables: {OMP_NUM_THREADS: 4}\n")
    again = json.loads(caller.devbox("up", str(profile), "--json").stdout)
    assert again["action"] == "running"
    [warning] = again["warnings"]
    assert warning.startswith(f"environment two ({caller.cwd / 'two.yml'}): devbox-rattler-env update failed")
    assert "No candidates were found for nosuchpkg >=9" in warning
    third = _envs(caller, "envbox")
    assert third["two"]["status"] == "failed" and "nosuchpkg" in third["two"]["message"]
    assert third["one"]["status"] == "ok"
    table = caller.devbox("env", "envbox").stdout
    assert "failed" in table and "nosuchpkg" in table
    assert _in_box(caller, "envbox", "/opt/devbox/envs/two/bin/python", "-c", "import dbxpkgb").strip() == ""

    caller.devbox("down", "envbox", "--purge", "--yes")
    for volume in ("envs", "pkgs"):
        assert docker("volume", "inspect", f"devbox-{caller.owner}-{volume}", check=False).returncode != 0


def test_an_image_without_a_conda_installer_is_named_and_the_box_still_comes_up(
    caller: Caller, engine: Engine
) -> None:
    _env_file(caller.cwd, "one", ["python"])
    profile = caller.write_profile("noconda", "image: devbox/devbox:0.1\nenvironments: [one.yml]")
    box = json.loads(caller.devbox("up", str(profile), "--json").stdout)
    assert box["status"] == "running"
    assert box["warnings"] == [
        "image devbox/devbox:0.1 has no conda installer (mamba, micromamba, conda, devbox-rattler-env "
        "on its PATH): environments one were not made; use an image with micromamba or conda, or add "
        "devbox-rattler-env (devbox help environments)"
    ]
    assert _envs(caller, "noconda")["one"]["status"] == "pending"
    caller.devbox("down", "noconda", "--purge", "--yes")


def test_two_boxes_bring_one_shared_environment_up_at_once(
    caller: Caller, engine: Engine, tmp_path: Path
) -> None:
    """Two boxes of one owner share the environments volume: `up` of both at once installs
    the environment once at a time (the second waits, then finds it made) and both come up
    without a warning. The file is `conda env export`-shaped (`name=version=build` pins) and
    larger than one exec's environment variable may carry (128 KiB)."""
    _image_present()
    channel = make_channel(tmp_path / "channel", [PYTHON, module("dbxpkga", "1.0"), module("dbxpkgb", "1.0")])
    subprocess.run(["chmod", "-R", "a+rX", str(tmp_path)], check=True)
    padding = "".join(f"# exported from a long-lived environment, line {i}\n" for i in range(3000))
    (caller.cwd / "shared.yml").write_text(
        "name: shared\nchannels: [file:///channel]\n"
        f"dependencies:\n  - python=3.11.0=0\n  - dbxpkga=1.0=0\n  - dbxpkgb >=1.0\n{padding}"
    )
    assert (caller.cwd / "shared.yml").stat().st_size > 131072
    body = (
        f"image: {IMAGE}\nready: {{timeout: 120}}\n"
        f"volumes: [{{source: {channel}, target: /channel, readonly: true}}]\nenvironments: [shared.yml]"
    )
    profiles = [caller.write_profile(name, body) for name in ("sa", "sb")]
    runs = [caller.start("up", str(p), "--json") for p in profiles]
    results = [run.communicate(timeout=300) for run in runs]
    try:
        for run, (out, err) in zip(runs, results, strict=True):
            assert run.returncode == 0, err
            assert json.loads(out)["warnings"] == [], out
        for box in ("sa", "sb"):
            assert _envs(caller, box)["shared"]["status"] == "ok"
        code = "import dbxpkga, dbxpkgb; print(dbxpkga.VERSION)"
        assert _in_box(caller, "sb", "/opt/devbox/envs/shared/bin/python", "-c", code).strip() == "1.0"
        copy = _in_box(caller, "sa", "cat", "/opt/devbox/envs/.devbox/shared.yml")
        assert copy == (caller.cwd / "shared.yml").read_text()
    finally:
        caller.devbox("down", "sa", "--yes", check=False)
        caller.devbox("down", "sb", "--purge", "--yes", check=False)
