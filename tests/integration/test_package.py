"""Must show: in a fresh venv, `pip install .` gives a working `devbox` with its bundled profiles."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_fresh_venv_pip_install_gives_a_working_devbox(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    install = subprocess.run(
        [venv / "bin/pip", "install", "-q", "--disable-pip-version-check", str(REPO)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert install.returncode == 0, install.stderr
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "DEVBOX_USER": "newhire"}
    env["DEVBOX_LAB_DIR"] = str(tmp_path / "nolab")

    def devbox(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [venv / "bin/devbox", *args], cwd=elsewhere, env=env, capture_output=True, text=True
        )

    help_text = devbox("--help")
    assert help_text.returncode == 0
    for command in ("render", "profiles"):
        assert command in help_text.stdout
    # The bundled profiles travel inside the wheel: found by name, far from the source tree.
    rendered = devbox("render", "pytorch-gpu")
    assert rendered.returncode == 0, rendered.stderr
    line = rendered.stdout
    for part in (
        "--gpus all",
        "--shm-size 8g",
        "--memory 16g",
        "--cpus 4",
        "-p 127.0.0.1::8888",
        "-p 127.0.0.1::22",
    ):
        assert part in line
    assert f"-v {elsewhere}/notebooks:/workspace" in line
    assert "source=devbox-newhire-data,target=/data" in line
    assert "--label devbox.owner=newhire" in line
    assert "site-packages/devbox/bundled_profiles/pytorch-gpu.yaml" in line
    module = subprocess.run(
        [venv / "bin/python", "-m", "devbox", "--version"], capture_output=True, text=True
    )
    assert module.stdout.startswith("devbox ")
    # The guides travel inside the wheel too: `devbox help TOPIC` works without the repository.
    guide = devbox("help", "profiles")
    assert guide.returncode == 0, guide.stderr
    assert guide.stdout.startswith("# Profiles")
