"""Issue 9: no input crashes devbox; each gives a located exit-2 error (or exit 3 by policy).

Every case here ended in "devbox failed unexpectedly" (or a hang, or 46 s and 3 GB) before:
paths the kernel refuses, `~nobody/`, numbers past what Docker stores, values only the
engine refused, YAML alias bombs, files that are not what their key says.
"""

from __future__ import annotations

import itertools
import os
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from devbox.cli.commands import app
from devbox.engine.docker import argv as docker_argv
from devbox.engine.docker import body
from devbox.engine.fake import FakeEngine
from devbox.errors import InvalidInput, PolicyRefusal
from devbox.ops import admin, resolve
from devbox.policy import capacity, enforce, rules
from devbox.profile import loader
from devbox.profile.yamlsrc import load_text
from tests.conftest import Sandbox

runner = CliRunner()
LONG = "a" * 300  # one path component over the 255 bytes a file name may have
PUBLIC_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE alice@laptop\n"
PRIVATE_KEY = (
    "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----\n"
)


def render(*args: str, **env: str) -> tuple[int, str]:
    """`devbox render ARGS` in this process: its exit status and what it wrote."""
    result = runner.invoke(app, ["render", *args], env=env or None)
    assert "unexpectedly" not in result.output, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result.exit_code, result.output


def located(sandbox: Sandbox, body_text: str, *args: str) -> str:
    """Render profile `body_text` expecting exit 2, and return the located problem lines."""
    path = sandbox.write("work/p.yaml", body_text)
    code, output = render(str(path), *args)
    assert code == 2, output
    return output


# --- paths ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body_text",
    [
        f"image: x\nvolumes: ['./{LONG}:/w']\n",
        f"image: x\nvolumes: [{{source: /tmp/{LONG}, target: /w}}]\n",
        f"image: x\nvolumes: ['/w:/{LONG}']\n",
        f"image: x\nenv_file: {LONG}\n",
        f"build: {{context: {LONG}}}\n",
        f"build: {{context: ., dockerfile: {LONG}}}\n",
        f"image: x\nssh: {{authorized_keys: {LONG}}}\n",
        f"extends: ./{LONG}.yaml\nimage: x\n",
    ],
)
def test_a_path_component_over_255_bytes_is_located(sandbox: Sandbox, body_text: str) -> None:
    output = located(sandbox, body_text)
    assert "p.yaml:" in output and "more than the 255 a file name may have" in output


def test_a_profile_argument_over_255_bytes_is_located(sandbox: Sandbox) -> None:
    for ref in (f"./{LONG}.yaml", LONG, f"/tmp/{LONG}/p.yaml"):
        code, output = render(ref)
        assert code == 2 and "more than the 255" in output, output


def test_files_named_in_the_environment_or_as_arguments_never_raise(sandbox: Sandbox) -> None:
    code, output = render("default", DEVBOX_POLICY=f"/tmp/{LONG}")
    assert code == 2 and "DEVBOX_POLICY" in output
    result = runner.invoke(app, ["profiles", "check", f"./{LONG}.yaml"])
    assert result.exit_code == 2 and "unexpectedly" not in result.output
    result = runner.invoke(app, ["policy", "check", f"./{LONG}.yaml"])
    assert result.exit_code == 5 and "unexpectedly" not in result.output  # no such file
    sandbox.write("lab/profiles/x.yaml", "image: x\n")
    code, output = render("x", DEVBOX_LAB_DIR=f"/tmp/{LONG}")
    assert code == 2 and "DEVBOX_LAB_DIR" in output


def test_tilde_with_an_unknown_user_is_located(sandbox: Sandbox) -> None:
    output = located(sandbox, "image: x\nvolumes: ['~nosuchuser/data:/data']\n")
    assert "p.yaml:2:" in output and "~nosuchuser names no user" in output
    code, output = render("~nosuchuser/p.yaml")
    assert code == 2 and "~nosuchuser names no user" in output


