"""Fuzzing `devbox render` (issue 9): no input makes devbox fail unexpectedly or create anything.

hypothesis writes profile documents, lab policies, override flags and the PROFILE argument,
and each goes through the real command (typer's test runner, in this process: the same
parsing, resolving, policy and rendering as `devbox render` in a shell). Every run must end
in exit 0 (rendered), 2 (invalid input, located), 3 (refused by the policy) or 5 (no such
profile), never in "devbox failed unexpectedly", and never ask the engine to make anything:
the engine is a stub that answers image look-ups and fails the test on any other call.

Bounded for CI to about a minute: FUZZ_EXAMPLES inputs (default 1500) for profiles and
flags, a third as many for policy files, no deadline per input; the number tried is printed
(`fuzz: N inputs ...`) for the issue's closing note. FUZZ_EXAMPLES=20000 hunts for longer.
"""

from __future__ import annotations

import os
import string
from collections.abc import Iterator
from typing import Any

import pytest
import typer.main
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from devbox.cli.commands import app
from tests.conftest import Sandbox

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "1500"))  # about 50 s here; the policy test runs a third
ALLOWED_EXITS = {0, 2, 3, 5}
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,  # no .hypothesis folder in the tree; failures print their reproducer
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)
COUNT = {"inputs": 0, "unexpected": 0}
EXITS: dict[int, int] = {}  # exit status -> inputs: shows the inputs reach past the first checks
runner = CliRunner()
COMMAND = typer.main.get_command(app)

# --- what a hostile but fair user types -------------------------------------------------

LONG = "a" * 300
TRICKY = [
    "",
    " ",
    "8g",
    "512MiB",
    "1.5g",
    "1e300",
    "1e10",
    "1e23",
    "9" * 400,
    "99999999999999999999t",
    "0",
    "-1",
    "0.001",
    "nan",
    "inf",
    "all",
    "none",
    "0,3",
    "GPU-0123abcd",
    "8080:8888",
    "65536",
    "host",
    "root",
    "1000:1000",
    "devbox/devbox:0.1",
    "pytorch/pytorch:2.7.0",
    "Upper/Case",
    "${HOME}",
    "${NOPE}",
    "${BAD NAME}",
    "$$",
    "~",
    "~/x",
    "~nosuchuser/x",
    "~root/x",
    ".",
    "./data",
    "../..",
    "/",
    "/proc/x",
    "/var/run/docker.sock",
    "/a:b",
    "/a,b",
    "/tmp/x\ny",
    "/tmp/x\x00y",
    "/tmp/x\x1by",
    LONG,
    f"./{LONG}",
    f"/tmp/{LONG}/x",
    "ctx",
    "ctx/Dockerfile",
    "good.env",
    "bad.env",
    "fifo",
    "key.pub",
    "key",
    "data:/data",
    "./w:/workspace:ro",
    "./w:/workspace:rx",
    "KEY=VALUE",
    "NVIDIA_VISIBLE_DEVICES=0",
    "(?P<value>\\S+)",
    "([",
]
texts = st.one_of(
    st.sampled_from(TRICKY),
    st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=24),
    st.text(alphabet=string.ascii_lowercase + "/.:~,-_ =$\\{}\n\t0123456789", max_size=24),
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.integers(min_value=-5, max_value=70000),
    st.floats(allow_nan=True, allow_infinity=True),
    texts,
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(texts, inner, max_size=4),
    max_leaves=10,
)


def mostly(*valid: Any) -> st.SearchStrategy[Any]:
    """Usually one of the `valid` values (so inputs get past the first check), else anything."""
    good = st.sampled_from(valid)
    return st.one_of(*[good] * 7, values)


