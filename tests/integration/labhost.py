"""Lab mode on this host, for tests/integration/test_lab.py: real accounts outside the docker
group, `devbox lab install` run as root, and devbox run as those accounts.

`lab_session()` (for a module fixture) takes a host-wide lock (lab mode, /etc/devbox and
/etc/sudoers.d are the whole host's: two runs would undo each other's), backs up what lab
mode writes, makes the groups and accounts, installs lab mode, writes the test policy, and
undoes all of it afterwards, whatever happened. Accounts are named `t<run-id>-alice` and so
on: their boxes fall under the session sweep's owner prefix (conftest.py), and leftovers of a
killed run are recognised by name and removed at the next start.
"""

from __future__ import annotations

import contextlib
import fcntl
import grp
import json
import os
import pwd
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from devbox.settings import bundled_profiles_dir
from tests.integration.conftest import OWNER_PREFIX, RUN_ID, TEST_LABEL, docker
from tests.integration.runas import Runtime, runtime_for

REPO = Path(__file__).resolve().parents[2]
VENV_DEVBOX = [str(REPO / ".venv" / "bin" / "python"), "-m", "devbox"]

LAB_GROUP = "devboxlab"
ADMIN_GROUP = "devboxadm"
PEOPLE = ("alice", "bob", "carol", "dave")
ADMINS = ("carol",)
BOX_IMAGE = "devbox/devbox:0.1"  # the reference box: Jupyter, sshd, the image protocol
PLAIN_IMAGE = "devbox/debian:bookworm"  # light boxes: `sleep infinity`

ETC = Path("/etc/devbox")
LAB_FILE = ETC / "lab.yaml"
POLICY_FILE = ETC / "policy.yaml"
SUDOERS = Path("/etc/sudoers.d/devbox")
HELPER_DIR = Path("/usr/local/libexec/devbox")
HELPER = HELPER_DIR / "devbox-lab"
AUDIT_LOG = Path("/var/log/devbox/audit.log")
BINDS = Path("/run/devbox/binds")
LOCKS = Path("/run/devbox/locks")  # per-uid lock folders devbox makes for a caller's first key
# What lab install and the tests write outside the repository: saved first, put back after.
BACKED_UP = (ETC, SUDOERS, HELPER_DIR, AUDIT_LOG.parent)
HOST_LOCK = Path("/run/lock/devbox-test-lab.lock")
LOCK_WAIT_S = 20 * 60

POLICY = f"""\
# The lab policy of devbox's integration tests (tests/integration/test_lab.py, run {RUN_ID}).
admins: ["@{ADMIN_GROUP}"]
gpu_inventory: 8
allowed_images: [{BOX_IMAGE}, {PLAIN_IMAGE}]
limits:
  max_gpus_per_user: 2
"""

# Accounts a killed run left behind: `t<8 hex>-alice` and the like.
_LEFTOVER = re.compile(r"^t[0-9a-f]{8}-(" + "|".join(PEOPLE) + r")$")
CLEAN_PATH = "/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin"


def fail_or_skip(message: str) -> None:
    """In CI (CI=true) a missing piece fails the tests; elsewhere they are skipped."""
    if os.environ.get("CI"):
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


@dataclass(frozen=True)
class Account:
    """A real account of this host made for the tests."""

    short: str  # alice
    name: str  # t<run-id>-alice: login name and box owner
    uid: int
    gid: int
    groups: tuple[int, ...]
    home: Path

    def container(self, box: str) -> str:
        """The container of this account's box `box`."""
        return f"devbox-{self.name}-{box}"

    def ref(self, box: str) -> str:
        """`OWNER/NAME`: how someone else addresses this account's box."""
        return f"{self.name}/{box}"

    def write(self, relative: str, text: str, mode: int = 0o644) -> Path:
        """A file in the account's home, owned by the account (folders on the way too)."""
        path = self.home / relative
        self.mkdir(str(path.parent.relative_to(self.home)))
        path.write_text(text)
        os.chown(path, self.uid, self.gid)
        path.chmod(mode)
        return path

    def mkdir(self, relative: str, mode: int = 0o755) -> Path:
        """A folder in the account's home, owned by the account (and each one made on the way)."""
        here = self.home
        for part in Path(relative).parts:
            here = here / part
            if not here.exists():
                here.mkdir(mode=mode)
                os.chown(here, self.uid, self.gid)
        return here

    def symlink(self, relative: str, target: str) -> Path:
        """A symlink in the account's home, owned by the account."""
        path = self.home / relative
        if path.is_symlink() or path.exists():
            path.unlink()
        path.symlink_to(target)
        os.lchown(path, self.uid, self.gid)
        return path

    def profile(self, relative: str, body: str) -> Path:
        """A profile file in the account's home, labelled with this run's id."""
        return self.write(relative, body.rstrip("\n") + f'\nlabels: {{"{TEST_LABEL}": "{RUN_ID}"}}\n')


