"""Lab mode's caller files on this host, as root, with real accounts (devbox/ops/labbinds.py).

Two throwaway accounts (`dbxt…a`, `dbxt…b`, made with useradd and removed after) stand for
alice and bob. devbox acts as root for alice: her bind sources are opened with her rights,
pinned by real bind mounts under /run/devbox/binds, and released without a trace; her keys,
known_hosts, env files and build contexts are read and written as her.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import stat
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from devbox import caller, settings
from devbox.access import sshkeys
from devbox.box.resolved import Resolved
from devbox.box.spec import Mount
from devbox.box.state import Box
from devbox.engine.docker import images
from devbox.engine.fake import FakeEngine
from devbox.errors import DevboxError, InvalidInput, Origin, PolicyRefusal
from devbox.ops import create, labbinds, lifecycle, resolve
from devbox.ops.reporter import QuietReporter
from devbox.profile.model import VolumeSpec
from tests.integration.conftest import Engine, docker

BINDS = labbinds.BINDS_DIR
IMAGE = "devbox/debian:bookworm"


def _can_mount() -> bool:
    if os.geteuid() != 0:
        return False
    probe = Path(f"/tmp/dbxt-mount-probe-{os.getpid()}")
    probe.mkdir(exist_ok=True)
    try:
        done = subprocess.run(["mount", "--bind", str(probe), str(probe)], capture_output=True, check=False)
        if done.returncode == 0:
            subprocess.run(["umount", str(probe)], check=False)
        return done.returncode == 0
    finally:
        probe.rmdir()


# Elsewhere a machine that may not mount skips these; in CI (CI=true) they run, and fail.
pytestmark = pytest.mark.skipif(
    not os.environ.get("CI") and not _can_mount(), reason="needs root that may mount (lab mode's helper)"
)


@dataclass(frozen=True)
class Person:
    """A real account: who, and where their home is."""

    who: caller.Caller

    @property
    def home(self) -> Path:
        return self.who.home

    def owns(self, path: Path) -> None:
        os.chown(path, self.who.uid, self.who.gid, follow_symlinks=False)

    def mkdir(self, name: str) -> Path:
        path = self.home / name
        path.mkdir(parents=True, exist_ok=True)
        self.owns(path)
        return path

    def symlink(self, name: str, target: str) -> Path:
        path = self.home / name
        if path.is_symlink():
            path.unlink()
        path.symlink_to(target)
        self.owns(path)
        return path


@pytest.fixture(scope="module")
def people() -> Iterator[tuple[Person, Person]]:
    """alice and bob: two new accounts in no group of note, bob's home closed to others."""
    stem = f"dbxt{uuid.uuid4().hex[:6]}"
    names = [f"{stem}a", f"{stem}b"]
    try:
        for name in names:
            subprocess.run(["useradd", "-m", "-s", "/bin/sh", name], check=True, capture_output=True)
        alice, bob = (Person(caller.from_uid(int(subprocess.check_output(["id", "-u", n])))) for n in names)
        os.chmod(alice.home, 0o755)
        os.chmod(bob.home, 0o700)
        yield alice, bob
    finally:
        for name in names:
            labbinds.release(name, "p")
            subprocess.run(["userdel", "-r", "-f", name], check=False, capture_output=True)


def lab_settings(person: Person, lab_dir: Path) -> settings.Settings:
    return settings.for_caller(person.who, {}, person.home, lab_dir)


def resolved_for(person: Person, lab_dir: Path, binds: list[tuple[str, bool]]) -> Resolved:
    """alice's profile `p` with these binds, past every check but the one under test."""
    profile = person.home / "p.yaml"
    profile.write_text(f"image: {IMAGE}\n")
    person.owns(profile)
    resolved = resolve.resolve(str(profile), lab_settings(person, lab_dir))
    volumes = tuple(
        VolumeSpec("bind", source, f"/mnt/{i}", readonly, Origin(str(profile), i + 2))
        for i, (source, readonly) in enumerate(binds)
    )
    return dataclasses.replace(
        resolved,
        profile=dataclasses.replace(resolved.profile, volumes=volumes),
        spec=dataclasses.replace(
            resolved.spec, mounts=tuple(Mount("bind", v.source, v.target, v.readonly) for v in volumes)
        ),
    )


def mounted_under(owner: str) -> list[str]:
    """Mount points under /run/devbox/binds/OWNER (from this process's mount table)."""
    points = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()]
    return [p for p in points if p.startswith(f"{BINDS}/{owner}/")]


