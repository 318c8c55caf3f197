"""Must show (issue 13): devcontainer.json files as other projects write them, on a real engine.

Each either runs, with the mapped settings visible in `docker inspect`, or fails naming the key
or argument devbox does not support, located file:line:column, with nothing made. The GPU file
(`--gpus all --shm-size 8g`) runs on the stand-in GPU engine (tests/standin), whose Docker
attaches GPUs through its nvidia device driver as a GPU server's does.
"""

from __future__ import annotations

import json
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import Caller, Engine, docker
from tests.integration.gpuhost import BASE_IMAGE, GpuHost, on_standin, standin_session

pytestmark = pytest.mark.integration


def project(root: Path, name: str, devcontainer: str, files: dict[str, str] | None = None) -> Path:
    """A project folder with `.devcontainer/devcontainer.json` (and other files), as a team keeps it."""
    folder = root / name
    (folder / ".devcontainer").mkdir(parents=True)
    (folder / ".devcontainer" / "devcontainer.json").write_text(textwrap.dedent(devcontainer).lstrip())
    for rel, text in (files or {}).items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_text(textwrap.dedent(text).lstrip())
    return folder


def inspect(container: str) -> dict[str, Any]:
    found: dict[str, Any] = json.loads(docker("container", "inspect", container).stdout)[0]
    return found


def mounts(info: dict[str, Any]) -> dict[str, tuple[str, str, bool]]:
    return {m["Destination"]: (m["Type"], m.get("Name") or m["Source"], m["RW"]) for m in info["Mounts"]}


def env_of(info: dict[str, Any]) -> dict[str, str]:
    return dict(item.partition("=")[::2] for item in info["Config"]["Env"])


def in_box(container: str, *argv: str) -> str:
    return docker("exec", container, *argv).stdout


@pytest.fixture
def team(caller: Caller, tmp_path: Path) -> Iterator[Caller]:
    """The caller with a home of their own (${localEnv:HOME}); their boxes and built images go at the end."""
    home = tmp_path / "home"
    (home / "datasets").mkdir(parents=True)
    (home / "datasets" / "README").write_text("shared data\n")
    caller.environ["HOME"] = str(home)
    yield caller
    for box in json.loads(caller.devbox("ls", "--json", check=False).stdout or "[]"):
        caller.devbox("down", box["name"], "--purge", "--yes", check=False)
    listed = docker("image", "ls", "-q", "--filter", f"label=devbox.owner={caller.owner}", check=False)
    for image in set(listed.stdout.split()):
        docker("image", "rm", "-f", image, check=False)


def test_image_based_with_ports_env_and_lifecycle_commands(team: Caller, engine: Engine) -> None:
    # The shape of the devcontainers/templates "debian" template, on a local image.
    folder = project(
        team.cwd,
        "webapp",
        """
        // For format details, see https://aka.ms/devcontainer.json.
        {
          "name": "Web app (Debian)",
          "image": "devbox/debian:bookworm",
          "forwardPorts": [8000, "localhost:5678"],
          "appPort": 8123,
          "containerEnv": {"APP_ENV": "development", "WORKERS": 2},
          "remoteEnv": {"EDITOR": "vi", "PATH": "${containerEnv:PATH}:/opt/tools"},
          "remoteUser": "root",
          "postCreateCommand": "echo by $(id -un) in $(pwd) '${containerEnv:APP_ENV}' | tee /tmp/post-create",
          "postStartCommand": {
            "stamp": "date +%s > /tmp/post-start",
            "list": ["ls", "-d", "${containerWorkspaceFolder}"],
          },
          "customizations": {"vscode": {"extensions": ["ms-python.python"]}},
        }
        """,
    )
    result = team.devbox("up", str(folder / ".devcontainer" / "devcontainer.json"))
    shown = result.stdout + result.stderr
    # The command's own output, shown; ${containerEnv:…} is the box's value even in single quotes.
    assert "by root in /workspaces/webapp development" in shown
    assert "customizations skipped" in shown and "remoteEnv.PATH skipped" in shown
    box = team.container("webapp")
    info = inspect(box)
    assert info["State"]["Running"]
    assert info["Config"]["WorkingDir"] == "/workspaces/webapp"
    assert mounts(info)["/workspaces/webapp"] == ("bind", str(folder), True)
    env = env_of(info)
    assert env["APP_ENV"] == "development" and env["WORKERS"] == "2" and env["EDITOR"] == "vi"
    assert "/opt/tools" not in env.get("PATH", "")  # ${containerEnv:PATH}: skipped, said
    ports = info["HostConfig"]["PortBindings"]
    assert ports["8123/tcp"] == [{"HostIp": "127.0.0.1", "HostPort": "8123"}]
    assert ports["8000/tcp"][0]["HostPort"] == "" and "5678/tcp" in ports  # engine-picked
    assert in_box(box, "cat", "/tmp/post-create").strip() == "by root in /workspaces/webapp development"
    first = in_box(box, "cat", "/tmp/post-start")
    # A stop and an up: postStartCommand again, postCreateCommand not.
    docker("exec", box, "rm", "/tmp/post-create")
    docker("stop", "-t", "1", box)
    team.devbox("up", str(folder / ".devcontainer" / "devcontainer.json"))
    assert docker("exec", box, "test", "-e", "/tmp/post-create", check=False).returncode == 1
    assert in_box(box, "cat", "/tmp/post-start") >= first


