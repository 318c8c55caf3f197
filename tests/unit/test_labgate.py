"""Lab mode's kernel and front end: who the caller is, what their environment may not decide,
acting with their rights, the audit line, and who may touch another owner's box."""

from __future__ import annotations

import json
import os
import stat
import time
from pathlib import Path

import pytest

from devbox import audit, caller, labmode, settings
from devbox.cli import labgate, labhelper
from devbox.errors import Refused
from devbox.ops import boxes
from devbox.policy import labfile

NOBODY = 65534


def lab_settings(tmp_path: Path, name: str = "alice", admin: bool = False) -> settings.Settings:
    who = caller.Caller(name, 4242, 4242, (4242,), tmp_path)
    made = settings.for_caller(who, {"WANDB_KEY": "k"}, tmp_path)
    return settings.Settings(**{**made.__dict__, "admin": admin})


def test_commands_go_through_the_helper_only_in_lab_mode_and_not_for_help(monkeypatch):
    assert str(labmode.LAB_FILE) == labgate.LAB_FILE  # spelt out there, to start fast
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    monkeypatch.setattr(os.path, "lexists", lambda path: path == labgate.LAB_FILE)
    assert labgate.needed(["up"])
    assert labgate.needed(["ls", "--all"])
    for local in (["--help"], ["version"], ["help", "lab"], ["completion", "bash"], ["up", "--help"], []):
        assert not labgate.needed(local), local
    monkeypatch.setattr(os.path, "lexists", lambda path: False)
    assert not labgate.needed(["up"])
    monkeypatch.setattr(os.path, "lexists", lambda path: path == labgate.LAB_FILE)
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    assert not labgate.needed(["up"])  # root (and the helper itself) uses the engine directly


def test_variables_that_would_choose_identity_policy_or_engine_are_named_in_the_warning():
    env = {"DEVBOX_USER": "bob", "DEVBOX_POLICY": "/tmp/open.yaml", "DOCKER_HOST": "tcp://x", "HOME": "/h"}
    names = labgate.ignored_variables(env)
    assert names == ["DEVBOX_USER", "DEVBOX_POLICY", "DOCKER_HOST"]
    text = labgate.warning(names)
    assert "DEVBOX_USER" in text and "ignores" in text and str(labmode.POLICY_FILE) in text


def test_the_helper_environment_is_rebuilt_with_display_settings_only():
    env = labhelper.clean_environ(
        {"NO_COLOR": "1", "TERM": "xterm", "DOCKER_HOST": "tcp://evil", "PATH": "/a/bin", "LD_PRELOAD": "x"},
        "unix:///run/lab.sock",
    )
    assert env["NO_COLOR"] == "1" and env["TERM"] == "xterm"
    assert env["DOCKER_HOST"] == "unix:///run/lab.sock"
    assert env["PATH"] == labhelper.SECURE_PATH and env["HOME"] == "/root"
    assert "LD_PRELOAD" not in env
    assert "DOCKER_HOST" not in labhelper.clean_environ({"DOCKER_HOST": "tcp://evil"}, None)
    # Nor root's `docker context use`: without an engine in lab.yaml, the local socket.
    assert labhelper.clean_environ({"DOCKER_CONTEXT": "evil"}, None)["DOCKER_CONTEXT"] == "default"


def test_the_audit_log_keeps_env_names_not_values():
    shown = labhelper.redacted(
        ["up", "-e", "TOKEN=s3cret", "--env=KEY=v", "-e", "PLAIN", "-eX=s3cret", "exp"]
    )
    assert shown == ["up", "-e", "TOKEN=…", "--env=KEY=…", "-e", "PLAIN", "-eX=…", "exp"]
    assert "s3cret" not in json.dumps(shown)


def test_a_helper_flag_it_does_not_know_is_refused():
    with pytest.raises(Refused):
        labhelper._parse(["--user", "bob", "--", "ls"])
    assert labhelper._parse(["--env-fd", "3", "--", "ls", "--all"]) == (3, ["ls", "--all"])


