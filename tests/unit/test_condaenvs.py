"""`environments:` (issue 13): the key, the spec's mounts, the installers' command lines, and
condaenvs.ensure run for real on this machine: the box's shell commands run in a local shell
(/opt/devbox mapped to a temporary folder), the installer is images/rattler/devbox-rattler-env
with py-rattler, and the channel is a local one made by tests/condachannel.py. No engine."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from devbox.box.state import Box
from devbox.errors import InvalidInput
from devbox.ops import condaenvs, resolve
from devbox.ops.reporter import QuietReporter
from devbox.profile import environments as envkey
from tests.condachannel import PYTHON, make_channel, module
from tests.conftest import Sandbox

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "images" / "rattler" / "devbox-rattler-env"


# --- the key --------------------------------------------------------------------------------


def test_environments_are_read_named_and_mounted(sandbox: Sandbox) -> None:
    sandbox.write("work/envs/ml.yml", "name: ml\ndependencies: [python]\n")
    sandbox.write("work/tools.yaml", "dependencies: [python]\n")
    sandbox.write("work/p.yaml", "image: x\nenvironments: [envs/ml.yml, tools.yaml]\n")
    resolved = resolve.resolve("p.yaml", sandbox.settings())
    envs = resolved.profile.environments
    assert [(e.name, e.path) for e in envs] == [
        ("ml", str(sandbox.cwd / "envs/ml.yml")),
        ("tools", str(sandbox.cwd / "tools.yaml")),
    ]
    assert envs[0].text == "name: ml\ndependencies: [python]\n"
    assert envs[0].origin.line == 2
    mounts = {m.target: m.source for m in resolved.spec.mounts}
    assert mounts[envkey.ENVS_ROOT] == "devbox-alice-envs"
    assert mounts[envkey.PKGS_ROOT] == "devbox-alice-pkgs"
    assert resolved.spec.env["JUPYTER_PATH"] == "/opt/devbox/envs/.devbox/jupyter/p"
    assert resolved.spec.env["CONDA_PKGS_DIRS"] == envkey.PKGS_ROOT


def test_a_profile_without_environments_gets_no_volumes(sandbox: Sandbox) -> None:
    sandbox.write("work/p.yaml", "image: x\n")
    resolved = resolve.resolve("p.yaml", sandbox.settings())
    assert not [m for m in resolved.spec.mounts if m.target.startswith("/opt/devbox")]
    assert "JUPYTER_PATH" not in resolved.spec.env


def test_bad_environment_files_are_located_problems(sandbox: Sandbox) -> None:
    sandbox.write("work/a.yml", "name: same\ndependencies: [python]\n")
    sandbox.write("work/b.yml", "name: same\ndependencies: [python]\n")
    sandbox.write("work/bad.yml", "dependencies: [python\n")
    sandbox.write("work/noname.yml", "name: ../x\ndependencies: []\n")
    sandbox.write("work/nodeps.yml", "name: nodeps\n")
    sandbox.write("work/vars.yml", "name: vars\ndependencies: []\nvariables: [OMP_NUM_THREADS=4]\n")
    sandbox.write(
        "work/p.yaml",
        "image: x\nenvironments:\n  - a.yml\n  - b.yml\n  - missing.yml\n  - bad.yml\n"
        "  - noname.yml\n  - nodeps.yml\n  - 3\n  - vars.yml\n",
    )
    with pytest.raises(InvalidInput) as caught:
        resolve.resolve("p.yaml", sandbox.settings())
    found = {(p.origin.line, p.message.split(" ", 3)[-1][:40]) for p in caught.value.problems}
    lines = sorted(line for line, _ in found)
    assert lines == [4, 5, 6, 7, 8, 9, 10]
    text = "\n".join(p.message for p in caught.value.problems)
    assert "environment 'same' is named by" in text and "a.yml already" in text
    assert "missing.yml" in text and "cannot be read" in text
    assert "bad.yml is not valid YAML (line 2)" in text
    assert "cannot name a folder" in text
    assert "nodeps.yml has no dependencies: list" in text
    assert "must be the path of an environment.yml" in text
    assert "vars.yml has variables: that are not NAME: value pairs" in text


def test_environments_must_be_a_list(sandbox: Sandbox) -> None:
    sandbox.write("work/p.yaml", "image: x\nenvironments: environment.yml\n")
    with pytest.raises(InvalidInput) as caught:
        resolve.resolve("p.yaml", sandbox.settings())
    assert "environments must be a list" in caught.value.problems[0].message


# --- the installers' command lines ----------------------------------------------------------


@pytest.mark.parametrize(
    ("tool", "action", "expected"),
    [
        ("micromamba", "create", "micromamba create -y -p /p -f /f.yml"),
        ("micromamba", "update", "micromamba install -y -p /p -f /f.yml"),
        ("mamba", "create", "mamba env create -p /p -f /f.yml"),
        ("mamba", "update", "mamba env update -p /p -f /f.yml --prune"),
        ("conda", "create", "conda env create -p /p -f /f.yml"),
        ("conda", "update", "conda env update -p /p -f /f.yml --prune"),
        ("devbox-rattler-env", "create", "devbox-rattler-env create -p /p -f /f.yml"),
        ("devbox-rattler-env", "update", "devbox-rattler-env update -p /p -f /f.yml"),
    ],
)
def test_installer_command_lines(tool: str, action: str, expected: str) -> None:
    assert " ".join(condaenvs.installer_argv(tool, action, "/p", "/f.yml")) == expected


# --- ensure, for real, in a local shell -------------------------------------------------------


class LocalBox:
    """An engine whose exec runs the box's commands here, /opt/devbox being `root`."""

    def __init__(self, root: Path, path: str) -> None:
        self.root = root
        self.path = path
        self.commands: list[list[str]] = []

    def _map(self, text: str) -> str:
        return text.replace("/opt/devbox", str(self.root))

    def exec(
        self,
        container: str,
        argv: list[str],
        user: str = "",
        env: dict[str, str] | None = None,
        on_line: Callable[[str], None] | None = None,
        workdir: str = "",
    ) -> tuple[int, str]:
        """Run argv (paths mapped) with the box's PATH; lines to on_line."""
        argv = [self._map(a) for a in argv]
        self.commands.append(argv)
        environ = {"PATH": self.path, "HOME": str(self.root)}
        environ.update({k: self._map(v) for k, v in (env or {}).items()})
        # Line by line as they come, as the engine streams them (a test may wait for one).
        with subprocess.Popen(
            argv, env=environ, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        ) as process:
            assert process.stdout is not None
            lines = []
            for line in process.stdout:
                lines.append(line)
                if on_line is not None:
                    on_line(line.rstrip("\n"))
        return process.returncode, "".join(lines)