@pytest.fixture
def lab_dir(tmp_path: Path) -> Path:
    path = tmp_path / "lab"
    path.mkdir()
    return path


def _open_fds() -> set[tuple[str, str]]:
    """This process's open descriptors with what each points at (a reused number is new)."""
    found = set()
    for number in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            found.add((number, os.readlink(f"/proc/self/fd/{number}")))
    return found


def test_what_is_not_hers_is_refused_and_nothing_is_made(
    people: tuple[Person, Person], lab_dir: Path
) -> None:
    alice, bob = people
    sub = bob.home / "private"
    sub.mkdir(exist_ok=True)
    bob.owns(sub)
    alice.symlink("sock", "/var/run/docker.sock")
    alice.symlink("bobs", str(bob.home))
    alice.symlink("bobsub", str(sub))
    refused = {
        f"{alice.home}/sock": "~/sock → /run/docker.sock is outside your home",
        f"{alice.home}/bobs": f"~/bobs → {bob.home} is outside your home",
        f"{alice.home}/bobsub": "you cannot reach",
        str(bob.home): f"{bob.home} is outside your home",
        "/etc": "/etc is outside your home",
        "/root": "",
        f"{alice.home}/sock/x": "",
    }
    fds = _open_fds()
    for source, said in refused.items():
        resolved = resolved_for(alice, lab_dir, [(source, True)])
        with pytest.raises(PolicyRefusal) as caught:
            labbinds.pin(resolved, labbinds.check(resolved))
        assert caught.value.exit_code == 3
        assert said in caught.value.problems[0].message, (source, caught.value.problems[0].message)
    # Nothing new left open (earlier tests' files may close meanwhile: fewer is fine).
    assert _open_fds() - fds == set()
    assert mounted_under(alice.who.name) == [] and not (BINDS / alice.who.name).exists()


def test_what_she_may_only_read_mounts_only_read_only(people: tuple[Person, Person], lab_dir: Path) -> None:
    alice, _ = people
    shared = alice.home / "shared"  # root's folder in her home: readable, not writable
    shared.mkdir(exist_ok=True)
    os.chmod(shared, 0o755)
    closed = alice.home / "closed.txt"
    closed.write_text("root's\n")
    os.chmod(closed, 0o600)
    resolved = resolved_for(alice, lab_dir, [(str(shared), False), (str(closed), True)])
    with pytest.raises(PolicyRefusal) as caught:
        labbinds.check(resolved)
    assert [p.message for p in caught.value.problems] == [
        f"you cannot write to {shared}: mount it read-only (add :ro)",
        f"you cannot read {closed}",
    ]
    labbinds.close(labbinds.check(resolved_for(alice, lab_dir, [(str(shared), True)])))


def test_pin_holds_the_checked_folder_and_release_leaves_nothing(
    people: tuple[Person, Person], lab_dir: Path
) -> None:
    alice, _ = people
    data, other = alice.mkdir("data"), alice.mkdir("other")
    (data / "here").write_text("data\n")
    link = alice.symlink("datalink", str(data))
    resolved = resolved_for(
        alice, lab_dir, [(str(link), False), (str(data), True), (f"{alice.home}/new/sub", False)]
    )
    pinned = labbinds.pin(resolved, labbinds.check(resolved))
    try:
        pins = [m.source for m in pinned.spec.mounts]
        assert all(p.startswith(f"{BINDS}/{alice.who.name}/p/") for p in pins)
        assert pinned.spec.spec_hash == resolved.spec.spec_hash
        assert labbinds.shown_sources(pinned.spec.labels) == {
            pins[0]: str(link),
            pins[1]: str(data),
            pins[2]: f"{alice.home}/new/sub",
        }
        assert sorted(mounted_under(alice.who.name)) == sorted(pins)
        # Made as her, where Docker would have made it as root.
        made = (alice.home / "new" / "sub").stat()
        assert (made.st_uid, made.st_gid) == (alice.who.uid, alice.who.gid)
        # The link swapped afterwards changes nothing: the pin is the inode that was checked.
        link.unlink()
        alice.symlink("datalink", "/etc")
        assert (Path(pins[0]) / "here").read_text() == "data\n"
        with pytest.raises(OSError, match="Read-only"):
            (Path(pins[1]) / "x").write_text("no")
        info = os.statvfs(pins[0])
        assert info.f_flag & os.ST_NOSUID and info.f_flag & os.ST_NODEV
        del other
    finally:
        labbinds.unpin(pinned.spec.labels)
    assert mounted_under(alice.who.name) == []
    assert not (BINDS / alice.who.name).exists()
    assert (data / "here").read_text() == "data\n", "releasing never removes through a mount"


