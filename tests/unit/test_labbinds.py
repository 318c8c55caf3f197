"""Lab mode's bind checks (devbox/ops/labbinds.py): where a source leads, as the caller sees it.

These run as whoever runs the tests, who is also the caller here: `caller.rights` then
switches to the same ids (or does nothing when not root). Pinning (mount(2)) and real
accounts are in tests/integration/test_labbinds.py.
"""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from devbox import caller, settings
from devbox.box.resolved import Resolved
from devbox.box.spec import Mount
from devbox.box.state import Box, MountInfo
from devbox.errors import Origin, PolicyRefusal, Refused
from devbox.ops import labbinds, resolve
from devbox.profile.model import VolumeSpec
from tests.conftest import Sandbox

BINDS = str(labbinds.BINDS_DIR)


def lab_settings(sandbox: Sandbox) -> settings.Settings:
    """Lab-mode settings whose caller is this process's user, at home in the sandbox."""
    me = dataclasses.replace(caller.from_uid(os.getuid()), name="alice", home=sandbox.home)
    return settings.for_caller(me, {}, sandbox.cwd, sandbox.lab)


def with_binds(
    sandbox: Sandbox, binds: list[tuple[str, bool]], policy: str = "", lab: bool = True
) -> Resolved:
    """A resolved profile with these bind mounts, past every other check (those are not tested here)."""
    if policy:
        sandbox.write("lab/policy.yaml", policy)
    profile = sandbox.write("work/p.yaml", "image: devbox/debian:bookworm\n")
    given = lab_settings(sandbox) if lab else sandbox.settings()
    resolved = resolve.resolve(str(profile), given)
    volumes = tuple(
        VolumeSpec("bind", source, f"/mnt/{i}", readonly, Origin(str(profile), i + 2))
        for i, (source, readonly) in enumerate(binds)
    )
    mounts = tuple(Mount("bind", v.source, v.target, v.readonly) for v in volumes)
    return dataclasses.replace(
        resolved,
        profile=dataclasses.replace(resolved.profile, volumes=volumes),
        spec=dataclasses.replace(resolved.spec, mounts=mounts),
    )


def open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


@pytest.fixture
def no_leak() -> Iterator[None]:
    """Every test here closes what it opened."""
    before = open_fds()
    yield
    assert open_fds() - before == set()


def refusal(resolved: Resolved) -> PolicyRefusal:
    with pytest.raises(PolicyRefusal) as caught:
        labbinds.check(resolved)
    return caught.value


def test_outside_lab_mode_nothing_is_opened(sandbox: Sandbox, no_leak: None) -> None:
    assert labbinds.check(with_binds(sandbox, [("/etc", True)], lab=False)) == []


def test_a_folder_and_a_file_at_home_pass_through_a_symlink(sandbox: Sandbox, no_leak: None) -> None:
    (sandbox.home / "data").mkdir()
    (sandbox.home / "notes.txt").write_text("x")
    (sandbox.home / "datalink").symlink_to(sandbox.home / "data")
    checked = labbinds.check(
        with_binds(sandbox, [(f"{sandbox.home}/datalink", False), (f"{sandbox.home}/notes.txt", True)])
    )
    try:
        assert [(c.real, c.folder, c.readonly) for c in checked] == [
            (str(sandbox.home / "data"), True, False),
            (str(sandbox.home / "notes.txt"), False, True),
        ]
        assert all(c.fd is not None for c in checked)
    finally:
        labbinds.close(checked)


def test_the_project_folder_and_allowed_mounts_are_roots_too(
    sandbox: Sandbox, tmp_path_factory: pytest.TempPathFactory, no_leak: None
) -> None:
    elsewhere = tmp_path_factory.mktemp("scratch")
    (sandbox.cwd / "src").mkdir()
    resolved = with_binds(
        sandbox,
        [(str(sandbox.cwd / "src"), False), (str(elsewhere), False)],
        policy=f"allowed_mounts: [{elsewhere}]\n",
    )
    labbinds.close(labbinds.check(resolved))
    # Without the policy's root, the scratch folder is outside.
    problem = refusal(with_binds(sandbox, [(str(elsewhere), False)], policy="allow_root: false\n"))
    assert "outside your home, the project folder" in problem.problems[0].message


