"""The Slurm backend's pure parts: host entries, squeue/sinfo JSON, QOS lines, the job script."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from devbox.errors import InvalidInput, Problem
from devbox.ops import slurmjobs, slurmscript
from devbox.policy import hostentries
from devbox.profile.yamlsrc import Document

FIXTURES = Path(__file__).parent.parent / "fixtures" / "slurm"

# The shapes Slurm 22.05 prints (openapi v0.0.38), trimmed to what devbox reads and a few more.
SQUEUE = {
    "meta": {"plugin": {"type": "openapi/v0.0.38", "name": "Slurm OpenAPI v0.0.38"}},
    "errors": [],
    "jobs": [
        {
            "job_id": 11,
            "name": "devbox-dbxhu1-default",
            "user_name": "dbxhu1",
            "job_state": "RUNNING",
            "state_reason": "None",
            "nodes": "node2",
            "gres_detail": ["gpu:1(IDX:3)"],
            "submit_time": 1764560000,
            "start_time": 1764560001,
            "time_limit": 480,
        },
        {
            "job_id": 12,
            "name": "devbox-dbxhu1-second",
            "user_name": "dbxhu1",
            "job_state": "PENDING",
            "state_reason": "QOSMaxGRESPerUser",
            "nodes": "",
            "gres_detail": [],
            "submit_time": 1764560002,
            "start_time": 0,
            "time_limit": 480,
        },
        {
            "job_id": 13,
            "name": "train",
            "user_name": "dbxhu2",
            "job_state": "RUNNING",
            "state_reason": "None",
            "nodes": "node1",
            "gres_detail": ["gpu:2(IDX:0-1)"],
        },
        {
            "job_id": 14,
            "name": "devbox-dbxhu2-big",
            "user_name": "dbxhu2",
            "job_state": "RUNNING",
            "state_reason": "None",
            "nodes": "node3",
            "gres_detail": ["gpu:a100:3(IDX:0,2-3)"],
        },
        {
            "job_id": 15,
            "name": "devbox-dbxhu2-old",
            "user_name": "dbxhu2",
            "job_state": "CANCELLED",
            "state_reason": "None",
            "nodes": "node1",
            "gres_detail": [],
        },
    ],
}
SINFO = {
    "nodes": [
        {
            "name": "node2",
            "address": "10.123.0.12",
            "state": "mixed",
            "gres": "gpu:4",
            "gres_used": "gpu:1(IDX:3)",
        },
        {
            "name": "node1",
            "address": "10.123.0.11",
            "state": "idle",
            "gres": "gpu:4",
            "gres_used": "gpu:0(IDX:N/A)",
        },
        {
            "name": "node1",
            "address": "10.123.0.11",
            "state": "idle",
            "gres": "gpu:4",
            "gres_used": "gpu:0(IDX:N/A)",
        },
        {"name": "cpu1", "hostname": "cpu1.lab", "state": "down", "gres": "", "gres_used": ""},
    ]
}


def test_squeue_rows_name_box_node_gpus_and_the_pending_reason() -> None:
    jobs = {j.job_id: j for j in slurmjobs.jobs(SQUEUE)}
    assert set(jobs) == {11, 12, 14, 15}  # "train" is no box
    running, pending = jobs[11], jobs[12]
    assert (running.box, running.user, running.node, running.gpus, running.status) == (
        "default",
        "dbxhu1",
        "node2",
        (3,),
        "running",
    )
    assert running.reason == "" and running.started == 1764560001 and running.time_limit == 480
    assert (pending.status, pending.reason, pending.node, pending.gpus, pending.started) == (
        "pending",
        "QOSMaxGRESPerUser",
        None,
        (),
        None,
    )
    assert jobs[14].gpus == (0, 2, 3)
    assert not jobs[15].alive and running.alive and pending.alive
    assert len(slurmjobs.jobs(SQUEUE, devbox_only=False)) == 5


def test_a_job_of_another_user_named_like_a_box_is_not_theirs() -> None:
    assert slurmjobs.box_of("devbox-alice-x", "bob") is None
    assert slurmjobs.box_of("devbox-alice-", "alice") is None
    assert slurmjobs.box_of("devbox-alice-my-box", "alice") == "my-box"


@pytest.mark.parametrize(
    ("text", "indices"),
    [
        ("gpu:1(IDX:0)", (0,)),
        ("gpu:2(IDX:0-1)", (0, 1)),
        ("gpu:a100:3(IDX:0,2-3)", (0, 2, 3)),
        ("gpu:0(IDX:N/A)", ()),
        ("gpu:2(IDX:0-1),shard:2(IDX:N/A)", (0, 1)),
        ("", ()),
    ],
)
def test_gpu_indices(text: str, indices: tuple[int, ...]) -> None:
    assert slurmjobs.gpu_indices(text) == indices


def test_sinfo_rows_once_per_node_with_address_and_gpus() -> None:
    nodes = slurmjobs.nodes(SINFO)
    assert [n.name for n in nodes] == ["cpu1", "node1", "node2"]
    cpu1, node1, node2 = nodes
    assert (node1.address, node1.gpus, node1.gpus_used, node1.state) == ("10.123.0.11", 4, (), "idle")
    assert (node2.gpus_used, node2.state) == ((3,), "mixed")
    assert (cpu1.address, cpu1.gpus) == ("cpu1.lab", 0)
    assert slurmjobs.gpu_count("gpu:a100:4(S:0-1),gpu:t4:2") == 6


def test_garbage_reads_as_nothing() -> None:
    assert slurmjobs.jobs(None) == [] and slurmjobs.jobs({"jobs": [1, {"name": "x"}]}) == []
    assert slurmjobs.nodes({"nodes": "x"}) == []


def test_newer_releases_numbers_and_state_lists_are_read() -> None:
    item = {
        "job_id": {"set": True, "number": 7},
        "name": "devbox-a-b",
        "user_name": "a",
        "job_state": ["PENDING"],
        "state_reason": "Resources",
        "time_limit": {"set": False, "infinite": True, "number": 0},
    }
    job = slurmjobs.job_from_json(item)
    assert job is not None and (job.job_id, job.state, job.time_limit) == (7, "PENDING", None)


@pytest.mark.skipif(not FIXTURES.is_dir(), reason="tests/fixtures/slurm not there yet")
def test_the_test_beds_captured_json_parses() -> None:
    squeue = json.loads((FIXTURES / "squeue.json").read_text())
    sinfo = json.loads((FIXTURES / "sinfo.json").read_text())
    assert all(j.job_id > 0 for j in slurmjobs.jobs(squeue, devbox_only=False))
    nodes = slurmjobs.nodes(sinfo)
    assert nodes and all(n.gpus == 4 and n.address for n in nodes)


def test_qos_lines() -> None:
    rows = slurmjobs.qos_rows("normal|gres/gpu=2,cpu=16|4\nlong||\n\n")
    assert rows[0].max_gpus_per_user == 2 and rows[0].max_jobs_per_user == 4
    assert rows[0].max_tres_per_user["cpu"] == "16"
    assert (rows[1].name, rows[1].max_gpus_per_user, rows[1].max_jobs_per_user) == ("long", None, None)


# --- host entries ------------------------------------------------------------------------------


def _entries(data: dict[str, object]) -> tuple[list[hostentries.HostEntry], list[Problem]]:
    problems: list[Problem] = []
    return hostentries.parse_hosts(Document("hosts.yaml", data), (), problems), problems


def test_slurm_host_forms() -> None:
    found, problems = _entries(
        {
            "here": "slurm:local",
            "cluster": "slurm://alice@login1:2222?partition=gpu&time=8:00:00",
            "plain": "slurm://login2",
            "gpu2": "ssh://gpu2",
        }
    )
    assert problems == []
    here, cluster, plain, gpu2 = found
    assert (here.slurm, here.target, here.url) == (True, None, "slurm:local")
    assert (cluster.slurm, cluster.target, cluster.port) == (True, "alice@login1", 2222)
    assert dict(cluster.options) == {"partition": "gpu", "time": "8:00:00"}
    assert cluster.url == "slurm://alice@login1:2222?partition=gpu&time=8:00:00"
    assert (plain.target, plain.url) == ("login2", "slurm://login2")
    assert not gpu2.slurm and gpu2.options == ()


@pytest.mark.parametrize(
    ("value", "said"),
    [
        ("slurm://", "is not slurm:local or slurm://"),
        ("slurm:local?time=forever", "is no time Slurm reads"),
        ("slurm:local?nodes=4", "a Slurm host's options are partition="),
        ("ssh://gpu2?time=1", "only a Slurm host takes ?options"),
        ("slurm://-oProxyCommand=x", "is not slurm:local"),
        ("k8s://x", "over ssh only"),
    ],
)
def test_bad_slurm_entries_say_why(value: str, said: str) -> None:
    found, problems = _entries({"c": value})
    assert found == [] and len(problems) == 1 and said in problems[0].message, problems


def test_local_cannot_be_a_cluster() -> None:
    found, problems = _entries({"local": "slurm:local"})
    assert found == [] and "'local' means this machine's engine" in problems[0].message


# --- the job -----------------------------------------------------------------------------------


def _request(**kw: object) -> slurmscript.JobRequest:
    base: dict[str, object] = {
        "owner": "dbxhu1",
        "box": "my box",
        "profile": "/home/dbxhu1/profiles/gpu.yaml",
        "gpus": 1,
        "cpus": 2,
        "memory_mib": 4096,
        "time": "8:00:00",
        "up_args": ("-e", "A=b c"),
    }
    base.update(kw)
    return slurmscript.JobRequest(**base)  # type: ignore[arg-type]


def test_sbatch_options_carry_the_profile_and_policy() -> None:
    options = slurmscript.sbatch_options(_request(partition="gpu", qos="devel"))
    assert options == [
        "--parsable",
        "--job-name=devbox-dbxhu1-my box",
        "--gres=gpu:1",
        "--cpus-per-task=2",
        "--mem=4096M",
        "--time=8:00:00",
        "--partition=gpu",
        "--qos=devel",
    ]
    bare = slurmscript.sbatch_options(_request(gpus=0, cpus=None, memory_mib=None, time=None))
    assert bare == ["--parsable", "--job-name=devbox-dbxhu1-my box"]
    assert slurmscript.cpus_of(1_500_000_000) == 2 and slurmscript.cpus_of(None) is None
    assert slurmscript.mib_of(4 * 2**30) == 4096 and slurmscript.mib_of(2**20 + 1) == 2


def test_the_submit_command_makes_the_jobs_folder() -> None:
    command = slurmscript.submit_command(_request())
    assert command[:2] == ["sh", "-c"] and "mkdir -p" in command[2] and "exec sbatch" in command[2]
    assert command[4:] == slurmscript.sbatch_options(_request())


@pytest.mark.skipif(shutil.which("bash") is None, reason="no bash")
def test_the_job_script_is_valid_bash_traps_term_and_pins_the_gpus(tmp_path: Path) -> None:
    text = slurmscript.script(_request())
    path = tmp_path / "job.sh"
    path.write_text(text)
    assert subprocess.run(["bash", "-n", str(path)], check=False).returncode == 0
    assert "trap stop TERM INT" in text and "unset DEVBOX_USER" in text
    assert 'devbox down "$box" --host local --yes' in text
    assert '--gpus "device=$gpus"' in text and "SLURM_JOB_GPUS" in text
    assert "box='my box'" in text and "'A=b c'" in text
    assert "up /home/dbxhu1/profiles/gpu.yaml --host local --recreate --json" in text


@pytest.mark.skipif(shutil.which("bash") is None, reason="no bash")
def test_the_job_script_runs_up_then_follows_the_box_and_removes_it_on_term(tmp_path: Path) -> None:
    """The script against a stand-in devbox: up with the job's GPUs, then it waits on the box;
    TERM runs `down`."""
    log = tmp_path / "calls"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "devbox"
    fake.write_text(
        f"""#!/bin/sh