def test_tilde_user_means_that_users_home(sandbox: Sandbox) -> None:
    path = sandbox.write("work/p.yaml", "image: x\nvolumes: ['~root/data:/data']\n")
    profile = loader.load(str(path), sandbox.settings())
    assert profile.volumes[0].source == os.path.expanduser("~root") + "/data"


@pytest.mark.parametrize(
    ("source", "shown"),
    [('"/srv/a\\0b"', "\\x00"), ('"/srv/a\\nb"', "\\n"), ('"/srv/a\\x1bb"', "\\x1b")],
)
def test_control_characters_in_a_bind_source_are_located(sandbox: Sandbox, source: str, shown: str) -> None:
    output = located(sandbox, f"image: x\nvolumes: [{{source: {source}, target: /d}}]\n")
    assert "p.yaml:2:" in output and f"has a control character ('{shown}'" in output


# --- numbers ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body_text", "message"),
    [
        ("image: x\nresources: {cpus: 1e300}\n", "more CPUs than Linux runs on"),
        ("image: x\nresources: {cpus: 1e10}\n", "more CPUs than Linux runs on"),
        ("image: x\nresources: {pids: 1e23}\n", "more than the kernel allows (4194304)"),
        ("image: x\nresources: {pids: 4194305}\n", "more than the kernel allows"),
        ("image: x\nshm_size: 99999999999999999999t\n", "more than Docker can take"),
        ("image: x\nresources: {memory: 8388608t}\n", "more than Docker can take"),
        (f"image: x\nports: {{web: {'9' * 5000}}}\n", "out of range"),
        (f"image: x\ngpus: '{'9' * 5000}'\n", "more GPUs than a machine has"),
    ],
)
def test_values_only_the_engine_refused_are_caught_first(
    sandbox: Sandbox, body_text: str, message: str
) -> None:
    output = located(sandbox, body_text)
    assert "p.yaml:" in output and message in output


def test_a_400_digit_memory_flag_is_located(sandbox: Sandbox) -> None:
    code, output = render("default", "--memory", "9" * 400)
    assert code == 2 and "--memory" in output and "more than Docker can take" in output
    code, output = render("default", "--cpus", "1e300")
    assert code == 2 and "--cpus" in output


def test_the_largest_values_docker_takes_still_render(sandbox: Sandbox) -> None:
    path = sandbox.write(
        "work/p.yaml", "image: x\nresources: {cpus: 8192, pids: 4194304}\nshm_size: 8388607t\n"
    )
    code, output = render(str(path))
    assert code == 0, output
    assert "--pids-limit 4194304" in output and "--shm-size 8388607t" in output and "--cpus 8192" in output


# --- mounts: one form for render and up -------------------------------------------------


def test_a_colon_in_a_long_form_mount_is_refused(sandbox: Sandbox) -> None:
    for volume in ("{source: '/srv/a:b', target: /d}", "{source: /srv/a, target: '/d:e'}"):
        output = located(sandbox, f"image: x\nvolumes: [{volume}]\n")
        assert "p.yaml:2:" in output and "cannot hold ':'" in output


def test_render_and_up_use_the_same_mount_form(sandbox: Sandbox) -> None:
    # Before: render printed --mount for a ',' while up sent Binds; now both say SOURCE:TARGET:MODE.
    sandbox.write(
        "work/p.yaml", "image: x\nvolumes: [{source: '/srv/a,b', target: '/d,e', readonly: true}]\n"
    )
    container = resolve.resolve("p.yaml", sandbox.settings()).spec
    args = docker_argv.docker_run_argv(container)
    assert args[args.index("-v") + 1] == "/srv/a,b:/d,e:ro" and "--mount" not in args
    assert body.create_body(container, {})["HostConfig"]["Binds"] == ["/srv/a,b:/d,e:ro"]


# --- files that are not what their key says -------------------------------------------


