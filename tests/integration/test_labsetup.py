"""`devbox lab install` / `status` / `uninstall` as root against the real /etc, then put back.

Lab mode is the whole host's: these tests take the lab tests' host lock (labhost.py), save
/etc/devbox, /etc/sudoers.d/devbox, the helper's folder and /var/log/devbox, start from a host
without lab mode, and restore what was there in a finalizer, whatever happened. The groups
they create are named after the run (`t<run-id>-lab`) and deleted at the end.
"""

from __future__ import annotations

import contextlib
import grp
import hashlib
import json
import os
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import OWNER_PREFIX, needs_tool
from tests.integration.labhost import (
    AUDIT_LOG,
    BACKED_UP,
    ETC,
    HELPER,
    HELPER_DIR,
    LAB_FILE,
    POLICY_FILE,
    SUDOERS,
    VENV_DEVBOX,
    _Backup,
    explain,
    host_lock,
)

GROUP, ADMINS = f"{OWNER_PREFIX}-lab", f"{OWNER_PREFIX}-adm"


def devbox(*args: str) -> subprocess.CompletedProcess[str]:
    """The real `devbox ARGS` as root, without any DEVBOX_* variable of this environment."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEVBOX_")}
    return subprocess.run(
        [*VENV_DEVBOX, *args], capture_output=True, text=True, check=False, timeout=120, env=env
    )


def state() -> dict[str, tuple[str, int, int, int, int]]:
    """Every file and folder lab install writes: digest, mode, owner, group, mtime."""
    found = {}
    for top in (ETC, SUDOERS, HELPER_DIR, AUDIT_LOG.parent):
        for path in [top, *(sorted(top.rglob("*")) if top.is_dir() else [])]:
            st = path.lstat()
            digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else ""
            found[str(path)] = (digest, st.st_mode, st.st_uid, st.st_gid, st.st_mtime_ns)
    return found


@pytest.fixture
def bare_host() -> Iterator[None]:
    """This host without lab mode for the test; what was there before is put back after."""
    if os.geteuid() != 0:
        pytest.fail("devbox lab install writes /etc: these tests need root (CI runs as root)")
    with host_lock():
        backup = _Backup(Path(tempfile.mkdtemp(prefix="devbox-labsetup-backup-")))
        libexec_existed = HELPER_DIR.parent.exists()
        try:
            backup.take()
            for path in BACKED_UP:
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path)
                elif path.exists() or path.is_symlink():
                    path.unlink()
            yield
        finally:
            backup.restore()
            shutil.rmtree(backup.root, ignore_errors=True)
            if not libexec_existed:
                with contextlib.suppress(OSError):  # made by lab install: gone again when empty
                    HELPER_DIR.parent.rmdir()
            for group in (GROUP, ADMINS):
                subprocess.run(["groupdel", group], capture_output=True, check=False)


@needs_tool("visudo")
def test_install_twice_status_doctor_uninstall(bare_host: None) -> None:
    first = devbox("lab", "install", "--group", GROUP, "--admins", ADMINS)
    assert first.returncode == 0, explain(first)
    for line in (
        f"created  group {GROUP}",
        f"created  group {ADMINS}",
        f"created  {POLICY_FILE}",
        f"created  {HELPER}",
        f"created  {SUDOERS}",
        f"created  {LAB_FILE}",
        f"usermod -aG {GROUP} alice",
    ):
        assert line in first.stdout, first.stdout
    grp.getgrnam(GROUP)
    for path, expected in ((SUDOERS, 0o440), (HELPER, 0o755), (LAB_FILE, 0o644), (AUDIT_LOG.parent, 0o700)):
        st = path.stat()
        assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (0, 0, expected), path
    # sudo reads the drop-in as part of its whole configuration, and accepts it.
    checked = subprocess.run(["visudo", "-c"], capture_output=True, text=True, check=False)
    assert checked.returncode == 0, checked.stdout + checked.stderr

    before = state()
    again = devbox("lab", "install")  # no options: lab.yaml's group and admins are kept
    assert again.returncode == 0, explain(again)
    assert "lab mode is already installed; nothing changed" in again.stdout
    assert "created" not in again.stdout and "updated" not in again.stdout
    assert state() == before

    status = devbox("lab", "status", "--json")
    assert status.returncode == 0, explain(status)
    shown: dict[str, Any] = json.loads(status.stdout)
    assert (shown["installed"], shown["sound"], shown["group"]) == (True, True, GROUP)
    assert shown["admins"] == {ADMINS: []} and shown["weak_spots"] == []
    assert shown["interpreter"] == VENV_DEVBOX[0]

    POLICY_FILE.chmod(0o646)
    try:
        shown = json.loads(devbox("lab", "status", "--json").stdout)
        assert shown["sound"] is False
        assert [s["path"] for s in shown["weak_spots"]] == [str(POLICY_FILE)]
        doctor = devbox("doctor", "--json")
        lab = [c for c in json.loads(doctor.stdout)["checks"] if c["check"] == "lab"]
        assert lab[0]["status"] == "fail" and str(POLICY_FILE) in lab[0]["detail"], doctor.stdout
        assert doctor.returncode == 1
        refused = devbox("lab", "install")
        assert refused.returncode == 3, explain(refused)
        assert f"chown root:root {POLICY_FILE} && chmod go-w {POLICY_FILE}" in refused.stderr
    finally:
        POLICY_FILE.chmod(0o644)

    gone = devbox("lab", "uninstall")
    assert gone.returncode == 0, explain(gone)
    assert "lab mode is off" in gone.stdout and f"kept     {POLICY_FILE}" in gone.stdout
    assert not LAB_FILE.exists() and not SUDOERS.exists() and not HELPER.exists()
    assert POLICY_FILE.is_file() and AUDIT_LOG.parent.is_dir()
    twice = devbox("lab", "uninstall")
    assert twice.returncode == 0 and "lab mode is not installed; nothing to remove" in twice.stdout
    assert json.loads(devbox("lab", "status", "--json").stdout)["installed"] is False
