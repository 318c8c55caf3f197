from __future__ import annotations

import os

import pytest

from devbox.errors import InvalidInput, PolicyRefusal
from devbox.ops import resolve
from devbox.policy import capacity, rules
from tests.conftest import Sandbox

POLICY = """
defaults: {shm_size: 8g, resources: {pids: 4096}}
limits: {max_gpus_per_user: 2, max_cpus: 16, max_memory: 64g, max_boxes_per_user: 3}
allowed_images: ["pytorch/*", "devbox/*"]
forbidden_mounts: [/etc, /root]
bind_address: 127.0.0.1
"""


def refusal(sandbox: Sandbox, profile: str) -> PolicyRefusal:
    policy_path = sandbox.write("lab/policy.yaml", POLICY)
    sandbox.write("work/p.yaml", profile)
    with pytest.raises(PolicyRefusal) as caught:
        resolve.resolve("p.yaml", sandbox.settings())
    assert caught.value.policy_path == str(policy_path)
    return caught.value


def test_mounting_the_docker_socket_is_refused_with_the_rule(sandbox: Sandbox) -> None:
    exc = refusal(sandbox, "image: pytorch/pytorch:2\nvolumes: [/var/run/docker.sock:/var/run/docker.sock]\n")
    [problem] = exc.problems
    assert problem.origin.line == 2
    assert "/var/run/docker.sock" in problem.message and "always forbidden" in problem.message


@pytest.mark.parametrize(
    "source", ["/", "/var/run", "/etc", "/etc/ssh", "/root/.ssh", "/var/lib/docker/volumes"]
)
def test_forbidden_mounts_cover_parents_and_children(sandbox: Sandbox, source: str) -> None:
    exc = refusal(sandbox, f"image: pytorch/x\nvolumes: ['{source}:/mnt']\n")
    assert "exposes" in exc.problems[0].message


def test_forbidden_mount_through_a_symlink(sandbox: Sandbox) -> None:
    os.symlink("/etc", sandbox.cwd / "innocent")
    exc = refusal(sandbox, "image: pytorch/x\nvolumes: ['./innocent:/mnt']\n")
    assert "exposes /etc" in exc.problems[0].message


def test_limits_and_images_are_all_reported(sandbox: Sandbox) -> None:
    exc = refusal(sandbox, "image: ubuntu:24.04\ngpus: 3\nresources: {cpus: 32, memory: 128g}\n")
    messages = [p.message for p in exc.problems]
    assert len(messages) == 4
    assert "image 'ubuntu:24.04' is not allowed" in messages[0]
    assert "gpus: 3 exceeds limits.max_gpus_per_user = 2" in messages[1]
    assert "resources.cpus 32 exceeds limits.max_cpus = 16" in messages[2]
    assert "resources.memory 128g exceeds limits.max_memory = 64g" in messages[3]
    assert "policy.yaml:2:29" in messages[1]  # the rule is located in the policy file


def test_gpus_all_is_refused_under_a_per_user_gpu_limit(sandbox: Sandbox) -> None:
    exc = refusal(sandbox, "image: pytorch/x\ngpus: all\n")
    assert exc.problems[0].hint == "ask for at most 2: gpus: 2"


def test_policy_defaults_apply_and_unset_quotas_are_capped(sandbox: Sandbox) -> None:
    sandbox.write("lab/policy.yaml", POLICY)
    sandbox.write("work/p.yaml", "image: pytorch/x\ngpus: 1\nshm_size: 1g\n")
    resolved = resolve.resolve("p.yaml", sandbox.settings())
    assert resolved.profile.shm_size == 1024**3  # the profile beats the defaults
    assert resolved.profile.resources.pids == 4096  # from the defaults
    host = capacity.local()  # the maxima, but never more than this machine has
    assert resolved.profile.resources.cpus == min(16.0, host.cpus or 16)
    assert resolved.profile.resources.memory == min(64 * 1024**3, host.memory or 64 * 1024**3)


def test_no_policy_file_is_permissive(sandbox: Sandbox) -> None:
    lab = rules.load(sandbox.settings())
    assert lab.path is None and lab.bind_address == "127.0.0.1"
    assert "/var/run/docker.sock" in lab.forbidden_mounts


def test_a_missing_explicit_policy_is_an_error(sandbox: Sandbox) -> None:
    with pytest.raises(InvalidInput):
        rules.load(sandbox.settings(DEVBOX_POLICY=str(sandbox.root / "nope.yaml")))


def test_a_broken_policy_lists_every_problem(sandbox: Sandbox) -> None:
    path = sandbox.write(
        "p.yaml",
        "limits: {max_gpus: 2, max_cpus: -1}\nbind_address: everywhere\nforbidden_mounts: [etc]\nextra: 1\n",
    )
    with pytest.raises(InvalidInput) as caught:
        rules.load(sandbox.settings(DEVBOX_POLICY=str(path)))
    assert [p.origin.line for p in caught.value.problems] == [4, 1, 1, 3, 2]


def test_bind_address_reaches_the_spec(sandbox: Sandbox) -> None:
    sandbox.write("lab/policy.yaml", "bind_address: 10.1.2.3\n")
    resolved = resolve.resolve("default", sandbox.settings())
    assert {p.address for p in resolved.spec.ports} == {"10.1.2.3"}


def test_a_forbidden_entry_is_resolved_through_symlinks_too(sandbox: Sandbox) -> None:
    # The admin forbids a path through a symlinked folder; its real spelling is refused too.
    real = sandbox.cwd / "real"
    (real / "secret").mkdir(parents=True)
    os.symlink(real, sandbox.cwd / "link")
    sandbox.write("lab/policy.yaml", f"forbidden_mounts: [{sandbox.cwd / 'link' / 'secret'}]\n")
    sandbox.write("work/p.yaml", f"image: x\nvolumes: ['{real / 'secret'}:/s']\n")
    with pytest.raises(PolicyRefusal) as caught:
        resolve.resolve("p.yaml", sandbox.settings())
    assert "forbidden_mounts" in caught.value.problems[0].message


def test_dockerds_containerd_socket_is_always_forbidden(sandbox: Sandbox) -> None:
    exc = refusal(sandbox, "image: pytorch/x\nvolumes: ['/run/docker/containerd/containerd.sock:/c']\n")
    assert "always forbidden" in exc.problems[0].message


def test_an_infinite_cpu_limit_is_a_policy_error(sandbox: Sandbox) -> None:
    path = sandbox.write("p.yaml", "limits: {max_cpus: .inf}\n")
    with pytest.raises(InvalidInput) as caught:
        rules.load(sandbox.settings(DEVBOX_POLICY=str(path)))
    assert [p.origin.line for p in caught.value.problems] == [1]


def test_policy_defaults_cannot_extend(sandbox: Sandbox) -> None:
    path = sandbox.write("p.yaml", "defaults: {shm_size: 1g, extends: pytorch-gpu}\n")
    with pytest.raises(InvalidInput) as caught:
        rules.load(sandbox.settings(DEVBOX_POLICY=str(path)))
    assert ["cannot extend" in p.message for p in caught.value.problems] == [True]
