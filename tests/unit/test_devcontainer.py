"""devcontainer.json as a profile: JSONC with positions, every mapped key, refusals located
file:line:column, variables, discovery, and the lifecycle commands run through the engine."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from devbox.errors import InvalidInput
from devbox.ops import resolve, startcommands
from devbox.ops.reporter import QuietReporter
from devbox.profile import jsonc, loader
from devbox.profile.model import GpuRequest, StartCommand
from tests.conftest import Sandbox
from tests.unit.conftest import DEVBOX, PLAIN


def _project(sandbox: Sandbox, text: str, name: str = "proj") -> Path:
    """A project folder `name` with `.devcontainer/devcontainer.json` holding `text`."""
    return sandbox.write(f"{name}/.devcontainer/devcontainer.json", text)


def _load(sandbox: Sandbox, text: str, **env: str) -> loader.Profile:
    path = _project(sandbox, text)
    return loader.load(str(path), sandbox.settings(**env))


def _problems(sandbox: Sandbox, text: str) -> list[str]:
    path = _project(sandbox, text)
    with pytest.raises(InvalidInput) as caught:
        loader.load(str(path), sandbox.settings())
    return [f"{p.origin.line}:{p.origin.column} {p.message}" for p in caught.value.problems]


# --- JSONC --------------------------------------------------------------------------------


def test_jsonc_reads_comments_trailing_commas_and_escapes_with_positions() -> None:
    text = (
        "// top comment\n"
        "{\n"
        '  "a": 1, /* inline */ "b": [true, null, -2.5e1,],\n'
        '  "c": {"d": "x\\"y\\u00e9\\ud83d\\ude00 // not a comment"},\n'
        "}\n"
    )
    doc = jsonc.load_text(text, "f.json")
    assert doc.data == {"a": 1, "b": [True, None, -25.0], "c": {"d": 'x"yé😀 // not a comment'}}
    assert doc.value_marks[("a",)] == (3, 8)
    assert doc.key_marks[("b",)] == (3, 24)
    assert doc.value_marks[("b", 2)] == (3, 42)
    assert doc.value_marks[("c", "d")] == (4, 14)


@pytest.mark.parametrize(
    ("text", "where", "says"),
    [
        ('{"a": 1 "b": 2}', "1:9", "expected , or }"),
        ("{'a': 1}", "1:2", 'expected a "key"'),
        ('{"a": /* open', "1:7", "never closed"),
        ('{"a": tru}', "1:7", "unexpected"),
        ('{"a": 1} x', "1:10", "more after the end"),
        ('{"a": "x\\q"}', "1:9", "not a JSON escape"),
    ],
)
def test_jsonc_syntax_errors_are_located(text: str, where: str, says: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        jsonc.load_text(text, "f.json")
    problem = caught.value.problems[0]
    assert f"{problem.origin.line}:{problem.origin.column}" == where
    assert says in problem.message


def test_jsonc_duplicate_keys_are_a_located_problem() -> None:
    doc = jsonc.load_text('{"a": 1,\n "a": 2}', "f.json")
    assert doc.data == {"a": 2}
    assert [(p.origin.line, p.message) for p in doc.problems] == [(2, "'a' is given twice")]


# --- keys ---------------------------------------------------------------------------------


def test_every_mapped_key(sandbox: Sandbox) -> None:
    sandbox.write("home/data/.keep", "")
    profile = _load(
        sandbox,
        """
        {
          "name": "Team box",
          "image": "devbox/box:0.1",
          "runArgs": ["--gpus=all", "--shm-size", "8g", "--ipc=host", "-e", "FOO=bar",
                      "--cpus=2", "--memory 4g", "-p", "7000:7001",
                      "-v", "${localWorkspaceFolder}/x:/x:ro,cached"],
          "forwardPorts": [8888, "localhost:6006", "db:5432"],
          "appPort": "3000:3001",
          "portsAttributes": {"8888": {"label": "Jupyter"}},
          "mounts": ["source=${localEnv:HOME}/data,target=/data,type=bind,consistency=cached",
                     {"source": "cache", "target": "/cache", "type": "volume"}],
          "containerEnv": {"A": "1", "N": 3},
          "remoteEnv": {"A": "2", "PATH": "${containerEnv:PATH}:/x", "GONE": null},
          "containerUser": "1000",
          "remoteUser": "dev",
          "workspaceFolder": "/src/${localWorkspaceFolderBasename}",
          "features": {"ghcr.io/devcontainers/features/python:1": {}},
          "customizations": {"vscode": {"extensions": ["ms-python.python"]}},
          "postCreateCommand": "echo made > /tmp/made",
          "postStartCommand": {"a": "echo a", "b": ["echo", "b"]},
        }
        """,
    )
    home, folder = sandbox.home, sandbox.root / "proj"
    assert profile.name == "proj" and profile.image == PLAIN
    assert profile.gpus == GpuRequest("all") and profile.shm_size == 8 * 1024**3 and profile.ipc == "host"
    assert profile.resources.cpus == 2 and profile.resources.memory == 4 * 1024**3
    assert {p.name: (p.host, p.container) for p in profile.ports} == {
        "port-7001": (7000, 7001),
        "port-8888": (None, 8888),  # no Jupyter runs under the wait loop: not waited on
        "port-6006": (None, 6006),
        "port-3001": (3000, 3001),
    }
    volumes = {v.target: (v.kind, v.source, v.readonly) for v in profile.volumes}
    assert volumes == {
        "/x": ("bind", f"{folder}/x", True),
        "/data": ("bind", f"{home}/data", False),
        "/cache": ("volume", "cache", False),
        "/workspaces/proj": ("bind", str(folder), False),
    }
    assert profile.env == {"FOO": "bar", "A": "2", "N": "3"}
    assert profile.user == "1000" and profile.workdir == "/src/proj"
    made = StartCommand("postCreateCommand", shell="echo made > /tmp/made", user="dev")
    assert profile.post_create == (made,)
    assert [c.name for c in profile.post_start] == ["postStartCommand.a", "postStartCommand.b"]
    assert profile.post_start[1].argv == ("echo", "b")
    assert profile.project == str(folder)
    assert set(profile.notes) >= {
        "features skipped: ghcr.io/devcontainers/features/python:1",
        "customizations skipped: devbox runs the box, not an editor",
        "forwardPorts 'db:5432' skipped: it is another host's port",
    }
    assert any("remoteEnv.PATH" in note for note in profile.notes)
    # overrideCommand's default keeps a box with a bash CMD up.
    assert profile.command is not None and profile.command[0] == "/bin/sh"


def test_a_jupyter_label_is_waited_on_only_when_the_image_cmd_runs(sandbox: Sandbox) -> None:
    # overrideCommand's default replaces the CMD by a wait loop: a port named jupyter would
    # make `up` wait ready.timeout for a URL no process prints, then fail.
    text = (
        '{"image": "devbox/box:0.1", "forwardPorts": [8888], '
        '"portsAttributes": {"8888": {"label": "Jupyter"}}%s}'
    )
    overridden = _load(sandbox, text % "")
    assert [p.name for p in overridden.ports] == ["port-8888"]
    assert any('portsAttributes "Jupyter": port 8888 is not waited on' in n for n in overridden.notes)
    assert [p.name for p in _load(sandbox, text % ', "overrideCommand": false').ports] == ["jupyter"]


def test_app_port_with_an_address_as_docker_writes_it(sandbox: Sandbox) -> None:
    profile = _load(sandbox, '{"image": "devbox/box:0.1", "appPort": ["127.0.0.1:8000:8001", 9000]}')
    assert {p.name: (p.host, p.container) for p in profile.ports} == {
        "port-8001": (8000, 8001),
        "port-9000": (9000, 9000),
    }
    assert any("appPort 127.0.0.1:8000:8001: the address 127.0.0.1 skipped" in n for n in profile.notes)


def test_image_beside_build_is_skipped_as_vs_code_does(sandbox: Sandbox) -> None:
    # As a conda project writes it: an image left in, and a build that VS Code uses instead.
    sandbox.write("proj/Dockerfile", "FROM devbox/box:0.1\n")
    profile = _load(
        sandbox,
        '{"image": "condaforge/miniforge3:24.3.0-0",'
        ' "build": {"context": "..", "dockerfile": "../Dockerfile"}}',
    )
    assert profile.build is not None and profile.build.dockerfile == "Dockerfile"
    assert (
        "image condaforge/miniforge3:24.3.0-0 skipped: the Dockerfile (build) is built instead"
        in " ".join(profile.notes)
    )
    # And the other way round: a build without a dockerfile is not a Dockerfile config.
    profile = _load(sandbox, '{"image": "devbox/box:0.1", "build": {"args": {"A": "1"}}}')
    assert profile.image == PLAIN and profile.build is None
    assert "build skipped: it names no dockerfile, so image is used, as the spec does" in profile.notes


def test_dockerfile_build_paths_are_relative_to_the_json(sandbox: Sandbox) -> None:
    sandbox.write("proj/Dockerfile", "FROM devbox/box:0.1\n")
    profile = _load(
        sandbox,
        """
        {"build": {"dockerfile": "../Dockerfile", "context": "..", "args": {"V": 1.10}, "target": "dev"},
         "overrideCommand": false, "hostRequirements": {"gpu": true}}
        """,
    )
    assert profile.build is not None
    assert profile.build.context == str(sandbox.root / "proj") and profile.build.dockerfile == "Dockerfile"
    assert profile.build.args == {"V": "1.1"} and profile.build.target == "dev"
    assert profile.command is None and profile.gpus == GpuRequest("count", count=1)


def test_legacy_dockerfile_key_and_optional_gpu(sandbox: Sandbox) -> None:
    sandbox.write("proj/.devcontainer/Dockerfile", "FROM devbox/box:0.1\n")
    profile = _load(sandbox, '{"dockerFile": "Dockerfile", "hostRequirements": {"gpu": "optional"}}')
    assert profile.build is not None and profile.build.dockerfile == "Dockerfile"
    assert profile.build.context == str(sandbox.root / "proj" / ".devcontainer")
    assert profile.gpus == GpuRequest("none")
    assert any('gpu "optional"' in note for note in profile.notes)


def test_gpus_forms_of_run_args(sandbox: Sandbox) -> None:
    for args, want in [
        (["--gpus", "all"], GpuRequest("all")),
        (["--gpus all"], GpuRequest("all")),
        (["--gpus=2"], GpuRequest("count", count=2)),
        (['--gpus="device=0,3"'], GpuRequest("devices", devices=("0", "3"))),
    ]:
        profile = _load(sandbox, json.dumps({"image": PLAIN, "runArgs": args}))
        assert profile.gpus == want, args


def test_workspace_mount_and_folder(sandbox: Sandbox) -> None:
    profile = _load(
        sandbox,
        """{"image": "devbox/box:0.1",
            "workspaceMount": "source=${localWorkspaceFolder},target=/workspace,type=bind,consistency=cached",
            "workspaceFolder": "/workspace",
            "postCreateCommand": "ls ${containerWorkspaceFolder}"}""",
    )
    assert [(v.source, v.target) for v in profile.volumes] == [(str(sandbox.root / "proj"), "/workspace")]
    assert profile.workdir == "/workspace"
    assert profile.post_create[0].shell == "ls /workspace"


def test_local_env_with_default_and_shell_variables_left_alone(sandbox: Sandbox) -> None:
    profile = _load(
        sandbox,
        """{"image": "devbox/box:0.1",
            "containerEnv": {"A": "${localEnv:TEAM}", "B": "${localEnv:NOPE:fallback}",
                             "C": "${localEnv:NOPE}"},
            "postStartCommand": "echo ${HOME} $$",
            "postCreateCommand": "echo ${containerEnv:PATH} ${containerEnv:NOPE:x y}"}""",
        TEAM="vision",
    )
    assert profile.env == {"A": "vision", "B": "fallback", "C": ""}
    assert profile.post_start[0].shell == "echo ${HOME} $$"
    # Known only in the box: substituted when the command runs (see the start-command tests).
    assert profile.post_create[0].shell == "echo ${containerEnv:PATH} ${containerEnv:NOPE:x y}"


def test_legacy_dockerfile_beside_build_args_builds_with_both(sandbox: Sandbox) -> None:
    # Older templates: "dockerFile" and "context" at the top, "build": {"args"} beside them.
    sandbox.write("proj/docker/Dockerfile", "FROM devbox/box:0.1\n")
    profile = _load(
        sandbox,
        """{"dockerFile": "../docker/Dockerfile", "context": "..",
            "build": {"args": {"VARIANT": "3.11"}, "target": "dev"}}""",
    )
    assert profile.build is not None
    assert (profile.build.context, profile.build.dockerfile) == (
        str(sandbox.root / "proj"),
        "docker/Dockerfile",
    )
    assert profile.build.args == {"VARIANT": "3.11"} and profile.build.target == "dev"


def test_remote_env_null_unsets_what_container_env_and_run_args_set(sandbox: Sandbox) -> None:
    profile = _load(
        sandbox,
        """{"image": "devbox/box:0.1", "runArgs": ["-e", "FROMRUN=1"],
            "containerEnv": {"A": "1", "B": "1"}, "remoteEnv": {"A": "2", "B": null, "FROMRUN": null}}""",
    )
    assert profile.env == {"A": "2"}


def test_override_command_and_init_must_be_booleans(sandbox: Sandbox) -> None:
    # "false" as a string would read as true: the image's CMD would silently not run.
    problems = _problems(sandbox, '{"image": "devbox/box:0.1",\n "overrideCommand": "false",\n "init": "no"}')
    assert problems == [
        "2:21 overrideCommand must be true or false, not 'false'",
        "3:10 init must be true or false, not 'no'",
    ]


def test_mount_options_devbox_does_not_apply_are_said(sandbox: Sandbox) -> None:
    profile = _load(
        sandbox,
        """{"image": "devbox/box:0.1", "mounts": [
              "source=/srv/shared,target=/shared,type=bind,bind-propagation=rshared",
              "source=cache,target=/cache,type=volume,volume-nocopy"]}""",
    )
    assert {v.target for v in profile.volumes} >= {"/shared", "/cache"}
    assert (
        "mount option bind-propagation=rshared skipped: devbox binds with Docker's defaults" in profile.notes
    )
    assert any(note.startswith("mount option volume-nocopy skipped") for note in profile.notes)


def test_hints_are_written_in_devcontainer_json_keys(sandbox: Sandbox) -> None:
    path = _project(sandbox, '{"forwardPorts": ["abc"]}')
    with pytest.raises(InvalidInput) as caught:
        loader.load(str(path), sandbox.settings())
    hints = {p.message: p.hint for p in caught.value.problems}
    assert hints["'abc' is not a port (1-65535)"] == 'e.g. 8888 or "localhost:8888"'
    assert hints["no image: the devcontainer.json needs image or build"] == (
        '"image": "devbox/devbox:0.1", or "build": {"dockerfile": "Dockerfile"}'
    )
    # A Compose file is refused once, not also reported as having no image.
    assert _problems(sandbox, '{"dockerComposeFile": "compose.yml", "service": "app"}') == [
        "1:2 'dockerComposeFile' is not supported: devbox runs one container per box, not a Compose project",
        "1:38 'service' is not supported: devbox runs one container per box, not a Compose project",
    ]


def test_a_bind_source_from_an_unset_local_env_is_refused_not_made_at_the_root(sandbox: Sandbox) -> None:
    # Read as empty, "${localEnv:NOPE}/.ssh" is /.ssh: Docker would make that folder on the host.
    problems = _problems(
        sandbox,
        """
        {
          "image": "devbox/box:0.1",
          "mounts": ["source=${localEnv:NOPE}/.ssh,target=/s,type=bind",
                     {"source": "${localEnv:NOPE2}", "target": "/t", "type": "bind"}],
          "runArgs": ["-v", "${localEnv:NOPE3}/data:/data", "-e", "TOKEN=${localEnv:NOPE}"],
          "workspaceMount": "source=${localEnv:NOPE4}/w,target=/w,type=bind"
        }""",
    )
    assert [p.split(" ", 1)[0] for p in problems] == ["3:14", "4:14", "5:21", "6:21"]
    assert "bind source '/.ssh' uses ${localEnv:NOPE}, which is not set (read as empty)" in problems[0]
    text = '{"image": "devbox/box:0.1", "mounts": ["source=${localEnv:NOPE:/srv}/d,target=/d,type=bind"]}'
    assert next(v.source for v in _load(sandbox, text).volumes) == "/srv/d"
    # The spec's cross-platform idiom: one of the two is set, the path is whole.
    both = "source=${localEnv:NOPE}${localEnv:HOME}/.cache,target=/c,type=bind"
    text = json.dumps({"image": "devbox/box:0.1", "mounts": [both]})
    assert next(v.source for v in _load(sandbox, text).volumes) == f"{sandbox.home}/.cache"


def test_a_volume_mount_never_becomes_a_bind(sandbox: Sandbox) -> None:
    # ".." as a profile volume source is a relative path: the project's parent folder, bound.
    problems = _problems(
        sandbox,
        """{"image": "devbox/box:0.1",
            "mounts": [{"source": "..", "target": "/v", "type": "volume"},
                       "type=volume,source=.cache,target=/w", "source=/srv,target=/x,type=volume"]}""",
    )
    assert problems == [
        "2:24 volume source '..' is not a volume name",
        "3:24 volume source '.cache' is not a volume name",
        "3:63 volume source '/srv' is not a volume name",
    ]


def test_unsupported_run_args_and_keys_are_refused_where_they_stand(sandbox: Sandbox) -> None:
    problems = _problems(
        sandbox,
        """
        {
          "image": "devbox/box:0.1",
          "runArgs": ["--shm-size=8g", "--cap-add=SYS_PTRACE", "--network", "host"],
          "dockerComposeFile": "compose.yml",
          "privileged": true,
          "mounts": [{"type": "tmpfs", "target": "/t"}],
          "initializeCommand": "make prep",
        }""",
    )
    assert problems == [
        "3:32 runArgs '--cap-add' is not supported",
        "3:56 runArgs '--network' is not supported",
        "4:3 'dockerComposeFile' is not supported: devbox runs one container per box, not a Compose project",
        "5:3 'privileged' is not supported: a box never runs privileged",
        "6:14 mount type 'tmpfs' is not supported: devbox mounts binds and named volumes",
        "7:3 'initializeCommand' is not supported: devbox does not run a project's commands on the host",
    ]


def test_several_run_args_in_one_string_are_refused_not_read_as_one_value(sandbox: Sandbox) -> None:
    # Docker gets such an item as one argument; reading "all --privileged" as --gpus's value
    # hid the second flag behind a puzzling "not all, a count or device=IDS".
    problems = _problems(
        sandbox,
        """{"image": "devbox/box:0.1",
            "runArgs": ["--gpus all --shm-size 8g", "--gpus=all --privileged", "-e A='x --y",
                        "--shm-size 8g"]}""",
    )
    assert problems == [
        "2:25 runArgs '--gpus all --shm-size 8g' holds several arguments in one string",
        "2:53 runArgs '--gpus=all --privileged' holds several arguments in one string",
        '2:80 runArgs "-e A=\'x --y" holds several arguments in one string',
    ]


def test_profile_checks_apply_located_in_the_json(sandbox: Sandbox) -> None:
    problems = _problems(
        sandbox,
        """
        {
          "image": "Not An Image",
          "runArgs": ["--shm-size", "8"],
          "containerEnv": {"NVIDIA_VISIBLE_DEVICES": "0"},
          "forwardPorts": [70000]
        }""",
    )
    assert [p.split(" ", 1)[0] for p in problems] == ["2:12", "3:29", "4:20", "5:20"]
    assert "is not an image reference" in problems[0] and "means 8 bytes" in problems[1]


def test_ipc_host_is_refused_in_lab_mode_only(sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _project(sandbox, '{"image": "devbox/box:0.1", "runArgs": ["--ipc", "host"]}')
    settings = sandbox.settings()
    assert loader.load(str(path), settings).ipc == "host"
    monkeypatch.setattr(type(settings), "lab", property(lambda self: True))
    with pytest.raises(InvalidInput) as caught:
        loader.load(str(path), settings)
    assert "--ipc host is not allowed in lab mode" in caught.value.problems[0].message


# --- finding ------------------------------------------------------------------------------


def test_found_by_the_project_folder_name_by_path_and_by_folder(sandbox: Sandbox) -> None:
    path = _project(sandbox, '{"image": "devbox/box:0.1"}', name="My Proj")
    here = dataclasses.replace(sandbox.settings(), cwd=sandbox.root / "My Proj")
    assert loader.find("My-Proj", here).path == path.resolve()
    assert loader.find(".", here).path == path.resolve()
    assert loader.find("./.devcontainer", here).path == path.resolve()
    assert loader.find(str(path), sandbox.settings()).name == "My-Proj"
    found = [r for r in loader.discover(here) if r.scope == "project"]
    assert [(r.name, r.path) for r in found] == [("My-Proj", path.resolve())]
    root_file = sandbox.write("other/.devcontainer.json", '{"image": "devbox/box:0.1"}')
    there = dataclasses.replace(sandbox.settings(), cwd=sandbox.root / "other")
    assert loader.find("other", there).path == root_file.resolve()


def test_render_shows_the_docker_run(sandbox: Sandbox) -> None:
    from devbox import engine

    path = _project(sandbox, '{"image": "devbox/box:0.1", "runArgs": ["--shm-size=8g", "--ipc=host"]}')
    resolved = resolve.resolve(str(path), sandbox.settings())
    run = engine.run_commands(resolved.spec).run
    assert run[run.index("--shm-size") + 1] == "8g" and run[run.index("--ipc") + 1] == "host"
    assert f"{sandbox.root}/proj:/workspaces/proj" in run


# --- lifecycle commands -------------------------------------------------------------------


class _Recorder:
    """An engine whose exec records what ran and answers from a script."""

    def __init__(self, codes: dict[str, int]) -> None:
        self.codes = codes
        self.ran: list[tuple[list[str], str, str]] = []

    def exec(self, container: str, argv: list[str], user: str = "", **kw: Any) -> tuple[int, str]:
        self.ran.append((argv, user, kw.get("workdir", "")))
        code = self.codes.get(argv[-1], 0)
        if kw.get("on_line"):
            kw["on_line"](f"ran {argv[-1]}")
        return code, "boom\n" if code else "ok\n"


def test_start_commands_run_per_event_as_the_box_user(sandbox: Sandbox) -> None:
    path = _project(
        sandbox,
        """{"image": "devbox/devbox:0.1", "containerUser": "1000:1000", "features": {"x": {}},
            "onCreateCommand": "first", "postCreateCommand": ["second"],
            "postStartCommand": {"s": "third"}}""",
    )
    resolved = resolve.resolve(str(path), sandbox.settings(), probe=lambda image: {"devbox.protocol": "1"})
    assert resolved.spec.protocol and resolved.spec.image == DEVBOX
    box: Any = type("B", (), {"id": "c1"})()
    engine = _Recorder({"third": 3})
    lines: list[str] = []
    reporter: Any = type("R", (QuietReporter,), {"build_line": lambda self, line: lines.append(line)})()
    warnings = startcommands.run(engine, box, resolved, reporter, "created")  # type: ignore[arg-type]
    ran = [argv for argv, _, _ in engine.ran]
    assert ran == [["/bin/sh", "-c", "first"], ["second"], ["/bin/sh", "-c", "third"]]
    assert {user for _, user, _ in engine.ran} == {"1000:1000"}
    assert {workdir for _, _, workdir in engine.ran} == {"/workspaces/proj"}
    assert lines == ["ran first", "ran second", "ran third"]
    assert warnings[0].startswith("features skipped: x")
    assert "postStartCommand.s failed (exit 3: boom)" in warnings[1]
    engine.ran.clear()
    assert startcommands.run(engine, box, resolved, reporter, "started") != []  # type: ignore[arg-type]
    assert [argv[-1] for argv, _, _ in engine.ran] == ["third"]
    engine.ran.clear()
    assert startcommands.run(engine, box, resolved, reporter, "running") == []  # type: ignore[arg-type]
    assert engine.ran == []


def test_container_env_is_the_boxs_value_when_the_command_runs(sandbox: Sandbox) -> None:
    """As the spec substitutes it before running: also inside single quotes, and in arrays."""
    path = _project(
        sandbox,
        """{"image": "devbox/box:0.1",
            "postCreateCommand": "setup '${containerEnv:VENV:/opt/venv}' ${containerEnv:HOME}",
            "postStartCommand": ["echo", "${containerEnv:NOPE}", "${containerEnv:NOPE:dflt}"]}""",
    )
    resolved = resolve.resolve(str(path), sandbox.settings(), probe=lambda image: {})
    config = type("C", (), {"env": {"HOME": "/home/a b", "PATH": "/bin"}})()
    box: Any = type("B", (), {"id": "c1", "config": config})()
    engine = _Recorder({})
    engine.inspect = lambda container: box  # type: ignore[attr-defined]
    startcommands.run(engine, box, resolved, QuietReporter(), "created")  # type: ignore[arg-type]
    assert [argv for argv, _, _ in engine.ran] == [
        ["/bin/sh", "-c", "setup '/opt/venv' /home/a b"],
        ["echo", "", "dflt"],
    ]
