"""Must show (issue 14): boxes on a real Slurm cluster of this machine (scripts/test-slurm).

slurmctld, slurmdbd (MariaDB) and munge in the root namespace, slurmd node1..node3 in the
network namespaces of scripts/test-hosts' servers h1..h3 (each its own dockerd, 4 stand-in GPUs),
devbox's Epilog (scripts/slurm-epilog). The test users dbxhu1/dbxhu2 run the client's devbox
with a host `slurm: slurm:local` (this machine is the login node); the nodes' engines are
inspected as root with the docker CLI.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import Engine
from tests.integration.hostsbed import GPU_BOX
from tests.integration.slurmbed import STATE as SLURM_STATE
from tests.integration.slurmbed import SlurmBed, one_test, slurm_session

NODES = ("node1", "node2", "node3")
USER1, USER2 = "dbxhu1", "dbxhu2"
NO_CAPACITY = 4
PENDING_S = 90  # Must show 1: how long the 2 boxes that find no GPU wait before they give up
JUPYTER_BOX = "image: devbox/devbox:0.1\ngpus: 1\nuser: host\nports: {jupyter: 8888}\nready: {timeout: 180}\n"


@pytest.fixture(scope="module")
def cluster(engine: Engine) -> Iterator[SlurmBed]:
    """The test cluster (tests/integration/slurmbed.py) with a host `slurm: slurm:local` for the
    test users: this machine is the login node."""
    for bed in slurm_session():
        originals = {}
        for user in (USER1, USER2):
            hosts = bed.home(user) / ".config" / "devbox" / "hosts.yaml"
            originals[hosts] = hosts.read_text()
            hosts.write_text(originals[hosts] + "slurm: slurm:local\n")
        try:
            yield bed
        finally:
            for path, text in originals.items():
                path.write_text(text)


@pytest.fixture
def bed(cluster: SlurmBed) -> Iterator[SlurmBed]:
    """The cluster for one test: every job cancelled (Epilogs done), boxes, limits, files removed."""
    yield from one_test(cluster)


def _node_containers(bed: SlurmBed, node: str) -> list[dict[str, Any]]:
    """`docker inspect` of every box a job made on `node`'s engine."""
    return [c for c in bed.containers(bed.node_host(node)) if "devbox.slurm_job" in c["Config"]["Labels"]]


def _json(result: subprocess.CompletedProcess[str]) -> Any:
    try:
        return json.loads(result.stdout)
    except ValueError:
        raise AssertionError(
            f"not JSON (exit {result.returncode}):\n{result.stdout}\n{result.stderr}"
        ) from None