def test_sudo_variables_are_believed_only_when_they_agree_and_sudo_started_us(monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    with pytest.raises(Refused, match="disagree"):
        caller.from_sudo({"SUDO_UID": "1", "SUDO_USER": "root"})  # root is uid 0, not 1
    with pytest.raises(Refused):
        caller.from_sudo({"SUDO_USER": "nobody"})  # no uid
    with pytest.raises(Refused, match="not in the passwd"):
        caller.from_sudo({"SUDO_UID": "4242", "SUDO_USER": "no-such-user-dbx"})
    # Right names, but no sudo process above this one (pytest's parent is a shell): refused.
    with pytest.raises(Refused, match="not started by sudo"):
        caller.from_sudo({"SUDO_UID": str(NOBODY), "SUDO_USER": "nobody"})
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(Refused, match="only through sudo"):
        caller.from_sudo({"SUDO_UID": str(NOBODY), "SUDO_USER": "nobody"})


@pytest.mark.skipif(os.getuid() != 0, reason="switching the effective uid needs root")
def test_files_are_read_with_the_callers_rights_and_root_comes_back(tmp_path):
    secret = tmp_path / "secret"
    secret.write_text("root only")
    secret.chmod(0o600)
    tmp_path.chmod(0o755)
    nobody = caller.from_uid(NOBODY)
    with caller.rights(nobody):
        assert os.geteuid() == NOBODY
        with caller.rights(nobody):  # nested: still the caller, and root only after the outer block
            pass
        assert os.geteuid() == NOBODY
        with pytest.raises(PermissionError):
            secret.read_text()
    assert os.geteuid() == 0 and os.getegid() == 0
    assert secret.read_text() == "root only"


@pytest.mark.skipif(os.getuid() != 0, reason="switching the effective uid needs root")
def test_a_module_first_imported_while_acting_as_the_caller_still_loads(tmp_path, monkeypatch):
    # The helper's interpreter may live where the caller cannot read (pyenv under /root).
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    (private / "dbx_lazy_module.py").write_text("VALUE = 42\n")
    monkeypatch.syspath_prepend(str(private))
    with caller.rights(caller.from_uid(NOBODY)):
        assert os.geteuid() == NOBODY
        import dbx_lazy_module  # type: ignore[import-not-found]

        assert dbx_lazy_module.VALUE == 42
        assert os.geteuid() == NOBODY
        with pytest.raises(PermissionError):
            (private / "dbx_lazy_module.py").read_text()  # files are still read as the caller
    assert os.geteuid() == 0


def test_admins_are_users_or_groups():
    root_group = caller.Caller("carol", 5000, 5000, (0, 5000), Path("/home/carol"))
    assert root_group.matches(("carol",))
    assert root_group.matches(("@root",))  # gid 0 is group root
    assert root_group.matches(("root",))  # a bare name may be a group
    assert not root_group.matches(("alice", "@no-such-group-dbx"))


def test_another_owners_box_is_off_limits_except_to_admins_seeing_or_removing_it(tmp_path):
    alice = lab_settings(tmp_path)
    assert boxes.target(alice, "exp") == ("alice", "exp")
    assert boxes.target(alice, "alice/exp") == ("alice", "exp")
    for action in ("see", "stop and remove", "read the log of", "run commands in", "log into"):
        with pytest.raises(Refused, match="bob/exp is bob's box"):
            boxes.target(alice, "bob/exp", action)
    carol = lab_settings(tmp_path, "carol", admin=True)
    assert boxes.target(carol, "bob/exp", "stop and remove") == ("bob", "exp")
    assert boxes.target(carol, "bob/exp", "see") == ("bob", "exp")
    with pytest.raises(Refused):
        boxes.target(carol, "bob/exp", "run commands in")
    assert audit.notes()["owner"] == "bob"


def test_lab_settings_ignore_the_environment_for_identity_but_keep_it_as_data(tmp_path):
    lab = lab_settings(tmp_path)
    assert lab.lab and lab.owner == "alice" and lab.uid == 4242
    assert lab.policy_path == Path("/etc/devbox/policy.yaml")
    assert lab.interpolation_env()["WANDB_KEY"] == "k"
    assert lab.interpolation_env()["DEVBOX_USER"] == "alice"
    assert not settings.from_environment({"HOME": str(tmp_path), "DEVBOX_USER": "x"}).lab


def test_audit_lines_are_appended_private_and_never_through_a_symlink(tmp_path):
    log = tmp_path / "log" / "audit.log"
    audit.append(log, audit.line(user="alice", result="refused", why="not yours"))
    audit.append(log, audit.line(user="bob", result="allowed"))
    lines = [json.loads(x) for x in log.read_text().splitlines()]
    assert [x["user"] for x in lines] == ["alice", "bob"] and lines[0]["why"] == "not yours"
    assert stat.S_IMODE(log.stat().st_mode) == 0o600
    assert stat.S_IMODE(log.parent.stat().st_mode) == 0o700
    planted = tmp_path / "planted"
    planted.symlink_to(tmp_path / "elsewhere")
    with pytest.raises(OSError):
        audit.append(planted, "x\n")
    assert not (tmp_path / "elsewhere").exists()


@pytest.mark.skipif(os.getuid() != 0, reason="files owned by another uid need root to make")
def test_a_trusted_file_someone_else_can_change_is_a_weak_spot(tmp_path):
    policy = tmp_path / "policy.yaml"
    policy.write_text("limits: {}\n")
    assert labmode.weak_spots(policy, parents=False) == []
    policy.chmod(0o646)
    assert "writable by others" in labmode.weak_spots(policy, parents=False)[0]
    policy.chmod(0o644)
    os.chown(policy, NOBODY, 0)
    assert "owned by uid 65534" in labmode.weak_spots(policy, parents=False)[0]
    # A folder above counts: whoever can rename it can swap the file.
    tmp_path.chmod(0o777)
    os.chown(policy, 0, 0)
    assert any("on the way" in spot for spot in labmode.weak_spots(policy))
    assert labmode.weak_spots(tmp_path / "missing") == []


def test_the_lab_file_names_its_mistakes(tmp_path):
    lab_file = tmp_path / "lab.yaml"
    lab_file.write_text("group: devbox\nadmins: [labadm]\nengine: unix:///run/x.sock\n")
    assert labfile.read_config(lab_file) == labfile.LabConfig("devbox", ("labadm",), "unix:///run/x.sock")
    lab_file.write_text("group: devbox\nengine: tcp://1.2.3.4:2375\nextra: 1\n")
    with pytest.raises(Exception) as raised:
        labfile.read_config(lab_file)
    text = str([p.message for p in raised.value.problems])  # type: ignore[attr-defined]
    assert "unix://" in text and "unknown key 'extra'" in text


def test_a_signal_relayed_to_the_helper_stops_it_like_ctrl_c_and_a_stop_is_ignored():
    import signal

    saved = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGHUP, signal.SIGTSTP)}
    try:
        labhelper._handle_signals()
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(1)  # the handler runs between bytecodes
        assert signal.getsignal(signal.SIGTSTP) is signal.SIG_IGN
    finally:
        for number, handler in saved.items():
            signal.signal(number, handler)