def test_a_stopped_box_is_pinned_again_from_what_her_path_leads_to_now(
    people: tuple[Person, Person], lab_dir: Path
) -> None:
    alice, _ = people
    first, second = alice.mkdir("v1"), alice.mkdir("v2")
    (second / "which").write_text("v2\n")
    link = alice.symlink("current", str(first))
    resolved = resolved_for(alice, lab_dir, [(str(link), False)])
    pinned = labbinds.pin(resolved, labbinds.check(resolved))
    box = Box(
        "id", "c", "p", alice.who.name, "", IMAGE, "exited", "", 0.0, "", (), (), labels=pinned.spec.labels
    )
    target = pinned.spec.mounts[0].source
    try:
        link.unlink()
        alice.symlink("current", str(second))
        labbinds.repin(resolved, box)
        assert (Path(target) / "which").read_text() == "v2\n"
        assert mounted_under(alice.who.name) == [target]
        subprocess.run(["umount", "-l", target], check=True)  # as after a reboot
        labbinds.repin(resolved, box)
        assert mounted_under(alice.who.name) == [target]
        link.unlink()
        alice.symlink("current", "/etc")
        with pytest.raises(PolicyRefusal, match="bind mount"):
            labbinds.repin(resolved, box)
    finally:
        labbinds.forget(box)
    assert mounted_under(alice.who.name) == [] and not (BINDS / alice.who.name).exists()


def test_the_engine_mounts_the_pin(engine: Engine, people: tuple[Person, Person], lab_dir: Path) -> None:
    alice, _ = people
    data = alice.mkdir("engine")
    (data / "hello").write_text("hi\n")
    resolved = resolved_for(alice, lab_dir, [(str(data), False)])
    pinned = labbinds.pin(resolved, labbinds.check(resolved))
    try:
        source = pinned.spec.mounts[0].source
        user = f"{alice.who.uid}:{alice.who.gid}"
        done = docker(
            "run",
            "--rm",
            "--user",
            user,
            "-v",
            f"{source}:/x",
            IMAGE,
            "sh",
            "-c",
            "cat /x/hello; touch /x/made",
        )
        assert done.stdout == "hi\n"
        made = (data / "made").stat()
        assert (made.st_uid, made.st_gid) == (alice.who.uid, alice.who.gid)
    finally:
        labbinds.unpin(pinned.spec.labels)
    assert mounted_under(alice.who.name) == []


def test_up_and_down_pin_and_release(people: tuple[Person, Person], lab_dir: Path) -> None:
    alice, _ = people
    data = alice.mkdir("updown")
    fake = FakeEngine()
    fake.add_image(IMAGE)
    resolved = resolved_for(alice, lab_dir, [(str(data), False)])
    report = lifecycle.up(fake, resolved, QuietReporter())
    try:
        [pin] = labbinds.pins_of(report.box.labels)
        assert pin["pin"].startswith(f"{BINDS}/{alice.who.name}/p/") and pin["source"] == str(data)
        assert mounted_under(alice.who.name) == [pin["pin"]]
    finally:
        lifecycle.down(fake, alice.who.name, "p", report.box.container, [], alice.home / ".config" / "devbox")
    assert mounted_under(alice.who.name) == [] and not (BINDS / alice.who.name).exists()


def generations(owner: str) -> list[str]:
    """The GEN folders of `owner`'s box `p` that are mounted."""
    return sorted({str(Path(p).parent) for p in mounted_under(owner)})


def test_a_replacement_has_its_own_pins_and_the_old_ones_go(
    people: tuple[Person, Person], lab_dir: Path
) -> None:
    alice, _ = people
    data = alice.mkdir("replaced")
    fake = FakeEngine()
    fake.add_image(IMAGE)
    resolved = resolved_for(alice, lab_dir, [(str(data), False)])
    config = alice.home / ".config" / "devbox"
    first = lifecycle.up(fake, resolved, QuietReporter())
    try:
        old = generations(alice.who.name)
        # A new box that fails to start: its pins go, the old box runs again on its own.
        fake.fail_start(first.box.container, "no such device")
        with pytest.raises(DevboxError):
            lifecycle.up(fake, resolved, QuietReporter(), recreate=True)
        fake.fail_start(first.box.container, None)
        assert generations(alice.who.name) == old
        second = lifecycle.up(fake, resolved, QuietReporter(), recreate=True)
        assert len(now := generations(alice.who.name)) == 1 and now != old
        # Stopped, its pins gone (a reboot empties /run): `up` pins it again before it starts.
        fake.stop(second.box.id)
        labbinds.forget(second.box)
        assert generations(alice.who.name) == []
        third = lifecycle.up(fake, resolved, QuietReporter())
        assert third.action == "started" and generations(alice.who.name) == now
    finally:
        lifecycle.down(fake, alice.who.name, "p", first.box.container, [], config)
    assert mounted_under(alice.who.name) == [] and not (BINDS / alice.who.name).exists()