def _rows(bed: SlurmBed, user: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = bed.devbox_json(user, "ls", "--all", "--host", "slurm")
    return rows


def _wait_rows(bed: SlurmBed, check: Any, timeout: float = 240) -> list[dict[str, Any]]:
    """`ls --all --host slurm --json` until `check(rows)` holds."""
    deadline = time.monotonic() + timeout
    rows: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        rows = _rows(bed, USER1)
        if check(rows):
            return rows
        time.sleep(2)
    raise AssertionError(f"ls never got there in {timeout:g} s: {_ended_jobs(bed, rows)}{json.dumps(rows)}")


def _ended_jobs(bed: SlurmBed, rows: list[dict[str, Any]]) -> str:
    """The last lines of the output of every job of the test users that `rows` lacks: why a
    job ended early is in there (its node's `devbox up` error), not in `ls`."""
    listed = {r["job_id"] for r in rows}
    said = []
    for user in (USER1, USER2):
        for out in sorted((bed.home(user) / ".cache" / "devbox" / "slurm").glob("*.out")):
            if out.stem.isdecimal() and int(out.stem) not in listed:
                tail = out.read_text(errors="replace").strip().splitlines()[-4:]
                said.append(f"job {out.stem} of {user} ended: " + " | ".join(tail))
    return "".join(line + "\n" for line in said)


def _wait_boxes(bed: SlurmBed, wanted: int, timeout: float = 300) -> dict[int, dict[str, Any]]:
    """The running box containers on all nodes, by job id, once there are `wanted` of them."""
    deadline = time.monotonic() + timeout
    found: dict[int, dict[str, Any]] = {}
    while time.monotonic() < deadline:
        found = {}
        for node in NODES:
            for c in _node_containers(bed, node):
                if c["State"]["Running"]:
                    found[int(c["Config"]["Labels"]["devbox.slurm_job"])] = {**c, "node": node}
        if len(found) >= wanted:
            return found
        time.sleep(2)
    raise AssertionError(f"{len(found)} box containers running after {timeout:g} s, not {wanted}")


def _visible(container: dict[str, Any]) -> str:
    env = dict(e.split("=", 1) for e in container["Config"]["Env"])
    return env.get("NVIDIA_VISIBLE_DEVICES", "")


def test_14_boxes_from_two_users_take_12_distinct_gpus_and_2_pend(bed: SlurmBed) -> None:
    """Must show 1: 3 nodes x 4 GPUs, 14 concurrent `up --host slurm` (gpus: 1) from two users:
    12 run on 12 distinct (node, GPU), each seeing only its GPU; 2 pend with the reason."""
    runs = []
    for i in range(7):
        for user in (USER1, USER2):
            profile = bed.write_profile(user, f"s{i}", GPU_BOX)
            up = ["devbox", "up", str(profile), "--host", "slurm", "--wait-timeout", str(PENDING_S), "--json"]
            runs.append((user, bed.start(user, *up)))
    # While they wait: everyone's boxes, 12 running with node and GPU, 2 pending with Slurm's reason.
    rows = _wait_rows(bed, lambda r: len(r) == 14 and sum(x["status"] == "running" for x in r) == 12)
    running = [r for r in rows if r["status"] == "running"]
    pending = [r for r in rows if r["status"] == "pending"]
    assert len({(r["node"], tuple(r["gpus"])) for r in running}) == 12, running
    assert all(len(r["gpus"]) == 1 and r["node"] in NODES for r in running), running
    assert len(pending) == 2 and all(r["reason"] in ("Resources", "Priority") for r in pending), pending
    assert all(r["node"] is None and r["gpus"] == [] for r in pending)
    assert {r["owner"] for r in rows} == {USER1, USER2}
    shown = bed.devbox(USER1, "ls", "--all", "--host", "slurm", check=True)
    assert "Resources" in shown.stdout or "Priority" in shown.stdout
    # The 12 `up`s end with their box running (credentials read on its node); the 2 others
    # give up after --wait-timeout, their jobs cancelled, naming the reason.
    done, refused = [], []
    for user, process in runs:
        out, err = process.communicate(timeout=PENDING_S + 240)
        if process.returncode == 0:
            done.append(json.loads(out))
        else:
            assert process.returncode == NO_CAPACITY, f"{user}: exit {process.returncode}\n{out}\n{err}"
            refused.append(json.loads(out)["error"])
    assert len(done) == 12 and len(refused) == 2, (done, refused)
    assert {(b["node"], tuple(b["gpus"])) for b in done} == {(r["node"], tuple(r["gpus"])) for r in running}
    assert all(b["status"] == "running" and b["host"] == "slurm" for b in done)
    assert all(
        e["kind"] == "no-capacity" and ("Resources" in e["message"] or "Priority" in e["message"])
        for e in refused
    )
    # Each box runs on its job's node and sees exactly its job's GPU (the node's own engine says).
    boxes = _wait_boxes(bed, 12)
    for r in running:
        container = boxes[r["job_id"]]
        assert container["node"] == r["node"], (r, container["node"])
        assert _visible(container) == str(r["gpus"][0]), (r, _visible(container))
        assert container["Config"]["Labels"]["devbox.owner"] == r["owner"]
    # A user's own ls shows theirs only; info of a running box comes from its node.
    mine = bed.devbox_json(USER2, "ls", "--host", "slurm")
    assert {r["owner"] for r in mine} == {USER2} and all(r["status"] == "running" for r in mine)
    one = next(r for r in running if r["owner"] == USER1)
    info = bed.devbox_json(USER1, "info", one["name"])
    assert (info["host"], info["node"], info["gpus"], info["status"]) == (
        "slurm",
        one["node"],
        one["gpus"],
        "running",
    )


def test_qos_gpu_limit_pends_a_users_third_box_only(bed: SlurmBed) -> None:
    """Must show 2: MaxTRESPerUser=gres/gpu=2; the third box of dbxhu1 pends, dbxhu2's runs."""
    # doctor: a lab policy limit Slurm does not enforce is a warning, with the sacctmgr line.
    policy = bed.write_profile(USER1, "policy", "limits: {max_gpus_per_user: 2}\n")
    doctor = ["env", f"DEVBOX_POLICY={policy}", "devbox", "doctor", "--json"]
    checks = _json(bed.run(USER1, *doctor))["checks"]
    warned = [c for c in checks if c["check"] == "slurm slurm" and c["status"] == "warn"]
    assert len(warned) == 1 and "MaxTRESPerUser=gres/gpu=2" in warned[0]["fix"], checks
    done = bed.slurm("sacctmgr", "-i", "modify", "qos", "normal", "set", "MaxTRESPerUser=gres/gpu=2")
    assert done.returncode == 0, done.stderr
    checks = _json(bed.run(USER1, *doctor))["checks"]
    assert [c["status"] for c in checks if c["check"] == "slurm slurm"] == ["ok"], checks
    for i in range(3):
        profile = bed.write_profile(USER1, f"q{i}", GPU_BOX)
        bed.devbox(USER1, "up", str(profile), "--host", "slurm", "--no-wait", "--json", check=True)
    other = bed.write_profile(USER2, "q0", GPU_BOX)
    bed.devbox(USER2, "up", str(other), "--host", "slurm", "--no-wait", "--json", check=True)
    rows = _wait_rows(bed, lambda r: sum(x["status"] == "running" for x in r) == 3 and len(r) == 4)
    held = [r for r in rows if r["status"] == "pending"]
    assert len(held) == 1 and held[0]["owner"] == USER1 and held[0]["reason"] == "QOSMaxGRESPerUser", rows
    assert [r["status"] for r in rows if r["owner"] == USER2] == ["running"]
    # `up` waiting shows the reason; --wait-timeout cancels it and says why.
    fourth = bed.write_profile(USER1, "q3", GPU_BOX)
    result = bed.devbox(
        USER1, "up", str(fourth), "--host", "slurm", "--wait-timeout", "4", "--json", timeout=120
    )
    assert result.returncode == NO_CAPACITY, result.stdout + result.stderr
    error = _json(result)["error"]
    assert error["kind"] == "no-capacity" and "QOSMaxGRESPerUser" in error["message"], error
    assert not [r for r in _rows(bed, USER1) if r["name"] == "q3"]  # cancelled
    text = bed.devbox(USER1, "up", str(fourth), "--host", "slurm", "--wait-timeout", "4", timeout=120)
    assert "QOSMaxGRESPerUser" in text.stderr and text.returncode == NO_CAPACITY
    shown = bed.devbox(USER1, "policy", "show", "--json", check=True)
    assert _json(shown)["slurm"]["slurm"]["normal"]["max_tres_per_user"] == {"gres/gpu": "2"}


def test_down_and_scancel_leave_no_container_and_free_the_gpu(bed: SlurmBed) -> None:
    """Must show 3: `devbox down` and an admin's scancel each leave no container on the node;
    the freed GPU goes to the next pending box."""
    for i in range(13):
        user = (USER1, USER2)[i % 2]
        profile = bed.write_profile(user, f"d{i}", GPU_BOX)
        bed.devbox(user, "up", str(profile), "--host", "slurm", "--no-wait", "--json", check=True)
    rows = _wait_rows(bed, lambda r: sum(x["status"] == "running" for x in r) == 12 and len(r) == 13)
    boxes = _wait_boxes(bed, 12)
    waiting = next(r for r in rows if r["status"] == "pending")
    # devbox down: returns once the job is gone and its node holds no container of it.
    victim = next(r for r in rows if r["status"] == "running" and r["owner"] == USER1)
    result = bed.devbox_json(USER1, "down", victim["name"], timeout=180)
    assert result["removed"] and result["job_id"] == victim["job_id"] and not result.get("warnings"), result
    assert victim["job_id"] not in {
        int(c["Config"]["Labels"]["devbox.slurm_job"]) for c in _node_containers(bed, victim["node"])
    }
    # The pending box gets the freed GPU.
    freed = (victim["node"], victim["gpus"])
    rows = _wait_rows(
        bed, lambda r: any(x["job_id"] == waiting["job_id"] and x["status"] == "running" for x in r)
    )
    now = next(r for r in rows if r["job_id"] == waiting["job_id"])
    assert (now["node"], now["gpus"]) == freed, (now, freed)
    # An admin's scancel: the job's trap and the Epilog remove the box.
    other = next(r for r in rows if r["status"] == "running" and r["owner"] == USER2)
    assert other["job_id"] in boxes
    assert bed.slurm("scancel", str(other["job_id"])).returncode == 0
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        left = {int(c["Config"]["Labels"]["devbox.slurm_job"]) for c in _node_containers(bed, other["node"])}
        if other["job_id"] not in left:
            break
        time.sleep(1)
    else:
        raise AssertionError(f"job {other['job_id']}'s container still on {other['node']} 60 s after scancel")
    assert bed.devbox(USER2, "info", other["name"], "--host", "slurm").returncode == 5  # not-found


def _script_pids(job_id: int) -> list[int]:
    """The processes running job `job_id`'s batch script (slurmd's copy of it)."""
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdecimal() and f"/job{job_id:05d}/slurm_script" in (entry / "cmdline").read_text():
                pids.append(int(entry.name))
        except OSError:
            continue
    return pids


def test_an_epilog_removes_a_box_its_job_did_not(bed: SlurmBed) -> None:
    """The job's shell KILLed (an OOM kill: no TERM, so no trap ran): the Epilog removes the box.
    (scancel --signal=KILL would not show it: Slurm sends TERM first, and the trap runs.)"""
    profile = bed.write_profile(USER1, "k0", GPU_BOX)
    bed.devbox(USER1, "up", str(profile), "--host", "slurm", "--no-wait", "--json", check=True)
    rows = _wait_rows(bed, lambda r: any(x["status"] == "running" for x in r))
    job = rows[0]
    _wait_boxes(bed, 1)
    pids = _script_pids(job["job_id"])
    assert pids, f"no batch script of job {job['job_id']} found"
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and _node_containers(bed, job["node"]):
        time.sleep(1)
    assert _node_containers(bed, job["node"]) == []
    # The Epilog's own word (written once `docker rm` returned, a moment after the box is gone).
    said = f"devbox epilog: job {job['job_id']}: removed 1 container(s)"
    log = SLURM_STATE / "log" / f"epilog-{job['node']}.log"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and said not in log.read_text():
        time.sleep(0.5)
    assert said in log.read_text(), log.read_text()[-2000:]


def _http_status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def test_tunnel_reaches_jupyter_of_a_slurm_box(bed: SlurmBed) -> None:
    """Must show 4: `devbox tunnel` to a Slurm box's Jupyter: /api/status 200 with the token."""
    profile = bed.write_profile(USER1, "lab", JUPYTER_BOX)
    box = bed.devbox_json(USER1, "up", str(profile), "--host", "slurm", timeout=420)
    assert box["status"] == "running" and box["node"] in NODES, box
    token = box["jupyter"]["token"]
    tunnel = bed.start(USER1, "devbox", "tunnel", "lab", "--json")
    try:
        assert tunnel.stdout is not None
        text, shown = "", None
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and shown is None:
            line = tunnel.stdout.readline()
            if not line:
                break
            text += line
            try:
                shown = json.loads(text)
            except ValueError:
                continue
        assert shown is not None and "error" not in shown, text + (
            tunnel.stderr.read() if tunnel.stderr else ""
        )
        url = urllib.parse.urlsplit(shown["jupyter_url"])
        base = f"{url.scheme}://{url.netloc}"
        assert _http_status(f"{base}/api/status?token={token}") == 200
        assert _http_status(f"{base}/api/status") == 403
    finally:
        tunnel.send_signal(signal.SIGINT)
        tunnel.communicate(timeout=30)


def test_rebuild_resubmits_and_up_again_finds_the_running_box(bed: SlurmBed) -> None:
    """`rebuild` cancels the job and submits the box's profile again; `up` of a running box is no
    second job."""
    profile = bed.write_profile(USER2, "r0", GPU_BOX)
    first = bed.devbox_json(USER2, "up", str(profile), "--host", "slurm", timeout=300)
    again = bed.devbox_json(USER2, "up", str(profile), "--host", "slurm", timeout=300)
    assert (again["job_id"], again["action"]) == (first["job_id"], "existing")
    rebuilt = bed.devbox_json(USER2, "rebuild", "r0", timeout=300)
    assert rebuilt["job_id"] != first["job_id"] and rebuilt["status"] == "running", rebuilt
    rows = bed.devbox_json(USER2, "ls", "--host", "slurm")
    assert [(r["name"], r["job_id"]) for r in rows] == [("r0", rebuilt["job_id"])]
    boxes = _wait_boxes(bed, 1)
    assert list(boxes) == [rebuilt["job_id"]]


def test_an_exported_login_name_does_not_make_the_box_anothers(bed: SlurmBed) -> None:
    """sbatch exports the submitter's environment into the job: dbxhu1 with LOGNAME=USER=dbxhu2
    still gets a box of dbxhu1's on the node (the job's uid decides), never one of dbxhu2's."""
    profile = bed.write_profile(USER1, "who", GPU_BOX)
    fake = ["env", f"LOGNAME={USER2}", f"USER={USER2}", f"DEVBOX_USER={USER2}"]
    up = bed.run(USER1, *fake, "devbox", "up", str(profile), "--host", "slurm", "--json", timeout=300)
    box = _json(up)
    assert up.returncode == 0 and (box["owner"], box["container"]) == (USER1, "devbox-dbxhu1-who"), box
    made = [c for c in _node_containers(bed, box["node"]) if c["Config"]["Labels"]["devbox.box"] == "who"]
    assert [c["Config"]["Labels"]["devbox.owner"] for c in made] == [USER1]
    assert [r["owner"] for r in _rows(bed, USER1) if r["name"] == "who"] == [USER1]
    gone = bed.devbox_json(USER1, "down", "who", timeout=180)
    assert gone["removed"] and not gone.get("warnings"), gone
    assert not [c for c in _node_containers(bed, box["node"]) if c["Config"]["Labels"]["devbox.box"] == "who"]


def test_a_cluster_reached_through_its_login_node_over_ssh(bed: SlurmBed) -> None:
    """`slurm://user@login`: sbatch, squeue and scancel run on the login node h1 over ssh, and the
    box's node is reached through it (ssh -J): up, ls, info, down."""
    hosts = bed.home(USER1) / ".config" / "devbox" / "hosts.yaml"
    original = hosts.read_text()
    hosts.write_text(original + f"viah1: slurm://{USER1}@h1\n")
    try:
        profile = bed.write_profile(USER1, "remote", GPU_BOX)
        box = bed.devbox_json(USER1, "up", str(profile), "--host", "viah1", timeout=300)
        assert (box["status"], box["host"], box["owner"]) == ("running", "viah1", USER1), box
        assert box["node"] in NODES and len(box["gpus"]) == 1, box
        rows = bed.devbox_json(USER1, "ls", "--host", "viah1")
        assert [(r["name"], r["node"], r["gpus"]) for r in rows] == [("remote", box["node"], box["gpus"])]
        info = bed.devbox_json(USER1, "info", "remote", "--host", "viah1")
        assert (info["status"], info["node"], info["job_id"]) == ("running", box["node"], box["job_id"])
        gone = bed.devbox_json(USER1, "down", "remote", "--host", "viah1", timeout=180)
        assert gone["removed"] and gone["job_id"] == box["job_id"] and not gone.get("warnings"), gone
        assert not _node_containers(bed, box["node"])
        assert bed.devbox_json(USER1, "ls", "--host", "viah1") == []
    finally:
        hosts.write_text(original)