echo "$*" >>{log}
case "$1" in
  up) echo '{{"name": "x", "status": "running"}}' ;;
  logs) sleep 30 ;;
  info) echo '{{"status": "running"}}' ;;
esac
"""
    )
    fake.chmod(0o755)
    home = tmp_path / "home"
    home.mkdir()
    (home / ".cache" / "devbox" / "slurm").mkdir(parents=True)
    script = tmp_path / "job.sh"
    script.write_text(slurmscript.script(_request()))
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(home), "SLURM_JOB_ID": "42", "SLURM_JOB_GPUS": "2"}
    proc = subprocess.Popen(
        ["bash", str(script)], env=env, stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    import time

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and "logs" not in (log.read_text() if log.exists() else ""):
        time.sleep(0.1)
    proc.terminate()
    try:
        out, _ = proc.communicate(timeout=10)
    finally:
        # Slurm ends the job's other processes (the stand-in `devbox logs`); here, this test does.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    calls = log.read_text().splitlines()
    assert calls[0].startswith("up /home/dbxhu1/profiles/gpu.yaml --host local") and calls[0].endswith(
        "--gpus device=2"
    )
    assert calls[1].startswith("logs my box --host local --follow")
    assert calls[-1] == "down my box --host local --yes --json"
    assert proc.returncode == 143
    assert slurmscript.UP_DONE + "0" in out
    assert json.loads((home / ".cache/devbox/slurm/42.json").read_text())["name"] == "x"


def test_a_gpu_list_is_refused_on_slurm() -> None:
    from devbox.ops import slurmbox
    from devbox.ops.hosts import Host

    cluster = Host("c", None, None, "hosts.yaml", slurm=True)
    rendered = {"name": "b", "owner": "o", "gpu_request": {"kind": "devices", "devices": ["0"]}}
    with pytest.raises(InvalidInput) as caught:
        slurmbox._request(cluster, rendered, "p", [], "/")
    assert "gpus: N" in (caught.value.problems[0].hint or "")


# --- the verbs against a stand-in cluster (slurm.run and the render call replaced) -------------


class _Cluster:
    """A queue that never starts anything: squeue says PENDING with `reason` for each job."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        self.jobs: dict[int, str] = {}
        self.calls: list[list[str]] = []
        self.scripts: list[str] = []

    def run(self, cluster: object, argv: list[str], stdin: str | None = None, timeout: float = 0) -> str:
        self.calls.append(argv)
        if argv[:2] == ["sh", "-c"] and "sbatch" in argv[2]:
            job_id = 100 + len(self.jobs)
            name = next(a.split("=", 1)[1] for a in argv if a.startswith("--job-name="))
            self.jobs[job_id] = name
            self.scripts.append(stdin or "")
            return f"{job_id}\n"
        if argv[0] == "scancel":
            self.jobs.pop(int(argv[1]), None)
            return ""
        queue = {
            "jobs": [
                {
                    "job_id": i,
                    "name": n,
                    "user_name": "alice",
                    "job_state": "PENDING",
                    "state_reason": self.reason,
                }
                for i, n in self.jobs.items()
            ]
        }
        if argv[:2] == ["sh", "-c"] and "squeue" in argv[2]:
            return "alice\n" + json.dumps(queue)
        if argv[0] == "squeue":
            return json.dumps(queue)
        return ""