def default_profile_text() -> str:
    """The bundled default profile (the demo box): image, user: host, ports, `.:/workspace`."""
    return (bundled_profiles_dir() / "default.yaml").read_text()


def light_profile(gpus: str = "none", extra: str = "") -> str:
    """A box that only sleeps, from the plain image: cheap to start sixteen of."""
    return f"image: {PLAIN_IMAGE}\ncommand: [sleep, infinity]\ngpus: {gpus}\n{extra}"


@dataclass
class LabHost:
    """This host in lab mode, with the accounts and a Python they can run devbox with."""

    people: dict[str, Account]
    runtime: Runtime
    scratch: Path

    def __getitem__(self, short: str) -> Account:
        return self.people[short]

    def env(self, who: Account, extra: dict[str, str] | None = None) -> dict[str, str]:
        """A login's clean environment (sudo is in /usr/bin), plus `extra`."""
        return {
            "HOME": str(who.home),
            "PATH": CLEAN_PATH,
            "LANG": "C.UTF-8",
            "USER": who.name,
            "LOGNAME": who.name,
            **self.runtime.env,
            **(extra or {}),
        }

    def start(
        self, who: Account, argv: Sequence[str], env: dict[str, str] | None = None, cwd: Path | None = None
    ) -> subprocess.Popen[str]:
        """Start `argv` as the account (its uid, gid and every group of its own) and return at once."""
        return subprocess.Popen(
            list(argv),
            cwd=cwd or who.home,
            env=self.env(who, env),
            user=who.uid,
            group=who.gid,
            extra_groups=list(who.groups),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def run_as(
        self,
        who: Account,
        argv: Sequence[str],
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
        timeout: float = 300,
    ) -> subprocess.CompletedProcess[str]:
        """Run `argv` as the account to its end."""
        process = self.start(who, argv, env, cwd)
        try:
            out, err = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            out, err = process.communicate(timeout=30)
            raise AssertionError(f"{' '.join(argv)} as {who.name} hung for {timeout:g} s:\n{err}") from None
        return subprocess.CompletedProcess(process.args, process.returncode, out, err)

    def devbox_argv(self, *args: str) -> list[str]:
        """`python -m devbox ARGS` with the Python the accounts can run."""
        return [self.runtime.python, "-m", "devbox", *args]

    def devbox(
        self, who: Account, *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
    ) -> subprocess.CompletedProcess[str]:
        """`devbox ARGS` as the account: the front end goes through sudo to the lab helper."""
        return self.run_as(who, self.devbox_argv(*args), env, cwd)

    def up_json(self, who: Account, *args: str, cwd: Path | None = None) -> dict[str, Any]:
        """`devbox up ARGS --json` as the account, which must succeed."""
        result = self.devbox(who, "up", *args, "--json", cwd=cwd)
        assert result.returncode == 0, explain(result)
        data: dict[str, Any] = json.loads(result.stdout)
        return data

    def owners(self) -> list[str]:
        """The box owners of this run's accounts."""
        return [a.name for a in self.people.values()]

    def remove_boxes(self) -> None:
        """Remove every container, volume, network and pinned bind of this run's accounts."""
        remove_owned(self.owners())


def explain(result: subprocess.CompletedProcess[str]) -> str:
    """A failed run, for an assertion message."""
    argv = result.args if isinstance(result.args, list) else [str(result.args)]
    command = " ".join(map(str, argv))
    return f"{command} exited {result.returncode}\nstdout: {result.stdout}\nstderr: {result.stderr}"


def _labelled(kind: str, owners: Sequence[str]) -> list[str]:
    listing = {
        "container": ["ps", "-aq"],
        "volume": ["volume", "ls", "-q"],
        "network": ["network", "ls", "-q"],
    }
    found: list[str] = []
    for owner in owners:
        ids = docker(*listing[kind], "--filter", f"label=devbox.owner={owner}", check=False).stdout.split()
        found.extend(ids)
    return found


def bind_mounts(owners: Sequence[str]) -> list[str]:
    """Mount points under /run/devbox/binds/OWNER/ of these owners, deepest first."""
    points = []
    try:
        table = Path("/proc/self/mountinfo").read_text()
    except OSError:
        return []
    for line in table.splitlines():
        point = line.split()[4].encode().decode("unicode_escape")
        if any(point.startswith(f"{BINDS}/{owner}/") for owner in owners):
            points.append(point)
    return sorted(points, key=len, reverse=True)


def remove_owned(owners: Sequence[str]) -> None:
    """Containers, then volumes, networks and pinned binds of `owners`: nothing left behind."""
    containers = _labelled("container", owners)
    if containers:
        docker("rm", "-f", "-v", *containers, check=False)
    volumes = _labelled("volume", owners)
    if volumes:
        docker("volume", "rm", "-f", *volumes, check=False)
    networks = set(_labelled("network", owners))
    names = docker("network", "ls", "--format", "{{.Name}}", check=False).stdout.split()
    networks |= {n for n in names if any(n == f"devbox-{owner}" for owner in owners)}
    if networks:
        docker("network", "rm", *networks, check=False)
    for point in bind_mounts(owners):
        subprocess.run(["umount", "-l", point], capture_output=True, check=False)
    for owner in owners:
        shutil.rmtree(BINDS / owner, ignore_errors=True)


def audit_size() -> int:
    """Where the audit log ends now: read the lines of a test from here."""
    try:
        return AUDIT_LOG.stat().st_size
    except FileNotFoundError:
        return 0


def audit_lines(since: int = 0) -> list[dict[str, Any]]:
    """The audit log's records appended after byte `since`."""
    try:
        with AUDIT_LOG.open("rb") as log:
            log.seek(since)
            text = log.read().decode("utf-8", "replace")
    except FileNotFoundError:
        return []
    return [json.loads(line) for line in text.splitlines() if line.strip()]


@contextlib.contextmanager
def host_lock(lock: Path = HOST_LOCK) -> Iterator[None]:
    """Wait for `lock` (flock, exclusive) and hold it: by default, one lab test run on this host
    at a time (lab mode is host-wide); the test servers' bed takes its own lock through this too."""
    lock.parent.mkdir(parents=True, exist_ok=True)
    with lock.open("a") as handle:
        deadline = time.monotonic() + LOCK_WAIT_S
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    pytest.fail(f"another test run held {lock} for {LOCK_WAIT_S} s", pytrace=False)
                time.sleep(2)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), capture_output=True, text=True, check=False, timeout=120)


