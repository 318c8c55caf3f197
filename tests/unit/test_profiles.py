from __future__ import annotations

from pathlib import Path

import pytest

from devbox.errors import InvalidInput
from devbox.profile import loader
from devbox.profile.flags import Overrides, to_layers
from devbox.profile.model import GpuRequest
from devbox.profile.quotas import parse_gpus
from devbox.settings import bundled_profiles_dir
from tests.conftest import Sandbox

BUNDLED = bundled_profiles_dir()


def problems_of(sandbox: Sandbox, ref: str, **env: str) -> list[tuple[int | None, str]]:
    with pytest.raises(InvalidInput) as caught:
        loader.load(ref, sandbox.settings(**env))
    return [(p.origin.line, p.message) for p in caught.value.problems]


def test_bundled_pytorch_profile_has_what_the_seeds_describe(sandbox: Sandbox) -> None:
    profile = loader.load("pytorch-gpu", sandbox.settings())
    assert profile.gpus == GpuRequest("all")
    assert profile.shm_size == 8 * 1024**3
    assert (profile.resources.cpus, profile.resources.memory) == (4.0, 16 * 1024**3)
    assert {p.name: p.container for p in profile.ports} == {"jupyter": 8888, "ssh": 22}
    assert ":" in profile.image and "latest" not in profile.image  # pinned tag
    binds = {v.target: (v.kind, v.source) for v in profile.volumes}
    # A bundled profile mounts the folder you stand in, never the install location.
    assert binds["/workspace"] == ("bind", str(sandbox.cwd / "notebooks"))
    assert binds["/data"] == ("volume", "data")


def test_five_mistakes_give_five_located_problems(sandbox: Sandbox) -> None:
    path = sandbox.write(
        "work/broken.yaml",
        """
        image: python:3.11
        shm-size: 8g
        gpus: lots
        resources: {cpus: -2, memory: 16g}
        ports: {jupyter: 70000}
        volumes:
          - ./data:data
        """,
    )
    found = problems_of(sandbox, str(path))
    assert [line for line, _ in found] == [2, 3, 4, 5, 7]
    messages = " | ".join(m for _, m in found)
    for expected in (
        "unknown key 'shm-size'",
        "gpus",
        "cpus must be a positive number",
        "70000",
        "not an absolute",
    ):
        assert expected in messages


def test_unknown_key_suggests_the_right_one(sandbox: Sandbox) -> None:
    path = sandbox.write("work/p.yaml", "image: x\nshm-size: 8g\nresources: {memroy: 1g}\n")
    with pytest.raises(InvalidInput) as caught:
        loader.load(str(path), sandbox.settings())
    hints = [(str(p.origin), p.hint) for p in caught.value.problems]
    assert hints == [
        (f"{path}:2:1", "did you mean 'shm_size'?"),
        (f"{path}:3:13", "did you mean 'memory'?"),
    ]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("all", GpuRequest("all")),
        ("none", GpuRequest("none")),
        (0, GpuRequest("none")),
        (2, GpuRequest("count", count=2)),
        ([0, 3], GpuRequest("devices", devices=("0", "3"))),
        ("0,3", GpuRequest("devices", devices=("0", "3"))),
        (["GPU-4b2c7e1a-aaaa"], GpuRequest("devices", devices=("GPU-4b2c7e1a-aaaa",))),
    ],
)
def test_gpu_forms(raw: object, expected: GpuRequest) -> None:
    assert parse_gpus(raw) == expected


@pytest.mark.parametrize("raw", [True, -1, "lots", [], [0, 0], ["gpu0"], {"count": 1}, 1.5])
def test_bad_gpu_forms_are_errors(raw: object) -> None:
    assert isinstance(parse_gpus(raw), str)


def test_three_level_extends_merges_by_key_and_target(sandbox: Sandbox) -> None:
    profile = loader.load(str(BUNDLED / "examples" / "detr.yaml"), sandbox.settings())
    assert profile.gpus == GpuRequest("count", count=2)  # leaf wins
    assert profile.resources.memory == 32 * 1024**3  # leaf
    assert profile.resources.cpus == 4.0 and profile.resources.pids == 4096  # from base, merged deeply
    assert profile.env == {"HF_HOME": "/data/hf", "WANDB_PROJECT": "vision"}
    assert {p.name for p in profile.ports} == {"jupyter", "tensorboard"}
    targets = {v.target: v.source for v in profile.volumes}
    assert targets["/datasets"] == str(sandbox.home / "datasets")  # ~ is the caller's home
    assert targets["/workspace"] == str(BUNDLED / "examples" / "detr")  # given by path: its own folder
    assert targets["/data"] == "data"
    assert profile.labels == {"team": "vision"}
    assert len(profile.chain) == 3