RENDERED = {
    "name": "train",
    "owner": "alice",
    "gpu_request": {"kind": "count", "count": 2, "devices": []},
    "memory": 8 * 2**30,
    "nano_cpus": 4 * 10**9,
    "labels": {"devbox.profile": "/home/alice/train.yaml"},
}


@pytest.fixture
def stand_in(monkeypatch: pytest.MonkeyPatch) -> _Cluster:
    from devbox.ops import slurm

    fake = _Cluster("QOSMaxGRESPerUser")
    monkeypatch.setattr(slurm, "run", fake.run)
    return fake


def _cluster() -> object:
    from devbox.ops.hosts import Host

    return Host("gpucluster", None, None, "hosts.yaml", slurm=True, options=(("time", "2:00:00"),))


def test_up_no_wait_submits_the_job_and_says_pending(stand_in: _Cluster) -> None:
    from devbox.ops import slurmbox
    from devbox.ops.reporter import QuietReporter

    data = slurmbox.up(
        _cluster(), dict(RENDERED), "train", [], "/home/alice", QuietReporter(), False, True, None
    )  # type: ignore[arg-type]
    assert (data["status"], data["job_id"], data["reason"], data["node"]) == (
        "pending",
        100,
        "QOSMaxGRESPerUser",
        None,
    )
    assert (data["name"], data["host"], data["owner"], data["action"]) == (
        "train",
        "gpucluster",
        "alice",
        "created",
    )
    submit = next(c for c in stand_in.calls if "sbatch" in " ".join(c))
    assert "--gres=gpu:2" in submit and "--cpus-per-task=4" in submit and "--mem=8192M" in submit
    assert "--time=2:00:00" in submit and "--job-name=devbox-alice-train" in submit
    assert "up /home/alice/train.yaml --host local" in stand_in.scripts[0]
    # A second up finds the same job: nothing new is submitted.
    again = slurmbox.up(
        _cluster(), dict(RENDERED), "train", [], "/home/alice", QuietReporter(), False, True, None
    )  # type: ignore[arg-type]
    assert again["job_id"] == 100 and again["action"] == "existing" and len(stand_in.scripts) == 1