class Lines(QuietReporter):
    """A reporter that keeps steps and installer lines."""

    def __init__(self) -> None:
        self.steps: list[str] = []
        self.lines: list[str] = []

    def step(self, text: str) -> None:
        self.steps.append(text)

    def build_line(self, line: str) -> None:
        self.lines.append(line)


@pytest.fixture
def channel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("channel")
    return make_channel(
        root, [PYTHON, module("dbxpkga", "1.0"), module("dbxpkgb", "1.0"), module("dbxpkgc", "2.0")]
    )


def _installer_bin(tmp_path: Path) -> str:
    """A folder holding devbox-rattler-env, run with this venv's Python (it has py-rattler)."""
    folder = tmp_path / "bin"
    folder.mkdir()
    wrapper = folder / "devbox-rattler-env"
    wrapper.write_text(f'#!/bin/sh\nexec {sys.executable} {SCRIPT} "$@"\n')
    wrapper.chmod(0o755)
    return str(folder)


def _setup(sandbox: Sandbox, channel: Path, files: dict[str, list[str]]) -> None:
    for name, deps in files.items():
        # Environment one also sets conda variables: (its kernel's environment).
        variables = "variables: {OMP_NUM_THREADS: 4, DATA: /data/raw}\n" if name == "one" else ""
        sandbox.write(
            f"work/{name}.yml",
            f"name: {name}\nchannels: [{channel.as_uri()}]\ndependencies: [{', '.join(deps)}]\n{variables}",
        )
    listed = ", ".join(f"{n}.yml" for n in files)
    sandbox.write("work/p.yaml", f"image: devbox/rattler:0.1\nenvironments: [{listed}]\n")


