"""A quota the host cannot give (cpus above its CPUs, memory above its RAM) is a located profile
error before create (policy/capacity.py, ops/resolve.py check_capacity), not Docker's refusal."""

from __future__ import annotations

import pytest

from devbox.engine.fake import FakeEngine
from devbox.errors import InvalidInput
from devbox.ops import lifecycle, resolve
from devbox.ops.reporter import QuietReporter
from devbox.policy import capacity
from devbox.profile import flags, loader
from tests.conftest import Sandbox
from tests.unit.conftest import PLAIN

SMALL = capacity.Capacity(cpus=2, memory=4 * 2**30)


def test_quotas_above_the_host_are_located_at_their_keys(sandbox: Sandbox) -> None:
    path = sandbox.write("work/big.yaml", f"image: {PLAIN}\nresources:\n  memory: 64g\n  cpus: 64\n")
    profile = loader.load("big.yaml", sandbox.settings())
    cpus, memory = capacity.quota_problems(profile, SMALL)
    assert (cpus.origin.source, cpus.origin.line, cpus.origin.column) == (str(path), 4, 3)
    assert cpus.message == "resources.cpus 64 is more than this host's 2 CPUs"
    assert cpus.hint == "ask for at most cpus: 2 (or leave cpus: out: no CPU quota)"
    assert (memory.origin.line, memory.message) == (
        3,
        "resources.memory 64g is more than this host's 4 GiB of memory",
    )
    assert memory.hint == "ask for at most memory: 4g (or leave memory: out: no memory quota)"


def test_quotas_the_host_has_pass(sandbox: Sandbox) -> None:
    sandbox.write("work/ok.yaml", f"image: {PLAIN}\nresources: {{cpus: 2, memory: 4g}}\n")
    assert capacity.quota_problems(loader.load("ok.yaml", sandbox.settings()), SMALL) == []


def test_an_inherited_quota_is_located_in_its_own_file(sandbox: Sandbox) -> None:
    base = sandbox.write("work/base.yaml", f"image: {PLAIN}\nresources:\n  cpus: 64\n")
    sandbox.write("work/child.yaml", "extends: ./base.yaml\nresources: {memory: 1g}\n")
    (problem,) = capacity.quota_problems(loader.load("child.yaml", sandbox.settings()), SMALL)
    assert (problem.origin.source, problem.origin.line) == (str(base), 3)


def test_a_flag_quota_is_located_at_the_flag(sandbox: Sandbox) -> None:
    sandbox.write("work/p.yaml", f"image: {PLAIN}\n")
    resolved = resolve.resolve("p.yaml", sandbox.settings(), flags.Overrides(cpus="64"))
    (problem,) = capacity.quota_problems(resolved.profile, SMALL)
    assert problem.origin.source == "--cpus"


def test_up_refuses_before_anything_is_made_on_a_local_engine(
    sandbox: Sandbox, engine: FakeEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(capacity, "local", lambda: SMALL)
    sandbox.write("work/big.yaml", f"image: {PLAIN}\nresources: {{cpus: 64}}\n")
    resolved = resolve.resolve("big.yaml", sandbox.settings())
    engine.host = "unix:///var/run/docker.sock"  # the check is for an engine on this machine
    with pytest.raises(InvalidInput) as caught:
        lifecycle.up(engine, resolved, QuietReporter())
    assert caught.value.message == "profile 'big' asks for more than this host has"
    assert engine.list_boxes(None) == [] and engine.volumes("alice", "big") == []


def test_a_remote_engine_is_not_judged_by_this_machine(
    sandbox: Sandbox, engine: FakeEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(capacity, "local", lambda: SMALL)
    sandbox.write("work/big.yaml", f"image: {PLAIN}\nresources: {{cpus: 64}}\n")
    resolve.check_capacity(resolve.resolve("big.yaml", sandbox.settings()), "ssh://bigserver")
