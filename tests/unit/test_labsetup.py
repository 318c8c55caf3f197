"""devbox lab install / uninstall / status and doctor's lab checks, under a temporary root.

labsetup and labcheck take every path as a parameter (`Paths.under(tmp)`): these tests write
the real files with the real modes, and run the real visudo on the drop-in, without touching
/etc. Installing needs root (the files are chowned to root), as the command itself does.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from devbox.cli.commands import app
from devbox.errors import DevboxError, InvalidInput, Refused
from devbox.ops import labcheck, labsetup
from devbox.policy import rules
from devbox.policy.labfile import LabConfig, read_config
from tests.conftest import Sandbox

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="installing lab mode needs root")
needs_visudo = pytest.mark.skipif(
    shutil.which("visudo", path=labcheck.SYSTEM_PATH) is None, reason="sudo (visudo) is not installed"
)
# Groups every Debian system has: install finds them and creates none.
GROUP, ADMINS = "users", "adm"


def no_groupadd(name: str) -> None:
    raise AssertionError(f"install tried to create group {name}")


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A stand-in for / that only root can change (pytest's folders are root's, 0700)."""
    top = tmp_path / "root"
    top.mkdir(mode=0o755)
    return top


def install(root: Path, **config: object) -> labsetup.Report:
    wanted = LabConfig(**{"group": GROUP, "admin_groups": (ADMINS,), **config})  # type: ignore[arg-type]
    return labsetup.install(wanted, labcheck.Paths.under(root), make_group=no_groupadd)


def mode(path: Path) -> tuple[int, int, int]:
    st = path.lstat()
    return st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)


# --- the files' contents ----------------------------------------------------------------------


