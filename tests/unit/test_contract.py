"""One contract for scripts: every --json output is exactly its TypedDict in devbox.ui.json.

Each command's real output is parsed and held to its shape (tests/shapes.py: exact keys at
every level, JSON types as annotated). Commands that need an engine run against the in-memory
fake engine here; tests/integration/test_contract.py runs them against a real one. A failure
under --json is one error object whose kind decides the exit code.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from devbox.cli.commands import app
from devbox.engine.fake import FakeEngine
from devbox.errors import EXIT_CODES, ExitCode
from devbox.ui import json as shapes
from tests import shapes as contract
from tests.conftest import Sandbox

runner = CliRunner()
IMAGE = "example.org/lab/notebook:1"
THREE_MISTAKES = "image: x\nshm-size: 8g\ngpus: lots\nresources: {cpus: -1}\n"


def devbox(sandbox: Sandbox, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """The real `devbox` command in a subprocess, as a script would run it."""
    return subprocess.run(
        [sys.executable, "-m", "devbox", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        cwd=sandbox.cwd,
    )


def error_of(result: subprocess.CompletedProcess[str], kind: str) -> shapes.ErrorBody:
    """The error object of a failed --json run: exactly one, of `kind`, with that kind's exit code."""
    doc = contract.parse(result.stdout, shapes.ErrorJson)
    assert doc["error"]["kind"] == kind, doc
    assert result.returncode == EXIT_CODES[kind], (result.returncode, result.stderr)
    body: shapes.ErrorBody = doc["error"]
    return body


# --- the error object ------------------------------------------------------------------


def test_kinds_have_distinct_documented_exit_codes() -> None:
    assert {k: int(c) for k, c in EXIT_CODES.items()} == {
        "failed": 1,
        "invalid": 2,
        "refused": 3,
        "no-capacity": 4,
        "not-found": 5,
        "engine-unreachable": 6,
        "interrupted": 130,
    }
    assert (ExitCode.NO_CAPACITY, ExitCode.NOT_FOUND, ExitCode.ENGINE_UNREACHABLE) == (4, 5, 6)
    docs = (Path(__file__).parents[2] / "docs" / "cli.md").read_text()
    for kind, code in EXIT_CODES.items():
        assert f"| {int(code)} | `{kind}` |" in docs, kind


def test_up_a_missing_profile_is_not_found_exit_5(sandbox: Sandbox) -> None:
    result = devbox(sandbox, "up", "missing-profile", "--json")
    error = error_of(result, "not-found")
    assert error["message"] == "no profile named 'missing-profile'"
    assert result.stderr == ""  # the object says it all; stderr stays for progress


def test_a_profile_with_three_mistakes_is_invalid_with_three_located_problems(sandbox: Sandbox) -> None:
    path = sandbox.write("work/three.yaml", THREE_MISTAKES)
    for argv in (["up", str(path), "--json"], ["render", str(path), "--json"]):
        error = error_of(devbox(sandbox, *argv), "invalid")
        problems = error["problems"]
        assert len(problems) == 3, problems
        assert [(p["file"], p["line"]) for p in problems] == [(str(path), 2), (str(path), 3), (str(path), 4)]
        assert all(isinstance(p["column"], int) for p in problems)
        assert problems[0]["fix"] == "did you mean 'shm_size'?"


def test_without_json_the_error_stays_a_screen_on_stderr(sandbox: Sandbox) -> None:
    result = devbox(sandbox, "up", "missing-profile")
    assert result.returncode == 5 and result.stdout == ""
    assert result.stderr.startswith("error: no profile named 'missing-profile'")


def test_an_unreachable_engine_is_its_own_kind(sandbox: Sandbox, tmp_path: Path) -> None:
    host = f"unix://{tmp_path}/no-engine.sock"
    for argv in (["ls", "--json"], ["info", "--json"], ["gpus", "--json"]):
        result = devbox(sandbox, *argv, DOCKER_HOST=host, DEVBOX_GPU_INVENTORY="2")
        error = error_of(result, "engine-unreachable")
        assert host in error["message"], argv


def test_a_usage_error_under_json_is_invalid(sandbox: Sandbox) -> None:
    error = error_of(devbox(sandbox, "info", "--json", "--no-such-flag"), "invalid")
    assert "--no-such-flag" in error["message"]


def test_a_policy_refusal_is_refused_and_names_the_rule(sandbox: Sandbox) -> None:
    policy = sandbox.write("lab/policy.yaml", "limits: {max_cpus: 2}\n")
    error = error_of(devbox(sandbox, "render", "pytorch-gpu", "--format", "json"), "refused")
    assert [p["file"] for p in error["problems"]] != []
    assert str(policy) in (error["hint"] or "")


# --- commands without an engine ------------------------------------------------------