def test_a_working_folder_that_was_deleted_is_refused_clearly(tmp_path, monkeypatch):
    gone = tmp_path / "gone"
    gone.mkdir()
    monkeypatch.chdir(gone)
    gone.rmdir()
    with pytest.raises(Refused, match="current folder no longer exists"):
        labhelper._working_folder()


def test_in_lab_mode_exec_runs_as_the_caller_whatever_the_box_environment_says(tmp_path, monkeypatch):
    from types import SimpleNamespace

    # An env file or the image's ENV may say DEVBOX_UID=0: the box's environment is the user's.
    rooted = SimpleNamespace(config=SimpleNamespace(env={"DEVBOX_UID": "0", "DEVBOX_GID": "0"}))
    monkeypatch.setattr(boxes, "running_own", lambda *args, **kwargs: rooted)
    assert boxes.exec_target(None, lab_settings(tmp_path), "x").user == "4242:4242"  # type: ignore[arg-type]
    outside = settings.from_environment({"HOME": str(tmp_path)}, tmp_path)
    assert boxes.exec_target(None, outside, "x").user == "0:0"  # type: ignore[arg-type]


@pytest.mark.skipif(os.getuid() != 0, reason="the lab lock folder is root's")
def test_in_lab_mode_the_engine_lock_is_not_in_tmp_where_anyone_could_make_it_first(monkeypatch):
    from devbox import hostlock

    assert hostlock.engine_lock_path("unix:///var/run/docker.sock").startswith("/tmp/")
    monkeypatch.setattr(labmode, "installed", lambda: True)
    path = hostlock.engine_lock_path("unix:///var/run/docker.sock")
    assert path.startswith("/run/devbox/locks/")
    folder = Path(path).parent
    assert folder.stat().st_uid == 0 and stat.S_IMODE(folder.stat().st_mode) == 0o700
