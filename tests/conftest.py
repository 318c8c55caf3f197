"""Fixtures shared by unit and integration tests: an isolated caller with their own folders."""

from __future__ import annotations

import signal
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from devbox import settings

# A test run started in the background by a shell without job control (`.ci/run &`) inherits
# SIGINT ignored, and an ignored signal stays ignored across exec: every devbox the Ctrl-C tests
# interrupt would never see it. Handled here, it is the default again in each child.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@dataclass
class Sandbox:
    """A caller with an empty home, config dir, lab dir and working folder."""

    root: Path
    cwd: Path
    home: Path
    lab: Path
    environ: dict[str, str]

    def settings(self, **extra: str) -> settings.Settings:
        """Settings for this caller, with extra environment variables."""
        return settings.from_environment({**self.environ, **extra}, cwd=self.cwd)

    def write(self, relative: str, text: str) -> Path:
        """Write a dedented file under the sandbox root and return its path."""
        path = self.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"))
        return path


@pytest.fixture
def sandbox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Sandbox:
    """An isolated caller 'alice'; the process environment and cwd point at it too (for the CLI)."""
    cwd, home, lab = tmp_path / "work", tmp_path / "home", tmp_path / "lab"
    for folder in (cwd, home, lab):
        folder.mkdir()
    environ = {
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "DEVBOX_LAB_DIR": str(lab),
        "DEVBOX_USER": "alice",
        "PATH": "/usr/bin:/bin",
    }
    for key in ("DEVBOX_POLICY", "DEVBOX_CONFIG_DIR"):
        monkeypatch.delenv(key, raising=False)
    for key, value in environ.items():
        if key != "PATH":
            monkeypatch.setenv(key, value)
    monkeypatch.chdir(cwd)
    return Sandbox(tmp_path, cwd, home, lab, environ)


WriteProfile = Callable[[str, str], Path]


@pytest.fixture(autouse=True)
def _published_ports_answer(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """In unit tests a box's published ports are numbers the fake engine made up, not sockets:
    the readiness probe takes them as answering. Tests marked `real_sockets` (the probe's own)
    and integration tests (real engines, real ports) probe for real."""
    if request.node.get_closest_marker("real_sockets") or "integration" in request.node.nodeid:
        return
    monkeypatch.setattr("devbox.ops.ready.answers", lambda *args: True)
