"""Must show (issue 4): the devbox image and SSH access, as a non-root user, on a real engine."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paramiko
import pytest

from tests.integration.conftest import OWNER_PREFIX, RUN_ID, TEST_LABEL, Engine, docker
from tests.integration.runas import TEST_ACCOUNT, Runtime, nonroot_account
from tests.integration.test_lifecycle import http_status


@dataclass
class Person:
    """Someone who is not root, running devbox in their own folder with their own HOME."""

    name: str
    uid: int
    gid: int
    home: Path
    work: Path
    owner: str
    runtime: Runtime

    def env(self) -> dict[str, str]:
        return {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.home),
            "DEVBOX_USER": self.owner,
            "DEVBOX_LAB_DIR": str(self.home / "lab"),
            **({"DOCKER_HOST": os.environ["DOCKER_HOST"]} if "DOCKER_HOST" in os.environ else {}),
            **self.runtime.env,
        }

    def run(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        docker_gid = os.stat("/var/run/docker.sock").st_gid
        result = subprocess.run(
            list(argv),
            cwd=self.work,
            env=self.env(),
            user=self.uid,
            group=self.gid,
            extra_groups=[docker_gid],
            capture_output=True,
            text=True,
            timeout=300,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"{' '.join(argv)} exited {result.returncode}:\n{result.stderr}")
        return result

    def devbox(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.run(self.runtime.python, "-m", "devbox", *args, check=check)

    def up(self, *args: str) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.devbox("up", *args, "--json").stdout)
        return data


@pytest.fixture(scope="module")
def account(engine: Engine) -> Iterator[tuple[pwd.struct_passwd, Runtime]]:
    """A real non-root account (created here, as root) and a Python it can run devbox with."""
    yield from nonroot_account("runtime")


@pytest.fixture
def person(account: tuple[pwd.struct_passwd, Runtime]) -> Iterator[Person]:
    """The test account in its own HOME and work folder, as an owner the session sweep removes."""
    entry, runtime = account
    root = Path(tempfile.mkdtemp(prefix="devbox-ssh-test-"))
    home, work = root / "home", root / "work"
    for folder in (root, home, work, home / "lab"):
        folder.mkdir(exist_ok=True)
        os.chown(folder, entry.pw_uid, entry.pw_gid)
    owner = f"{OWNER_PREFIX}-{uuid.uuid4().hex[:4]}"
    yield Person(TEST_ACCOUNT, entry.pw_uid, entry.pw_gid, home, work, owner, runtime)
    shutil.rmtree(root, ignore_errors=True)


def _profile(person: Person, name: str, extra: str = "") -> Path:
    """The bundled default profile (by name), plus this run's label (and any extra keys)."""
    path = person.work / f"{name}.yaml"
    path.write_text(f'extends: default\nlabels: {{"{TEST_LABEL}": "{RUN_ID}"}}\n{extra}')
    os.chown(path, person.uid, person.gid)
    return path


def _client(person: Person, box: dict[str, Any]) -> paramiko.SSHClient:
    """paramiko, trusting only the host key devbox recorded for this box."""
    ssh = box["ssh"]
    recorded = paramiko.HostKeys(str(person.home / ".config/devbox/known_hosts")).lookup(
        ssh["host_key_alias"]
    )
    assert recorded, "devbox recorded no host key"
    client = paramiko.SSHClient()
    for key in recorded.values():
        client.get_host_keys().add(f"[{ssh['address']}]:{ssh['port']}", key.get_name(), key)
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    return client


def _run(client: paramiko.SSHClient, command: str) -> str:
    _, out, _ = client.exec_command(command, timeout=30)
    return str(out.read().decode()).strip()


def test_key_login_as_the_callers_uid_and_files_stay_theirs(person: Person) -> None:
    box = _profile(person, "mybox")
    result = person.up(str(box))
    ssh = result["ssh"]
    assert (ssh["address"], ssh["user"]) == ("127.0.0.1", TEST_ACCOUNT)
    assert ssh["port"] == result["ports"]["ssh"]["host_port"]
    client = _client(person, result)
    key = paramiko.RSAKey.from_private_key_file(ssh["identity_file"])  # the key devbox made and injected
    client.connect(
        ssh["address"], ssh["port"], username=ssh["user"], pkey=key, look_for_keys=False, allow_agent=False
    )
    with client:
        assert _run(client, "id -u") == str(person.uid)
        _run(client, "echo hi > /workspace/made-over-ssh")
    made = person.work / "made-over-ssh"
    assert (made.stat().st_uid, made.stat().st_gid) == (person.uid, person.gid)
    assert made.read_text() == "hi\n"
    # `devbox ssh NAME -- CMD` with the system ssh client and the recorded key.
    assert person.devbox("ssh", "mybox", "--", "true").returncode == 0
    assert person.devbox("ssh", "mybox", "--", "id", "-un").stdout.strip() == TEST_ACCOUNT


