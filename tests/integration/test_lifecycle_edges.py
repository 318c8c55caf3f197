"""Lifecycle edges on a real engine: deadlines, Ctrl-C, GPUs, switch, info, logs, docker-py transport."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.integration.conftest import Caller, Engine, docker
from tests.integration.gpuhost import CAPTURES, STANDIN_SMI
from tests.integration.test_lifecycle import NOTEBOOK6, container_exists, http_status, up_json


def test_deadline_names_what_is_missing_and_leaves_the_box_running(caller: Caller, engine: Engine) -> None:
    profile = caller.write_profile(
        "mute",
        f"image: {NOTEBOOK6}\nports: {{jupyter: 8888}}\ncommand: [sleep, infinity]\nready: {{timeout: 2}}",
    )
    result = caller.devbox("up", str(profile), check=False)
    assert result.returncode == 1
    assert "did not print its jupyter URL within 2 s" in result.stderr
    assert "devbox logs mute" in result.stderr
    assert engine.inspect("container", caller.container("mute"))["State"]["Running"] is True
    # A second `up` does not call a box that never got ready fine: it waits, and says so.
    again = caller.devbox("up", str(profile), check=False)
    assert again.returncode == 1 and "did not print its jupyter URL" in again.stderr


def test_ctrl_c_removes_the_half_made_box(caller: Caller, engine: Engine) -> None:
    profile = caller.write_profile(
        "quit",
        f"image: {NOTEBOOK6}\nports: {{jupyter: 8888}}\ncommand: [sleep, infinity]\nready: {{timeout: 60}}",
    )
    process = caller.start("up", str(profile))
    deadline = time.monotonic() + 30
    while not container_exists(caller.container("quit")) and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(0.5)  # now it is waiting for the log
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert not container_exists(caller.container("quit"))


def test_gpus_on_an_engine_without_gpu_runtime_fail_with_the_fix(caller: Caller, engine: Engine) -> None:
    if engine.has_gpu_runtime:
        pytest.skip("this engine has a GPU runtime: the failure path cannot happen here")
    profile = caller.write_profile("gpu", f"image: {NOTEBOOK6}\nports: {{jupyter: 8888}}\ngpus: all")
    # GPUs nvidia-smi reports (without an inventory devbox refuses before the engine is asked).
    smi = caller.cwd.parent / "smi"
    smi.mkdir()
    (smi / "nvidia-smi").symlink_to(STANDIN_SMI)
    caller.environ["PATH"] = f"{smi}:{caller.environ.get('PATH', '/usr/bin:/bin')}"
    caller.environ["DEVBOX_STANDIN_SMI"] = str(CAPTURES / "h100x8")
    result = caller.devbox("up", str(profile), check=False)
    assert result.returncode == 1
    assert "no GPU runtime" in result.stderr and "NVIDIA Container Toolkit" in result.stderr
    assert "--gpus none" in result.stderr
    assert not container_exists(caller.container("gpu"))
    assert "jupyter" in up_json(caller, str(profile), "--gpus", "none")["ports"]


def test_switch_stops_the_other_boxes_and_info_and_logs_work(caller: Caller, engine: Engine) -> None:
    first = caller.write_profile("first", f"image: {NOTEBOOK6}\nports: {{jupyter: 8888}}")
    second = caller.write_profile("second", f"image: {NOTEBOOK6}\nports: {{jupyter: 8888}}")
    up_json(caller, str(first))
    switched = json.loads(caller.devbox("switch", str(second), "--json").stdout)
    assert switched["stopped"] == ["first"] and switched["name"] == "second"
    assert engine.inspect("container", caller.container("first"))["State"]["Running"] is False
    # info re-reads the credentials from the log; the token works.
    info = json.loads(caller.devbox("info", "second", "--json").stdout)
    assert info["jupyter"]["token"] == switched["jupyter"]["token"]
    assert http_status(info["jupyter"]["url"].replace("?token=", "api/status?token=")) == 200
    # A stopped box comes back with `up NAME` (it remembers its profile file, as switch
    # suggests), and reports this run's token, not the old one.
    again = up_json(caller, "first")
    assert again["action"] == "started"
    assert http_status(again["jupyter"]["url"].replace("?token=", "api/status?token=")) == 200
    assert "Jupyter Notebook" in caller.devbox("logs", "first", "--tail", "20").stdout
    ls = json.loads(caller.devbox("ls", "--json").stdout)
    assert sorted((b["name"], b["status"]) for b in ls) == [("first", "running"), ("second", "running")]
    # A switch that fails (no such image) starts the others again: you are left where you were.
    ghost = caller.write_profile("ghost", "image: registry.invalid/devbox/nope:1")
    failed = caller.devbox("switch", str(ghost), check=False)
    assert failed.returncode == 1 and "started again" in failed.stderr
    ls = json.loads(caller.devbox("ls", "--json").stdout)
    assert sorted((b["name"], b["status"]) for b in ls) == [("first", "running"), ("second", "running")]


def test_the_docker_py_transport_drives_the_same_lifecycle(caller: Caller, engine: Engine) -> None:
    caller.environ["DEVBOX_ENGINE_CLIENT"] = "docker-py"
    profile = caller.write_profile(
        "viapy", f"image: {NOTEBOOK6}\nports: {{jupyter: 8888}}\nvolumes: [pydata:/data]"
    )
    box = up_json(caller, str(profile))
    assert http_status(box["jupyter"]["url"].replace("?token=", "api/status?token=")) == 200
    assert [b["name"] for b in json.loads(caller.devbox("ls", "--json").stdout)] == ["viapy"]
    caller.devbox("down", "viapy", "--purge", "--yes")
    assert not container_exists(caller.container("viapy"))
    assert docker("volume", "inspect", f"devbox-{caller.owner}-pydata", check=False).returncode != 0


def _up_at_once(caller: Caller, profiles: list[str]) -> list[subprocess.CompletedProcess[str]]:
    processes = [caller.start("up", profile, "--json") for profile in profiles]
    results = []
    for process in processes:
        out, err = process.communicate(timeout=300)
        results.append(subprocess.CompletedProcess(process.args, process.returncode, out, err))
    return results


def test_first_ups_at_once_make_one_login_key(caller: Caller, engine: Engine, tmp_path: Path) -> None:
    # A new user with no ~/.ssh key starts three boxes at once: devbox makes one key pair.
    caller.environ["HOME"] = str(tmp_path / "newhome")
    names = ["k1", "k2", "k3"]
    results = _up_at_once(caller, [str(caller.write_profile(n, "extends: default")) for n in names])
    assert [r.returncode for r in results] == [0, 0, 0], [r.stderr for r in results]
    key_files = {json.loads(r.stdout)["ssh"]["identity_file"] for r in results}
    assert len(key_files) == 1
    public = Path(key_files.pop() + ".pub").read_text().split()[1]
    for name in names:
        keys = docker("exec", caller.container(name), "cat", "/run/devbox/authorized_keys").stdout
        assert public in keys


def test_per_user_limits_hold_when_ups_race(caller: Caller, engine: Engine) -> None:
    (Path(caller.environ["DEVBOX_LAB_DIR"]) / "policy.yaml").write_text("limits: {max_boxes_per_user: 2}\n")
    body = f"image: {NOTEBOOK6}\nports: {{jupyter: 8888}}"
    names = [f"race{i}" for i in range(5)]
    results = _up_at_once(caller, [str(caller.write_profile(n, body)) for n in names])
    assert sorted(r.returncode for r in results) == [0, 0, 4, 4, 4], [r.stderr for r in results]
    refused = [json.loads(r.stdout)["error"] for r in results if r.returncode == 4]  # --json: on stdout
    assert all(e["kind"] == "no-capacity" for e in refused)
    assert all("max_boxes_per_user = 2" in e["problems"][0]["message"] for e in refused)
    assert len(json.loads(caller.devbox("ls", "--json").stdout)) == 2


def test_the_same_box_upped_at_once_is_one_box(caller: Caller, engine: Engine) -> None:
    profile = str(caller.write_profile("once", f"image: {NOTEBOOK6}\nports: {{jupyter: 8888}}"))
    results = _up_at_once(caller, [profile] * 3)
    assert [r.returncode for r in results] == [0, 0, 0], [r.stderr for r in results]
    boxes = [json.loads(r.stdout) for r in results]
    assert len({b["container"] for b in boxes}) == 1
    assert len({b["jupyter"]["url"] for b in boxes}) == 1
    assert http_status(boxes[0]["jupyter"]["url"].replace("?token=", "api/status?token=")) == 200


# A `prune` whose listing is followed by the owner starting a box (as at its prompt), in the real CLI.
_PRUNE_WHILE_STARTED = """
import subprocess, sys
from devbox.ops import admin
listed, box = admin.prunable, sys.argv[1]
def owner_starts_it_meanwhile(*args):
    found = listed(*args)
    subprocess.run(["docker", "start", box], check=True, capture_output=True)
    return found
admin.prunable = owner_starts_it_meanwhile
sys.argv = ["devbox", "prune", "--yes", "--json"]
from devbox.cli import main
main()
"""


def test_prune_never_removes_a_box_started_after_it_was_listed(caller: Caller, engine: Engine) -> None:
    for name in ("busy", "idle"):
        profile = caller.write_profile(name, "image: devbox/debian:bookworm\ncommand: [sleep, infinity]")
        caller.devbox("up", str(profile), "--json")
        docker("stop", "-t", "0", caller.container(name))
    run = subprocess.run(
        [sys.executable, "-c", _PRUNE_WHILE_STARTED, caller.container("busy")],
        cwd=caller.cwd,
        env=caller.environ,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    assert [b["name"] for b in json.loads(run.stdout)["removed"]] == ["idle"]
    assert f"kept {caller.owner}/busy: it was started meanwhile" in run.stderr
    assert engine.inspect("container", caller.container("busy"))["State"]["Running"]
    assert not container_exists(caller.container("idle"))