def test_up_wait_timeout_cancels_and_names_the_reason(
    stand_in: _Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    from devbox.errors import NoCapacity
    from devbox.ops import slurmbox

    said: list[str] = []

    class Steps:
        def step(self, text: str) -> None:
            said.append(text)

    monkeypatch.setattr(slurmbox.time, "sleep", lambda s: None)
    with pytest.raises(NoCapacity) as caught:
        slurmbox.up(_cluster(), dict(RENDERED), "train", [], "/", Steps(), False, False, 0.0)  # type: ignore[arg-type]
    assert "QOSMaxGRESPerUser" in caught.value.message and "cancelled" in caught.value.message
    assert ["scancel", "100"] in stand_in.calls and stand_in.jobs == {}
    assert any("pending: QOSMaxGRESPerUser" in s for s in said)


def test_down_of_a_pending_box_cancels_its_job(stand_in: _Cluster) -> None:
    from devbox.ops import slurmbox
    from devbox.ops.reporter import QuietReporter

    slurmbox.up(_cluster(), dict(RENDERED), "train", [], "/", QuietReporter(), False, True, None)  # type: ignore[arg-type]
    gone = slurmbox.down(_cluster(), "train", False)  # type: ignore[arg-type]
    assert gone["removed"] and gone["job_id"] == 100 and gone["node"] is None
    again = slurmbox.down(_cluster(), "train", False)  # type: ignore[arg-type]
    assert not again["removed"] and again["job_id"] is None  # as anywhere: gone is no error


def test_unenforced_limits() -> None:
    qos = slurmjobs.Qos("normal", {"gres/gpu": "2"}, None)
    assert slurmjobs.unenforced(2, None, qos) == []
    found = slurmjobs.unenforced(4, 3, qos)
    assert "MaxTRESPerUser=gres/gpu=4" in found[0][1] and "MaxJobsPerUser=3" in found[1][1]
    assert "sets no GPU limit" in slurmjobs.unenforced(1, None, None)[0][0]


def test_a_node_is_reached_at_slurms_address_through_the_login_node() -> None:
    from devbox.ops import remote, slurm
    from devbox.ops.hosts import Host

    known = slurmjobs.nodes(SINFO)
    remote_cluster = Host("c", "alice@login1", 2222, "policy", slurm=True)
    node = slurm.node_host(remote_cluster, "node2", known)
    assert (node.name, node.target, node.port, node.jump) == (
        "c",
        "alice@10.123.0.12",
        None,
        "alice@login1:2222",
    )
    argv = remote.ssh_argv(node, ["devbox", "info", "b", "--host", "local", "--json"])
    assert argv[argv.index("-J") + 1] == "alice@login1:2222" and "alice@10.123.0.12" in argv
    here = slurm.node_host(Host("c", None, None, "policy", slurm=True), "node1", known)
    assert (here.target, here.jump) == ("10.123.0.11", None)
    assert slurm.node_host(Host("c", None, None, "policy", slurm=True), "gone", known).target == "gone"
    assert not Host("c", None, None, "policy", slurm=True).local
    assert slurm.login(remote_cluster) == Host("c", "alice@login1", 2222, "policy")


def test_a_login_node_command_goes_over_ssh(monkeypatch: pytest.MonkeyPatch) -> None:
    from devbox.ops import slurm
    from devbox.ops.hosts import Host

    ran: list[list[str]] = []

    def fake(argv: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
        ran.append(argv)
        return subprocess.CompletedProcess(argv, 0, "dbxhu1\n" + json.dumps(SQUEUE), "")

    monkeypatch.setattr(slurm.subprocess, "run", fake)
    user, jobs = slurm.whoami_and_jobs(Host("c", "login1", None, "policy", slurm=True))
    assert user == "dbxhu1" and len(jobs) == 4
    assert (
        ran[0][0] == "ssh" and ran[0][-2] == "login1" and ran[0][-1] == "sh -c 'id -un && exec squeue --json'"
    )


def test_slurm_errors_name_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    from devbox.errors import DevboxError, EngineUnreachable
    from devbox.ops import slurm
    from devbox.ops.hosts import Host

    def missing(argv: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
        raise FileNotFoundError(argv[0])

    monkeypatch.setattr(slurm.subprocess, "run", missing)
    with pytest.raises(EngineUnreachable) as caught:
        slurm.jobs(Host("c", None, None, "policy", slurm=True))
    assert "squeue is not installed on this machine" in caught.value.message

    def refused(argv: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
        return subprocess.CompletedProcess(
            argv, 1, "", "sbatch: error: Invalid account or account/partition combination specified\n"
        )

    monkeypatch.setattr(slurm.subprocess, "run", refused)
    with pytest.raises(DevboxError) as failed:
        slurm.submit(Host("c", None, None, "policy", slurm=True), ["sbatch"], "#!/bin/sh\n")
    assert "Invalid account" in failed.value.message and "sacctmgr" in (failed.value.hint or "")


def test_the_fast_up_reads_the_queue_flags() -> None:
    from devbox.cli import fast

    parsed = fast._up_args(["up", "nb", "--host", "c", "--no-wait", "--wait-timeout", "30"])
    assert parsed is not None and parsed["no_wait"] is True and parsed["wait_timeout"] == 30.0
    plain = fast._up_args(["up", "nb"])
    assert plain is not None and plain["no_wait"] is False and plain["wait_timeout"] is None
    assert fast._up_args(["up", "--wait-timeout", "soon"]) is None  # typer says what a number is


def test_the_queue_flags_are_refused_off_slurm() -> None:
    from devbox.cli import onslurm

    with pytest.raises(InvalidInput) as caught:
        onslurm.refuse_flags(True, None)
    assert "--no-wait applies to a Slurm host only" in caught.value.message
    onslurm.refuse_flags(False, None)


def _run_script(
    tmp_path: Path, req: slurmscript.JobRequest, env: dict[str, str]
) -> tuple[int, list[str], str]:
    """The job script run to its end against a stand-in devbox whose box stops at once:
    (exit status, the devbox calls with the identity each saw, the answer file's text)."""
    log = tmp_path / "calls"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    fake = bin_dir / "devbox"
    fake.write_text(
        f"""#!/bin/sh
echo "$LOGNAME $USER ${{DEVBOX_USER-unset}}: $*" >>{log}
case "$1" in
  up) echo '{{"name": "x", "status": "running"}}' ;;
  info) echo '{{"status": "exited"}}' ;;
esac
"""
    )
    fake.chmod(0o755)
    home = tmp_path / "home"
    (home / ".cache" / "devbox" / "slurm").mkdir(parents=True, exist_ok=True)
    script = tmp_path / "job.sh"
    script.write_text(slurmscript.script(req))
    base = {"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(home), "SLURM_JOB_ID": "42"}
    done = subprocess.run(
        ["bash", str(script)], env={**base, **env}, capture_output=True, text=True, timeout=30
    )
    answer = home / ".cache/devbox/slurm/42.json"
    calls = log.read_text().splitlines() if log.exists() else []
    return done.returncode, calls, answer.read_text() if answer.exists() else ""


@pytest.mark.skipif(shutil.which("bash") is None, reason="no bash")
def test_the_node_devbox_runs_as_the_jobs_user_whatever_was_exported(tmp_path: Path) -> None:
    """sbatch exports the submitter's environment: LOGNAME/USER=bob must not make the box bob's
    (devbox reads the login name from them before the passwd database)."""
    import getpass
    import pwd

    me = pwd.getpwuid(os.getuid()).pw_name
    assert getpass.getuser()  # the node's devbox asks getpass, which reads LOGNAME first
    fake = {"LOGNAME": "bob", "USER": "bob", "DEVBOX_USER": "bob", "SLURM_JOB_GPUS": "1"}
    rc, calls, _ = _run_script(tmp_path, _request(), fake)
    assert rc == 0 and calls
    assert all(c.startswith(f"{me} {me} unset: ") for c in calls), calls


@pytest.mark.skipif(shutil.which("bash") is None, reason="no bash")
def test_a_job_without_gpus_gives_its_box_none_whatever_was_exported(tmp_path: Path) -> None:
    """A job that asked for no GPU holds none: an exported CUDA_VISIBLE_DEVICES must not hand
    the box GPUs Slurm counts as free, nor may the node's devbox pick the profile's own."""
    rc, calls, _ = _run_script(tmp_path, _request(gpus=0), {"CUDA_VISIBLE_DEVICES": "0,1,2,3"})
    assert rc == 0 and calls[0].split(": ", 1)[1].endswith("--gpus none")
    assert "device=" not in calls[0]


@pytest.mark.skipif(shutil.which("bash") is None, reason="no bash")
def test_a_job_given_no_gpu_it_asked_for_fails_and_says_why(tmp_path: Path) -> None:
    rc, calls, answer = _run_script(tmp_path, _request(gpus=2), {})
    assert rc == 1 and calls == []  # no box: the node's devbox would pick GPUs of its own
    assert "asked for 2 GPU(s) but Slurm gave it none" in answer


@pytest.mark.skipif(shutil.which("bash") is None, reason="no bash")
def test_hostile_names_and_values_stay_words_in_the_job_script(tmp_path: Path) -> None:
    """Box, profile path and -e values with quotes, $(), backticks and line breaks reach the
    node's devbox as the same words, and run nothing."""
    marker = tmp_path / "pwned"
    evil = f"$(touch {marker})`touch {marker}`'\"\n# x"
    req = _request(box=f"b{evil}", profile=f"/p a/{evil}.yaml", up_args=("-e", f"K={evil}"))
    rc, _, _ = _run_script(tmp_path, req, {"SLURM_JOB_GPUS": "0"})
    assert rc == 0 and not marker.exists()
    text = (tmp_path / "calls").read_text()
    assert f"up /p a/{evil}.yaml --host local" in text and f"-e K={evil} --gpus device=0" in text


def test_ctrl_c_while_pending_cancels_the_job_up_submitted(
    stand_in: _Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C while `up` waits: the job it submitted is cancelled (nothing left queued); a job
    it only found stays, and the message says how to cancel it."""
    from devbox.errors import Interrupted
    from devbox.ops import slurmbox
    from devbox.ops.reporter import QuietReporter

    def ctrl_c(waited: float) -> float:
        raise KeyboardInterrupt  # pressed while `up` waits between two squeue

    monkeypatch.setattr(slurmbox, "_poll_delay", ctrl_c)
    with pytest.raises(Interrupted) as caught:
        slurmbox.up(_cluster(), dict(RENDERED), "train", [], "/", QuietReporter(), False, False, None)  # type: ignore[arg-type]
    assert "job 100 of box 'train' cancelled" in caught.value.message
    assert ["scancel", "100"] in stand_in.calls and stand_in.jobs == {}
    # A job queued by an earlier `up --no-wait`: this `up` waits on it, and Ctrl-C leaves it.
    slurmbox.up(_cluster(), dict(RENDERED), "train", [], "/", QuietReporter(), False, True, None)  # type: ignore[arg-type]
    with pytest.raises(Interrupted) as caught:
        slurmbox.up(_cluster(), dict(RENDERED), "train", [], "/", QuietReporter(), False, False, None)  # type: ignore[arg-type]
    assert "still queued" in caught.value.message and "devbox down train" in (caught.value.hint or "")
    assert len(stand_in.jobs) == 1 and stand_in.calls[-1][0] != "scancel"


# --- one box, one job: two `up`s that race, `wait` and `down` with a duplicate job ------------


class _Queue:
    """A queue whose jobs start: a PENDING job runs on node1 after `start_after` squeue calls,
    and then its answer file says its box is up. scancel leaves a job CANCELLED (not alive).
    `race`: the first two `id -un && squeue` calls wait for each other, as two `up`s that both
    read the queue before either submits, and so do the first two sbatch. Thread-safe."""

    def __init__(self, start_after: int = 2, race: bool = False) -> None:
        import threading

        self.lock = threading.Lock()
        self.barrier = threading.Barrier(2, timeout=10) if race else None
        self.submits_barrier = threading.Barrier(2, timeout=10) if race else None
        self.reads = 0
        self.submits = 0
        self.start_after = start_after
        self.polls = 0
        self.jobs: dict[int, dict[str, str]] = {}
        self.calls: list[list[str]] = []
        self.node_calls: list[list[str]] = []

    def add(self, job_id: int, box: str, state: str = "PENDING") -> None:
        self.jobs[job_id] = {"name": f"devbox-alice-{box}", "state": state}

    def alive(self) -> list[int]:
        return sorted(i for i, j in self.jobs.items() if j["state"] in slurmjobs.ALIVE)

    def _squeue(self) -> str:
        self.polls += 1
        items = []
        for i, j in sorted(self.jobs.items()):
            if j["state"] == "PENDING" and self.polls > self.start_after:
                j["state"] = "RUNNING"
            running = j["state"] == "RUNNING"
            items.append(
                {
                    "job_id": i,
                    "name": j["name"],
                    "user_name": "alice",
                    "job_state": j["state"],
                    "state_reason": "None" if running else "Resources",
                    "nodes": "node1" if running else "",
                    "gres_detail": [f"gpu:1(IDX:{i % 4})"] if running else [],
                }
            )
        return json.dumps({"jobs": items})

    def run(self, cluster: object, argv: list[str], stdin: str | None = None, timeout: float = 0) -> str:
        barrier = None
        with self.lock:
            self.calls.append(argv)
            if argv[:2] == ["sh", "-c"] and "squeue" in argv[2]:
                self.reads += 1
                barrier = self.barrier if self.reads <= 2 else None
                queue = "alice\n" + self._squeue()
            elif argv[:2] == ["sh", "-c"] and "sbatch" in argv[2]:
                job_id = max(self.jobs, default=99) + 1
                name = next(a.split("=", 1)[1] for a in argv if a.startswith("--job-name="))
                self.jobs[job_id] = {"name": name, "state": "PENDING"}
                self.submits += 1
                if self.submits <= 2 and self.submits_barrier is not None:
                    barrier, queue = self.submits_barrier, f"{job_id}\n"
                else:
                    return f"{job_id}\n"
            elif argv[0] == "scancel":
                self.jobs[int(argv[1])]["state"] = "CANCELLED"
                return ""
            elif argv[0] == "squeue":
                return self._squeue()
            elif argv[0] == "sinfo":
                return json.dumps(SINFO)
            elif argv[:2] == ["sh", "-c"] and argv[2].startswith("cat "):
                import re

                path = re.search(r"/(\d+)\.(json|out)\"", argv[2])
                assert path is not None, argv
                ran = self.jobs.get(int(path[1]), {}).get("state") == "RUNNING"
                return json.dumps({"name": "train", "status": "running"}) if ran and path[2] == "json" else ""
            else:
                return ""
        if barrier is not None:
            barrier.wait()  # outside the lock: the other `up` reads (or submits) meanwhile
        return queue

    def run_json(self, host: object, args: list[str], timeout: float | None, **kw: object) -> object:
        with self.lock:
            self.node_calls.append(args)
        if args[0] == "ls":
            return []
        return {"name": args[1], "status": "running", "profile": "/home/alice/train.yaml"}


@pytest.fixture
def queue(monkeypatch: pytest.MonkeyPatch) -> _Queue:
    from devbox.ops import remote, slurm, slurmbox

    fake = _Queue()
    monkeypatch.setattr(slurm, "run", fake.run)
    monkeypatch.setattr(remote, "run_json", fake.run_json)
    monkeypatch.setattr(slurmbox, "_poll_delay", lambda waited: 0.0)
    return fake


class _Steps:
    def __init__(self) -> None:
        self.said: list[str] = []

    def step(self, text: str) -> None:
        self.said.append(text)


def test_two_ups_that_race_leave_one_job_and_both_follow_it(queue: _Queue) -> None:
    """Both read an empty queue, both submit: the later one cancels its own job and follows the
    first; both return the running box of that one job, and neither says it ended."""
    from concurrent.futures import ThreadPoolExecutor

    from devbox.ops import slurmbox

    raced = _Queue(race=True)
    queue.barrier, queue.submits_barrier = raced.barrier, raced.submits_barrier
    steps = [_Steps(), _Steps()]

    def up(said: _Steps) -> dict[str, object]:
        return slurmbox.up(_cluster(), dict(RENDERED), "train", [], "/", said, False, False, None)  # type: ignore[arg-type]

    with ThreadPoolExecutor(2) as pool:
        results = [f.result(timeout=30) for f in [pool.submit(up, s) for s in steps]]
    assert sum("sbatch" in " ".join(c) for c in queue.calls) == 2  # the race happened
    assert queue.alive() == [100] and queue.jobs[101]["state"] == "CANCELLED"
    assert [r["job_id"] for r in results] == [100, 100]
    assert all(r["status"] == "running" and r["node"] == "node1" for r in results)
    assert sorted(str(r["action"]) for r in results) == ["created", "existing"]
    said = [s for st in steps for s in st.said]
    assert "another `up` of train submitted job 100 first: following it (job 101 cancelled)" in said
    assert not any("ended" in s for s in said)


def test_wait_follows_its_own_job_not_the_boxs_newest(queue: _Queue) -> None:
    from devbox.errors import DevboxError
    from devbox.ops import slurmbox
    from devbox.ops.reporter import QuietReporter

    queue.add(100, "train")
    queue.add(101, "train")  # a duplicate another `up` left
    job, answer = slurmbox.wait(_cluster(), "alice", "train", 100, QuietReporter(), False, None)  # type: ignore[arg-type]
    assert job.job_id == 100 and job.status == "running" and answer == {"name": "train", "status": "running"}
    # Its own job gone: ended, whatever other job of the box lives on.
    queue.jobs[101]["state"] = "CANCELLED"
    queue.add(102, "train", "RUNNING")
    with pytest.raises(DevboxError) as caught:
        slurmbox.wait(_cluster(), "alice", "train", 101, QuietReporter(), False, None)  # type: ignore[arg-type]
    assert "job 101 (devbox-alice-train) ended before its box was up" in caught.value.message


def test_the_oldest_alive_job_is_the_box_and_ls_shows_every_one(queue: _Queue) -> None:
    from devbox.ops import slurm, slurmbox

    queue.start_after = 10**6
    queue.add(99, "train", "CANCELLED")
    queue.add(100, "train")
    queue.add(101, "train")
    queue.add(102, "other")
    data = slurmbox.up(_cluster(), dict(RENDERED), "train", [], "/", _Steps(), False, True, None)  # type: ignore[arg-type]
    assert (data["job_id"], data["action"]) == (100, "existing")
    assert slurmbox.info(_cluster(), "train")["job_id"] == 100  # type: ignore[arg-type]
    rows = slurmbox.listing(_cluster(), False, None)  # type: ignore[arg-type]
    assert sorted((r["name"], r["job_id"]) for r in rows) == [("other", 102), ("train", 100), ("train", 101)]
    # A job on its way out is the box only when no other job of it is alive.
    item = {"name": "devbox-a-b", "user_name": "a"}
    found = slurmjobs.jobs(
        {
            "jobs": [
                {**item, "job_id": 5, "job_state": "COMPLETING"},
                {**item, "job_id": 6, "job_state": "PENDING"},
            ]
        }
    )
    assert slurm.job_of(found, "a", "b").job_id == 6  # type: ignore[union-attr]
    assert slurm.job_of(found[:1], "a", "b").job_id == 5  # type: ignore[union-attr]


def test_down_cancels_every_alive_job_of_the_box(queue: _Queue) -> None:
    from devbox.ops import slurmbox

    queue.start_after = 10**6
    queue.add(100, "train", "RUNNING")
    queue.add(101, "train")
    queue.add(102, "other")
    gone = slurmbox.down(_cluster(), "train", False)  # type: ignore[arg-type]
    assert gone["removed"] and (gone["job_id"], gone["node"]) == (100, "node1")
    assert ["scancel", "100"] in queue.calls and ["scancel", "101"] in queue.calls
    assert queue.alive() == [102]
    assert ["ls", "--json", "--host", "local"] in queue.node_calls  # node1 checked for a leftover


def test_up_recreate_cancels_every_alive_job_of_the_box(queue: _Queue) -> None:
    from devbox.ops import slurmbox

    queue.start_after = 10**6
    queue.add(100, "train")
    queue.add(101, "train")
    data = slurmbox.up(_cluster(), dict(RENDERED), "train", [], "/", _Steps(), True, True, None)  # type: ignore[arg-type]
    assert (data["job_id"], data["action"]) == (102, "created") and queue.alive() == [102]