def _box() -> Box:
    return Box("id1", "devbox-alice-p", "p", "alice", "", "img", "running", "", 0.0, "", (), ())


def _ensure(sandbox: Sandbox, engine: LocalBox) -> tuple[list[str], Lines]:
    resolved = resolve.resolve("p.yaml", sandbox.settings())
    reporter = Lines()
    warnings = condaenvs.ensure(engine, _box(), resolved, reporter, "created")  # type: ignore[arg-type]
    return warnings, reporter


def _record(root: Path, name: str) -> dict[str, object]:
    data = json.loads((root / "envs/.devbox" / f"{name}.json").read_text())
    assert isinstance(data, dict)
    return data


def test_ensure_creates_skips_updates_and_reports_a_failed_solve(
    sandbox: Sandbox, channel: Path, tmp_path: Path
) -> None:
    root = tmp_path / "opt"
    engine = LocalBox(root, f"{_installer_bin(tmp_path)}:/usr/bin:/bin")
    _setup(sandbox, channel, {"one": ["python", "dbxpkga"], "two": ["python", "dbxpkgb"]})

    warnings, reporter = _ensure(sandbox, engine)
    # The host's /usr/bin/python3 has no ipykernel: said, not hidden.
    assert all("no ipykernel" in w for w in warnings), warnings
    assert reporter.steps == [
        "environment one: creating with devbox-rattler-env",
        "environment two: creating with devbox-rattler-env",
    ]
    assert any("+ dbxpkga 1.0" in line for line in reporter.lines)
    site = "lib/python3.11/site-packages"
    assert (root / "envs/one" / site / "dbxpkga/__init__.py").is_file()
    assert (root / "envs/one/conda-meta").is_dir()
    kernel = json.loads((root / "envs/.devbox/jupyter/p/kernels/one/kernel.json").read_text())
    assert kernel["display_name"] == "one"
    assert kernel["env"] == {"OMP_NUM_THREADS": "4", "DATA": "/data/raw"}  # the file's variables:
    assert "env" not in json.loads((root / "envs/.devbox/jupyter/p/kernels/two/kernel.json").read_text())
    # (/opt/devbox mapped: in a box the path is /opt/devbox/envs/one/bin/python)
    assert kernel["argv"][:3] == [str(root / "envs/one/bin/python"), "-m", "ipykernel_launcher"]
    first = _record(root, "two")
    assert first["status"] == "ok" and first["installer"] == "devbox-rattler-env"
    assert (root / "envs/.devbox/one.yml").read_text().startswith("name: one\n")

    # Unchanged files: nothing is installed again.
    warnings, reporter = _ensure(sandbox, engine)
    assert reporter.steps == [
        "environment one: file unchanged, skipped",
        "environment two: file unchanged, skipped",
    ]
    assert _record(root, "two")["updated"] == first["updated"]

    # One file gains a package: only that environment is updated.
    _setup(sandbox, channel, {"one": ["python", "dbxpkga", "dbxpkgc"], "two": ["python", "dbxpkgb"]})
    warnings, reporter = _ensure(sandbox, engine)
    assert reporter.steps == [
        "environment one: updating with devbox-rattler-env",
        "environment two: file unchanged, skipped",
    ]
    assert (root / "envs/one" / site / "dbxpkgc/__init__.py").is_file()
    assert _record(root, "two")["updated"] == first["updated"]

    # A file asking for what no channel has: the solver's words and the file, the other goes on.
    _setup(sandbox, channel, {"one": ["python", "nosuchpkg >=9"], "two": ["python", "dbxpkgb", "dbxpkgc"]})
    warnings, reporter = _ensure(sandbox, engine)
    [failed] = [w for w in warnings if "failed" in w]
    assert failed.startswith(f"environment one ({sandbox.cwd / 'one.yml'}): devbox-rattler-env update failed")
    assert "No candidates were found for nosuchpkg >=9" in failed
    assert _record(root, "one")["status"] == "failed"
    assert _record(root, "two")["status"] == "ok"
    assert (root / "envs/two" / site / "dbxpkgc/__init__.py").is_file()
    # The failed environment keeps what it had.
    assert (root / "envs/one" / site / "dbxpkgc/__init__.py").is_file()

    # `devbox env`'s view of it, read back from the records.
    states = {s.name: s for s in condaenvs.recorded(engine, _box(), "")}  # type: ignore[arg-type]
    assert states["one"].status == "failed" and "nosuchpkg" in states["one"].message
    assert states["two"].status == "ok" and states["two"].kernel


