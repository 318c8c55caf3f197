"""Must show (issue 9): another local user cannot jam `up` through its lock, and files the
caller cannot read are located errors, on a real engine with a real second account.

The engine is reached through a socket proxy of this test's own, so its GPU lock is this
test's alone: planting a FIFO at the real engine's lock would jam every other test run.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from devbox import hostlock
from tests.integration.conftest import RUN_ID, TEST_LABEL, Caller, Engine, docker, make_caller
from tests.integration.runas import TEST_ACCOUNT, Runtime, nonroot_account

STRANGER = TEST_ACCOUNT  # the account test_ssh.py uses too: not in the docker group
DOCKER_SOCKET = "/var/run/docker.sock"


def _pipe(source: socket.socket, sink: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            sink.sendall(data)
    except OSError:
        pass
    finally:
        for end in (source, sink):
            with contextlib.suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)


@pytest.fixture
def proxy(engine: Engine, tmp_path: Path) -> Iterator[str]:
    """unix://PATH of a socket that forwards every connection to the real engine."""
    path = tmp_path / "engine.sock"
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(path))
    server.listen(16)

    def serve() -> None:
        while True:
            try:
                client, _ = server.accept()
            except OSError:
                return
            upstream = socket.socket(socket.AF_UNIX)
            upstream.connect(DOCKER_SOCKET)
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=_pipe, args=(a, b), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    host = f"unix://{path}"
    yield host
    server.close()
    lock = Path(hostlock.engine_lock_path(host))
    if lock.is_symlink() or lock.exists():
        lock.unlink()


@pytest.fixture(scope="module")
def stranger(engine: Engine) -> Iterator[tuple[pwd.struct_passwd, Runtime]]:
    """A real non-root account, without Docker access, and a Python it can run devbox with."""
    yield from nonroot_account("hardening")


def _as(entry: pwd.struct_passwd, *argv: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        list(argv),
        user=entry.pw_uid,
        group=entry.pw_gid,
        extra_groups=[],
        capture_output=True,
        text=True,
        **kwargs,
    )  # type: ignore[call-overload, no-any-return]


def _gpu_caller(tmp_path: Path, host: str) -> tuple[Caller, Path]:
    caller = make_caller(tmp_path, "lock")
    caller.environ.update(DOCKER_HOST=host, DEVBOX_GPU_INVENTORY="2")
    profile = caller.write_profile(
        "locked", "image: devbox/debian:bookworm\ncommand: [sleep, infinity]\ngpus: 1\nready: {timeout: 1}"
    )
    return caller, profile


def test_a_fifo_or_a_strangers_file_at_the_gpu_lock_fails_up_at_once_naming_its_maker(
    proxy: str, stranger: tuple[pwd.struct_passwd, Runtime], tmp_path: Path
) -> None:
    entry, _ = stranger
    caller, profile = _gpu_caller(tmp_path, proxy)
    lock = hostlock.engine_lock_path(proxy)
    for plant in (["mkfifo", lock], ["sh", "-c", f"umask 022; : > {lock}"]):
        assert _as(entry, *plant).returncode == 0
        started = time.monotonic()
        result = caller.devbox("up", str(profile), check=False, timeout=60)
        assert time.monotonic() - started < 30  # before: a FIFO hung `up` in open() for ever
        assert result.returncode == 1, result.stderr
        assert f"made by {STRANGER}" in result.stderr or f"belongs to {STRANGER}" in result.stderr, (
            result.stderr
        )
        assert "unexpectedly" not in result.stderr
        os.unlink(lock)
    result = caller.devbox("up", str(profile), "--json", timeout=120)
    info = os.stat(lock)
    assert info.st_mode & 0o777 == 0o660 and info.st_gid == hostlock.engine_group(proxy)
    # The stranger, not in the socket's group, cannot even open the real lock to hold it.
    denied = _as(entry, "python3", "-c", f"open({lock!r})")
    assert denied.returncode != 0 and "Permission denied" in denied.stderr
    caller.devbox("down", "locked", timeout=120)


def test_a_held_gpu_lock_ends_up_within_its_deadline_naming_the_holder(proxy: str, tmp_path: Path) -> None:
    caller, profile = _gpu_caller(tmp_path, proxy)
    code = (
        "import sys, time; from pathlib import Path; from devbox import hostlock\n"
        f"with hostlock.engine_lock({proxy!r}, Path({str(tmp_path)!r}), 'a test holding it'):\n"
        "    print('held', flush=True); time.sleep(120)\n"
    )
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        started = time.monotonic()
        result = caller.devbox("up", str(profile), check=False, timeout=90)
        waited = time.monotonic() - started
        # The box's own deadline (ready: 1 s, at least 10 s for a queue of ups), not 120 s.
        assert 9 < waited < 40, result.stderr
        assert result.returncode == 1 and f"pid {holder.pid} (" in result.stderr, result.stderr
        assert "a test holding it" in result.stderr
    finally:
        holder.kill()
        holder.wait()
    made = docker("ps", "-a", "--filter", f"name=^{caller.container('locked')}$", "--format", "{{.Names}}")
    assert made.stdout.strip() == ""  # nothing was created while it waited


@pytest.mark.parametrize("key", ["env_file", "ssh"])
def test_files_the_caller_cannot_read_are_located(
    stranger: tuple[pwd.struct_passwd, Runtime], tmp_path: Path, key: str
) -> None:
    entry, runtime = stranger
    root = Path(tempfile.mkdtemp(prefix="devbox-it-unreadable-"))  # pytest's tmp_path is root's alone
    os.chmod(root, 0o755)
    work = root / "work"
    work.mkdir()
    os.chown(work, entry.pw_uid, entry.pw_gid)
    secret = work / "secret"
    secret.write_text("A=1\n" if key == "env_file" else "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE x\n")
    os.chmod(secret, 0o600)  # root's: the stranger may not read it
    value = "secret" if key == "env_file" else "{authorized_keys: ./secret}"
    profile = work / "p.yaml"
    profile.write_text(
        f'image: devbox/debian:bookworm\n{key}: {value}\nlabels: {{"{TEST_LABEL}": "{RUN_ID}"}}\n'
    )
    os.chmod(profile, 0o644)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(work),
        "DEVBOX_USER": f"t{RUN_ID}-x",
        "DEVBOX_LAB_DIR": str(work / "lab"),
        **runtime.env,
    }
    try:
        result = _as(
            entry, runtime.python, "-m", "devbox", "render", str(profile), cwd=work, env=env, timeout=60
        )
    finally:
        shutil.rmtree(root, ignore_errors=True)
    assert result.returncode == 2, result.stderr
    assert f"{profile}:2:" in result.stderr and "cannot be read (Permission denied)" in result.stderr
    assert "unexpectedly" not in result.stderr


def test_the_example_policy_does_not_break_the_default_box_on_a_smaller_host(caller: Caller) -> None:
    # max_cpus: 16 became the quota of a box that sets none; on a host with fewer CPUs Docker
    # refused it ("Range of CPUs is from 0.01 to N.00"). Now the quota is the host's CPUs.
    example = Path(__file__).parents[2] / "profiles" / "examples" / "policy.yaml"
    caller.environ["DEVBOX_POLICY"] = str(example)
    profile = caller.write_profile("capped", "extends: default")
    caller.devbox("up", str(profile), "--json", timeout=300)
    nano_cpus = docker("inspect", "-f", "{{.HostConfig.NanoCpus}}", caller.container("capped")).stdout
    assert int(nano_cpus) == int(min(16, os.cpu_count() or 16) * 1e9)
    caller.devbox("down", "capped", timeout=120)
