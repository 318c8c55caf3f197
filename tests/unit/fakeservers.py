"""The `servers` fixture: fake servers behind a fake `ssh` on PATH (tests/unit/fakessh.py)."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Sandbox
from tests.unit import fakessh


@pytest.fixture(name="servers")
def servers_fixture(sandbox: Sandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The fake servers' folder (fakessh.add_host); `ssh` on PATH is the fake, the control folder
    short and private to the test (its version checks are cached there)."""
    state = tmp_path / "servers"
    fakessh.install(tmp_path / "bin", state)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    runtime = Path(tempfile.mkdtemp(prefix="dbx", dir="/tmp"))  # short: a socket path fits
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    yield state
    shutil.rmtree(runtime, ignore_errors=True)