def test_volumes_merge_by_target(sandbox: Sandbox) -> None:
    sandbox.write("work/base.yaml", "image: x\nvolumes: [./a:/workspace, data:/data]\n")
    child = sandbox.write("work/child.yaml", "extends: ./base.yaml\nvolumes: [./b:/workspace]\n")
    profile = loader.load(str(child), sandbox.settings())
    assert {v.target: v.source for v in profile.volumes} == {
        "/workspace": str(sandbox.cwd / "b"),
        "/data": "data",
    }


def test_extends_cycle_is_rejected(sandbox: Sandbox) -> None:
    sandbox.write("work/a.yaml", "extends: ./b.yaml\nimage: x\n")
    sandbox.write("work/b.yaml", "extends: ./a.yaml\n")
    (line, message), *_ = problems_of(sandbox, str(sandbox.cwd / "a.yaml"))
    assert line == 1 and "extends cycle" in message


def test_missing_parent_is_located(sandbox: Sandbox) -> None:
    sandbox.write("work/a.yaml", "image: x\nextends: nowhere\n")
    assert problems_of(sandbox, "./a.yaml") == [(2, "extends 'nowhere', which does not exist")]


def test_a_project_profile_can_extend_the_bundled_one_of_the_same_name(sandbox: Sandbox) -> None:
    sandbox.write("work/.devbox/default.yaml", "extends: default\nshm_size: 2g\n")
    profile = loader.load("default", sandbox.settings())
    assert profile.shm_size == 2 * 1024**3
    assert profile.image and profile.image.startswith("devbox/")
    assert profile.chain[1].startswith(str(BUNDLED))


def test_duplicate_ports_are_errors(sandbox: Sandbox) -> None:
    sandbox.write(
        "work/p.yaml", "image: x\nports:\n  a: 8888\n  b: 8888\n  c: '9000:1'\n  d: '9000:2'\n  e: 0\n"
    )
    found = problems_of(sandbox, "p.yaml")
    assert (7, "port 0 is out of range (1-65535)") in found
    assert any(line == 4 and "container port 8888" in m for line, m in found)
    assert any(line == 6 and "host port 9000" in m for line, m in found)


def test_no_image_is_an_error(sandbox: Sandbox) -> None:
    sandbox.write("work/p.yaml", "gpus: none\n")
    assert problems_of(sandbox, "p.yaml")[0][1].startswith("no image")


def test_image_and_build_together_is_an_error_but_a_child_may_switch(sandbox: Sandbox) -> None:
    sandbox.write("work/ctx/Dockerfile", "FROM scratch\n")
    sandbox.write("work/both.yaml", "image: x\nbuild: ./ctx\n")
    assert problems_of(sandbox, "both.yaml") == [(2, "give either image: or build:, not both")]
    sandbox.write("work/child.yaml", "extends: ./parent.yaml\nbuild: {context: ./ctx, args: {A: 1}}\n")
    sandbox.write("work/parent.yaml", "image: x\n")
    profile = loader.load("child.yaml", sandbox.settings())
    assert profile.image is None and profile.build is not None
    assert profile.build.context == str(sandbox.cwd / "ctx") and profile.build.args == {"A": "1"}


def test_interpolation(sandbox: Sandbox) -> None:
    sandbox.write(
        "work/p.yaml",
        """
        image: "${IMAGE:-python:3.11}"
        env: {WHO: "${DEVBOX_USER}", HOME_IS: "${HOME}", PRICE: "$$5", TEAM: "${TEAM}"}
        volumes: ["${PWD}/code:/code"]
        """,
    )
    profile = loader.load("p.yaml", sandbox.settings(TEAM="vision"))
    assert profile.image == "python:3.11"
    assert profile.env == {"WHO": "alice", "HOME_IS": str(sandbox.home), "PRICE": "$5", "TEAM": "vision"}
    assert profile.volumes[0].source == str(sandbox.cwd / "code")
    assert problems_of(sandbox, "p.yaml") == [(2, "${TEAM} is not set")]


def test_yaml_syntax_error_is_located(sandbox: Sandbox) -> None:
    sandbox.write("work/p.yaml", "image: x\nports: {jupyter: 8888\n")
    assert problems_of(sandbox, "p.yaml")[0][0] == 3