def test_symlinks_to_the_host_are_refused_like_their_targets(sandbox: Sandbox, no_leak: None) -> None:
    (sandbox.home / "etc").symlink_to("/etc")
    (sandbox.home / "up").symlink_to("..")
    caught = refusal(
        with_binds(
            sandbox,
            [(f"{sandbox.home}/etc", True), ("/etc", True), (f"{sandbox.home}/up", True), ("/proc", True)],
        )
    )
    messages = [p.message for p in caught.problems]
    assert len(messages) == 4, messages
    assert messages[0].startswith("~/etc → /etc is outside your home")
    assert messages[1].startswith("/etc is outside your home")
    assert messages[2].startswith(f"~/up → {sandbox.home.parent} is outside")
    assert [p.origin.line for p in caught.problems] == [2, 3, 4, 5]
    assert caught.exit_code == 3 and "4 bind mounts" in caught.message


def test_a_socket_is_refused_even_at_home(sandbox: Sandbox, no_leak: None) -> None:
    path = sandbox.home / "s"
    server = socket.socket(socket.AF_UNIX)
    try:
        server.bind(str(path))
        caught = refusal(with_binds(sandbox, [(str(path), False)]))
    finally:
        server.close()
    assert "~/s is a socket: only folders and files may be mounted" in caught.problems[0].message


def test_the_engine_socket_through_a_link_is_refused(sandbox: Sandbox, no_leak: None) -> None:
    target = "/var/run/docker.sock" if os.path.exists("/var/run/docker.sock") else "/run"
    (sandbox.home / "sock").symlink_to(target)
    message = refusal(with_binds(sandbox, [(f"{sandbox.home}/sock", False)])).problems[0].message
    assert message.startswith(f"~/sock → {os.path.realpath(target)} ")


def test_forbidden_mounts_apply_inside_the_roots(sandbox: Sandbox, no_leak: None) -> None:
    secret = sandbox.home / "secret"
    (secret / "inner").mkdir(parents=True)
    resolved = with_binds(
        sandbox, [(str(secret / "inner"), True), (str(sandbox.home), True)], f"forbidden_mounts: [{secret}]\n"
    )
    caught = refusal(resolved)
    assert [f"exposes {secret}" in p.message for p in caught.problems] == [True, True]


def test_devbox_own_folder_may_not_be_mounted(sandbox: Sandbox, no_leak: None) -> None:
    (sandbox.home / "pins").symlink_to(BINDS)
    message = refusal(with_binds(sandbox, [(f"{sandbox.home}/pins", True)])).problems[0].message
    assert "outside your home" in message or "exposes /run/devbox" in message


def test_a_missing_source_is_judged_by_the_folder_it_goes_in(sandbox: Sandbox, no_leak: None) -> None:
    checked = labbinds.check(with_binds(sandbox, [(f"{sandbox.home}/new/deeper", False)]))
    assert [(c.fd, c.real, c.folder) for c in checked] == [(None, f"{sandbox.home}/new/deeper", True)]
    assert not (sandbox.home / "new").exists(), "check makes nothing"
    caught = refusal(with_binds(sandbox, [("/etc/devbox-made-by-a-test/x", False)]))
    assert "outside your home" in caught.problems[0].message
    assert not os.path.exists("/etc/devbox-made-by-a-test")


def test_a_refusal_keeps_nothing_open(sandbox: Sandbox, no_leak: None) -> None:
    (sandbox.home / "ok").mkdir()
    refusal(
        with_binds(sandbox, [(f"{sandbox.home}/ok", False), ("/etc", True), (f"{sandbox.home}/ok", True)])
    )
    labbinds.verify(with_binds(sandbox, [(f"{sandbox.home}/ok", False)]))


# --- the label -------------------------------------------------------------------------------


