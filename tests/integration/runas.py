"""A Python that another (non-root) account can run devbox with.

The test venv's interpreter often lives where only root can reach it: pyenv under
/root (mode 0700) symlinked from .venv/bin/python, or a checkout in a private folder.
Tests that run devbox as a real non-root user then fail with EACCES before devbox
starts. So, when the account cannot use this venv as it is, copy devbox and the
distributions it needs (from their installed metadata) into a world-readable folder,
and run them with an interpreter of the same version that the account can execute.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement

import devbox
from devbox.settings import bundled_profiles_dir

DISTRIBUTION = "devbox-gpu"
IMPORTS = "import devbox, docker, typer, rich, yaml, paramiko"


@dataclass(frozen=True)
class Runtime:
    """How to start `python -m devbox` as the account: the interpreter and extra env."""

    python: str
    env: dict[str, str] = field(default_factory=dict)


def _runs_as(account: tuple[int, int], argv: Sequence[str], env: dict[str, str]) -> bool:
    uid, gid = account
    try:
        done = subprocess.run(
            list(argv), cwd="/", env=env, user=uid, group=gid, extra_groups=[], capture_output=True
        )
    except OSError:  # EACCES on the interpreter itself
        return False
    return done.returncode == 0


def _needed(name: str, seen: dict[str, metadata.Distribution]) -> None:
    """Collect `name` and, recursively, what it requires (extras and foreign markers left out)."""
    dist = metadata.distribution(name)
    key = dist.metadata["Name"].lower().replace("_", "-")
    if key in seen:
        return
    seen[key] = dist
    for line in dist.requires or []:
        requirement = Requirement(line)
        if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
            _needed(requirement.name, seen)


def _copy_distributions(target: Path) -> None:
    seen: dict[str, metadata.Distribution] = {}
    _needed(DISTRIBUTION, seen)
    for key, dist in seen.items():
        if key == DISTRIBUTION:
            continue  # usually an editable install: copied from its source below
        for relative in dist.files or []:
            if relative.parts[0] == ".." or relative.suffix == ".pyc":
                continue  # console scripts live in bin/; bytecode is rebuilt on import
            source = Path(str(dist.locate_file(relative)))
            destination = target / relative
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, destination)
            destination.chmod(destination.stat().st_mode | 0o444)
    package = Path(devbox.__file__).resolve().parent
    shutil.copytree(package, target / "devbox", ignore=shutil.ignore_patterns("__pycache__"))
    profiles = target / "devbox" / "bundled_profiles"
    if not profiles.exists():
        shutil.copytree(bundled_profiles_dir(), profiles)


def _interpreters() -> Iterator[str]:
    """Interpreters of this exact minor version (compiled wheels must still load)."""
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    yield sys.executable
    yield os.path.realpath(sys.executable)
    for folder in ("/usr/bin", "/usr/local/bin", *os.get_exec_path()):
        yield str(Path(folder) / version)


def runtime_for(account: tuple[int, int], scratch: Path, base_env: dict[str, str]) -> Runtime:
    """A way for `account` (uid, gid) to run this devbox; `scratch` must be empty or absent."""
    probe = ["-c", IMPORTS]
    if _runs_as(account, [sys.executable, *probe], base_env):
        return Runtime(sys.executable)
    scratch.mkdir(parents=True, exist_ok=True)
    scratch.chmod(0o755)
    site = scratch / "site-packages"
    if not site.exists():
        _copy_distributions(site)
    for folder in [scratch, *(p for p in site.rglob("*") if p.is_dir())]:
        folder.chmod(0o755)
    extra = {"PYTHONPATH": str(site), "PYTHONNOUSERSITE": "1"}
    for python in dict.fromkeys(_interpreters()):
        if _runs_as(account, [python, *probe], {**base_env, **extra}):
            return Runtime(python, extra)
    raise RuntimeError(
        f"no python{sys.version_info.major}.{sys.version_info.minor} that uid {account[0]} can run"
        f" (this one is {os.path.realpath(sys.executable)}); install Debian's python3 package"
    )


TEST_ACCOUNT = "devbox-it"  # a real non-root account, not in the docker group


def nonroot_account(tag: str) -> Iterator[tuple[pwd.struct_passwd, Runtime]]:
    """The test account (created on first use; needs root) and a Python it can run devbox with.

    For module-scoped fixtures: `yield from nonroot_account("ssh")`; the scratch folder named
    after `tag` and this run goes away afterwards.
    """
    import pytest

    from tests.integration.conftest import RUN_ID

    if os.geteuid() != 0:
        pytest.fail("these tests create a non-root account and need root (CI runs as root)")
    try:
        entry = pwd.getpwnam(TEST_ACCOUNT)
    except KeyError:
        subprocess.run(["useradd", "-l", "-M", "-s", "/bin/sh", TEST_ACCOUNT], check=True)
        entry = pwd.getpwnam(TEST_ACCOUNT)
    scratch = Path(tempfile.gettempdir()) / f"devbox-it-{tag}-{RUN_ID}"
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": "/"}
    yield entry, runtime_for((entry.pw_uid, entry.pw_gid), scratch, env)
    shutil.rmtree(scratch, ignore_errors=True)
