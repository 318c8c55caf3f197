"""One contract for scripts, on a real engine: each --json output is exactly its TypedDict.

The unit tests (tests/unit/test_contract.py) hold the same shapes against the fake engine;
here the documents come from Docker itself (its timestamps, ids, port bindings).
"""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path

from devbox.ui import json as shapes
from tests import shapes as contract
from tests.integration.conftest import Caller, Engine
from tests.integration.test_lifecycle import NOTEBOOK6

PLAIN = "devbox/debian:bookworm"


def test_box_commands_print_their_shapes(caller: Caller, engine: Engine) -> None:
    caller.environ["DEVBOX_GPU_INVENTORY"] = "2"  # for the gpus view; the boxes ask for none
    host = os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
    web = caller.write_profile("web", f"image: {NOTEBOOK6}\nports: {{jupyter: 8888}}")
    plain = caller.write_profile("plain", f"image: {PLAIN}\ncommand: [sleep, infinity]")

    up = contract.parse(caller.devbox("up", str(web), "--json").stdout, shapes.ReportJson)
    assert (up["name"], up["owner"], up["host"], up["action"]) == ("web", caller.owner, host, "created")
    assert up["container"] == caller.container("web")
    assert up["created"] and up["created_iso"] and up["started"] and up["started_iso"]
    assert datetime.fromisoformat(up["created_iso"]).timestamp() == int(up["created"])
    assert up["jupyter"] and str(up["ports"]["jupyter"]["host_port"]) in up["jupyter"]["url"]

    info = contract.parse(caller.devbox("info", "web", "--json").stdout, shapes.ReportJson)
    assert (info["container"], info["created"], info["action"]) == (up["container"], up["created"], "running")

    listed = contract.parse(caller.devbox("ls", "--json").stdout, list[shapes.LsBoxJson])
    assert [(b["name"], b["host"], b["status"]) for b in listed] == [("web", host, "running")]
    assert int(listed[0]["created"] or 0) == int(up["created"])  # the listing and inspect agree

    contract.parse(caller.devbox("up", str(plain), "--json").stdout, shapes.ReportJson)
    rebuilt = contract.parse(caller.devbox("rebuild", "plain", "--json").stdout, shapes.ReportJson)
    assert rebuilt["action"] == "rebuilt"
    switched = contract.parse(caller.devbox("switch", str(plain), "--json").stdout, shapes.SwitchJson)
    assert (switched["name"], switched["stopped"]) == ("plain", ["web"])

    pruned = contract.parse(caller.devbox("prune", "--yes", "--json").stdout, shapes.PruneJson)
    assert [b["name"] for b in pruned["removed"]] == ["web"]
    contract.parse(caller.devbox("prune", "--idle", "--json").stdout, shapes.PruneIdleJson)
    config = contract.parse(caller.devbox("ssh-config", "--json").stdout, shapes.SshConfigJson)
    assert config["entries"] == []  # plain has no ssh port

    gpus = contract.parse(caller.devbox("gpus", "--json").stdout, list[shapes.GpuJson])
    assert [g["index"] for g in gpus] == [0, 1] and {g["host"] for g in gpus} == {host}
    doctor = caller.devbox("doctor", "--json", check=False)
    assert contract.parse(doctor.stdout, shapes.DoctorJson)["host"] == host

    down = contract.parse(caller.devbox("down", "plain", "--json").stdout, shapes.DownJson)
    assert (down["name"], down["owner"], down["host"], down["removed"]) == ("plain", caller.owner, host, True)
    assert down["container"] == caller.container("plain")


def test_errors_on_a_real_engine_are_one_object(caller: Caller, engine: Engine, tmp_path: Path) -> None:
    gone = caller.devbox("info", "nothing-here", "--json", check=False)
    error = contract.parse(gone.stdout, shapes.ErrorJson)["error"]
    assert (gone.returncode, error["kind"]) == (5, "not-found")
    caller.environ["DOCKER_HOST"] = f"unix://{tmp_path}/none.sock"
    for argv in (["ls", "--json"], ["up", str(caller.write_profile("x", f"image: {PLAIN}")), "--json"]):
        result = caller.devbox(*argv, check=False)
        error = contract.parse(result.stdout, shapes.ErrorJson)["error"]
        assert (result.returncode, error["kind"]) == (6, "engine-unreachable"), argv