def _must(*argv: str) -> subprocess.CompletedProcess[str]:
    result = _run(*argv)
    assert result.returncode == 0, explain(result)
    return result


def remove_account(name: str) -> None:
    """The account, its home and its own group, and its boxes first (and devbox's lock folder of it)."""
    remove_owned([name])
    with contextlib.suppress(KeyError):
        shutil.rmtree(LOCKS / str(pwd.getpwnam(name).pw_uid), ignore_errors=True)
    _run("pkill", "-KILL", "-u", name)
    _run("userdel", "-r", "-f", name)
    with contextlib.suppress(KeyError):
        grp.getgrnam(name)
        _run("groupdel", name)


def _sweep_leftover_accounts() -> None:
    for entry in pwd.getpwall():
        if _LEFTOVER.match(entry.pw_name):
            remove_account(entry.pw_name)
    for group in (LAB_GROUP, ADMIN_GROUP):
        with contextlib.suppress(KeyError):
            grp.getgrnam(group)
            _run("groupdel", "-f", group)


def _make_account(short: str) -> Account:
    name = f"{OWNER_PREFIX}-{short}"
    groups = [LAB_GROUP] + ([ADMIN_GROUP] if short in ADMINS else [])
    home = Path("/home") / name
    _must("useradd", "-m", "-d", str(home), "-s", "/bin/sh", "-U", "-G", ",".join(groups), name)
    home.chmod(0o700)
    entry = pwd.getpwnam(name)
    all_groups = tuple(sorted(set(os.getgrouplist(name, entry.pw_gid))))
    with contextlib.suppress(KeyError):
        docker_gid = grp.getgrnam("docker").gr_gid
        assert docker_gid not in all_groups, f"{name} is in the docker group"
    return Account(short, name, entry.pw_uid, entry.pw_gid, all_groups, home)


