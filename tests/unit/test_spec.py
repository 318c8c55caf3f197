from __future__ import annotations

import shlex

from devbox.box import spec
from devbox.engine.docker import argv as docker_argv
from devbox.ops import resolve
from devbox.profile.flags import Overrides
from tests.conftest import Sandbox


def argv(sandbox: Sandbox, ref: str, overrides: Overrides | None = None) -> list[str]:
    return docker_argv.docker_run_argv(resolve.resolve(ref, sandbox.settings(), overrides).spec)


def flag_values(args: list[str], flag: str) -> list[str]:
    return [args[i + 1] for i, a in enumerate(args) if a == flag]


def test_pytorch_profile_renders_the_docker_run_the_seeds_describe(sandbox: Sandbox) -> None:
    args = argv(sandbox, "pytorch-gpu")
    assert args[:3] == ["docker", "run", "-d"]
    assert flag_values(args, "--name") == ["devbox-alice-pytorch-gpu"]
    assert flag_values(args, "--gpus") == ["all"]
    assert flag_values(args, "--shm-size") == ["8g"]
    assert flag_values(args, "--memory") == ["16g"]
    assert flag_values(args, "--cpus") == ["4"]
    assert flag_values(args, "--pids-limit") == ["4096"]
    assert flag_values(args, "-p") == ["127.0.0.1::8888", "127.0.0.1::22"]
    assert flag_values(args, "-v") == [f"{sandbox.cwd}/notebooks:/workspace"]
    [volume] = flag_values(args, "--mount")
    assert volume.startswith("type=volume,source=devbox-alice-data,target=/data,")
    assert "volume-label=devbox.owner=alice" in volume
    assert flag_values(args, "--security-opt") == ["no-new-privileges"]
    assert "--init" in args
    labels = dict(v.split("=", 1) for v in flag_values(args, "--label"))
    assert labels["devbox.owner"] == "alice" and labels["devbox.box"] == "pytorch-gpu"
    assert len(labels["devbox.box.spec-hash"]) == 12
    assert args[-1].startswith("pytorch/pytorch:")


def test_gpu_flags(sandbox: Sandbox) -> None:
    assert flag_values(argv(sandbox, "pytorch-gpu", Overrides(gpus="2")), "--gpus") == ["2"]
    devices = flag_values(argv(sandbox, "pytorch-gpu", Overrides(gpus="0,3")), "--gpus")
    assert devices == ['"device=0,3"']
    assert "--gpus" not in argv(sandbox, "pytorch-gpu", Overrides(gpus="none"))


def test_user_host_is_the_callers_uid_and_fixed_ports_and_readonly(sandbox: Sandbox) -> None:
    sandbox.write(
        "work/p.yaml",
        "image: x\nuser: host\nports: {web: '8080:80'}\n"
        "volumes: [{source: /srv/a, target: /a, readonly: true}]\n"
        "command: python -m http.server 80\nenv_file: .env\n",
    )
    sandbox.write("work/.env", "SECRET=x\n")
    args = argv(sandbox, "p.yaml")
    settings = sandbox.settings()
    assert flag_values(args, "--user") == [f"{settings.uid}:{settings.gid}"]
    assert flag_values(args, "-p") == ["127.0.0.1:8080:80"]
    assert flag_values(args, "-v") == ["/srv/a:/a:ro"]
    # Values from env files stay in the file: the command line names the file only.
    assert flag_values(args, "--env-file") == [str(sandbox.cwd / ".env")]
    assert args[-5:] == ["x", "python", "-m", "http.server", "80"]


def test_rendered_command_is_shell_safe(sandbox: Sandbox) -> None:
    sandbox.write("work/p.yaml", 'image: x\nenv: {GREETING: "it\'s $$HOME; rm -rf /"}\n')
    args = argv(sandbox, "p.yaml")
    assert shlex.split(docker_argv.shell_command(args)) == args
    assert "GREETING=it's $HOME; rm -rf /" in args


def test_spec_hash_follows_the_profile(sandbox: Sandbox) -> None:
    settings = sandbox.settings()
    first = resolve.resolve("default", settings).spec.spec_hash
    assert resolve.resolve("default", settings).spec.spec_hash == first
    assert resolve.resolve("default", settings, Overrides(shm_size="2g")).spec.spec_hash != first


def test_build_profiles_get_a_per_owner_tag_and_a_build_command(sandbox: Sandbox) -> None:
    sandbox.write("work/ctx/Dockerfile", "FROM scratch\n")
    sandbox.write("work/p.yaml", "build: {context: ./ctx, args: {PY: '3.11'}}\n")
    resolved = resolve.resolve("p.yaml", sandbox.settings())
    assert resolved.spec.image.startswith("devbox/alice-p:")
    build = docker_argv.docker_build_argv(resolved.spec)
    assert build == [
        "docker", "build", "-t", resolved.spec.image, "-f", f"{sandbox.cwd}/ctx/Dockerfile",
        "--build-arg", "PY=3.11", str(sandbox.cwd / "ctx"),
    ]  # fmt: skip


