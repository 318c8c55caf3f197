from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from devbox.cli.commands import app
from tests.conftest import Sandbox

runner = CliRunner()


def test_help_lists_the_commands() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("render", "profiles"):
        assert command in result.stdout


def test_render_prints_a_copy_pastable_docker_run(sandbox: Sandbox) -> None:
    result = runner.invoke(app, ["render", "pytorch-gpu"])
    assert result.exit_code == 0, result.output
    line = result.stdout.strip()
    assert line.startswith("docker run -d --name devbox-alice-pytorch-gpu ")
    for part in (
        "--gpus all",
        "--shm-size 8g",
        "--memory 16g",
        "--cpus 4",
        "-p 127.0.0.1::8888",
        "--label devbox.",
    ):
        assert part in line


def test_render_json_is_one_document(sandbox: Sandbox) -> None:
    result = runner.invoke(app, ["render", "default", "--format", "json", "--gpus", "1"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert (data["name"], data["container"], data["owner"]) == ("default", "devbox-alice-default", "alice")
    assert data["gpu_request"] == {"kind": "count", "count": 1, "devices": []}
    assert data["docker_run"][:2] == ["docker", "run"]


@pytest.mark.parametrize(("flag", "devices"), [("device=0", [0]), ("device=0,3", [0, 3]), ("1,2", [1, 2])])
def test_the_gpus_flag_names_gpus_as_docker_run_does(sandbox: Sandbox, flag: str, devices: list[int]) -> None:
    # --gpus 0 reads like GPU 0 and is refused; docker's device=0 says it without doubt.
    result = runner.invoke(app, ["render", "default", "--json", "--gpus", flag])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["gpu_request"] == {"kind": "devices", "count": 0, "devices": devices}


def test_invalid_profile_exits_2_with_every_problem_located(sandbox: Sandbox) -> None:
    path = sandbox.write(
        "work/broken.yaml",
        "image: x\nshm-size: 8g\ngpus: lots\nresources: {cpus: -1}\nports: {web: 0}\nvolumes: [./a:a]\n",
    )
    result = runner.invoke(app, ["render", str(path)])
    assert result.exit_code == 2
    assert "5 problems" in result.stderr
    for line in (2, 3, 4, 5, 6):
        assert f"broken.yaml:{line}:" in result.stderr
    assert "did you mean 'shm_size'?" in result.stderr
    assert result.stdout == ""


def test_policy_refusal_exits_3_and_names_the_rule(sandbox: Sandbox) -> None:
    sandbox.write("lab/policy.yaml", "limits: {max_cpus: 2}\n")
    result = runner.invoke(app, ["render", "pytorch-gpu"])
    assert result.exit_code == 3
    assert "limits.max_cpus = 2" in result.stderr and "resources.cpus 4" in result.stderr
    assert str(sandbox.lab / "policy.yaml") in result.stderr


def test_bad_flag_value_names_the_flag(sandbox: Sandbox) -> None:
    result = runner.invoke(app, ["render", "default", "--memory", "lots", "--cpus", "inf"])
    assert result.exit_code == 2
    lines = result.stderr.splitlines()
    assert any(line.strip().startswith("--memory") and "'lots' is not a size" in line for line in lines)
    assert any(line.strip().startswith("--cpus") and "not 'inf'" in line for line in lines)


def test_profiles_lists_what_it_finds(sandbox: Sandbox) -> None:
    sandbox.write("work/.devbox/broken.yaml", "gpus: lots\n")
    result = runner.invoke(app, ["profiles", "--json"])
    assert result.exit_code == 0, result.output
    found = {(p["name"], p["scope"]): p["valid"] for p in json.loads(result.stdout)}
    assert found[("default", "bundled")] is True
    assert found[("pytorch-gpu", "bundled")] is True
    assert found[("broken", "project")] is False


def test_profiles_check_validates_files_for_ci(sandbox: Sandbox) -> None:
    good = sandbox.write("work/good.yaml", "image: x\n")
    bad = sandbox.write("work/bad.yaml", "image: x\nshm_size: lots\n")
    result = runner.invoke(app, ["profiles", "check", str(good)])
    assert result.exit_code == 0 and "ok" in result.stdout
    result = runner.invoke(app, ["profiles", "check", str(good), str(bad)])
    assert result.exit_code == 2
    assert "bad.yaml:2:11" in result.stdout


def test_fast_help_lists_exactly_the_registered_commands() -> None:
    import typer.main

    from devbox.cli import fast

    group = typer.main.get_command(app)
    commands = group.commands.items()  # type: ignore[attr-defined]
    registered = {name: (command.help or "").strip().splitlines()[0] for name, command in commands}
    assert dict(fast.COMMANDS) == registered
    text = fast.help_text()
    for name, summary in fast.COMMANDS:
        assert f"  {name} " in text and summary in text


def test_devbox_help_and_version_do_not_load_typer() -> None:
    import subprocess
    import sys

    code = "import sys; from devbox.cli import fast; fast.run(['--help']); print('typer' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip().endswith("False")
    assert "Commands:" in result.stdout


def test_an_engine_that_does_not_answer_is_one_clear_error(sandbox: Sandbox, tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    env = {**os.environ, "DOCKER_HOST": f"unix://{tmp_path}/no-engine.sock"}
    for argv in (["ls"], ["up", "default"], ["down", "default"]):
        result = subprocess.run(
            [sys.executable, "-m", "devbox", *argv], capture_output=True, text=True, env=env, cwd=sandbox.cwd
        )
        assert result.returncode == 6, result.stderr  # engine-unreachable
        assert f"cannot reach the Docker engine at unix://{tmp_path}/no-engine.sock" in result.stderr
        assert "is dockerd running?" in result.stderr
        assert "Traceback" not in result.stderr


def test_fast_up_reads_the_same_options_as_the_typer_command() -> None:
    import typer.main

    from devbox.cli import fast

    command = typer.main.get_command(app).commands["up"]  # type: ignore[attr-defined]
    typer_options = {opt for param in command.params for opt in param.opts if opt.startswith("-")}
    fast_options = set(fast.UP_VALUES) | set(fast.UP_LISTS) | set(fast.UP_FLAGS)
    assert fast_options == typer_options - {"--help"}
    parsed = fast._up_args(
        ["up", "box.yaml", "--gpus=2", "-p", "tb=6006", "-e", "A=1", "--json", "--memory", "4g"]
    )
    assert parsed is not None
    assert parsed["profile"] == "box.yaml" and parsed["json_output"] and not parsed["recreate"]
    flags = parsed["flags"]
    assert (flags.gpus, flags.memory, flags.ports, flags.env) == ("2", "4g", ["tb=6006"], ["A=1"])
    assert fast._up_args(["up"]) is not None and fast._up_args(["up"])["profile"] == "default"  # type: ignore[index]
    for unknown in (["up", "--help"], ["up", "a", "b"], ["up", "--gpu", "1"], ["up", "--image"]):
        assert fast._up_args(unknown) is None  # typer answers these