def test_duplicate_keys_are_errors(sandbox: Sandbox) -> None:
    sandbox.write("work/p.yaml", "image: x\nimage: y\n")
    assert problems_of(sandbox, "p.yaml") == [(2, "'image' is given twice")]


def test_lookup_order_project_user_lab_bundled(sandbox: Sandbox) -> None:
    settings = sandbox.settings()
    assert loader.find("default", settings).scope == "bundled"
    sandbox.write("lab/profiles/default.yaml", "image: lab\n")
    assert loader.find("default", settings).scope == "lab"
    sandbox.write("home/.config/devbox/profiles/default.yml", "image: mine\n")
    assert loader.find("default", settings).scope == "user"
    sandbox.write("work/.devbox/default.yaml", "image: project\n")
    assert loader.find("default", settings).scope == "project"


def test_relative_binds_by_where_the_profile_lives(sandbox: Sandbox) -> None:
    body = "image: x\nvolumes: [./code:/code]\n"
    sandbox.write("lab/profiles/labbox.yaml", body)
    sandbox.write("work/.devbox/proj.yaml", body)
    sandbox.write("elsewhere/given.yaml", body)
    settings = sandbox.settings()
    assert loader.load("labbox", settings).volumes[0].source == str(sandbox.cwd / "code")
    assert loader.load("proj", settings).volumes[0].source == str(sandbox.cwd / "code")
    given = loader.load(str(sandbox.root / "elsewhere/given.yaml"), settings)
    assert given.volumes[0].source == str(sandbox.root / "elsewhere" / "code")


def test_unknown_profile_lists_where_it_looked(sandbox: Sandbox) -> None:
    with pytest.raises(InvalidInput) as caught:
        loader.find("nope", sandbox.settings())
    assert str(sandbox.cwd / ".devbox" / "nope.yaml") in caught.value.problems[0].message
    assert caught.value.hint and "default" in caught.value.hint


def test_flags_override_the_profile_and_bad_flags_are_named(sandbox: Sandbox) -> None:
    settings = sandbox.settings(TOKEN="s3")
    flags = Overrides(
        gpus="none", shm_size="2g", cpus="1.5", ports=["tb=6006"], volumes=["./x:/x"], env=["A=1", "TOKEN"]
    )
    layers, problems = to_layers(flags, settings)
    assert problems == []
    profile = loader.load("pytorch-gpu", settings, overrides=layers)
    assert profile.gpus == GpuRequest("none") and profile.shm_size == 2 * 1024**3
    assert profile.resources.cpus == 1.5 and profile.resources.memory == 16 * 1024**3
    assert {p.name: p.container for p in profile.ports}["tb"] == 6006
    assert profile.env["A"] == "1" and profile.env["TOKEN"] == "s3"
    assert Path(next(v.source for v in profile.volumes if v.target == "/x")) == sandbox.cwd / "x"
    _, problems = to_layers(Overrides(shm_size="huge", gpus="some"), settings)
    assert sorted(str(p.origin) for p in problems) == ["--gpus", "--shm-size"]


def test_base60_looking_values_stay_as_written(sandbox: Sandbox) -> None:
    # Plain YAML 1.1 would read 2222:22 as the number 133342.
    sandbox.write("work/p.yaml", "image: x\nports: {ssh: 2222:22}\nuser: 1000:100\n")
    profile = loader.load("p.yaml", sandbox.settings())
    assert (profile.ports[0].host, profile.ports[0].container) == (2222, 22)
    assert profile.user == "1000:100"


def test_a_size_without_unit_is_refused_when_it_must_be_a_mistake(sandbox: Sandbox) -> None:
    sandbox.write("work/p.yaml", "image: x\nshm_size: 8\nresources: {memory: 16}\n")
    found = problems_of(sandbox, "p.yaml")
    assert found == [(2, "shm_size: 8 means 8 bytes"), (3, "memory: 16 means 16 bytes")]


def test_env_list_form_and_quoted_numbers(sandbox: Sandbox) -> None:
    sandbox.write("work/p.yaml", "image: x\nenv: [A=1, B=x=y]\nresources: {cpus: '2.5', pids: '100'}\n")
    profile = loader.load("p.yaml", sandbox.settings())
    assert profile.env == {"A": "1", "B": "x=y"}
    assert (profile.resources.cpus, profile.resources.pids) == (2.5, 100)