def test_render(sandbox: Sandbox) -> None:
    for flag in (["--json"], ["--format", "json"]):
        result = runner.invoke(app, ["render", "default", "--gpus", "0,3", *flag])
        assert result.exit_code == 0, result.output
        doc = contract.parse(result.stdout, shapes.RenderJson)
        assert (doc["name"], doc["container"], doc["owner"]) == ("default", "devbox-alice-default", "alice")
        assert doc["gpu_request"] == {"kind": "devices", "count": 0, "devices": [0, 3]}
        assert doc["docker_run"][:2] == ["docker", "run"]


def test_profiles_and_profiles_check(sandbox: Sandbox) -> None:
    sandbox.write("work/.devbox/broken.yaml", "gpus: lots\n")
    result = runner.invoke(app, ["profiles", "--json"])
    assert result.exit_code == 0, result.output
    found = contract.parse(result.stdout, list[shapes.ProfileStatusJson])
    broken = next(p for p in found if p["name"] == "broken")
    assert broken["problems"][0]["line"] == 1 and broken["problems"][0]["file"].endswith("broken.yaml")

    good = sandbox.write("work/good.yaml", "image: x\n")
    result = runner.invoke(app, ["profiles", "check", str(good), "--json"])
    assert result.exit_code == 0, result.output
    assert contract.parse(result.stdout, list[shapes.ProfileStatusJson])[0]["valid"] is True

    bad = sandbox.write("work/bad.yaml", THREE_MISTAKES)
    result = devbox(sandbox, "profiles", "check", str(good), str(bad), "work/none.yaml", "--json")
    error = error_of(result, "invalid")
    assert error["message"] == "2 of 3 profile files invalid: bad.yaml, none.yaml"
    assert [p["line"] for p in error["problems"]] == [2, 3, 4, None]


def test_policy_show_and_check(sandbox: Sandbox) -> None:
    policy = sandbox.write("lab/policy.yaml", "limits: {max_gpus_per_user: 2, max_memory: 64g}\n")
    result = runner.invoke(app, ["policy", "show", "--json"])
    assert result.exit_code == 0, result.output
    doc = contract.parse(result.stdout, shapes.PolicyJson)
    assert doc["limits"]["max_gpus_per_user"] == 2 and doc["file"] == str(policy)

    result = runner.invoke(app, ["policy", "check", "--json"])
    assert result.exit_code == 0, result.output
    assert contract.parse(result.stdout, shapes.PolicyCheckJson) == {"file": str(policy), "valid": True}

    sandbox.write("lab/policy.yaml", "limits: {max_gpus_per_user: lots}\n")
    error = error_of(devbox(sandbox, "policy", "check", "--json"), "invalid")
    assert error["problems"][0]["file"] == str(policy)
    error_of(devbox(sandbox, "policy", "check", "nowhere.yaml", "--json"), "not-found")


def test_version(sandbox: Sandbox, tmp_path: Path) -> None:
    result = devbox(sandbox, "version", "--json", DOCKER_HOST=f"unix://{tmp_path}/none.sock")
    if result.returncode == 2 and "version" in result.stderr:
        pytest.skip("no `devbox version` yet")
    assert result.returncode == 0, result.stderr
    assert contract.parse(result.stdout, shapes.VersionJson)["engine"] is None


# --- commands on an engine (the in-memory fake) ----------------------------------------


@pytest.fixture
def fake(sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch) -> FakeEngine:
    """The engine every command of this test talks to; two declared GPUs."""
    engine = FakeEngine()
    engine.store.now = 1_700_000_000.0  # boxes made "in the past", so prune finds them old enough
    engine.add_image(IMAGE)
    monkeypatch.setattr("devbox.engine.connect", lambda timeout=60: engine)
    monkeypatch.setenv("DEVBOX_GPU_INVENTORY", "2")
    return engine


def invoke(*args: str) -> str:
    """stdout of a successful in-process run."""
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, (args, result.output, result.exception)
    return result.stdout


def test_box_commands(sandbox: Sandbox, fake: FakeEngine) -> None:
    nb = sandbox.write("work/nb.yaml", f"image: {IMAGE}\nports: {{jupyter: 8888}}\ngpus: 1\n")
    other = sandbox.write("work/other.yaml", f"image: {IMAGE}\n")

    up = contract.parse(invoke("up", str(nb), "--json"), shapes.ReportJson)
    assert (up["name"], up["owner"], up["host"], up["action"]) == ("nb", "alice", fake.host, "created")
    assert up["gpus"] == [0] and isinstance(up["created_iso"], str) and up["jupyter"] is not None
    assert up["ports"]["jupyter"]["host_port"] == int(up["jupyter"]["url"].split(":")[2].split("/")[0])

    info = contract.parse(invoke("info", "nb", "--json"), shapes.ReportJson)
    assert info["container"] == up["container"] and info["created"] == up["created"]

    listed = contract.parse(invoke("ls", "--json"), list[shapes.LsBoxJson])
    assert [(b["name"], b["host"], b["gpus"]) for b in listed] == [("nb", fake.host, [0])]

    rebuilt = contract.parse(invoke("rebuild", "nb", "--json"), shapes.ReportJson)
    assert rebuilt["action"] == "rebuilt"

    switched = contract.parse(invoke("switch", str(other), "--json"), shapes.SwitchJson)
    assert (switched["name"], switched["stopped"]) == ("other", ["nb"])

    gpus = contract.parse(invoke("gpus", "--json"), list[shapes.GpuJson])
    assert [g["index"] for g in gpus] == [0, 1] and all(g["holder"] is None for g in gpus)

    pruned = contract.parse(invoke("prune", "--yes", "--json"), shapes.PruneJson)
    assert [b["name"] for b in pruned["removed"]] == ["nb"]
    assert contract.parse(invoke("prune", "--idle", "--json"), shapes.PruneIdleJson) == {"idle": []}

    down = contract.parse(invoke("down", "other", "--json"), shapes.DownJson)
    assert (down["name"], down["owner"], down["host"], down["removed"]) == ("other", "alice", fake.host, True)
    again = contract.parse(invoke("down", "other", "--json"), shapes.DownJson)
    assert again["removed"] is False

    config = contract.parse(invoke("ssh-config", "--json"), shapes.SshConfigJson)
    assert config == {"entries": [], "file": None, "included_from": None}


