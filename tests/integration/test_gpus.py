"""Must show (issue 5): GPUs as a reserved resource, with a declared inventory of 8."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import OWNER_PREFIX, RUN_ID, TEST_LABEL, Engine, docker


class Lab:
    """Callers sharing one host with 8 declared GPUs; their boxes go when the test ends."""

    def __init__(self, root: Path) -> None:
        self.prefix = f"{OWNER_PREFIX}-g{uuid.uuid4().hex[:3]}"
        self.cwd = root
        (root / "lab").mkdir()
        self.policy: Path | None = None

    def profile(self, name: str, gpus: str) -> Path:
        path = self.cwd / f"{name}.yaml"
        path.write_text(
            f"image: devbox/debian:bookworm\ncommand: [sleep, infinity]\ngpus: {gpus}\n"
            f'labels: {{"{TEST_LABEL}": "{RUN_ID}"}}\n'
        )
        return path

    def env(self, user: str) -> dict[str, str]:
        env = {**os.environ, "DEVBOX_USER": f"{self.prefix}-{user}", "DEVBOX_GPU_INVENTORY": "8"}
        env["DEVBOX_LAB_DIR"] = str(self.cwd / "lab")
        env.pop("DEVBOX_POLICY", None)
        if self.policy:
            env["DEVBOX_POLICY"] = str(self.policy)
        return env

    def start(self, user: str, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-m", "devbox", *args],
            cwd=self.cwd,
            env=self.env(user),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def devbox(self, user: str, *args: str) -> subprocess.CompletedProcess[str]:
        process = self.start(user, *args)
        out, err = process.communicate(timeout=300)
        return subprocess.CompletedProcess(process.args, process.returncode, out, err)

    def containers(self) -> list[str]:
        names = docker("ps", "-a", "--format", "{{.Names}}").stdout.split()
        return [n for n in names if n.startswith(f"devbox-{self.prefix}-")]


@pytest.fixture
def lab(engine: Engine, tmp_path: Path) -> Iterator[Lab]:
    world = Lab(tmp_path)
    yield world
    # GPU holders would starve the next test: remove them now, not at the session's end.
    if world.containers():
        docker("rm", "-f", *world.containers(), check=False)


def test_sixteen_concurrent_ups_share_eight_gpus_without_collision(lab: Lab, engine: Engine) -> None:
    profile = str(lab.profile("train", "1"))
    processes = [lab.start(f"u{i:02d}", "up", profile, "--json") for i in range(16)]
    results = [(p, *p.communicate(timeout=300)) for p in processes]
    won = [json.loads(out) for p, out, _ in results if p.returncode == 0]
    # Under --json a failure is the error object on stdout, kind no-capacity (exit 4).
    lost = [json.loads(out)["error"] for p, out, _ in results if p.returncode == 4]
    assert len(won) == 8 and len(lost) == 8, [r for r in results if r[0].returncode not in (0, 4)][:3]
    assigned = [box["gpus"] for box in won]
    assert all(len(ids) == 1 for ids in assigned)
    assert sorted(ids[0] for ids in assigned) == list(range(8))  # pairwise disjoint, all used
    for box in won:
        info = engine.inspect("container", box["container"])
        env = dict(e.split("=", 1) for e in info["Config"]["Env"])
        assert (
            info["Config"]["Labels"]["devbox.placement.gpus"]
            == env["NVIDIA_VISIBLE_DEVICES"]
            == str(box["gpus"][0])
        )
        assert info["HostConfig"]["DeviceRequests"] in (None, [])  # declared GPUs: nothing attached
        assert info["State"]["Running"] is True
    owners = {box["owner"] for box in won}
    for err in lost:
        assert err["kind"] == "no-capacity" and "no free GPU" in err["message"]
        assert any(owner in (err["hint"] or "") for owner in owners)  # names who holds them
    running = docker("ps", "--format", "{{.Names}}").stdout.split()
    assert len([n for n in running if n.startswith(f"devbox-{lab.prefix}-")]) == 8

    # The admin view agrees with the labels.
    table = json.loads(lab.devbox("admin", "gpus", "--json").stdout)
    assert [g["index"] for g in table] == list(range(8))
    holders = {g["index"]: g["holder"]["owner"] for g in table}
    assert holders == {box["gpus"][0]: box["owner"] for box in won}
    assert all(g["declared"] for g in table)
    by_gpu = json.loads(lab.devbox("admin", "ls", "--all", "--gpu", "5", "--json").stdout)
    assert [b["owner"] for b in by_gpu] == [holders[5]]

    # After down, the GPU is free for the next up.
    freed = won[0]
    user = freed["owner"][len(lab.prefix) + 1 :]
    assert lab.devbox(user, "down", "train").returncode == 0
    late = lab.devbox("late", "up", profile, "--json")
    assert late.returncode == 0, late.stderr
    assert json.loads(late.stdout)["gpus"] == freed["gpus"]


def test_asking_for_a_held_gpu_names_the_holder(lab: Lab, engine: Engine) -> None:
    first = lab.devbox("alice", "up", str(lab.profile("three", "[3]")), "--json")
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout)["gpus"] == [3]
    second = lab.devbox("bob", "up", str(lab.cwd / "three.yaml"))
    assert second.returncode == 4  # no-capacity
    assert "GPU 3 is held by another box" in second.stderr
    assert f"{lab.prefix}-alice/three" in second.stderr


def test_per_user_gpu_limit_counts_running_boxes(lab: Lab, engine: Engine) -> None:
    lab.policy = lab.cwd / "policy.yaml"
    lab.policy.write_text("limits: {max_gpus_per_user: 2}\n")
    assert lab.devbox("carol", "up", str(lab.profile("pair", "2"))).returncode == 0
    third = lab.devbox("carol", "up", str(lab.profile("extra", "1")))
    assert third.returncode == 4  # no-capacity: allowed once carol has a box down
    assert "max_gpus_per_user = 2" in third.stderr and "holds 2 GPU(s)" in third.stderr
    assert str(lab.policy) in third.stderr
    # Someone else is not affected by carol's use.
    assert lab.devbox("dave", "up", str(lab.cwd / "extra.yaml")).returncode == 0


def test_doctor_reports_the_missing_gpu_runtime_and_a_working_engine(lab: Lab, engine: Engine) -> None:
    result = lab.devbox("eve", "doctor", "--json")
    checks = {c["check"]: c for c in json.loads(result.stdout)["checks"]}
    assert checks["engine"]["status"] == "ok"
    assert checks["gpus"]["status"] == "ok" and "8 GPU(s) declared" in checks["gpus"]["detail"]
    if engine.has_gpu_runtime:
        assert checks["gpu runtime"]["status"] == "ok"
    else:
        # Declared GPUs need no runtime yet (no device request): a warning that says so.
        assert checks["gpu runtime"]["status"] == "warn"
        assert "declared" in checks["gpu runtime"]["detail"]
        assert "NVIDIA Container Toolkit" in checks["gpu runtime"]["fix"]


def test_a_rebuild_that_cannot_get_its_gpus_keeps_the_old_box(lab: Lab, engine: Engine) -> None:
    assert lab.devbox("bob", "up", str(lab.profile("five", "[5]"))).returncode == 0
    mine = lab.profile("mine", "[2]")
    first = lab.devbox("alice", "up", str(mine), "--json")
    assert first.returncode == 0, first.stderr
    old_id = json.loads(first.stdout)["id"]
    lab.profile("mine", "[5]")  # alice edits her profile to a GPU bob holds
    refused = lab.devbox("alice", "rebuild", "mine")
    assert refused.returncode != 0 and "GPU 5 is held" in refused.stderr
    kept = json.loads(docker("inspect", f"devbox-{lab.prefix}-alice-mine").stdout)[0]
    assert kept["Id"].startswith(old_id) and kept["State"]["Running"] is True