def test_dockerfile_based_with_args_and_target_found_by_project_name(team: Caller, engine: Engine) -> None:
    folder = project(
        team.cwd,
        "trainer",
        """
        {
          "name": "Trainer",
          "build": {
            "dockerfile": "../docker/Dockerfile",
            "context": "..",
            "args": {"PYTHON_VERSION": "3.11", "TEAM": "vision"},
            "target": "dev",
          },
          "runArgs": ["--shm-size=2g", "--cpus", "1", "--memory=1g", "-e", "TRAINING=1"],
          "overrideCommand": true,
        }
        """,
        {
            "docker/Dockerfile": f"""
            FROM {BASE_IMAGE} AS base
            ARG PYTHON_VERSION
            RUN echo "python $PYTHON_VERSION" > /etc/stage-base
            FROM base AS dev
            ARG TEAM
            RUN echo "team $TEAM" > /etc/stage-dev
            CMD ["bash"]
            FROM base AS prod
            RUN echo prod > /etc/stage-prod
            """,
            "requirements.txt": "numpy\n",
        },
    )
    team.cwd = folder  # `devbox up trainer` from the project folder finds its devcontainer.json
    listed = json.loads(team.devbox("profiles", "--json").stdout)
    assert any(p["name"] == "trainer" and p["path"].endswith("devcontainer.json") for p in listed)
    team.devbox("up", "trainer")
    box = team.container("trainer")
    info = inspect(box)
    assert info["State"]["Running"]  # bash would have exited: overrideCommand keeps it up
    assert in_box(box, "cat", "/etc/stage-base", "/etc/stage-dev") == "python 3.11\nteam vision\n"
    assert docker("exec", box, "test", "-e", "/etc/stage-prod", check=False).returncode == 1  # target: dev
    host = info["HostConfig"]
    assert host["ShmSize"] == 2 * 1024**3 and host["NanoCpus"] == 10**9 and host["Memory"] == 1024**3
    assert env_of(info)["TRAINING"] == "1"
    assert mounts(info)["/workspaces/trainer"] == ("bind", str(folder), True)


def test_mounts_with_local_env_home_and_a_named_volume(team: Caller, engine: Engine) -> None:
    home = Path(team.environ["HOME"])
    folder = project(
        team.cwd,
        "analysis",
        """
        {
          "image": "devbox/debian:bookworm",
          "mounts": [
            "source=${localEnv:HOME}/datasets,target=/datasets,type=bind,readonly,consistency=cached",
            {"source": "analysis-cache", "target": "/cache", "type": "volume"},
            "source=${localEnv:HOME}${localEnv:USERPROFILE}/.cache/pip,target=/root/.cache/pip,type=bind"
          ],
          "containerEnv": {"DATA": "${localEnv:HOME}/datasets", "MISSING": "${localEnv:NOPE:fallback}"},
        }
        """,
    )
    team.devbox("up", str(folder / ".devcontainer" / "devcontainer.json"))
    box = team.container("analysis")
    info = inspect(box)
    found = mounts(info)
    assert found["/datasets"] == ("bind", str(home / "datasets"), False)
    assert found["/cache"] == ("volume", f"devbox-{team.owner}-analysis-cache", True)
    assert found["/root/.cache/pip"] == ("bind", str(home / ".cache" / "pip"), True)
    assert in_box(box, "cat", "/datasets/README") == "shared data\n"
    assert docker("exec", box, "touch", "/datasets/x", check=False).returncode != 0  # read-only
    env = env_of(info)
    assert env["DATA"] == f"{home}/datasets" and env["MISSING"] == "fallback"