def test_a_box_without_an_installer_gets_one_clear_warning(
    sandbox: Sandbox, channel: Path, tmp_path: Path
) -> None:
    # This machine's /usr/bin and /bin hold none of the installers (checked: the test
    # would fail, not pass wrongly, if one appeared: its install would be attempted).
    engine = LocalBox(tmp_path / "opt", "/usr/bin:/bin")
    _setup(sandbox, channel, {"one": ["python"]})
    warnings, _ = _ensure(sandbox, engine)
    assert warnings == [
        "image devbox/rattler:0.1 has no conda installer (mamba, micromamba, conda, devbox-rattler-env "
        "on its PATH): environments one were not made; use an image with micromamba or conda, or add "
        "devbox-rattler-env (devbox help environments)"
    ]
    # Made meanwhile by a box whose image has an installer: named no more (its kernel is written).
    made = LocalBox(tmp_path / "opt", f"{_installer_bin(tmp_path)}:/usr/bin:/bin")
    _setup(sandbox, channel, {"one": ["python"], "two": ["python"]})
    _ensure(sandbox, made)
    sandbox.write("work/three.yml", f"name: three\nchannels: [{channel.as_uri()}]\ndependencies: [python]\n")
    sandbox.write("work/p.yaml", "image: devbox/rattler:0.1\nenvironments: [one.yml, three.yml, two.yml]\n")
    warnings, _ = _ensure(sandbox, engine)
    assert len(warnings) == 1 and "environments three were not made" in warnings[0], warnings


def test_the_script_refuses_pip_entries(tmp_path: Path) -> None:
    path = tmp_path / "e.yml"
    path.write_text("dependencies: [python, {pip: [requests]}]\n")
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "create", "-p", str(tmp_path / "env"), "-f", str(path)],
        capture_output=True,
        text=True,
        env={**os.environ, "CONDA_PKGS_DIRS": str(tmp_path / "pkgs")},
    )
    assert done.returncode == 2
    assert "pip: entries are not supported (conda packages only)" in done.stderr


# --- `devbox env` -----------------------------------------------------------------------------


def test_env_json_holds_to_its_shape_and_the_table_says_why_it_failed() -> None:
    from devbox.ui import envs
    from devbox.ui import json as shapes
    from tests import shapes as contract

    states = [
        condaenvs.EnvState(
            "ml", "/p/e.yml", "ab12", 1_795_432_381.0, "ok", "", "micromamba", "/opt/x/ml", True
        ),
        condaenvs.EnvState(
            "t", "/p/t.yml", "cd34", None, "failed", "line 1\nNo candidates", "conda", "/x", False
        ),
    ]
    doc = envs.to_json("box", states)
    contract.parse(json.dumps(doc), shapes.EnvironmentsJson)
    assert doc["environments"][0]["updated_iso"] == "2026-11-23T11:13:01Z"
    table = envs.table(doc, now=1_795_432_381.0 + 180).splitlines()
    assert table[0].split() == ["ENVIRONMENT", "STATUS", "UPDATED", "HASH", "FILE"]
    assert table[1].split() == ["ml", "ok", "3m", "ago", "ab12", "/p/e.yml"]
    assert table[2].split() == ["t", "failed", "-", "cd34", "/p/t.yml"]
    assert table[3:] == ["    line 1", "    No candidates"]


