"""Lab mode's policy keys and rules: who a box runs as, builds, images that may start as root."""

from __future__ import annotations

import dataclasses
import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest

from devbox import caller, settings
from devbox.box import labels
from devbox.engine.docker import networks
from devbox.engine.docker.api import DockerAPI
from devbox.engine.docker.engine import DockerEngine
from devbox.errors import InvalidInput, Origin, PolicyRefusal, Refused
from devbox.ops import resolve
from devbox.placement import gpus, inventory
from devbox.policy import lab, rules
from devbox.profile import loader
from devbox.profile.model import BuildSpec, GpuRequest, Profile, Resources, StartCommand
from tests.conftest import Sandbox

ALICE = caller.Caller("alice", 1000, 1000, (1000, 2000), Path("/home/alice"))


def lab_settings(sandbox: Sandbox, who: caller.Caller = ALICE) -> settings.Settings:
    """Lab-mode settings for `who`, working in the sandbox, with the sandbox's lab folder."""
    return settings.for_caller(dataclasses.replace(who, home=sandbox.home), {}, sandbox.cwd, sandbox.lab)


@pytest.fixture
def as_caller(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """`caller.rights` recorded, not acted on (the tests run as root: no real seteuid here).

    The list holds, for each profile load, whether it happened inside a `rights` block.
    """
    depth = [0]
    loads: list[bool] = []

    @contextmanager
    def rights(who: caller.Caller | None) -> Iterator[None]:
        depth[0] += who is not None
        try:
            yield
        finally:
            depth[0] -= who is not None

    real_load = loader.load

    def load(*args: Any, **kwargs: Any) -> Profile:
        loads.append(depth[0] > 0)
        return real_load(*args, **kwargs)

    monkeypatch.setattr(caller, "rights", rights)
    monkeypatch.setattr(loader, "load", load)
    return loads


def a_profile(**changes: object) -> Profile:
    base = Profile(
        name="p",
        path="/work/p.yaml",
        image="devbox/devbox:0.1",
        build=None,
        command=None,
        gpus=GpuRequest(),
        shm_size=None,
        resources=Resources(),
        ports=(),
        volumes=(),
        env={},
        env_files=(),
        user=None,
        workdir=None,
        labels={},
        ready_timeout=60.0,
        credentials=(),
        origins={"user": Origin("/work/p.yaml", 3, 7), "build": Origin("/work/p.yaml", 2, 8)},
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def policy_of(sandbox: Sandbox, text: str) -> rules.Policy:
    path = sandbox.write("lab/policy.yaml", text)
    return rules.load(sandbox.settings(DEVBOX_POLICY=str(path)))


def policy_problems(sandbox: Sandbox, text: str) -> list[tuple[int | None, str]]:
    with pytest.raises(InvalidInput) as caught:
        policy_of(sandbox, text)
    return [(p.origin.line, p.message) for p in caught.value.problems]


# --- the policy keys ------------------------------------------------------------------------


def test_lab_keys_are_read(sandbox: Sandbox) -> None:
    policy = policy_of(
        sandbox,
        "admins: [carol, '@labadmins', staff]\nallow_root: true\n"
        "allowed_mounts: [/data, /scratch/]\ngpu_inventory: 8\n",
    )
    assert policy.admins == ("carol", "@labadmins", "staff")
    assert policy.allow_root is True
    assert policy.allowed_mounts == ("/data", "/scratch")
    assert policy.gpu_inventory == 8 and rules.gpu_inventory_value(policy) == "8"
    assert policy.origins["allow_root"].line == 2


def test_lab_keys_default_to_the_strict_side(sandbox: Sandbox) -> None:
    for policy in (rules.Policy(), policy_of(sandbox, "bind_address: 127.0.0.1\n")):
        assert policy.admins == () and policy.allow_root is False and policy.allowed_mounts == ()
        assert policy.gpu_inventory is None and rules.gpu_inventory_value(policy) is None
        assert policy.allow_build is True and policy.allow_build_explicit is False
    assert policy_of(sandbox, "allow_build: true\n").allow_build_explicit is True


def test_gpu_inventory_may_be_a_csv_path(sandbox: Sandbox) -> None:
    policy = policy_of(sandbox, "gpu_inventory: /etc/devbox//gpus.csv\n")
    assert rules.gpu_inventory_value(policy) == "/etc/devbox/gpus.csv"
    assert policy_of(sandbox, "gpu_inventory: '4'\n").gpu_inventory == 4


def test_broken_lab_keys_are_each_located(sandbox: Sandbox) -> None:
    found = policy_problems(
        sandbox,
        "admins: [carol, 'bad name']\nallow_root: yes please\n"
        "allowed_mounts: [data, /ok]\ngpu_inventory: 0\n",
    )
    assert [line for line, _ in found] == [1, 2, 3, 4]
    messages = " | ".join(m for _, m in found)
    assert "'bad name' is not a user or group name" in messages
    assert "allow_root must be true or false" in messages
    assert "'data' is not an absolute path" in messages
    assert "gpu_inventory must be a number of GPUs from 1 to 1024" in messages


@pytest.mark.parametrize("value", ["true", "-2", "2000", "gpus.csv", "99999999999999", "[1]"])
def test_a_gpu_inventory_that_is_no_count_nor_absolute_path_is_refused(sandbox: Sandbox, value: str) -> None:
    [(line, message)] = policy_problems(sandbox, f"gpu_inventory: {value}\n")
    assert line == 1 and message.startswith("gpu_inventory must be")


def test_admins_and_allowed_mounts_must_be_lists(sandbox: Sandbox) -> None:
    found = policy_problems(sandbox, "admins: carol\nallowed_mounts: /data\n")
    assert found == [
        (1, "admins must be a list of strings"),
        (2, "allowed_mounts must be a list of strings"),
    ]


# --- the GPU inventory: the policy stands in for an unset DEVBOX_GPU_INVENTORY ---------------


def test_the_policys_gpu_inventory_is_used_when_the_variable_is_unset(sandbox: Sandbox) -> None:
    policy = policy_of(sandbox, "gpu_inventory: 3\n")
    found = inventory.read({"PATH": "/nowhere"}, policy).gpus
    assert [g.index for g in found or []] == ["0", "1", "2"] and all(g.declared for g in found or [])
    assert inventory.driver({"PATH": "/nowhere"}, policy) is None  # declared GPUs: no driver to ask
    assert len(gpus.require_inventory({"PATH": "/nowhere"}, policy)) == 3
    # The variable, where set, wins outside lab mode (in lab mode the helper sets it from the policy).
    assert len(gpus.inventory({"DEVBOX_GPU_INVENTORY": "2"}, policy) or []) == 2
    assert inventory.read({"PATH": "/nowhere"}).gpus is None


def test_a_policy_inventory_file_that_is_missing_names_the_policy_line(sandbox: Sandbox) -> None:
    policy = policy_of(sandbox, "allow_root: false\ngpu_inventory: /nowhere/gpus.csv\n")
    with pytest.raises(InvalidInput) as caught:
        inventory.read({}, policy)
    assert caught.value.message.startswith("gpu_inventory=/nowhere/gpus.csv is neither")
    assert caught.value.problems[0].origin.line == 2


# --- who the box runs as --------------------------------------------------------------------


def test_outside_lab_mode_nothing_changes(sandbox: Sandbox) -> None:
    profile = a_profile(user="root", build=BuildSpec(".", "Dockerfile", {}), image=None)
    strict = rules.Policy(allowed_images=("devbox/*",))
    assert lab.check(profile, strict, sandbox.settings()) is profile
    assert lab.violations(profile, strict, sandbox.settings()) == []


def test_an_unset_user_is_the_caller(sandbox: Sandbox) -> None:
    assert lab.check(a_profile(), rules.Policy(), lab_settings(sandbox)).user == "host"
    assert lab.check(a_profile(user="host"), rules.Policy(), lab_settings(sandbox)).user == "host"


@pytest.mark.parametrize("user", ["root", "0", "0:0"])
def test_root_is_refused_without_allow_root_naming_the_line_and_why(sandbox: Sandbox, user: str) -> None:
    with pytest.raises(PolicyRefusal) as caught:
        lab.check(a_profile(user=user), rules.Policy(), lab_settings(sandbox))
    assert caught.value.exit_code == 3
    [problem] = caught.value.problems
    assert str(problem.origin) == "/work/p.yaml:3:7"
    assert "allow_root is false" in problem.message
    assert "root in a box with a bind mount is root on the host" in problem.message
    assert problem.hint and "user: host" in problem.hint


@pytest.mark.parametrize("remote", ["root", "0", "vscode"])
def test_a_devcontainer_remote_user_cannot_run_its_commands_as_root(sandbox: Sandbox, remote: str) -> None:
    # containerUser unset (the box runs as the caller) but remoteUser root: postCreateCommand
    # would run as root in a box holding the caller's binds, a setuid file away from the host.
    commands = (StartCommand("postCreateCommand", shell="id", user=remote),)
    origins = {"post_create": Origin("/p/.devcontainer/devcontainer.json", 4, 3)}
    profile = a_profile(post_create=commands, post_start=commands, origins=origins)
    with pytest.raises(PolicyRefusal) as caught:
        lab.check(profile, rules.Policy(), lab_settings(sandbox))
    problem = caught.value.problems[0]
    assert str(problem.origin) == "/p/.devcontainer/devcontainer.json:4:3"
    assert problem.message.startswith(f"remoteUser (running postCreateCommand): {remote}")
    assert "allow_root is false" in problem.message
    mine = (StartCommand("postCreateCommand", shell="id", user="1000"),)
    assert lab.check(a_profile(post_create=mine), rules.Policy(), lab_settings(sandbox)).user == "host"
    assert lab.check(profile, rules.Policy(allow_root=True), lab_settings(sandbox)).user == "host"


def test_allow_root_lets_root_and_any_user_in(sandbox: Sandbox) -> None:
    policy = rules.Policy(allow_root=True)
    for user in ("root", "0:0", "jovyan", "1001"):
        assert lab.check(a_profile(user=user), policy, lab_settings(sandbox)).user == user


@pytest.mark.parametrize(
    ("user", "says"),
    [
        ("1001", "another user's uid (yours is 1000)"),
        ("jovyan", "a user of the image, not as you"),
        ("alice", "a user of the image, not as you"),  # a name is what the image's passwd says
        ("1000:0", "names group 0, which is not yours"),
    ],
)
def test_any_other_user_is_refused(sandbox: Sandbox, user: str, says: str) -> None:
    with pytest.raises(PolicyRefusal) as caught:
        lab.check(a_profile(user=user), rules.Policy(), lab_settings(sandbox))
    assert says in caught.value.problems[0].message


@pytest.mark.parametrize("user", ["1000", "1000:1000", "1000:2000"])
def test_the_callers_own_uid_and_groups_are_fine(sandbox: Sandbox, user: str) -> None:
    assert lab.check(a_profile(user=user), rules.Policy(), lab_settings(sandbox)).user == user


def test_lab_and_general_rules_are_refused_together(sandbox: Sandbox) -> None:
    policy = rules.Policy(allowed_images=("pytorch/*",))
    with pytest.raises(PolicyRefusal) as caught:
        lab.check(a_profile(user="root"), policy, lab_settings(sandbox))
    messages = [p.message for p in caught.value.problems]
    assert len(messages) == 2 and "user: root" in messages[0] and "is not allowed" in messages[1]
    assert "2 rules broken" in caught.value.message


# --- builds and images ----------------------------------------------------------------------

BUILD = {"image": None, "build": BuildSpec("/work", "Dockerfile", {})}


def test_a_build_under_an_image_list_needs_allow_build_written(sandbox: Sandbox) -> None:
    listed = rules.Policy(allowed_images=("devbox/*",))
    with pytest.raises(PolicyRefusal) as caught:
        lab.check(a_profile(**BUILD), listed, lab_settings(sandbox))
    [problem] = caught.value.problems
    assert str(problem.origin) == "/work/p.yaml:2:8"
    assert "allow_build: true is not written" in problem.message and "FROM" in problem.message
    written = dataclasses.replace(listed, allow_build_explicit=True)
    assert lab.check(a_profile(**BUILD), written, lab_settings(sandbox)).build is not None
    # No image list: builds are as open as images are.
    assert lab.check(a_profile(**BUILD), rules.Policy(), lab_settings(sandbox)).build is not None


def test_allow_build_false_is_said_once(sandbox: Sandbox) -> None:
    policy = rules.Policy(allowed_images=("devbox/*",), allow_build=False, allow_build_explicit=True)
    with pytest.raises(PolicyRefusal) as caught:
        lab.check(a_profile(**BUILD, user="root"), policy, lab_settings(sandbox))
    messages = [p.message for p in caught.value.problems]
    assert sum("building images is not allowed" in m for m in messages) == 1


def test_only_allow_root_lets_a_lab_box_start_as_root() -> None:
    listed = rules.Policy(allowed_images=("devbox/*",))
    assert not lab.may_start_as_root(a_profile(), listed)  # an allowed image is not a trusted root
    assert not lab.may_start_as_root(a_profile(), rules.Policy())
    assert lab.may_start_as_root(a_profile(**BUILD), rules.Policy(allow_root=True))


# --- resolve in lab mode --------------------------------------------------------------------


def test_a_lab_box_runs_as_the_caller_on_their_network(sandbox: Sandbox, as_caller: list[bool]) -> None:
    sandbox.write("work/p.yaml", "image: ubuntu:24.04\n")
    resolved = resolve.resolve("p.yaml", lab_settings(sandbox), probe=lambda _: {labels.PROTOCOL: "1"})
    assert as_caller == [True]  # the profile was read with the caller's rights
    assert resolved.profile.user == "host"
    box = resolved.spec
    assert (box.user, box.protocol, box.owner) == ("1000:1000", True, "alice")
    assert box.security_opt == ("no-new-privileges:true",)
    assert box.network == "devbox-alice"


def test_a_protocol_image_starts_as_the_caller_unless_root_is_allowed(
    sandbox: Sandbox, as_caller: list[bool]
) -> None:
    sandbox.write("lab/policy.yaml", "allowed_images: ['devbox/*']\n")
    sandbox.write("work/p.yaml", "image: devbox/devbox:0.1\n")
    resolved = resolve.resolve("p.yaml", lab_settings(sandbox), probe=lambda _: {labels.PROTOCOL: "1"})
    assert resolved.spec.protocol and resolved.spec.user == "1000:1000"  # no root process at all
    sandbox.write("lab/policy.yaml", "allowed_images: ['devbox/*']\nallow_root: true\n")
    rooted = resolve.resolve("p.yaml", lab_settings(sandbox), probe=lambda _: {labels.PROTOCOL: "1"})
    assert rooted.spec.protocol and rooted.spec.user is None  # starts as root, drops to the caller
    assert (resolved.spec.env["DEVBOX_UID"], resolved.spec.env["DEVBOX_GID"]) == ("1000", "1000")
    assert resolved.spec.network == "devbox-alice"  # kept when the spec is made again for the image


def test_lab_mode_refuses_root_through_resolve(sandbox: Sandbox, as_caller: list[bool]) -> None:
    sandbox.write("work/p.yaml", "image: x\nuser: root\n")
    with pytest.raises(PolicyRefusal) as caught:
        resolve.resolve("p.yaml", lab_settings(sandbox))
    assert caught.value.problems[0].origin.line == 2
    assert caught.value.policy_path.startswith("(")  # no policy file: the built-in rules


def test_flag_problems_still_read_the_profile_as_the_caller(sandbox: Sandbox, as_caller: list[bool]) -> None:
    from devbox.profile.flags import Overrides

    sandbox.write("work/p.yaml", "image: x\n")
    with pytest.raises(InvalidInput):
        resolve.resolve("p.yaml", lab_settings(sandbox), Overrides(shm_size="lots"))
    assert as_caller == [True]


def test_outside_lab_mode_the_spec_is_as_before(sandbox: Sandbox) -> None:
    sandbox.write("work/p.yaml", "image: x\n")
    box = resolve.resolve("p.yaml", sandbox.settings(), probe=lambda _: {labels.PROTOCOL: "1"}).spec
    assert box.network is None and box.security_opt == ("no-new-privileges",) and box.protocol


# --- the owner's network on the Docker engine -----------------------------------------------


class Answer:
    def __init__(self, status: int, body: object) -> None:
        self.status = status
        self.body = json.dumps(body).encode()

    def read(self) -> bytes:
        return self.body


class Networks:
    """Docker's networks: a name filter that matches by substring, duplicates refused on create."""

    def __init__(self, before_create: Callable[[], object] | None = None) -> None:
        self.networks: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self.before_create = before_create
        self.sent: list[tuple[str, str]] = []
        self.bodies: list[dict[str, Any]] = []

    def open(self, method: str, path: str, data: bytes | None, *_: object) -> Answer:
        bare, _sep, query = path.partition("?")
        self.sent.append((method, bare))
        if method == "GET" and bare == "/networks":
            [wanted] = json.loads(parse_qs(query)["filters"][0])["name"]
            with self.lock:
                return Answer(200, [n for n in self.networks if wanted in n["Name"]])
        if method == "POST" and bare == "/networks/create":
            sent = json.loads(data or b"{}")
            if self.before_create is not None:
                self.before_create()
            with self.lock:
                if any(n["Name"] == sent["Name"] for n in self.networks):
                    return Answer(409, {"message": f"network with name {sent['Name']} already exists"})
                self.networks.append({"Name": sent["Name"], "Id": "n1", "Labels": sent["Labels"]})
            return Answer(201, {"Id": "n1"})
        if method == "POST" and bare == "/containers/create":
            self.bodies.append(json.loads(data or b"{}"))
            return Answer(201, {"Id": "c1"})
        raise AssertionError(f"unexpected {method} {path}")


def docker_over(transport: Networks) -> DockerEngine:
    return DockerEngine(DockerAPI(transport, 5, "unix:///x.sock"), "unix:///x.sock")  # type: ignore[arg-type]


def test_the_network_is_made_once_with_its_labels_and_reused() -> None:
    docker = Networks()
    docker.networks.append({"Name": "devbox-alice-old", "Labels": {}})  # the filter matches it too
    engine = docker_over(docker)
    networks.ensure(engine, "devbox-alice", "alice")
    networks.ensure(engine, "devbox-alice", "alice")
    made = [n for n in docker.networks if n["Name"] == "devbox-alice"]
    assert made == [
        {"Name": "devbox-alice", "Id": "n1", "Labels": {"devbox.owner": "alice", "devbox.network": "1"}}
    ]
    assert docker.sent.count(("POST", "/networks/create")) == 1


def test_two_ups_making_the_network_at_once_both_succeed() -> None:
    barrier = threading.Barrier(2, timeout=5)
    docker = Networks(before_create=barrier.wait)  # both looked, found nothing, then create
    errors: list[BaseException] = []

    def make() -> None:
        try:
            networks.ensure(docker_over(docker), "devbox-alice", "alice")
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=make) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == [] and len(docker.networks) == 1
    assert docker.sent.count(("POST", "/networks/create")) == 2  # one made it, one was told 409


@pytest.mark.parametrize(
    "found", [{"devbox.owner": "bob", "devbox.network": "1"}, {}, {"devbox.owner": "alice"}]
)
def test_a_network_devbox_did_not_make_for_the_owner_is_refused(found: dict[str, str]) -> None:
    docker = Networks()
    docker.networks.append({"Name": "devbox-alice", "Labels": found})
    with pytest.raises(Refused, match="devbox did not make it for alice"):
        networks.ensure(docker_over(docker), "devbox-alice", "alice")


def test_a_lab_box_is_created_on_its_network(sandbox: Sandbox, as_caller: list[bool]) -> None:
    sandbox.write("work/p.yaml", "image: x\n")
    docker = Networks()
    docker_over(docker).create(resolve.resolve("p.yaml", lab_settings(sandbox)).spec, {})
    assert [m for m in docker.sent if m[0] == "POST"] == [
        ("POST", "/networks/create"),
        ("POST", "/containers/create"),
    ]
    assert docker.bodies[0]["HostConfig"]["NetworkMode"] == "devbox-alice"


def test_lab_boxes_publish_no_privileged_port_and_mount_nothing_where_gpus_are_asked_for(
    sandbox: Sandbox, as_caller: list[bool]
) -> None:
    sandbox.write(
        "work/p.yaml",
        "image: x\nports: {web: '80:8080', ok: '8081:8081', any: 9000}\n"
        "volumes: [gpu:/var/run/nvidia-container-devices/all]\n",
    )
    with pytest.raises(PolicyRefusal) as caught:
        resolve.resolve("p.yaml", lab_settings(sandbox))
    text = [p.message for p in caught.value.problems]
    assert len(text) == 2, text
    assert "host port 80 is a privileged port" in text[0] and "8080" not in text[0].split("port 80")[0]
    assert "nvidia-container-devices" in text[1]
    # Outside lab mode these are the host admin's own business (whoever holds the socket is root).
    outside = settings.from_environment({"HOME": str(sandbox.home)}, sandbox.cwd)
    assert lab.violations(resolve.loader.load("p.yaml", outside), rules.Policy(), outside) == []