def test_a_long_box_name_gets_a_host_name_the_kernel_accepts(sandbox: Sandbox) -> None:
    name = "a" * 70 + "-b"
    sandbox.write(f"work/{name}.yaml", "image: x\n")
    args = argv(sandbox, f"{name}.yaml")
    [hostname] = flag_values(args, "--hostname")
    assert hostname == "a" * 63
    assert flag_values(args, "--name") == [f"devbox-alice-{name}"]


def test_a_box_published_on_every_ipv6_address_is_shown_on_the_ipv6_loopback() -> None:
    from devbox.access.reports import display_address

    assert [display_address(a) for a in ("::", "0.0.0.0", None, "10.0.0.5")] == [
        "::1",
        "127.0.0.1",
        "127.0.0.1",
        "10.0.0.5",
    ]


def test_a_fresh_volume_goes_to_the_boxs_user(sandbox: Sandbox) -> None:
    def owner_for(user: str) -> str | None:
        sandbox.write("work/r.yaml", f"image: x\nuser: '{user}'\n")
        return spec.volume_owner(resolve.resolve("r.yaml", sandbox.settings()).spec)

    assert owner_for("1234:55") == "1234:55"
    assert owner_for("1234") == "1234:1234"
    assert owner_for("nobody") == "nobody:"
    assert owner_for("root") is None
    assert owner_for("0:0") is None


def test_render_prints_the_void_that_up_sends_for_a_box_without_gpus(sandbox: Sandbox) -> None:
    # An image's ENV NVIDIA_VISIBLE_DEVICES=all would hand a GPU-less box every GPU where the
    # default runtime is nvidia; the rendered docker run must close that as up does.
    sandbox.write("work/plain.yaml", "image: devbox/box:0.1\ngpus: none\n")
    sandbox.write("work/gpu.yaml", "image: devbox/box:0.1\ngpus: 1\n")
    assert "NVIDIA_VISIBLE_DEVICES=void" in flag_values(argv(sandbox, "plain.yaml"), "-e")
    assert not any(
        v.startswith("NVIDIA_VISIBLE_DEVICES") for v in flag_values(argv(sandbox, "gpu.yaml"), "-e")
    )


# --- lab mode: the owner's network, no-new-privileges:true ---------------------------------


def lab_spec(sandbox: Sandbox, lab: bool = True) -> spec.ContainerSpec:
    """alice's box as lab mode makes it (the spec only: no files read, no policy)."""
    from devbox.profile import loader

    sandbox.write("work/lab.yaml", "image: devbox/box:0.1\nuser: host\n")
    profile = loader.load("lab.yaml", sandbox.settings())
    return spec.build(profile, spec.HostContext("alice", 1000, 1000, lab=lab))


def test_render_of_a_lab_box_names_its_network_and_no_new_privileges(sandbox: Sandbox) -> None:
    args = docker_argv.docker_run_argv(lab_spec(sandbox))
    assert flag_values(args, "--network") == ["devbox-alice"]
    assert flag_values(args, "--security-opt") == ["no-new-privileges:true"]
    assert flag_values(args, "--user") == ["1000:1000"]
    assert "--network" not in argv(sandbox, "default")


def test_a_lab_box_joins_its_owners_network_by_name(sandbox: Sandbox) -> None:
    from devbox.engine.docker import body

    host = body.create_body(lab_spec(sandbox), {})["HostConfig"]
    assert host["NetworkMode"] == "devbox-alice"
    assert host["SecurityOpt"] == ["no-new-privileges:true"]
    sandbox.write("work/plain.yaml", "image: devbox/box:0.1\n")
    plain = resolve.resolve("plain.yaml", sandbox.settings()).spec
    assert "NetworkMode" not in body.create_body(plain, {})["HostConfig"]


def test_boxes_made_before_the_network_field_keep_their_hash(sandbox: Sandbox) -> None:
    import hashlib
    import json
    from dataclasses import asdict

    sandbox.write("work/plain.yaml", "image: devbox/box:0.1\n")
    made = resolve.resolve("plain.yaml", sandbox.settings()).spec
    # The hash as devbox computed it before `disk` and `network` existed.
    data = asdict(made)
    for key in ("spec_hash", "disk", "network", "ipc"):
        del data[key]
    # Nor the devbox.project label (a path profile's box records its folder now).
    before = ("devbox.box.spec-hash", "devbox.project")
    data["labels"] = {k: v for k, v in made.labels.items() if k not in before}
    assert (
        made.spec_hash
        == hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:12]
    )
    # Lab mode is part of what a box is: a box made before lab mode is made again.
    assert lab_spec(sandbox).spec_hash != lab_spec(sandbox, lab=False).spec_hash