@needs_visudo
def test_the_sudoers_drop_in_lets_the_group_run_the_helper_and_visudo_accepts_it(tmp_path: Path) -> None:
    helper = Path("/usr/local/libexec/devbox/devbox-lab")
    text = labsetup.sudoers_text("devbox", helper)
    lines = [line for line in text.splitlines() if not line.startswith("#")]
    assert lines == [
        f"Defaults!{helper} !use_pty, env_reset, closefrom_override",
        f"%devbox ALL=(root) NOPASSWD: {helper}",
    ]
    draft = tmp_path / "devbox"
    draft.write_text(text)
    visudo = shutil.which("visudo", path=labcheck.SYSTEM_PATH)
    assert visudo
    done = subprocess.run([visudo, "-cf", str(draft)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_helper_runs_the_installing_python_isolated(tmp_path: Path) -> None:
    text = labsetup.helper_text("/opt/devbox/bin/python")
    first, *rest = text.splitlines()
    assert first == "#!/opt/devbox/bin/python -I"
    assert "from devbox.cli.labhelper import main" in rest
    compile(text, "devbox-lab", "exec")  # the body is Python
    (tmp_path / "devbox-lab").write_text(text)
    assert labcheck.helper_interpreter(tmp_path / "devbox-lab") == "/opt/devbox/bin/python"


@pytest.mark.parametrize(
    "config",
    [LabConfig(), LabConfig("lab", ("labadmins", "ops"), "unix:///run/docker.sock")],
)
def test_lab_yaml_reads_back_as_written(tmp_path: Path, config: LabConfig) -> None:
    path = tmp_path / "lab.yaml"
    path.write_text(labsetup.lab_text(config))
    assert read_config(path) == config


@pytest.mark.parametrize("admins", [(), ("labadmins",)])
def test_the_starter_policy_is_valid_and_keeps_boxes_from_running_as_root(
    sandbox: Sandbox, admins: tuple[str, ...]
) -> None:
    sandbox.write("lab/policy.yaml", labsetup.policy_text(LabConfig("devbox", admins)))
    policy = rules.load(sandbox.settings())
    assert policy.allow_root is False
    assert policy.limits.max_gpus_per_user is None  # limits are the admin's to choose: shown, commented


# --- install ----------------------------------------------------------------------------------


@needs_root
@needs_visudo
def test_install_writes_every_piece_root_owned_then_a_second_run_changes_nothing(root: Path) -> None:
    paths = labcheck.Paths.under(root)
    first = install(root)
    assert first.changed
    actions = {step.what: step.action for step in first.steps}
    assert actions == {
        f"group {GROUP}": "kept",
        f"group {ADMINS}": "kept",
        str(paths.policy_file): "created",
        str(paths.helper): "created",
        str(paths.audit_dir): "created",
        str(paths.sudoers_file): "created",
        str(paths.lab_file): "created",
    }
    assert mode(paths.sudoers_file) == (0, 0, 0o440)
    assert mode(paths.helper) == (0, 0, 0o755)
    assert mode(paths.lab_file) == (0, 0, 0o644)
    assert mode(paths.policy_file) == (0, 0, 0o644)
    assert mode(paths.audit_dir) == (0, 0, 0o700)
    assert paths.helper.read_text().startswith(f"#!{sys.executable} -I\n")
    assert f"%{GROUP} ALL=(root) NOPASSWD: {paths.helper}" in paths.sudoers_file.read_text()
    assert read_config(paths.lab_file) == LabConfig(GROUP, (ADMINS,))
    assert [p.name for p in paths.sudoers_file.parent.iterdir()] == ["devbox"]  # no draft left

    again = install(root)
    assert not again.changed
    assert {step.action for step in again.steps} == {"kept"}

    found = labcheck.status(paths)
    assert found.installed and found.sound, found.spots
    assert found.interpreter == sys.executable
    assert labcheck.doctor_checks(found)[0][:2] == ("lab", "ok")


@needs_root
@needs_visudo
def test_install_repairs_what_drifted_and_never_rewrites_the_policy(root: Path) -> None:
    paths = labcheck.Paths.under(root)
    install(root)
    paths.policy_file.write_text("limits: {max_gpus_per_user: 1}\n")
    paths.helper.chmod(0o700)
    paths.sudoers_file.write_text("# emptied\n")
    report = install(root)
    actions = {step.what: step.action for step in report.steps}
    assert actions[str(paths.policy_file)] == "kept"
    assert actions[str(paths.helper)] == "updated"
    assert actions[str(paths.sudoers_file)] == "updated"
    assert paths.policy_file.read_text() == "limits: {max_gpus_per_user: 1}\n"
    assert mode(paths.helper) == (0, 0, 0o755)


@needs_root
@needs_visudo
def test_install_creates_a_missing_group(root: Path) -> None:
    made: list[str] = []
    wanted = LabConfig("devbox-no-such-group", ())
    report = labsetup.install(wanted, labcheck.Paths.under(root), make_group=made.append)
    assert made == ["devbox-no-such-group"]
    assert report.steps[0] == labsetup.Step("group devbox-no-such-group", "created")


@needs_root
@needs_visudo
@pytest.mark.parametrize("weak", ["etc/devbox", "etc/devbox/policy.yaml", "etc", "usr/local/libexec"])
def test_install_refuses_when_a_user_could_change_what_it_trusts(root: Path, weak: str) -> None:
    paths = labcheck.Paths.under(root)
    target = root / weak
    if weak.endswith(".yaml"):
        target.parent.mkdir(parents=True)
        target.write_text("limits: {max_gpus_per_user: 1}\n")
        os.chown(target, 1000, 1000)  # a user's policy is no policy
        expected = "is owned by uid 1000, not root"
    else:
        target.mkdir(parents=True, exist_ok=True)
        target.chmod(0o777)
        expected = "is writable by its group and others (mode 0777)"
    with pytest.raises(Refused) as caught:
        install(root)
    assert caught.value.exit_code == 3
    problems = {str(p.origin): (p.message, p.hint) for p in caught.value.problems}
    assert problems[str(target)] == (expected, f"chown root:root {target} && chmod go-w {target}")
    for piece in (paths.lab_file, paths.sudoers_file, paths.helper, paths.audit_dir):
        assert not piece.exists()  # refused before anything is written


@needs_root
def test_the_runtime_check_names_a_module_a_user_could_change(tmp_path: Path) -> None:
    # A stand-in interpreter that reports a sys.path with a world-writable module on it.
    site = tmp_path / "site"
    (site / "devbox").mkdir(parents=True)
    (site / "devbox" / "__init__.py").write_text("")
    planted = site / "yaml.py"
    planted.write_text("")
    planted.chmod(0o666)
    (site / "notes.txt").write_text("")  # not importable: not looked at
    (site / "notes.txt").chmod(0o666)
    python = tmp_path / "python"
    report = f'[["{site}"], "{site}/devbox/__init__.py"]'
    python.write_text(f"#!/bin/sh\necho '{report}'\n")
    python.chmod(0o755)
    spots = labcheck.runtime_spots(str(python))
    assert [(s.path, s.why) for s in spots] == [
        (str(planted), "is writable by its group and others (mode 0666)")
    ]
    python.write_text("#!/bin/sh\nexit 1\n")  # cannot import devbox: nothing to trust
    assert [s.checked for s in labcheck.runtime_spots(str(python))] == [False]


def test_install_refuses_without_root_and_from_the_helper(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(Refused) as caught:
        labsetup.require_root("install", in_helper=True)
    assert caught.value.hint == "run it as root: sudo devbox lab install"
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    result = CliRunner().invoke(app, ["lab", "install"])
    assert result.exit_code == 3
    assert "only root may run it" in result.stderr and "sudo devbox lab install" in result.stderr
    result = CliRunner().invoke(app, ["lab", "uninstall", "--json"])
    assert result.exit_code == 3 and '"refused"' in result.stdout


@needs_root
def test_install_refuses_when_visudo_rejects_the_drop_in(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(labsetup, "visudo", lambda: "/bin/false")
    with pytest.raises(DevboxError, match="visudo rejects"):
        install(root)
    assert not any(root.rglob("*"))  # nothing written


def test_the_config_keeps_what_lab_yaml_says_unless_an_option_changes_it(tmp_path: Path) -> None:
    paths = labcheck.Paths.under(tmp_path)
    assert labsetup.wanted_config(None, None, None, paths) == LabConfig()
    paths.lab_file.parent.mkdir(parents=True)
    paths.lab_file.write_text(labsetup.lab_text(LabConfig("lab", ("ops",), "unix:///run/docker.sock")))
    assert labsetup.wanted_config(None, None, None, paths) == LabConfig(
        "lab", ("ops",), "unix:///run/docker.sock"
    )
    assert labsetup.wanted_config("lab2", ["@admins"], None, paths).admin_groups == ("admins",)
    paths.lab_file.write_text("group: [broken\n")
    assert labsetup.wanted_config(None, None, None, paths) == LabConfig()  # rewritten


@pytest.mark.parametrize(
    ("group", "admins", "engine", "flag"),
    [
        ("dev box", None, None, "--group"),
        ("%wheel", None, None, "--group"),
        (None, ["ALL, root"], None, "--admins"),
        (None, None, "tcp://10.0.0.1:2375", "--engine"),
        (None, None, "unix:///no/such.sock", "--engine"),
    ],
)
def test_bad_options_are_invalid_and_named(
    tmp_path: Path, group: str | None, admins: list[str] | None, engine: str | None, flag: str
) -> None:
    with pytest.raises(InvalidInput) as caught:
        labsetup.wanted_config(group, admins, engine, labcheck.Paths.under(tmp_path))
    assert caught.value.exit_code == 2
    assert [str(p.origin) for p in caught.value.problems] == [flag]


# --- uninstall, status, doctor ----------------------------------------------------------------


@needs_root
@needs_visudo
def test_uninstall_removes_the_switch_and_the_door_and_keeps_policy_and_audit_log(root: Path) -> None:
    paths = labcheck.Paths.under(root)
    install(root)
    report = labsetup.uninstall(paths)
    assert [(s.what, s.action) for s in report.steps] == [
        (str(paths.lab_file), "removed"),
        (str(paths.sudoers_file), "removed"),
        (str(paths.helper), "removed"),
        (str(paths.policy_file), "kept"),
        (str(paths.audit_dir), "kept"),
    ]
    assert not paths.helper.parent.exists()
    assert paths.policy_file.is_file() and paths.audit_dir.is_dir()
    assert not labsetup.uninstall(paths).changed
    assert labcheck.doctor_checks(labcheck.status(paths)) == [
        ("lab", "ok", "lab mode is off (devbox lab install sets it up)", "")
    ]


@needs_root
@needs_visudo
def test_status_and_doctor_fail_when_the_policy_became_a_users(root: Path) -> None:
    paths = labcheck.Paths.under(root)
    install(root)
    os.chown(paths.policy_file, 1000, 1000)
    found = labcheck.status(paths)
    assert found.installed and not found.sound
    name, status, detail, fix = labcheck.doctor_checks(found)[0]
    assert (name, status) == ("lab", "fail")
    assert detail == f"lab mode is not sound: {paths.policy_file} is owned by uid 1000, not root"
    assert fix == f"chown root:root {paths.policy_file} && chmod go-w {paths.policy_file}"
    paths.helper.unlink()
    assert labcheck.doctor_checks(labcheck.status(paths))[0][1:3] == (
        "fail",
        f"lab mode is on but {paths.helper} is missing",
    )


def test_doctor_warns_about_users_who_can_step_around_the_policy(tmp_path: Path) -> None:
    socket = tmp_path / "docker.sock"
    socket.write_text("")
    socket.chmod(0o666)
    assert labcheck.socket_users(str(socket)) == ["everyone"]
    socket.chmod(0o600)
    assert labcheck.socket_users(str(socket)) == []  # root's alone
    found = labcheck.Status(True, {}, [], LabConfig(), None, sys.executable, ["alice"], {}, "/s", ["bob"])
    checks = labcheck.doctor_checks(found)
    assert [c[:2] for c in checks] == [("lab", "ok"), ("lab bypass", "warn")]
    assert checks[1][2] == "bob can use /s directly, around the lab policy"
    assert "gpasswd -d USER docker" in checks[1][3]


def test_paths_under_a_root_mirror_the_real_ones(tmp_path: Path) -> None:
    real, moved = labcheck.Paths(), labcheck.Paths.under(tmp_path)
    assert moved.helper == tmp_path / "usr/local/libexec/devbox/devbox-lab"
    assert [str(p).removeprefix(str(tmp_path)) for p in moved.trusted()] == [str(p) for p in real.trusted()]