def mapping(**keys: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """A mapping with some of `keys`, now and then anything at all instead."""
    good = st.fixed_dictionaries({}, optional=keys)
    return st.one_of(*[good] * 7, values)


volume_items = st.one_of(
    st.sampled_from(["./data:/data", "data:/data", "~/x:/x:ro", "/a,b:/c,d", "./w:/workspace"]),
    st.sampled_from(["./data:/data", "data:/data", "~/x:/x:ro", "/a,b:/c,d", "./w:/workspace"]),
    st.builds(lambda s, t, m: f"{s}:{t}{m}", texts, texts, st.sampled_from(["", ":ro", ":rw", ":x"])),
    mapping(source=mostly("./ro", "~/x", "/a,b", "data"), target=mostly("/ro", "/x,y"), readonly=scalars),
)
SIZES = ("1g", "512m", "8g", "1.5g", 1073741824, "64k")
PROFILE_KEYS: dict[str, st.SearchStrategy[Any]] = {
    "extends": mostly("default", "pytorch-gpu", "./q.yaml", "q.yaml"),
    "image": mostly("devbox/devbox:0.1", "pytorch/pytorch:2.7.0", "localhost:5000/x/y:1"),
    "build": mapping(
        context=mostly("ctx", "./ctx", "."), dockerfile=mostly("Dockerfile", "ctx/Dockerfile"), args=values
    ),
    "command": mostly(["sleep", "infinity"], "jupyter lab --port 8888", ["a", 1, 2.5]),
    "gpus": mostly("all", "none", 0, 1, 2, "0,3", [0, 1], "GPU-abc", "1"),
    "shm_size": mostly(*SIZES),
    "resources": mapping(
        cpus=mostly(0.5, 1, 2, 4, 16, "2"),
        memory=mostly(*SIZES),
        pids=mostly(64, 4096, "100"),
        disk=mostly(*SIZES),
    ),
    "ports": st.one_of(
        *[mostly({"jupyter": 8888, "ssh": 22}, {"web": "8080:80"}, {})] * 3, st.dictionaries(texts, scalars)
    ),
    "volumes": st.one_of(*[st.lists(volume_items, max_size=3)] * 7, values),
    "env": st.one_of(
        *[mostly({"A": "1", "B": "${HOME}"}, ["A=1", "B=2"])] * 3, st.dictionaries(texts, scalars)
    ),
    "env_file": mostly("good.env", ["good.env", "good.env"]),
    "user": mostly("host", "root", 1000, "1000:1000", "jovyan"),
    "workdir": mostly("/workspace", "/"),
    "labels": st.one_of(*[mostly({"a": "b", "team": 7})] * 3, st.dictionaries(texts, scalars, max_size=3)),
    "ready": mapping(timeout=mostly(5, 0.5, 3600)),
    "credentials": st.lists(
        mapping(name=mostly("token"), pattern=mostly("token=(?P<value>\\S+)")), max_size=2
    ),
    "ssh": mapping(authorized_keys=mostly("key.pub", "~/key.pub"), password=mostly(True, False)),
}
OTHER_KEYS = {k: v for k, v in PROFILE_KEYS.items() if k not in ("image", "build")}
profiles = st.one_of(
    # Mostly an image or a build (one of them: both is a mistake said at once), then the rest.
    *[st.fixed_dictionaries({"image": PROFILE_KEYS["image"]}, optional=OTHER_KEYS)] * 3,
    st.fixed_dictionaries({"build": PROFILE_KEYS["build"]}, optional=OTHER_KEYS),
    st.fixed_dictionaries({}, optional=PROFILE_KEYS),
)
limits = mapping(
    max_gpus_per_user=mostly(0, 1, 2, 8),
    max_cpus=mostly(0.5, 2, 16, 1000),
    max_memory=mostly("1g", "64g", "100t"),
    max_boxes_per_user=mostly(0, 1, 3),
    max_pids=mostly(100, 4096),
    max_shm_size=mostly("1g", "64m"),
    max_disk=mostly("10g", "1t"),
)
policies = (
    st.none()
    | st.none()
    | st.fixed_dictionaries(
        {},
        optional={
            "defaults": st.fixed_dictionaries(
                {}, optional={k: v for k, v in OTHER_KEYS.items() if k != "extends"}
            ),
            "limits": limits,
            "allowed_images": mostly(["devbox/*"], ["pytorch/*", "devbox/*"], []),
            "allow_build": mostly(True, False),
            "forbidden_mounts": mostly(["/etc"], ["/tmp"], []),
            "bind_address": mostly("127.0.0.1", "::1", "0.0.0.0"),
        },
    )
)
# What argv can hold: any text but NUL (the kernel ends an argument there).
arg_texts = texts.filter(lambda t: "\x00" not in t)
FLAG_VALUES = {
    "--image": ["devbox/devbox:0.1", "pytorch/pytorch:2"],
    "--gpus": ["1", "all", "none", "0,1"],
    "--shm-size": ["1g", "2g"],
    "--cpus": ["1", "0.5", "2"],
    "--memory": ["4g", "512m"],
    "-p": ["tb=6006", "8080", "web=8080:80"],
    "-v": ["./x:/x", "data:/data:ro"],
    "-e": ["A=1", "HOME", "NOPE"],
    "--format": ["json", "docker"],
}
flags = st.lists(
    st.sampled_from(sorted(FLAG_VALUES)).flatmap(
        lambda flag: st.tuples(st.just(flag), st.one_of(*[st.sampled_from(FLAG_VALUES[flag])] * 3, arg_texts))
    ),
    max_size=4,
)
profile_args = st.one_of(
    st.just("p.yaml"),
    st.just("p.yaml"),
    st.just("p.yaml"),
    st.sampled_from(["./p.yaml", "default", "pytorch-gpu", "nosuch", "~/p.yaml"]),
    arg_texts,
)
dumped = profiles.map(lambda d: yaml.safe_dump(d, allow_unicode=True))
documents = st.one_of(
    dumped,
    dumped,
    dumped,
    dumped,
    st.text(max_size=200),  # YAML's own corners: anchors, tags, tabs, odd scalars
    st.binary(max_size=200).map(lambda b: b.decode("utf-8", "surrogateescape")),  # any bytes, as written
)

# --- the world the inputs meet -----------------------------------------------------------


class NoCreation:
    """Stands for the engine: image look-ups only; anything else fails the test."""

    host = "unix:///nonexistent/fuzz.sock"

    def __init__(self, protocol: bool) -> None:
        self.protocol = protocol
        self.calls: list[str] = []

    def image_labels(self, image: str) -> dict[str, str] | None:
        return {"devbox.protocol": "1"} if self.protocol else None

    def __getattr__(self, name: str) -> Any:
        self.calls.append(name)
        raise AssertionError(f"render asked the engine to {name}")


@pytest.fixture
def world(sandbox: Sandbox) -> Iterator[Sandbox]:
    """The sandbox with the files the inputs name: a build context, env files, keys, a FIFO."""
    work = sandbox.cwd
    (work / "ctx").mkdir()
    (work / "ctx" / "Dockerfile").write_text("FROM scratch\n")
    (work / "Dockerfile").write_text("FROM scratch\n")
    (work / "good.env").write_text("A=1\n")
    (work / "bad.env").write_bytes(b"\xff\xfe=1\n")
    (work / "key.pub").write_text("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE devbox@test\n")
    (work / "key").write_text(
        "-----BEGIN OPENSSH PRIVATE KEY-----\nb3Blbn\n-----END OPENSSH PRIVATE KEY-----\n"
    )
    (work / "q.yaml").write_text("image: devbox/devbox:0.1\n")
    os.mkfifo(work / "fifo")
    yield sandbox


def _run(
    world: Sandbox,
    monkeypatch: pytest.MonkeyPatch,
    document: str,
    policy: Any,
    argv: list[str],
    protocol: bool,
) -> None:
    profile = world.cwd / "p.yaml"
    profile.write_bytes(document.encode("utf-8", "surrogateescape"))
    policy_file = world.lab / "policy.yaml"
    if policy is None:
        policy_file.unlink(missing_ok=True)
    else:
        policy_file.write_text(
            policy if isinstance(policy, str) else yaml.safe_dump(policy, allow_unicode=True)
        )
    engine = NoCreation(protocol)
    monkeypatch.setattr("devbox.engine.connect", lambda *a, **k: engine)
    # The command tree, built once as `devbox` builds it once per process (typer's runner
    # would rebuild it for every input: 90 % of the time, none of it devbox's).
    monkeypatch.setattr("typer.testing._get_command", lambda _: COMMAND)
    result = runner.invoke(app, argv)
    COUNT["inputs"] += 1
    EXITS[result.exit_code] = EXITS.get(result.exit_code, 0) + 1
    unexpected = result.exit_code not in ALLOWED_EXITS or "unexpectedly" in result.output
    if unexpected or engine.calls or (result.exception and not isinstance(result.exception, SystemExit)):
        COUNT["unexpected"] += 1
        raise AssertionError(
            f"devbox {argv} exited {result.exit_code}; engine calls {engine.calls}\n"
            f"profile:\n{document}\npolicy:\n{policy}\noutput:\n{result.output}"
        ) from result.exception


def _argv(profile_arg: str, pairs: list[tuple[str, str]]) -> list[str]:
    return ["render", profile_arg, *[part for pair in pairs for part in pair]]


@FUZZ
@given(document=documents, policy=policies, profile_arg=profile_args, pairs=flags, protocol=st.booleans())
def test_render_never_fails_unexpectedly_on_profiles_and_flags(
    world: Sandbox,
    monkeypatch: pytest.MonkeyPatch,
    document: str,
    policy: Any,
    profile_arg: str,
    pairs: list[tuple[str, str]],
    protocol: bool,
) -> None:
    _run(world, monkeypatch, document, policy, _argv(profile_arg, pairs), protocol)


@settings(FUZZ, max_examples=max(1, EXAMPLES // 3))
@given(policy=st.text(max_size=300) | policies.map(lambda p: yaml.safe_dump(p, allow_unicode=True)))
def test_render_never_fails_unexpectedly_on_policy_files(
    world: Sandbox, monkeypatch: pytest.MonkeyPatch, policy: str
) -> None:
    _run(world, monkeypatch, "image: devbox/devbox:0.1\n", policy, ["render", "p.yaml"], False)


def test_the_fuzz_count_is_printed(capsys: pytest.CaptureFixture[str], world: Sandbox) -> None:
    """Last in the module: say the count where CI's log shows it, whatever the capture mode."""
    with capsys.disabled():
        exits = ", ".join(f"exit {code}: {n}" for code, n in sorted(EXITS.items()))
        tried, unexpected = COUNT["inputs"], COUNT["unexpected"]
        print(f"\nfuzz: {tried} inputs through devbox render, {unexpected} unexpected ({exits})")
    assert COUNT["unexpected"] == 0