def test_a_dockerfile_outside_the_context_is_located(sandbox: Sandbox) -> None:
    sandbox.write("work/ctx/Dockerfile", "FROM scratch\n")
    sandbox.write("work/Dockerfile", "FROM scratch\n")
    outside = sandbox.cwd / "Dockerfile"
    for dockerfile in (str(outside), "../Dockerfile"):
        output = located(sandbox, f"build: {{context: ./ctx, dockerfile: {dockerfile}}}\n")
        assert "p.yaml:1:" in output and "is outside the build context" in output
    inside = sandbox.cwd / "ctx" / "Dockerfile"
    sandbox.write("work/p.yaml", f"build: {{context: ./ctx, dockerfile: {inside}}}\n")
    profile = loader.load("p.yaml", sandbox.settings())
    assert profile.build is not None and profile.build.dockerfile == "Dockerfile"  # relative to the context


def test_a_private_key_as_authorized_keys_is_refused(sandbox: Sandbox) -> None:
    sandbox.write("work/id_ed25519", PRIVATE_KEY)
    sandbox.write("work/id_ed25519.pub", PUBLIC_KEY)
    output = located(sandbox, "image: x\nssh: {authorized_keys: ./id_ed25519}\n")
    assert "p.yaml:2:" in output and "is a private key" in output
    assert "give the public half" in output and "id_ed25519.pub" in output
    sandbox.write("work/p.yaml", "image: x\nssh: {authorized_keys: ./id_ed25519.pub}\n")
    assert loader.load("p.yaml", sandbox.settings()).ssh_authorized_keys == str(
        sandbox.cwd / "id_ed25519.pub"
    )


def test_the_login_key_is_checked_again_when_the_box_is_made(sandbox: Sandbox) -> None:
    from devbox.access import sshkeys

    key = sandbox.write("work/key.pub", PUBLIC_KEY)
    assert sshkeys.login_key(sandbox.home, sandbox.home, str(key)).public == PUBLIC_KEY.strip()
    key.write_text(PRIVATE_KEY)  # swapped after the profile loaded
    with pytest.raises(InvalidInput, match="is a private key"):
        sshkeys.login_key(sandbox.home, sandbox.home, str(key))


@pytest.mark.parametrize("key", ["env_file", "ssh"])
def test_files_that_are_not_utf8_text_are_located(sandbox: Sandbox, key: str) -> None:
    (sandbox.cwd / "blob").write_bytes(b"\xff\xfe\x00garbage")
    value = "blob" if key == "env_file" else "{authorized_keys: ./blob}"
    output = located(sandbox, f"image: x\n{key}: {value}\n")
    assert "p.yaml:2:" in output and "is not UTF-8 text" in output