def test_workspace_mount_and_a_post_create_command_writing_into_it(team: Caller, engine: Engine) -> None:
    folder = project(
        team.cwd,
        "monorepo",
        """
        {
          "image": "devbox/debian:bookworm",
          "workspaceMount":
            "source=${localWorkspaceFolder},target=/src/${localWorkspaceFolderBasename},type=bind",
          "workspaceFolder": "/src/${localWorkspaceFolderBasename}",
          "postCreateCommand": ["sh", "-c", "pwd > made-in-box.txt"],
        }
        """,
    )
    team.devbox("up", str(folder))  # the project folder itself, by path
    info = inspect(team.container("monorepo"))
    assert info["Config"]["WorkingDir"] == "/src/monorepo"
    assert mounts(info) == {"/src/monorepo": ("bind", str(folder), True)}  # no /workspaces mount
    assert (folder / "made-in-box.txt").read_text() == "/src/monorepo\n"


def test_features_are_skipped_and_said_and_the_box_runs(team: Caller, engine: Engine) -> None:
    folder = project(
        team.cwd,
        "nodeapp",
        """
        {
          "image": "devbox/debian:bookworm",
          "features": {
            "ghcr.io/devcontainers/features/node:1": {"version": "20"},
            "ghcr.io/devcontainers/features/github-cli:1": {}
          },
          "postCreateCommand": "exit 3",
          "shutdownAction": "stopContainer"
        }
        """,
    )
    result = team.devbox("up", str(folder / ".devcontainer" / "devcontainer.json"), "--json")
    report = json.loads(result.stdout)
    warnings = " ".join(report["warnings"])
    assert (
        "features skipped: ghcr.io/devcontainers/features/node:1, ghcr.io/devcontainers/features/github-cli:1"
        in warnings
    )
    assert "shutdownAction skipped" in warnings
    assert "postCreateCommand failed (exit 3)" in warnings  # said; the box stays usable
    assert inspect(team.container("nodeapp"))["State"]["Running"]


def test_unsupported_keys_and_run_args_fail_naming_them(team: Caller, engine: Engine) -> None:
    folder = project(
        team.cwd,
        "gobox",
        """
        {
          "name": "Go",
          "image": "devbox/debian:bookworm",
          "runArgs": ["--cap-add=SYS_PTRACE", "--security-opt", "seccomp=unconfined"],
          "dockerComposeFile": ["../docker-compose.yml"],
        }
        """,
    )
    path = folder / ".devcontainer" / "devcontainer.json"
    result = team.devbox("up", str(path), check=False)
    assert result.returncode == 2
    said = result.stdout + result.stderr
    assert f"{path}:4:15" in said and "runArgs '--cap-add' is not supported" in said
    assert f"{path}:4:39" in said and "runArgs '--security-opt' is not supported" in said
    assert f"{path}:5:3" in said and "'dockerComposeFile' is not supported" in said
    assert docker("container", "inspect", team.container("gobox"), check=False).returncode != 0
    rendered = team.devbox("render", str(path), check=False)
    assert rendered.returncode == 2 and "'--cap-add'" in rendered.stdout + rendered.stderr


@pytest.fixture(scope="module")
def standin_engine() -> Iterator[str]:
    yield from standin_session()


def test_gpus_all_and_shm_size_on_a_gpu_engine(standin_engine: str, tmp_path: Path) -> None:
    host = GpuHost(tmp_path / "host", "h100x8", standin_engine)
    folder = project(
        host.root,
        "llm",
        """
        {
          "name": "LLM fine-tuning",
          "image": "devbox/debian:bookworm",
          "runArgs": ["--gpus", "all", "--shm-size", "8g", "--ipc=host"],
          "hostRequirements": {"gpu": true, "cpus": 4},
          "containerEnv": {"HF_HOME": "/workspaces/llm/.hf"},
        }
        """,
    )
    try:
        report = host.up_json("ann", str(folder / ".devcontainer" / "devcontainer.json"))
        assert report["gpus"] == list(range(8))
        info = json.loads(on_standin("inspect", host.container("ann", "llm")).stdout)[0]
        config = info["HostConfig"]
        assert config["ShmSize"] == 8 * 1024**3 and config["IpcMode"] == "host"
        requests = config["DeviceRequests"]
        assert len(requests) == 1 and requests[0]["DeviceIDs"] == [str(i) for i in range(8)]
        assert requests[0]["Capabilities"] == [["gpu"]]
        assert "HF_HOME=/workspaces/llm/.hf" in info["Config"]["Env"]
        listed = on_standin("exec", host.container("ann", "llm"), "nvidia-smi", "-L").stdout
        assert listed.count("GPU ") == 8
    finally:
        host.remove_boxes()