def test_a_changed_host_key_is_refused(person: Person) -> None:
    result = person.up(str(_profile(person, "keyed")))
    container = result["container"]
    # Someone replaces the box's host key without a rebuild.
    key = "/etc/ssh/ssh_host_devbox_key"
    swap = f"rm -f {key}* && ssh-keygen -q -t ed25519 -N '' -f {key} && pkill -HUP -x sshd"
    docker("exec", container, "sh", "-c", swap)
    refused = person.devbox("ssh", "keyed", "--", "true", check=False)
    assert refused.returncode != 0
    assert "host key of box 'keyed' changed" in refused.stderr
    client = _client(person, result)
    with pytest.raises(paramiko.SSHException):
        client.connect(
            result["ssh"]["address"], result["ssh"]["port"], username=TEST_ACCOUNT, look_for_keys=False
        )
    # A rebuild makes and records a new key: in again.
    person.devbox("rebuild", "keyed")
    assert person.devbox("ssh", "keyed", "--", "true").returncode == 0


def test_password_mode_logs_in_and_warns(person: Person) -> None:
    box = _profile(person, "pw", "ssh: {password: true}\n")
    result = person.up(str(box))
    ssh = result["ssh"]
    assert ssh["password"] and len(ssh["password"]) >= 16
    assert any("SSH keys are safer" in w for w in result["warnings"])
    client = _client(person, result)
    client.connect(
        ssh["address"],
        ssh["port"],
        username=ssh["user"],
        password=ssh["password"],
        look_for_keys=False,
        allow_agent=False,
    )
    with client:
        assert _run(client, "id -u") == str(person.uid)
    human = person.devbox("info", "pw")
    assert "SSH keys are safer" in human.stderr


def test_token_and_key_stay_out_of_inspect_and_ps(person: Person, engine: Engine) -> None:
    result = person.up(str(_profile(person, "secret")))
    jupyter = result["jupyter"]
    assert jupyter["token"] and jupyter["auth"] == "token"
    url = jupyter["url"]
    assert http_status(url.replace("?token=", "api/status?token=")) == 200
    assert http_status(url.split("?")[0] + "api/status") == 403
    inspected = docker("inspect", result["container"]).stdout
    public_key = Path(result["ssh"]["identity_file"] + ".pub").read_text().split()[1]
    assert jupyter["token"] not in inspected
    assert public_key not in inspected
    processes = subprocess.run(["ps", "auxeww"], capture_output=True, text=True, check=True).stdout
    assert jupyter["token"] not in processes
    # info (another process, later) reads the token back from the box.
    info = json.loads(person.devbox("info", "secret", "--json").stdout)
    assert info["jupyter"]["token"] == jupyter["token"]


def test_ssh_config_write_twice_leaves_one_block_per_box(person: Person) -> None:
    for name in ("one", "two"):
        person.up(str(_profile(person, name)))
    person.devbox("ssh-config", "--write")
    person.devbox("ssh-config", "--write")
    config = (person.home / ".ssh/config").read_text()
    assert config.count("# >>> devbox >>>") == 1 and config.count("Include ") == 1
    include = (person.home / ".config/devbox/ssh_config").read_text()
    assert include.count("Host devbox-one\n") == 1 and include.count("Host devbox-two\n") == 1
    # The entry works with the plain ssh client (VS Code uses the same file).
    ssh_config = str(person.home / ".ssh/config")
    assert person.run("ssh", "-F", ssh_config, "-o", "BatchMode=yes", "devbox-one", "true").returncode == 0


def test_a_new_named_volume_is_the_users_to_write(person: Person) -> None:
    # Docker makes a new volume root-owned; the box runs as the caller, who must be able to
    # keep data there (Jupyter and ssh both run as them).
    person.up(str(_profile(person, "vol", "volumes: ['keep:/data']\n")))
    made = person.devbox("ssh", "vol", "--", "sh", "-c", "'echo kept > /data/f && stat -c %u:%g /data/f'")
    assert made.stdout.strip() == f"{person.uid}:{person.gid}"


def test_a_link_hidden_in_an_unreadable_folder_is_refused(person: Person) -> None:
    # dockerd (root) would follow the link that this user cannot see: to the docker socket.
    hidden = person.work / "hidden"
    hidden.mkdir()
    (hidden / "sock").symlink_to("/var/run/docker.sock")
    os.chown(hidden, person.uid, person.gid)
    hidden.chmod(0)
    path = _profile(person, "sneaky", "volumes: ['./hidden/sock:/s']\n")
    refused = person.devbox("render", str(path), check=False)
    assert refused.returncode == 3 and "cannot see where" in refused.stderr


def test_exec_runs_as_the_boxs_user(person: Person) -> None:
    person.up(str(_profile(person, "ex")))
    assert person.devbox("exec", "ex", "--", "id", "-u").stdout.strip() == str(person.uid)
    person.devbox("exec", "ex", "--", "touch", "/workspace/made-by-exec")
    assert (person.work / "made-by-exec").stat().st_uid == person.uid


def test_ssh_with_no_name_logs_into_the_default_box(person: Person) -> None:
    person.up(str(_profile(person, "default")))
    assert person.devbox("ssh", "--", "id", "-un").stdout.strip() == TEST_ACCOUNT