def pins_label(*pins: tuple[str, str, bool]) -> dict[str, str]:
    return {labbinds.BINDS_LABEL: json.dumps([{"pin": p, "source": s, "ro": ro} for p, s, ro in pins])}


def test_the_label_maps_pins_back_to_the_callers_paths() -> None:
    label = pins_label(
        (f"{BINDS}/alice/demo/0123456789ab/0", "/home/alice/proj", False),
        (f"{BINDS}/alice/demo/0123456789ab/2", "/home/alice/.gitconfig", True),
    )
    assert labbinds.shown_sources(label) == {
        f"{BINDS}/alice/demo/0123456789ab/0": "/home/alice/proj",
        f"{BINDS}/alice/demo/0123456789ab/2": "/home/alice/.gitconfig",
    }
    box = Box("id", "devbox-alice-demo", "demo", "alice", "", "", "exited", "", 0.0, "", (), (), labels=label)
    assert labbinds.folders_of(box) == (f"{BINDS}/alice/demo/0123456789ab",)


@pytest.mark.parametrize(
    "pin",
    [
        "/etc/passwd",
        f"{BINDS}/alice/demo/0123456789ab",
        f"{BINDS}/alice/demo/../../bob/x/0123456789ab/0",
        f"{BINDS}/alice/demo/notagen/0",
        f"{BINDS}/alice/demo/0123456789ab/x",
        f"{BINDS}/alice/demo/0123456789ab/0/1",
        f"{BINDS}//alice/demo/0123456789ab/0",
    ],
)
def test_a_label_naming_anything_but_a_pin_is_ignored(pin: str) -> None:
    assert labbinds.pins_of(pins_label((pin, "/home/alice", False))) == []


@pytest.mark.parametrize("text", ["", "{", "{}", "[1]", '[{"pin": 1, "source": "x"}]', "null"])
def test_a_garbled_label_is_no_pins(text: str) -> None:
    assert labbinds.pins_of({labbinds.BINDS_LABEL: text}) == []


def test_release_outside_its_folder_does_nothing(tmp_path: Path) -> None:
    (tmp_path / "keep").mkdir()
    labbinds.release_folder(str(tmp_path))
    labbinds.release("nobody-at-all", "nothing")
    assert (tmp_path / "keep").is_dir()


def test_a_box_made_outside_lab_mode_is_not_started_in_it(sandbox: Sandbox) -> None:
    resolved = with_binds(sandbox, [])
    box = Box(
        "id", "devbox-alice-p", "p", "alice", "", "", "exited", "", 0.0, "", (), (),
        mounts=(MountInfo("bind", "/home/alice/proj", "/workspace", False),),
    )  # fmt: skip
    with pytest.raises(Refused, match="was not made in lab mode"):
        labbinds.repin(resolved, box)
    elsewhere = dataclasses.replace(box, labels=pins_label((f"{BINDS}/bob/p/0123456789ab/0", "/x", False)))
    with pytest.raises(Refused):
        labbinds.repin(resolved, elsewhere)


def test_a_pin_folder_is_made_while_a_sibling_box_releases_the_owner_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`up` of box a and `down` of box b of one owner at once: b's release removes the owner
    folder whenever it is empty, between a's making it and making a's folder in it."""
    from devbox.ops import labpins

    monkeypatch.setattr(labpins, "BINDS_DIR", tmp_path / "binds")
    until = time.monotonic() + 2.0
    child = os.fork()
    if child == 0:  # the other box: made and released over and over
        code = 1
        try:
            while time.monotonic() < until:
                labpins.new_folder("alice", "b")
                labpins.release("alice", "b")
            code = 0
        finally:
            os._exit(code)
    made = 0
    try:
        while time.monotonic() < until:
            folder = labpins.new_folder("alice", "a")
            labpins.release_folder(str(folder))
            made += 1
    finally:
        _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 0, "the other box's up failed"
    assert not (tmp_path / "binds" / "alice").exists(), "the last one out removed the owner folder"
    assert made > 10  # it did race (a few thousand rounds when the machine is idle)