def test_a_missing_image_is_reported_with_the_other_mistakes(sandbox: Sandbox) -> None:
    sandbox.write("work/p.yaml", "gpus: lots\n")
    assert [line for line, _ in problems_of(sandbox, "p.yaml")] == [1, 1]
    sandbox.write("work/q.yaml", "image: 'bad image'\n")
    assert len(problems_of(sandbox, "q.yaml")) == 1  # a wrong image is not also "no image"


def test_env_labels_and_keys_keep_the_text_as_written(sandbox: Sandbox) -> None:
    # YAML 1.1 would make these 83, 1.1, True and 31; Docker gets strings, so keep the text.
    sandbox.write(
        "work/p.yaml",
        "image: x\nenv: {OCT: 0123, VER: 1.10, FLAG: on, HEX: 0x1F, ON: 1}\nlabels: {v: 2.50}\n",
    )
    profile = loader.load("p.yaml", sandbox.settings())
    assert profile.env == {"OCT": "0123", "VER": "1.10", "FLAG": "on", "HEX": "0x1F", "ON": "1"}
    assert profile.labels["v"] == "2.50"


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("resources: {cpus: .inf}", "cpus must be a positive number, not inf"),
        ("resources: {cpus: .nan}", "cpus must be a positive number, not nan"),
        ("resources: {cpus: '1e400'}", "cpus must be a positive number, not '1e400'"),
        ("resources: {pids: .inf}", "pids must be a positive whole number, not inf"),
        ("resources: {cpus: 1e-10}", "cpus '1e-10' is below Docker's smallest quota"),
        ("resources: {memory: 1k}", "memory '1k' is below Docker's 6 MiB minimum"),
        ("shm_size: '1.5'", "shm_size: 1.5 means 1.5 bytes"),
        ("ports: {a: '²'}", "'²' is not a port"),
        ("gpus: '²'", "gpus: '²' is not all, none"),
        ("volumes: ['./x:/workspace/..']", "a volume cannot be mounted over the box's root /"),
        ("env: {NVIDIA_VISIBLE_DEVICES: all}", "NVIDIA_VISIBLE_DEVICES is set by devbox from gpus:"),
    ],
)
def test_values_docker_would_refuse_or_misread_are_located_errors(
    sandbox: Sandbox, line: str, expected: str
) -> None:
    sandbox.write("work/p.yaml", f"image: x\n{line}\n")
    found = problems_of(sandbox, "p.yaml")
    assert len(found) == 1 and found[0][0] == 2 and found[0][1].startswith(expected), found


def test_control_characters_are_a_located_yaml_error_not_a_crash(sandbox: Sandbox) -> None:
    sandbox.write("work/p.yaml", "image: x\x00\n")
    found = problems_of(sandbox, "p.yaml")
    assert len(found) == 1 and "unacceptable character" in found[0][1]


@pytest.mark.parametrize(
    "body",
    [
        "image: ${DEVBOX_TEST_UNSET_IMG}\n",  # not also "not an image reference"
        "image: x\nvolumes: ['${DEVBOX_TEST_UNSET_SRC}:/x']\n",  # not also "not a path"
        "extends: ./missing.yaml\n",  # not also "no image"
        "- a list\n- not a mapping\n",  # not also "no image"
    ],
)
def test_one_mistake_is_reported_once(sandbox: Sandbox, body: str) -> None:
    sandbox.write("work/p.yaml", body)
    assert len(problems_of(sandbox, "p.yaml")) == 1


def test_every_build_problem_is_reported_at_once(sandbox: Sandbox) -> None:
    sandbox.write("work/p.yaml", "build: {context: ./nope, dockerfile: 5, args: [1]}\n")
    found = problems_of(sandbox, "p.yaml")
    assert [message.split()[0] for _, message in found] == ["build", "dockerfile", "build"]
    assert len(found) == 3  # and no "no image" on top


def test_the_same_gpu_spelled_twice_is_caught() -> None:
    assert parse_gpus([0, "00"]) == "gpus: the same GPU is listed twice"
    assert parse_gpus(["03", 1]) == GpuRequest("devices", devices=("3", "1"))


def test_long_form_volume_problems_point_at_the_field(sandbox: Sandbox) -> None:
    sandbox.write(
        "work/p.yaml",
        "image: x\nvolumes:\n  - source: /tmp\n    target: rel\n  - source: 'bad name!'\n    target: /b\n",
    )
    assert [line for line, _ in problems_of(sandbox, "p.yaml")] == [4, 5]
