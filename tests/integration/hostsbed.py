"""Several servers on this machine for the hosts tests (issue 12): scripts/test-hosts as fixtures.

`hosts_session()` (for a module fixture) runs `scripts/test-hosts up 3` once, under a
host-wide lock (two runs would tear down each other's hosts), and `down` at the end: h1..h3
are network namespaces with their own dockerd (4 declared GPUs each) and sshd. `one_test()`
(for a per-test fixture) hands the same hosts to a test and afterwards removes every box and
volume made on them (and on this machine's engine by the test users), ends the users' ssh
connections and tunnels, restarts a stopped sshd, puts back a host's devbox version and
resets the users' devbox and ssh files.

Commands run on the CLIENT side as test user dbxhu1..4 (`Bed.devbox`): `scripts/test-hosts as`
gives them their HOME (with ~/.ssh/config naming h1..h3, host keys pinned, and
~/.config/devbox/hosts.yaml), PATH to a world-readable copy of this checkout's devbox, and a
mount namespace in which this machine's own /etc/devbox (lab mode) does not apply.

Without root, or without the tools, the tests skip; in CI (CI=true) they fail instead.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest

from tests.integration.conftest import docker
from tests.integration.labhost import HOST_LOCK as LAB_LOCK
from tests.integration.labhost import host_lock

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "test-hosts"
STATE = Path(os.environ.get("DEVBOX_TEST_HOSTS_DIR") or "/run/devbox-test-hosts")
HOSTS = ("h1", "h2", "h3")
USERS = ("dbxhu1", "dbxhu2", "dbxhu3", "dbxhu4")
GPUS_PER_HOST = 4
IMAGES = ("devbox/devbox:0.1", "devbox/debian:bookworm")
TOOLS = ("ip", "unshare", "setpriv", "ssh", "ssh-keygen", "dockerd", "useradd")
LOCK = Path("/run/lock/devbox-test-hosts.lock")
UP_TIMEOUT_S = 600
# A light box holding one GPU (Must show 1, 2): no Jupyter to wait for on 2 shared cores.
GPU_BOX = "image: devbox/debian:bookworm\ncommand: [sleep, infinity]\ngpus: 1\n"


def _unusable(message: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


@dataclass
class Bed:
    """The test hosts: run things as a test user on the client side, inspect the hosts as root."""

    state: Path = STATE
    hosts: tuple[str, ...] = HOSTS
    users: tuple[str, ...] = USERS
    _ssh_configs: dict[str, str] = field(default_factory=dict)
    _versions: dict[str, str] = field(default_factory=dict)
    _started: list[subprocess.Popen[str]] = field(default_factory=list)

    # --- the client side, as a test user ---------------------------------------------------

    def home(self, user: str) -> Path:
        """The user's HOME (mode 0700, theirs)."""
        return self.state / "root" if user == "root" else self.state / "home" / user

    def argv(self, user: str, *command: str) -> list[str]:
        """`command` run as `user` on the client side (scripts/test-hosts as)."""
        return [str(SCRIPT), "as", user, *command]

    def start(self, user: str, *command: str) -> subprocess.Popen[str]:
        """Start `command` as `user` and return at once (for runs side by side, tunnels)."""
        process = subprocess.Popen(
            self.argv(user, *command), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        self._started.append(process)
        return process

    def run(
        self, user: str, *command: str, timeout: float = 180, check: bool = False
    ) -> subprocess.CompletedProcess[str]:
        """Run `command` as `user`; a run past `timeout` is killed and fails the test."""
        process = self.start(user, *command)
        try:
            out, err = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            out, err = process.communicate(timeout=30)
            raise AssertionError(f"{' '.join(command)} as {user} hung for {timeout:g} s:\n{err}") from None
        result = subprocess.CompletedProcess(command, process.returncode, out, err)
        if check and result.returncode != 0:
            raise AssertionError(
                f"{' '.join(command)} as {user} exited {result.returncode}:\n{result.stdout}{result.stderr}"
            )
        return result

    def devbox(
        self, user: str, *args: str, timeout: float = 180, check: bool = False
    ) -> subprocess.CompletedProcess[str]:
        """The client's devbox (this checkout's), as `user`."""
        return self.run(user, "devbox", *args, timeout=timeout, check=check)

    def devbox_json(self, user: str, *args: str, timeout: float = 180) -> Any:
        """`devbox ARGS --json` as `user`, which must succeed; its answer."""
        result = self.devbox(user, *args, "--json", timeout=timeout, check=True)
        return json.loads(result.stdout)

    def write_profile(self, user: str, name: str, body: str) -> Path:
        """`~/NAME.yaml` of `user` (theirs): the same path on every host, the filesystem is shared."""
        path = self.home(user) / f"{name}.yaml"
        path.write_text(body)
        entry = _ids(user)
        os.chown(path, *entry)
        return path

    # --- the hosts, as root --------------------------------------------------------------

    def socket(self, host: str) -> str:
        """DOCKER_HOST of `host`'s engine."""
        return f"unix://{self.state / host / 'docker.sock'}"

    def docker(self, host: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """The docker CLI on `host`'s engine (None: this machine's)."""
        argv = ["docker", "-H", self.socket(host), *args]
        return subprocess.run(argv, capture_output=True, text=True, check=check, timeout=120)

    def containers(self, host: str) -> list[dict[str, Any]]:
        """`docker inspect` of every container on `host`."""
        ids = self.docker(host, "ps", "-aq").stdout.split()
        return json.loads(self.docker(host, "inspect", *ids).stdout) if ids else []

    def script(self, *args: str) -> None:
        """scripts/test-hosts ARGS, which must succeed."""
        subprocess.run([str(SCRIPT), *args], check=True, capture_output=True, timeout=120)

    def stop_sshd(self, host: str) -> None:
        """Take `host`'s sshd away, its open connections with it (restarted after the test)."""
        self.script("stop-sshd", host)

    def start_sshd(self, host: str) -> None:
        """Bring `host`'s sshd back."""
        self.script("start-sshd", host)

    @contextlib.contextmanager
    def devbox_version(self, host: str, version: str) -> Iterator[None]:
        """`host` runs devbox `version` inside (its own copy's __init__.py patched), then as before."""
        init = self.state / host / "pkg" / "devbox" / "__init__.py"
        original = self._versions.setdefault(host, init.read_text())
        init.write_text(re.sub(r'__version__ = "[^"]*"', f'__version__ = "{version}"', original))
        try:
            yield
        finally:
            init.write_text(original)
            self._versions.pop(host, None)

    def forget_connections(self, user: str) -> None:
        """End `user`'s processes (ssh ControlMasters, tunnels) and drop devbox's cached checks."""
        uid = _ids(user)[0]
        _kill_uid(uid)
        shutil.rmtree(self.home(user) / ".cache", ignore_errors=True)
        # devbox's ControlMaster folder (and version cache) when ~/.cache's is too long a path
        shutil.rmtree(f"/tmp/devbox-ssh-{uid}", ignore_errors=True)

    # --- after each test -----------------------------------------------------------------

    def remember_files(self) -> None:
        """The users' ~/.ssh/config as `up` wrote it, to put back after each test."""
        for user in self.users:
            self._ssh_configs[user] = (self.home(user) / ".ssh" / "config").read_text()

    def clean(self) -> None:
        """Remove what a test made: boxes and volumes on every host (and the test users' on this
        machine), processes, connections, a stopped sshd, a patched version, devbox's files."""
        for process in self._started:
            if process.poll() is None:
                process.kill()
                process.communicate(timeout=30)
        self._started.clear()
        for host, original in list(self._versions.items()):
            (self.state / host / "pkg" / "devbox" / "__init__.py").write_text(original)
        self._versions.clear()
        for host in self.hosts:
            self.start_sshd(host)
            ids = self.docker(host, "ps", "-aq").stdout.split()
            if ids:
                self.docker(host, "rm", "-f", "-v", *ids, check=False)
            volumes = self.docker(host, "volume", "ls", "-q").stdout.split()
            if volumes:
                self.docker(host, "volume", "rm", "-f", *volumes, check=False)
        for user in self.users:
            local = docker("ps", "-aq", "--filter", f"label=devbox.owner={user}", check=False).stdout.split()
            if local:
                docker("rm", "-f", "-v", *local, check=False)
            named = docker("volume", "ls", "-q", "--filter", f"label=devbox.owner={user}", check=False)
            if named.stdout.split():
                docker("volume", "rm", "-f", *named.stdout.split(), check=False)
            self.forget_connections(user)
            home = self.home(user)
            for item in (home / ".config" / "devbox").iterdir():
                if item.name != "hosts.yaml":
                    _remove(item)
            for item in (home / ".ssh").iterdir():
                if item.name not in ("config", "id_ed25519", "id_ed25519.pub", "known_hosts"):
                    _remove(item)
            (home / ".ssh" / "config").write_text(self._ssh_configs[user])
            for item in home.glob("*.yaml"):
                item.unlink()


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _ids(user: str) -> tuple[int, int]:
    import pwd

    entry = pwd.getpwnam(user)
    return entry.pw_uid, entry.pw_gid


def _kill_uid(uid: int) -> None:
    """SIGKILL every process of test account `uid` (its ssh masters, a tunnel left running)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdecimal():
            continue
        try:
            if entry.stat().st_uid == uid:
                os.kill(int(entry.name), signal.SIGKILL)
        except (OSError, ProcessLookupError):
            continue


def hosts_session() -> Iterator[Bed]:
    """For a module (or session) fixture: hosts h1..h3 up (scripts/test-hosts up 3), under a
    host-wide lock, and down afterwards. Needs the engine fixture first (the images)."""
    if os.geteuid() != 0:
        _unusable("the test hosts need root (network namespaces, dockerd, sshd, test accounts)")
    path = f"{os.environ.get('PATH', '')}:/usr/sbin:/sbin"
    missing = [tool for tool in TOOLS if not shutil.which(tool, path=path)]
    if missing:
        _unusable(f"{', '.join(missing)} not installed (scripts/test-hosts needs them)")
    absent = [i for i in IMAGES if docker("image", "inspect", i, check=False).returncode != 0]
    if absent:
        _unusable(f"{', '.join(absent)} missing: run scripts/build-images")
    yield from bed_session(SCRIPT, ["up", str(len(HOSTS))], "test hosts", Bed)


B = TypeVar("B", bound="Bed")


def bed_session(
    script: Path, up_args: list[str], what: str, make: Callable[[], B], timeout: float = UP_TIMEOUT_S
) -> Iterator[B]:
    """`script up`, the bed made by `make`, `script down` afterwards: under the hosts' lock
    (one run at a time owns the test hosts: `down` would pull them from under another) and the
    lab's (no lab test may turn this machine's lab mode on meanwhile: /etc/devbox is the whole
    machine's, and the hosts share the filesystem: see write_etc_wrapper in scripts/test-hosts).
    A failed `up` is undone with `down` before the test fails."""
    with host_lock(LOCK), host_lock(LAB_LOCK):
        env = {**os.environ, "PYTHON": sys.executable}
        started = time.monotonic()
        up = subprocess.run([str(script), *up_args], env=env, capture_output=True, text=True, timeout=timeout)
        if up.returncode != 0:
            subprocess.run([str(script), "down"], capture_output=True, timeout=300)
            pytest.fail(f"{script.relative_to(REPO)} up failed:\n{up.stdout}{up.stderr}", pytrace=False)
        print(f"\n{what} up in {time.monotonic() - started:.1f} s")
        bed = make()
        bed.remember_files()
        try:
            yield bed
        finally:
            started = time.monotonic()
            down = subprocess.run([str(script), "down"], capture_output=True, text=True, timeout=300)
            assert down.returncode == 0, f"{script.relative_to(REPO)} down failed:\n{down.stderr}"
            print(f"\n{what} down in {time.monotonic() - started:.1f} s")


def one_test(bed: Bed) -> Iterator[Bed]:
    """For a per-test fixture: the hosts, and everything the test made on them removed afterwards."""
    yield bed
    bed.clean()
