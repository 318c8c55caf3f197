"""Must show: the command `devbox render` prints runs on a real engine and gives what the profile asked."""

from __future__ import annotations

import shlex
import socket
from pathlib import Path

from tests.integration.conftest import RUN_ID, TEST_LABEL, Caller, Engine, docker

MiB = 1024**2
BASE_IMAGE = "devbox/debian:bookworm"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _run_rendered(caller: Caller, engine: Engine, *render_args: str) -> str:
    """Render, drop --gpus when the engine has no GPU runtime, run it with the docker CLI."""
    line = caller.devbox("render", *render_args).stdout.strip()
    argv = shlex.split(line)
    assert argv[:3] == ["docker", "run", "-d"]
    if "--gpus" in argv and not engine.has_gpu_runtime:
        at = argv.index("--gpus")
        del argv[at : at + 2]
    result = docker(*argv[1:], check=False)
    assert result.returncode == 0, f"{line}\n{result.stderr}"
    return result.stdout.strip()


def test_rendered_command_gives_the_hostconfig_the_profile_asked(caller: Caller, engine: Engine) -> None:
    fixed = _free_port()
    (caller.cwd / "ro").mkdir()
    profile = caller.cwd / "box.yaml"
    profile.write_text(
        f"""
image: {BASE_IMAGE}
command: ["sleep", "infinity"]
gpus: all
shm_size: 256m
resources: {{cpus: 1.5, memory: 512m, pids: 256}}
ports: {{web: 8080, api: "{fixed}:9090"}}
volumes:
  - ./work:/workspace
  - data:/data
  - {{source: ./ro, target: /ro, readonly: true}}
env: {{HELLO: "it's me"}}
labels: {{"{TEST_LABEL}": "{RUN_ID}"}}
workdir: /workspace
"""
    )
    cid = _run_rendered(caller, engine, str(profile))
    info = engine.inspect("container", cid)
    host = info["HostConfig"]
    assert info["State"]["Running"] is True
    assert host["ShmSize"] == 256 * MiB
    assert host["Memory"] == 512 * MiB
    assert host["NanoCpus"] == 1_500_000_000
    assert host["PidsLimit"] == 256
    assert host["Init"] is True
    assert host["SecurityOpt"] == ["no-new-privileges"]
    assert host["PortBindings"] == {
        "8080/tcp": [{"HostIp": "127.0.0.1", "HostPort": ""}],
        "9090/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(fixed)}],
    }
    published = info["NetworkSettings"]["Ports"]
    assert int(published["8080/tcp"][0]["HostPort"]) > 0  # the engine chose a port
    assert published["9090/tcp"][0] == {"HostIp": "127.0.0.1", "HostPort": str(fixed)}
    mounts = {m["Destination"]: m for m in info["Mounts"]}
    assert (mounts["/workspace"]["Type"], mounts["/workspace"]["Source"]) == (
        "bind",
        str(caller.cwd / "work"),
    )
    assert mounts["/workspace"]["RW"] is True
    assert (caller.cwd / "work").is_dir()  # created for the user, as docker run -v does
    assert (mounts["/data"]["Type"], mounts["/data"]["Name"]) == ("volume", f"devbox-{caller.owner}-data")
    assert (mounts["/ro"]["Source"], mounts["/ro"]["RW"]) == (str(caller.cwd / "ro"), False)
    labels = info["Config"]["Labels"]
    assert labels["devbox.owner"] == caller.owner
    assert labels["devbox.box"] == "box"
    assert labels["devbox.profile"] == str(profile)
    assert len(labels["devbox.box.spec-hash"]) == 12
    assert info["Name"] == f"/devbox-{caller.owner}-box"
    assert "HELLO=it's me" in info["Config"]["Env"]
    assert info["Config"]["WorkingDir"] == "/workspace"
    volume = engine.inspect("volume", f"devbox-{caller.owner}-data")
    assert volume["Labels"]["devbox.owner"] == caller.owner
    assert volume["Labels"][TEST_LABEL] == RUN_ID


def test_bundled_pytorch_profile_runs_with_overrides(caller: Caller, engine: Engine) -> None:
    cid = _run_rendered(caller, engine, "pytorch-gpu", "--image", BASE_IMAGE, "--cpus", "1")
    host = engine.inspect("container", cid)["HostConfig"]
    assert host["ShmSize"] == 8 * 1024 * MiB
    assert host["Memory"] == 16 * 1024 * MiB
    assert host["NanoCpus"] == 1_000_000_000
    assert host["PidsLimit"] == 4096
    assert set(host["PortBindings"]) == {"8888/tcp", "22/tcp"}
    assert all(b[0]["HostIp"] == "127.0.0.1" for b in host["PortBindings"].values())
    if engine.has_gpu_runtime:
        [request] = host["DeviceRequests"]
        assert request["Count"] == -1 and request["Capabilities"] == [["gpu"]]
    binds = {b.split(":")[1]: b.split(":")[0] for b in host["Binds"]}
    assert Path(binds["/workspace"]) == caller.cwd / "notebooks"


def test_default_profile_runs_the_demo_image(caller: Caller, engine: Engine) -> None:
    cid = _run_rendered(caller, engine, "default")
    info = engine.inspect("container", cid)
    assert info["Config"]["Image"] == "devbox/devbox:0.1"
    assert info["HostConfig"]["DeviceRequests"] in (None, [])  # the demo needs no GPU
    assert info["State"]["Status"] == "running"