def test_engine_errors_under_json(sandbox: Sandbox, fake: FakeEngine) -> None:
    for argv, kind in ((["info", "ghost"], "not-found"), (["logs", "ghost"], "not-found")):
        result = runner.invoke(app, [*argv, "--json"] if argv[0] != "logs" else argv)
        assert result.exit_code == EXIT_CODES[kind], result.output
    result = runner.invoke(app, ["info", "ghost", "--json"])
    assert json.loads(result.stdout)["error"]["kind"] == "not-found"
    two = sandbox.write("work/two.yaml", f"image: {IMAGE}\ngpus: 2\n")
    assert runner.invoke(app, ["up", str(two), "--json"]).exit_code == 0
    one = sandbox.write("work/one.yaml", f"image: {IMAGE}\ngpus: 1\n")
    result = runner.invoke(app, ["up", str(one), "--json"])
    assert result.exit_code == 4, result.output
    assert contract.parse(result.stdout, shapes.ErrorJson)["error"]["kind"] == "no-capacity"


def test_a_per_user_limit_reached_is_no_capacity(sandbox: Sandbox, fake: FakeEngine) -> None:
    policy = sandbox.write("lab/policy.yaml", "limits: {max_boxes_per_user: 1}\n")
    first = sandbox.write("work/first.yaml", f"image: {IMAGE}\n")
    second = sandbox.write("work/second.yaml", f"image: {IMAGE}\n")
    assert runner.invoke(app, ["up", str(first), "--json"]).exit_code == 0
    result = runner.invoke(app, ["up", str(second), "--json"])
    assert result.exit_code == 4, result.output
    error = contract.parse(result.stdout, shapes.ErrorJson)["error"]
    assert error["kind"] == "no-capacity"
    [problem] = error["problems"]
    assert (problem["file"], problem["line"]) == (str(policy), 1)
    assert "max_boxes_per_user = 1" in problem["message"]


def test_doctor_reports_even_when_a_check_fails(sandbox: Sandbox, fake: FakeEngine) -> None:
    result = runner.invoke(app, ["doctor", "--json"])
    doc = contract.parse(result.stdout, shapes.DoctorJson)
    assert doc["host"] == fake.host
    assert result.exit_code == (0 if doc["ok"] else 1)
    assert {c["check"] for c in doc["checks"]} >= {"engine", "gpus", "policy"}


def test_ssh_config(sandbox: Sandbox, fake: FakeEngine) -> None:
    import socket
    import threading

    # The box's sshd, as far as `up` checks it: a port that answers with an SSH banner.
    listener = socket.create_server(("127.0.0.1", 0))
    fake.store.next_port = listener.getsockname()[1] - 1  # the port the fake publishes next

    def answer() -> None:
        try:
            conn, _ = listener.accept()
        except OSError:  # closed below: `up` had its answer already
            return
        with conn:
            conn.sendall(b"SSH-2.0-fake\r\n")

    threading.Thread(target=answer, daemon=True).start()
    box = sandbox.write("work/sshbox.yaml", f"image: {IMAGE}\nports: {{ssh: 22}}\n")
    up = contract.parse(invoke("up", str(box), "--json"), shapes.ReportJson)
    listener.close()
    assert up["ssh"] is not None and up["ssh"]["port"] == up["ports"]["ssh"]["host_port"]
    config = contract.parse(invoke("ssh-config", "--json"), shapes.SshConfigJson)
    [entry] = config["entries"]
    assert (entry["name"], entry["ssh_host"], entry["host"]) == ("sshbox", "devbox-sshbox", fake.host)
    assert entry["port"] == up["ssh"]["port"]
    written = contract.parse(invoke("ssh-config", "--write", "--json"), shapes.SshConfigJson)
    assert written["file"] and Path(written["file"]).is_file() and written["entries"] == config["entries"]