# --- the caller's other files ---------------------------------------------------------------


@pytest.fixture
def as_lab(people: tuple[Person, Person], lab_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Person:
    """The lab helper's state for alice (settings.enter_lab), undone after."""
    alice, _ = people
    monkeypatch.setattr(settings, "_lab_settings", [lab_settings(alice, lab_dir)])
    return alice


def root_owned_in(home: Path) -> list[str]:
    return [
        str(Path(folder) / name)
        for folder, dirs, names in os.walk(home)
        for name in [*dirs, *names]
        if (Path(folder) / name).lstat().st_uid == 0
    ]


def test_keys_and_known_hosts_are_written_as_her(as_lab: Person) -> None:
    alice = as_lab
    config = alice.home / ".config" / "devbox"
    before = set(root_owned_in(alice.home))
    try:
        key = sshkeys.login_key(config, alice.home, None)
        assert key.generated
        sshkeys.record_host_key(config, "devbox-x-y", "ecdsa-sha2-nistp256 AAAA")
        assert sshkeys.recorded_host_key(config, "devbox-x-y") == "ecdsa-sha2-nistp256 AAAA"
        sshkeys.forget_host_key(config, "devbox-x-y")
        for path in (config / "id_rsa_devbox", config / "id_rsa_devbox.pub", config / "known_hosts"):
            info = path.stat()
            assert (info.st_uid, stat.S_IMODE(info.st_mode)) == (alice.who.uid, 0o600), path
        assert stat.S_IMODE(config.stat().st_mode) == 0o700 and config.stat().st_uid == alice.who.uid
        assert set(root_owned_in(alice.home)) == before, "no root-owned file in her home"
    finally:
        lock = BINDS.parent / "locks" / str(alice.who.uid)
        subprocess.run(["rm", "-rf", str(lock)], check=False)


def test_env_files_are_read_as_her(as_lab: Person, tmp_path: Path) -> None:
    alice = as_lab
    mine = alice.home / "my.env"
    mine.write_text("A=1\n")
    alice.owns(mine)
    roots = tmp_path / "root.env"
    roots.write_text("SECRET=x\n")
    spec = resolved_for(alice, tmp_path / "lab", []).spec
    assert create.environment(dataclasses.replace(spec, env_files=(str(mine),)), alice.who)["A"] == "1"
    with pytest.raises(InvalidInput, match="cannot be read"):
        create.environment(dataclasses.replace(spec, env_files=(str(roots),)), alice.who)


def test_build_contexts_are_read_as_her(as_lab: Person) -> None:
    alice = as_lab
    context = alice.mkdir("ctx")
    (context / "Dockerfile").write_text(f"FROM {IMAGE}\n")
    (context / "link").symlink_to("/etc/shadow")
    images.tarball(str(context), "Dockerfile").close()
    closed = context / "closed"
    closed.write_text("root's\n")
    os.chmod(closed, 0o600)
    with pytest.raises(DevboxError, match="closed in the build context"):
        images.tarball(str(context), "Dockerfile")
    os.chmod(context, 0o700)  # hers, but not her home's owner: root made it 0700
    os.chown(context, 0, 0)
    with pytest.raises(DevboxError, match="not a folder you can read"):
        images.tarball(str(context), "Dockerfile")


def test_labels_name_what_she_mounted(people: tuple[Person, Person], lab_dir: Path) -> None:
    alice, _ = people
    data = alice.mkdir("shown")
    resolved = resolved_for(alice, lab_dir, [(str(data), True)])
    pinned = labbinds.pin(resolved, labbinds.check(resolved))
    try:
        [entry] = json.loads(pinned.spec.labels[labbinds.BINDS_LABEL])
        assert entry == {"pin": pinned.spec.mounts[0].source, "source": str(data), "ro": True}
    finally:
        labbinds.unpin(pinned.spec.labels)