@dataclass
class _Backup:
    root: Path
    existed: dict[Path, bool] = field(default_factory=dict)

    def take(self) -> None:
        for path in BACKED_UP:
            self.existed[path] = path.exists() or path.is_symlink()
            if not self.existed[path]:
                continue
            copy = self.root / str(path).lstrip("/")
            copy.parent.mkdir(parents=True, exist_ok=True)
            if path.is_dir() and not path.is_symlink():
                shutil.copytree(path, copy, symlinks=True)
            else:
                shutil.copy2(path, copy, follow_symlinks=False)

    def restore(self) -> None:
        for path, existed in self.existed.items():
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            elif path.exists() or path.is_symlink():
                path.unlink()
            if existed:
                copy = self.root / str(path).lstrip("/")
                if copy.is_dir() and not copy.is_symlink():
                    shutil.copytree(copy, path, symlinks=True)
                else:
                    shutil.copy2(copy, path, follow_symlinks=False)


def write_policy(text: str = POLICY) -> None:
    """The test policy at /etc/devbox/policy.yaml: root's, 0644."""
    POLICY_FILE.write_text(text)
    os.chown(POLICY_FILE, 0, 0)
    POLICY_FILE.chmod(0o644)


def lab_install() -> subprocess.CompletedProcess[str]:
    """`devbox lab install --group devboxlab --admins devboxadm`, as root, with the venv's devbox."""
    return subprocess.run(
        [*VENV_DEVBOX, "lab", "install", "--group", LAB_GROUP, "--admins", ADMIN_GROUP],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        env={k: v for k, v in os.environ.items() if not k.startswith("DEVBOX_")},
    )


def lab_uninstall() -> subprocess.CompletedProcess[str]:
    """`devbox lab uninstall`, as root."""
    return subprocess.run(
        [*VENV_DEVBOX, "lab", "uninstall"],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        env={k: v for k, v in os.environ.items() if not k.startswith("DEVBOX_")},
    )


def lab_session() -> Iterator[LabHost]:
    """For a module fixture: this host in lab mode with four accounts; all undone afterwards."""
    if os.geteuid() != 0:
        pytest.fail("the lab tests create accounts and install lab mode: they need root (CI runs as root)")
    for tool in ("sudo", "visudo", "useradd", "userdel", "groupadd", "umount"):
        if not shutil.which(tool, path=CLEAN_PATH):
            fail_or_skip(f"{tool} is not installed; scripts/ensure-test-tools installs it")
    with host_lock():
        _sweep_leftover_accounts()
        backup = _Backup(Path(tempfile.mkdtemp(prefix=f"devbox-lab-backup-{RUN_ID}-")))
        scratch = Path(tempfile.gettempdir()) / f"devbox-it-lab-{RUN_ID}"
        people: dict[str, Account] = {}
        try:
            backup.take()
            for group in (LAB_GROUP, ADMIN_GROUP):
                _must("groupadd", group)
            for short in PEOPLE:
                people[short] = _make_account(short)
            alice = people["alice"]
            base_env = {"PATH": CLEAN_PATH, "HOME": str(alice.home)}
            runtime = runtime_for((alice.uid, alice.gid), scratch, base_env)
            installed = lab_install()
            assert installed.returncode == 0, explain(installed)
            write_policy()
            yield LabHost(people, runtime, scratch)
        finally:
            remove_owned([a.name for a in people.values()])
            lab_uninstall()
            backup.restore()
            shutil.rmtree(backup.root, ignore_errors=True)
            for account in people.values():
                remove_account(account.name)
            for group in (LAB_GROUP, ADMIN_GROUP):
                _run("groupdel", "-f", group)
            shutil.rmtree(scratch, ignore_errors=True)