def test_env_command_on_a_box_without_environments(sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from devbox.cli.commands import app
    from devbox.engine.fake import FakeEngine

    engine = FakeEngine()
    engine.add_image("img:1")
    monkeypatch.setattr("devbox.engine.connect", lambda timeout=60: engine)
    sandbox.write("work/nb.yaml", "image: img:1\n")
    runner = CliRunner()
    assert runner.invoke(app, ["up", "nb.yaml", "--json"]).exit_code == 0
    result = runner.invoke(app, ["env", "nb", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"name": "nb", "environments": []}
    plain = runner.invoke(app, ["env", "nb"])
    assert "box 'nb' has no environments" in plain.stdout
    missing = runner.invoke(app, ["env", "ghost", "--json"])
    assert missing.exit_code == 5 and json.loads(missing.stdout)["error"]["kind"] == "not-found"


def test_a_running_box_made_before_environments_is_told_to_recreate(
    sandbox: Sandbox, channel: Path, tmp_path: Path
) -> None:
    from dataclasses import replace

    from devbox.box.state import MountInfo

    engine = LocalBox(tmp_path / "opt", "/usr/bin:/bin")
    _setup(sandbox, channel, {"one": ["python"]})
    resolved = resolve.resolve("p.yaml", sandbox.settings())
    old = replace(_box(), mounts=(MountInfo("bind", "/src", "/workspace", False),))
    warnings = condaenvs.ensure(engine, old, resolved, Lines(), "running")  # type: ignore[arg-type]
    assert warnings == [
        "environments one were not made: the box has no /opt/devbox/envs volume yet; "
        "devbox up --recreate (or rebuild) adds it"
    ]
    assert engine.commands == []


# --- what users and box users throw at it (review of issue 13) --------------------------------


def test_a_large_environment_file_reaches_the_box_whole(
    sandbox: Sandbox, channel: Path, tmp_path: Path
) -> None:
    # 150 KB (under the 256 KiB devbox reads): one environment variable holds at most 128 KiB,
    # so a single exec failed with E2BIG and no environment at all was made.
    root = tmp_path / "opt"
    engine = LocalBox(root, f"{_installer_bin(tmp_path)}:/usr/bin:/bin")
    _setup(sandbox, channel, {"big": ["python", "dbxpkga"], "after": ["python"]})
    text = (sandbox.cwd / "big.yml").read_text() + "# é padding\n" * 13_000
    (sandbox.cwd / "big.yml").write_text(text)
    warnings, _ = _ensure(sandbox, engine)
    assert not [w for w in warnings if "no ipykernel" not in w], warnings
    assert (root / "envs/.devbox/big.yml").read_text() == text
    assert _record(root, "big")["status"] == "ok" and _record(root, "after")["status"] == "ok"
    assert not list((root / "envs/.devbox").glob("*.tmp"))


def test_conda_env_export_pins_with_build_strings_solve(
    sandbox: Sandbox, channel: Path, tmp_path: Path
) -> None:
    # `name=version=build` is what `conda env export` writes; the solver's strict parser refused it.
    root = tmp_path / "opt"
    engine = LocalBox(root, f"{_installer_bin(tmp_path)}:/usr/bin:/bin")
    _setup(sandbox, channel, {"pins": ["python", "dbxpkga=1.0=0", "dbxpkgb >=1.0", "dbxpkgc ==2.0"]})
    warnings, _ = _ensure(sandbox, engine)
    assert not [w for w in warnings if "no ipykernel" not in w], warnings
    assert (root / "envs/pins/conda-meta/dbxpkga-1.0-0.json").is_file()


def test_a_bad_spec_names_the_entry(tmp_path: Path) -> None:
    path = tmp_path / "e.yml"
    path.write_text("dependencies: [python, 'numpy >=>1']\n")
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "create", "-p", str(tmp_path / "env"), "-f", str(path)],
        capture_output=True,
        text=True,
        env={**os.environ, "CONDA_PKGS_DIRS": str(tmp_path / "pkgs")},
    )
    assert done.returncode == 2
    assert "dependency 'numpy >=>1' is not a conda package spec" in done.stderr