def test_files_that_cannot_be_read_are_located(sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    # Tests run as root, who reads everything: the denial the caller would meet is made here.
    (sandbox.cwd / "secret.env").write_text("A=1\n")
    (sandbox.cwd / "secret.pub").write_text(PUBLIC_KEY)
    real_open = os.open

    def denying(path: str, *args: object, **kwargs: object) -> int:
        if str(path).startswith(str(sandbox.cwd / "secret")):
            raise PermissionError(13, "Permission denied", path)
        return real_open(path, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "open", denying)
    for key, value in (("env_file", "secret.env"), ("ssh", "{authorized_keys: ./secret.pub}")):
        output = located(sandbox, f"image: x\n{key}: {value}\n")
        assert "p.yaml:2:" in output and "cannot be read (Permission denied)" in output


def test_a_fifo_named_as_a_file_is_refused_without_waiting(sandbox: Sandbox) -> None:
    os.mkfifo(sandbox.cwd / "pipe")
    started = time.monotonic()
    output = located(sandbox, "image: x\nenv_file: pipe\n")
    assert time.monotonic() - started < 5 and "is not a regular file" in output
    os.mkfifo(sandbox.cwd / "q.yaml")
    code, output = render("./q.yaml")
    assert code in (2, 5) and time.monotonic() - started < 5


def test_an_env_file_setting_nvidia_visible_devices_is_located(sandbox: Sandbox) -> None:
    (sandbox.cwd / "gpu.env").write_text("NVIDIA_VISIBLE_DEVICES=all\n")
    output = located(sandbox, "image: x\nenv_file: gpu.env\n")
    assert "p.yaml:2:" in output and "sets NVIDIA_VISIBLE_DEVICES" in output


def test_a_huge_declared_gpu_count_is_refused_not_allocated(sandbox: Sandbox) -> None:
    code, output = render("default", "--gpus", "1", DEVBOX_GPU_INVENTORY="99999999999")
    assert code in (0, 2), output  # render does not read the inventory; up and gpus do
    from devbox.placement import inventory

    with pytest.raises(InvalidInput, match="more GPUs than a machine has"):
        inventory.declared_inventory("99999999999")


# --- YAML bombs ------------------------------------------------------------------------


def alias_bomb(aliases: int = 10, levels: int = 7) -> str:
    """The billion-laughs shape: each level lists the one below `aliases` times."""
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    names = "abcdefghijklmnop"[: levels + 1]
    for below, name in itertools.pairwise(names):
        lines.append(f"{name}: &{name} [{','.join([f'*{below}'] * aliases)}]")
    return "\n".join(lines) + "\n"


def test_the_alias_bomb_is_refused_in_under_a_second(sandbox: Sandbox) -> None:
    bomb = alias_bomb()
    assert len(bomb) <= 400  # the 394 bytes: 10 aliases x 7 levels, 10**8 values expanded
    path = sandbox.write("work/bomb.yaml", bomb)
    started = time.monotonic()
    code, output = render(str(path))
    assert time.monotonic() - started < 1.0  # before: 46 s and 3 GB, then a MemoryError
    assert code == 2 and "bomb.yaml:" in output and "expand to more than 10000 values" in output


def test_policy_files_go_through_the_same_bounded_loader(sandbox: Sandbox) -> None:
    sandbox.write("lab/policy.yaml", "allowed_images: " + alias_bomb().replace("\n", "\n  ").rstrip() + "\n")
    started = time.monotonic()
    code, output = render("default")
    assert time.monotonic() - started < 1.0
    assert code == 2 and "policy.yaml:" in output


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a: &a [*a]\n", "stands inside its own anchor"),  # a cycle: endless before
        ("x: " + "[" * 100 + "]" * 100 + "\n", "nested deeper than"),
        ("x: [" + ",".join(["1"] * 20000) + "]\n", "more than 10000 values"),
        ("b: &b {k: 1}\n" + "".join(f"c{i}: *b\n" for i in range(150)), "more than 100 aliases"),
    ],
)
def test_tangled_yaml_is_refused_where_it_tangles(text: str, message: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        load_text(text, "p.yaml")
    assert message in caught.value.problems[0].message
    assert caught.value.problems[0].origin.line is not None


def test_merge_keys_cannot_multiply_either() -> None:
    lines = ["a: &a {x: 1, y: 2, z: 3, w: 4, v: 5, u: 6, t: 7, s: 8, r: 9, q: 10}"]
    for below, name in zip("abcdefg", "bcdefgh", strict=True):
        lines.append(f"{name}: &{name} {{<<: [{','.join([f'*{below}'] * 10)}], k: 1}}")
    started = time.monotonic()
    with pytest.raises(InvalidInput, match="too big or too tangled"):
        load_text("\n".join(lines), "p.yaml")
    assert time.monotonic() - started < 1.0


def test_an_oversized_file_is_refused_unread(sandbox: Sandbox) -> None:
    path = sandbox.write("work/p.yaml", "image: x\n" + "#" * (2 * 1024**2) + "\n")
    code, output = render(str(path))
    assert code == 2 and "more than the 1048576 devbox reads" in output


def test_a_5000_digit_integer_stays_text() -> None:
    doc = load_text(f"resources: {{pids: {'9' * 5000}}}\n", "p.yaml")
    assert doc.data["resources"]["pids"] == "9" * 5000  # int() of it raised ValueError before


# --- policy limits ------------------------------------------------------------------------


LIMITS = "limits:\n  max_pids: 512\n  max_shm_size: 2g\n  max_disk: 20g\n"


def test_per_box_limits_refuse_with_the_rules_place(sandbox: Sandbox) -> None:
    policy = sandbox.write("lab/policy.yaml", LIMITS)
    sandbox.write("work/p.yaml", "image: x\nshm_size: 4g\nresources: {pids: 1024, disk: 50g}\n")
    assert render("p.yaml")[0] == 3
    with pytest.raises(PolicyRefusal) as caught:
        resolve.resolve("p.yaml", sandbox.settings())
    said = {(str(p.origin), p.message) for p in caught.value.problems}
    profile = sandbox.cwd / "p.yaml"
    assert said == {
        (f"{profile}:3:12", f"resources.pids 1024 exceeds limits.max_pids = 512 ({policy}:2:13)"),
        (f"{profile}:2:11", f"shm_size 4g exceeds limits.max_shm_size = 2g ({policy}:3:17)"),
        (f"{profile}:3:12", f"resources.disk 50g exceeds limits.max_disk = 20g ({policy}:4:13)"),
    }


def test_per_box_limits_become_the_quota_of_a_box_that_sets_none(sandbox: Sandbox) -> None:
    sandbox.write("lab/policy.yaml", LIMITS)
    sandbox.write("work/p.yaml", "image: x\n")
    container = resolve.resolve("p.yaml", sandbox.settings()).spec
    assert (container.pids_limit, container.shm_size, container.disk) == (512, 2 * 1024**3, 20 * 1024**3)
    args = docker_argv.docker_run_argv(container)
    assert "--storage-opt" in args and args[args.index("--storage-opt") + 1] == "size=20g"
    assert body.create_body(container, {})["HostConfig"]["StorageOpt"] == {"size": str(20 * 1024**3)}


def test_a_policy_maximum_is_never_a_quota_above_the_host(sandbox: Sandbox) -> None:
    sandbox.write("lab/policy.yaml", "limits: {max_cpus: 16, max_memory: 64g, max_shm_size: 64g}\n")
    sandbox.write("work/p.yaml", "image: x\n")
    lab = rules.load(sandbox.settings())
    profile = loader.load("p.yaml", sandbox.settings())
    small = capacity.Capacity(cpus=4, memory=8 * 1024**3)
    capped = enforce.check(profile, lab, small)
    assert (capped.resources.cpus, capped.resources.memory, capped.shm_size) == (
        4.0,
        8 * 1024**3,
        8 * 1024**3,
    )
    asked = loader.load("p.yaml", sandbox.settings(), overrides=None)
    asked = enforce.check(asked, lab, capacity.Capacity(cpus=64, memory=512 * 1024**3))
    assert (asked.resources.cpus, asked.resources.memory) == (16.0, 64 * 1024**3)  # the host has more


def test_the_bundled_example_policy_keeps_the_default_box_within_this_host(sandbox: Sandbox) -> None:
    example = Path(__file__).parents[2] / "profiles" / "examples" / "policy.yaml"
    code, output = render("default", "--format", "json", DEVBOX_POLICY=str(example))
    assert code == 0, output
    host = capacity.local()
    assert '"nano_cpus": ' + str(int(min(16, host.cpus or 16) * 1e9)) in output.replace("\n", "")


def test_policy_check_and_doctor_warn_about_limits_above_the_host(sandbox: Sandbox) -> None:
    big = (
        f"limits: {{max_cpus: {min((os.cpu_count() or 1) + 1, 8192)}, max_memory: 8000000g, max_disk: 10g}}\n"
    )
    path = sandbox.write("lab/policy.yaml", big)
    result = runner.invoke(app, ["policy", "check", str(path)])
    assert result.exit_code == 0, result.output
    assert (
        "is more than this host's" in result.output and "CPUs" in result.output and "memory" in result.output
    )
    lab = rules.load(sandbox.settings())
    engine = FakeEngine()
    checks = {c.detail: c.status for c in admin.doctor(engine, sandbox.settings())}
    assert any("max_cpus" in d and s == "warn" for d, s in checks.items())
    assert any("max_disk" in d and "cannot cap a box's disk" in d and s == "fail" for d, s in checks.items())
    assert admin.policy_warnings(lab, None)[-1][1].startswith("limits.max_disk: the engine was not asked")


def test_disk_caps_need_a_driver_that_can() -> None:
    assert capacity.disk_cap_problem("overlay2", "extfs") is not None
    assert capacity.disk_cap_problem("overlay2", "xfs") is None
    assert capacity.disk_cap_problem("btrfs", "btrfs") is None


def test_a_full_config_folder_is_said_as_such_and_leaves_no_half_key_pair(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno
    import os

    from devbox.access import sshkeys
    from devbox.errors import DevboxError

    real_open = os.open

    def full(path: object, *args: object, **kwargs: object) -> int:
        if str(path).endswith(".partial"):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_open(path, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "open", full)
    config = tmp_path / "config"
    with pytest.raises(DevboxError) as caught:
        sshkeys.login_key(config, tmp_path / "home", None)
    assert "No space left on device" in caught.value.message and str(config) in caught.value.message
    assert type(caught.value) is DevboxError  # said, not "failed unexpectedly"
    assert sorted(p.name for p in config.iterdir() if "id_rsa" in p.name) == []


def test_a_full_config_folder_leaves_known_hosts_as_it_was(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno

    from devbox.access import sshkeys
    from devbox.errors import DevboxError

    config = tmp_path / "config"
    sshkeys.record_host_key(config, "devbox-alice-a", "ecdsa-sha2-nistp256 AAAAa")

    def full(*_: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "replace", full)
    with pytest.raises(DevboxError) as caught:
        sshkeys.record_host_key(config, "devbox-alice-b", "ecdsa-sha2-nistp256 AAAAb")
    assert caught.value.message == f"cannot write devbox's SSH files in {config}: No space left on device"
    assert (config / "known_hosts").read_text() == "devbox-alice-a ecdsa-sha2-nistp256 AAAAa\n"
    assert sorted(p.name for p in config.iterdir()) == ["known_hosts", "locks"]  # no half-written copy


def _forked(work: Callable[[], None], go: int) -> int:
    """A child process that waits for a byte on the pipe `go`, runs `work` and exits: 0 if it
    ran through, 1 if it raised (printed)."""
    pid = os.fork()
    if pid == 0:  # the child: never back into pytest
        code = 1
        try:
            os.read(go, 1)
            work()
            code = 0
        except BaseException:
            traceback.print_exc()
        finally:
            os._exit(code)
    return pid


def test_two_ups_and_downs_at_once_keep_every_host_key(tmp_path: Path) -> None:
    # Two `up`s (or an `up` and a `down`) of one user at once both rewrite devbox's known_hosts:
    # without a lock the last writer dropped the other's new entry, and `ssh devbox-A` then
    # failed host key verification.
    from devbox.access import sshkeys

    config, rounds = tmp_path / "config", 60

    def ups() -> None:
        for i in range(rounds):
            sshkeys.record_host_key(config, f"devbox-alice-a{i}", f"ecdsa-sha2-nistp256 AAAAa{i}")

    def ups_and_downs() -> None:
        for i in range(rounds):
            sshkeys.record_host_key(config, f"devbox-alice-b{i}", f"ecdsa-sha2-nistp256 AAAAb{i}")
            if i:
                sshkeys.forget_host_key(config, f"devbox-alice-b{i - 1}")

    go_read, go_write = os.pipe()
    pids = [_forked(ups, go_read), _forked(ups_and_downs, go_read)]
    os.write(go_write, b"go")
    statuses = [os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) for pid in pids]
    os.close(go_read)
    os.close(go_write)
    assert statuses == [0, 0]
    lines = (config / "known_hosts").read_text().splitlines()
    wanted = [f"devbox-alice-a{i} ecdsa-sha2-nistp256 AAAAa{i}" for i in range(rounds)]
    wanted.append(f"devbox-alice-b{rounds - 1} ecdsa-sha2-nistp256 AAAAb{rounds - 1}")
    lost = [line for line in wanted if line not in lines]
    assert lost == [], f"{len(lost)} of {len(wanted)} host keys lost"
    assert sorted(lines) == sorted(wanted)  # and nothing forgotten came back
    assert sorted(p.name for p in config.iterdir()) == ["known_hosts", "locks"]  # no leftovers
    assert (config / "known_hosts").stat().st_mode & 0o777 == 0o600


def test_a_reader_never_sees_known_hosts_half_written(tmp_path: Path) -> None:
    # ssh (and devbox's own look-ups) read known_hosts while another `up` rewrites it: they
    # must see the old file or the new one, never an empty or partial one (a key missing).
    from devbox.access import sshkeys

    config = tmp_path / "config"
    for i in range(20):
        sshkeys.record_host_key(config, f"devbox-alice-old{i}", f"ecdsa-sha2-nistp256 AAAAold{i}")

    def rebuilds() -> None:
        until, i = time.monotonic() + 1.0, 0
        while time.monotonic() < until:
            sshkeys.record_host_key(config, "devbox-alice-new", f"ecdsa-sha2-nistp256 AAAAnew{i}")
            i += 1

    go_read, go_write = os.pipe()
    pid = _forked(rebuilds, go_read)
    os.write(go_write, b"g")
    reads = missing = 0
    while (ended := os.waitpid(pid, os.WNOHANG))[0] == 0:
        for i in (0, 19):
            reads += 1
            missing += sshkeys.recorded_host_key(config, f"devbox-alice-old{i}") is None
    os.close(go_read)
    os.close(go_write)
    assert os.waitstatus_to_exitcode(ended[1]) == 0
    assert reads > 100
    assert missing == 0, f"a host key was missing in {missing} of {reads} reads"


@pytest.mark.parametrize(
    ("body_text", "said"),
    [
        ('image: devbox/box:0.1\nenv: {A: "x\\0y"}\n', "p.yaml:2:10  env 'A' holds a NUL character"),
        ('image: devbox/box:0.1\nlabels: {"a\\0b": c}\n', "holds a NUL character"),
        (
            'image: devbox/box:0.1\nworkdir: "/w\\nx"\n',
            "p.yaml:2:10  workdir '/w\\nx' holds a control character",
        ),
    ],
)
def test_nul_and_control_characters_the_engine_would_refuse_are_located(
    sandbox: Sandbox, body_text: str, said: str
) -> None:
    # render printed a working-looking command and up failed in runc (or started the box).
    assert said in located(sandbox, body_text)


def test_aliases_of_a_long_value_are_bounded_by_text_not_only_by_count(sandbox: Sandbox) -> None:
    # 20 aliases are few, but of a 300 kB value they made a 6 MB docker run line (and 100 MB
    # with a 1 MB value): refused while reading, at the mapping that expands them.
    lines = ["image: devbox/box:0.1", "labels:", f"  base: &b '{'x' * 300_000}'"]
    lines += [f"  v{i}: *b" for i in range(20)]
    output = located(sandbox, "\n".join(lines) + "\n")
    assert "p.yaml:3:3  the aliases here expand to more than 4 MiB of text" in output