def test_a_second_install_of_an_environment_waits_for_the_first(
    sandbox: Sandbox, channel: Path, tmp_path: Path
) -> None:
    # Two boxes of one owner share the volume: an `up` of each at once (or an installer a
    # Ctrl-C'd `up` left running) must not install into one prefix together.
    import fcntl
    import threading
    import time

    root = tmp_path / "opt"
    engine = LocalBox(root, f"{_installer_bin(tmp_path)}:/usr/bin:/bin")
    _setup(sandbox, channel, {"one": ["python", "dbxpkga"]})
    (root / "envs/.devbox").mkdir(parents=True)
    with open(root / "envs/.devbox/one.lock", "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        done: list[list[str]] = []
        reporter = Lines()
        resolved = resolve.resolve("p.yaml", sandbox.settings())
        worker = threading.Thread(
            target=lambda: done.append(condaenvs.ensure(engine, _box(), resolved, reporter, "created"))  # type: ignore[arg-type]
        )
        worker.start()
        deadline = time.monotonic() + 30
        while not any("waiting for another install" in line for line in reporter.lines):
            assert time.monotonic() < deadline, reporter.lines
            time.sleep(0.05)
        # Meanwhile the record says it is not made yet, and nothing was installed.
        assert _record(root, "one")["status"] == "pending"
        assert not (root / "envs/one").exists()
        fcntl.flock(held, fcntl.LOCK_UN)
    worker.join(60)
    assert done and not [w for w in done[0] if "no ipykernel" not in w], done
    assert _record(root, "one")["status"] == "ok"
    assert (root / "envs/one/conda-meta/dbxpkga-1.0-0.json").is_file()


def test_an_install_that_another_made_meanwhile_is_an_update(
    sandbox: Sandbox, channel: Path, tmp_path: Path
) -> None:
    # The prefix appeared between devbox's look and the installer (another box's `up`): the
    # installer is told to update it, not to create it again ("exists already").
    root = tmp_path / "opt"
    bin_dir = _installer_bin(tmp_path)
    engine = LocalBox(root, f"{bin_dir}:/usr/bin:/bin")
    _setup(sandbox, channel, {"one": ["python", "dbxpkga"]})
    real_exec = engine.exec

    def racing_exec(container: str, argv: list[str], **kw: object) -> tuple[int, str]:
        if (
            argv[:2] == ["/bin/sh", "-c"]
            and "conda-meta ]; then exec" in argv[2]
            and not (root / "envs/one").exists()
        ):
            copy = root / "envs/.devbox/one.yml"
            subprocess.run(
                [f"{bin_dir}/devbox-rattler-env", "create", "-p", str(root / "envs/one"), "-f", str(copy)],
                check=True,
                capture_output=True,
                env={**os.environ, "CONDA_PKGS_DIRS": str(root / "pkgs")},
            )
        return real_exec(container, argv, **kw)  # type: ignore[arg-type]

    engine.exec = racing_exec  # type: ignore[method-assign]
    warnings, _ = _ensure(sandbox, engine)
    assert not [w for w in warnings if "no ipykernel" not in w], warnings
    assert _record(root, "one")["status"] == "ok"


def test_crafted_records_in_the_volume_are_shown_escaped(tmp_path: Path) -> None:
    # The box's user owns the volume: what they write into devbox's records must not reach
    # the host's terminal raw, nor make `devbox env` fail.
    from devbox.ui import envs

    root = tmp_path / "opt"
    state = root / "envs/.devbox"
    (state / "boxes").mkdir(parents=True)
    (state / "boxes/p.json").write_text(json.dumps(["one", "two", "three", "../../etc", "\x1b[31mx", "one"]))
    (state / "one.json").write_text(
        json.dumps(
            {
                "name": "one",
                "status": "ok\x1b[31m",
                "file": "\x1b]0;pwned\x07/x",
                "message": "\x1b[2J\x1b[Hcleared",
                "hash": "h\x1b[5m",
                "kernel": "yes",
            }
        )
    )
    (state / "two.json").write_text('{"name": "two", "updated": Infinity, "status": "ok"}\n')
    (state / "three.json").write_text('{"name": "three", "updated": 1e300}\n' + "[" * 100_000)
    engine = LocalBox(root, "/usr/bin:/bin")
    states = condaenvs.recorded(engine, _box(), "")  # type: ignore[arg-type]
    assert [s.name for s in states] == ["one", "two", "three"]
    one = states[0]
    assert (one.status, one.hash, one.kernel) == ("pending", "", False)
    assert states[1].updated is None and states[2].updated is None
    doc = envs.to_json("p", states)
    table = envs.table(doc)
    assert "\x1b" not in table and "\x07" not in table
    assert "\\x1b]0;pwned\\x07/x" in table and "\\x1b[2J\\x1b[Hcleared" in table


def test_installer_lines_reach_the_terminal_without_control_sequences() -> None:
    assert condaenvs.clean("\x1b[32m+ numpy\x1b[0m 1.26") == "+ numpy 1.26"
    assert condaenvs.clean("a\x1b]0;title\x07b\r") == "a\\x1b]0;title\\x07b"


@pytest.mark.parametrize(
    ("name", "ok"), [("x\n", False), ("2024", True), ("ml-1.2_a", True), (".x", False), ("a b", False)]
)
def test_environment_names(name: str, ok: bool) -> None:
    from devbox.profile.environments import read_env_file

    got, _, problem = read_env_file(
        f"name: {json.dumps(name) if not name.isdigit() else name}\ndependencies: []\n", "/e.yml"
    )
    assert (got == name) is ok, problem


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("channels: file:///nowhere\ndependencies: [python]\n", "Channels: file:///nowhere"),
        ("channels: [{a: b}]\ndependencies: [python]\n", "channels: must be a list of channel names"),
        ("dependencies: [python, [numpy]]\n", "dependency ['numpy'] is not a conda package spec"),
        ("dependencies: [python, null]\n", "dependency None is not a conda package spec"),
    ],
)
def test_the_script_reads_channels_and_entries_as_written(tmp_path: Path, text: str, expected: str) -> None:
    # `channels: conda-forge` (a string) was read letter by letter, as channels c, o, n, …
    path = tmp_path / "e.yml"
    path.write_text(text)
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "create", "-p", str(tmp_path / "env"), "-f", str(path)],
        capture_output=True,
        text=True,
        env={**os.environ, "CONDA_PKGS_DIRS": str(tmp_path / "pkgs")},
        timeout=120,
    )
    assert expected in done.stdout + done.stderr, done.stdout + done.stderr


def test_names_that_differ_only_in_case_are_one_kernel(sandbox: Sandbox) -> None:
    # Jupyter lists kernelspecs by their lower-cased name: ML and ml would be one kernel.
    sandbox.write("work/a.yml", "name: ML\ndependencies: [python]\n")
    sandbox.write("work/b.yml", "name: ml\ndependencies: [python]\n")
    sandbox.write("work/p.yaml", "image: x\nenvironments: [a.yml, b.yml]\n")
    with pytest.raises(InvalidInput) as caught:
        resolve.resolve("p.yaml", sandbox.settings())
    [problem] = caught.value.problems
    assert "environment 'ml' and 'ML' of" in problem.message
    assert "Jupyter would list both kernels as 'ml'" in problem.message


def test_a_volume_another_user_made_is_said_with_its_fix(sandbox: Sandbox, channel: Path) -> None:
    # Boxes of one owner share the volume; one running as another user cannot write it.
    class Denied:
        def exec(self, container: str, argv: list[str], **kw: object) -> tuple[int, str]:
            return 2, "/bin/sh: 1: cannot create /opt/devbox/envs/.devbox/boxes/p.json.tmp: Permission denied"

    _setup(sandbox, channel, {"one": ["python"]})
    resolved = resolve.resolve("p.yaml", sandbox.settings())
    [warning] = condaenvs.ensure(Denied(), _box(), resolved, Lines(), "created")  # type: ignore[arg-type]
    assert "Permission denied; devbox-alice-envs was made by a box running as another user" in warning
    assert "user: in their profiles" in warning


def test_a_bad_name_says_its_line_in_the_environment_file() -> None:
    from devbox.profile.environments import read_env_file

    _, _, problem = read_env_file("# ml\nchannels: [x]\nname: 'my env'\ndependencies: []\n", "/e.yml")
    assert problem is not None and "'my env' (line 3), which cannot name a folder" in problem
