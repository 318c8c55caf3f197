"""Several servers through the real `devbox` command: hosts, --host, --host auto, --all-hosts.

The servers are fake (tests/unit/fakessh.py); tests/integration/test_hosts.py runs the same
commands against real sshd + dockerd hosts in network namespaces.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from devbox import __version__
from devbox.cli import fast, labgate
from devbox.ui import json as shapes
from tests import shapes as contract
from tests.conftest import Sandbox
from tests.unit import fakessh
from tests.unit.fakeservers import servers_fixture  # noqa: F401 (the `servers` fixture)

NO_ENGINE = "unix:///nonexistent/devbox-test.sock"


def devbox(*args: str, timeout: float = 60, **env: str) -> subprocess.CompletedProcess[str]:
    """The real command, as a user runs it, against the fake servers on PATH."""
    return subprocess.run(
        [sys.executable, "-m", "devbox", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "DOCKER_HOST": NO_ENGINE, **env},
        timeout=timeout,
    )


def hosts_file(sandbox: Sandbox, *names: str) -> None:
    sandbox.write("home/.config/devbox/hosts.yaml", "".join(f"{n}: ssh://alice@{n}\n" for n in names))


def test_hosts_shows_each_host_reachable_or_not(sandbox: Sandbox, servers: Path) -> None:
    fakessh.add_host(servers, "alice@h1", gpus=4)
    fakessh.add_host(servers, "alice@h2", version="9.9.0")
    fakessh.add_host(servers, "alice@h3", mode="down")
    hosts_file(sandbox, "h1", "h2", "h3")
    result = devbox("hosts", "--json")
    assert result.returncode == 6, result.stderr  # h3 is unreachable
    h1, h2, h3 = contract.parse(result.stdout, list[shapes.HostJson])
    assert (h1["host"], h1["target"], h1["reachable"], h1["version"]) == ("h1", "alice@h1", True, __version__)
    assert (h1["gpus_free"], h1["gpus_total"], h1["error"], h1["origin"]) == (4, 4, None, "hosts.yaml")
    assert h2["reachable"] and h2["version"] == "9.9.0" and h2["error"] is not None
    assert h2["error"]["kind"] == "refused" and "install the same version" in h2["error"]["message"]
    assert not h3["reachable"] and h3["error"] is not None and h3["error"]["kind"] == "engine-unreachable"

    table = devbox("hosts")
    lines = table.stdout.splitlines()
    assert lines[0].split() == ["HOST", "TARGET", "DEVBOX", "GPUS", "FREE", "STATUS"]
    assert lines[1].split()[:5] == ["h1", "alice@h1", __version__, "4/4", "ok"]
    assert lines[3].startswith("h3") and "Connection refused" in lines[3]

    hosts_file(sandbox, "h1")
    assert devbox("hosts").returncode == 0
    hosts_file(sandbox, "h1", "h2")
    assert devbox("hosts").returncode == 3  # all reachable, one refused: its kind's code


def test_ls_all_hosts_lists_every_host_and_a_failed_one_as_a_row(sandbox: Sandbox, servers: Path) -> None:
    fakessh.add_host(servers, "alice@h1")
    fakessh.add_host(servers, "alice@h2", mode="hang")
    fakessh.add_host(servers, "alice@h3", mode="down")
    hosts_file(sandbox, "h1", "h2", "h3")
    assert devbox("up", "nb", "--host", "h1", "--json").returncode == 0
    result = devbox("ls", "--all-hosts", "--json", "--timeout", "3")
    assert result.returncode == 6, result.stderr
    items = contract.parse(result.stdout, list[shapes.LsBoxJson | shapes.HostErrorJson])
    assert [(i["host"], i.get("name"), "error" in i) for i in items] == [
        ("h1", "nb", False),
        ("h2", None, True),
        ("h3", None, True),
    ]
    assert "did not answer within 3 s" in items[1]["error"]["message"]  # type: ignore[typeddict-item]

    table = devbox("ls", "--all-hosts", "--timeout", "3").stdout.splitlines()
    assert table[0].split()[:2] == ["HOST", "NAME"]
    assert table[1].split()[:3] == ["h1", "nb", "running"]
    assert table[2].startswith("h2    engine-unreachable: h2 (alice@h2) did not answer within 3 s")
    assert table[3].startswith("h3    engine-unreachable: cannot reach h3")

    hosts_file(sandbox, "h1")
    assert devbox("ls", "--all-hosts", "-q").stdout == "h1\tnb\n"
    one = devbox("ls", "--host", "h1", "--json")
    assert one.returncode == 0
    assert [b["host"] for b in contract.parse(one.stdout, list[shapes.LsBoxJson])] == ["h1"]
    assert devbox("ls", "--host", "h1").stdout.split()[:2] == ["NAME", "STATUS"]


def test_gpus_all_hosts_names_the_host_of_every_gpu_and_holder(sandbox: Sandbox, servers: Path) -> None:
    fakessh.add_host(servers, "alice@h1", gpus=2)
    fakessh.add_host(servers, "alice@h2", mode="down")
    fakessh.add_host(servers, "alice@cpu", gpus=0)
    hosts_file(sandbox, "h1", "h2", "cpu")
    assert devbox("up", "nb", "--host", "h1", "--json").returncode == 0
    result = devbox("gpus", "--all-hosts", "--json")
    assert result.returncode == 6
    gpu0, gpu1, down = contract.parse(result.stdout, list[shapes.GpuJson | shapes.HostErrorJson])
    assert gpu0["host"] == "h1" and gpu0["holder"] is not None and gpu0["holder"]["host"] == "h1"  # type: ignore[typeddict-item]
    assert gpu1["holder"] is None and down["host"] == "h2"  # type: ignore[typeddict-item]
    table = devbox("gpus", "--all-hosts").stdout.splitlines()
    assert table[0].split()[:3] == ["HOST", "GPU", "NAME"] and "alice/nb" in table[1]
    assert table[-1].split() == ["cpu", "no", "GPUs", "known", "there"]  # no GPUs: no failure
    hosts_file(sandbox, "h1", "cpu")
    assert devbox("gpus", "--all-hosts").returncode == 0
    [cpu] = [h for h in json.loads(devbox("hosts", "--json").stdout) if h["host"] == "cpu"]
    assert cpu["reachable"] and cpu["error"] is None and cpu["gpus_total"] is None


def test_up_auto_places_concurrent_boxes_on_distinct_gpus_and_refuses_the_rest(
    sandbox: Sandbox, servers: Path
) -> None:
    # Small (2 cores, shared): 5 clients for 2 hosts x 2 GPUs; the integration test runs 16 for 12.
    for name in ("h1", "h2"):
        fakessh.add_host(servers, f"alice@{name}", gpus=2, up_delay=0.2)
    hosts_file(sandbox, "h1", "h2")

    def up(i: int) -> subprocess.CompletedProcess[str]:
        return devbox(
            "up", f"b{i}", "--host", "auto", "--gpus", "1", "--json", "--progress", "plain", timeout=120
        )

    with ThreadPoolExecutor(5) as pool:
        results = list(pool.map(up, range(5)))
    placed = [json.loads(r.stdout) for r in results if r.returncode == 0]
    refused = [r for r in results if r.returncode != 0]
    assert len(placed) == 4 and len(refused) == 1, [r.stdout + r.stderr for r in results]
    assert len({(p["host"], p["gpus"][0]) for p in placed}) == 4
    assert {p["host"] for p in placed} == {"h1", "h2"}
    for r in refused:
        assert r.returncode == 4 and json.loads(r.stdout)["error"]["kind"] == "no-capacity"
        assert "no host could take a box with 1 GPU" in json.loads(r.stdout)["error"]["message"]
    for r in results:
        if r.returncode == 0:
            host = json.loads(r.stdout)["host"]
            assert f"placed on {host} (" in r.stderr and "GPUs were free)" in r.stderr
    recorded = (sandbox.home / ".config" / "devbox" / "boxes.yaml").read_text()
    assert all(f"{p['name']}: {p['host']}\n" in recorded for p in placed)


def test_up_auto_asks_the_profile_for_its_gpus_when_no_flag_says(sandbox: Sandbox, servers: Path) -> None:
    one = fakessh.add_host(servers, "alice@h1", gpus=1)
    three = fakessh.add_host(servers, "alice@h2", gpus=3, profile_gpus=3)
    hosts_file(sandbox, "h2", "h1")
    result = devbox("up", "big", "--host", "auto", "--json")
    assert result.returncode == 0, result.stderr
    assert (
        json.loads(result.stdout)["host"] == "h2" and "placed on h2 (3 of 3 GPUs were free)" in result.stderr
    )
    # The first host to answer says what the profile asks for.
    assert ["devbox", "render", "big", "--format", "json", "--host", "local"] in fakessh.calls(three)
    assert not any(c[1:2] == ["up"] for c in fakessh.calls(one))


def test_a_box_is_sticky_to_its_host(sandbox: Sandbox, servers: Path) -> None:
    h2 = fakessh.add_host(servers, "alice@h2")
    hosts_file(sandbox, "h1", "h2")
    up = devbox("up", "nb", "--host", "h2", "--json")
    assert up.returncode == 0 and json.loads(up.stdout)["host"] == "h2"
    assert "nb: h2" in (sandbox.home / ".config" / "devbox" / "boxes.yaml").read_text()
    info = devbox("info", "nb", "--json")  # no --host: the recorded one
    assert info.returncode == 0, info.stderr
    assert contract.parse(info.stdout, shapes.ReportJson)["host"] == "h2"
    assert devbox("exec", "nb", "--", "echo", "hi there").stdout == "exec in nb: echo 'hi there'\n"
    assert devbox("logs", "nb", "-n", "5").stdout == "log of nb: --tail 5 --host local\n"
    again = devbox("up", "nb", "--json")  # the box's volumes are there: so is `up`
    assert json.loads(again.stdout)["action"] == "running" and json.loads(again.stdout)["host"] == "h2"
    auto = devbox("up", "nb", "--host", "auto", "--gpus", "1", "--json")  # never a second nb elsewhere
    assert auto.returncode == 0 and json.loads(auto.stdout)["host"] == "h2", auto.stderr
    fakessh.add_host(servers, "alice@h1")
    elsewhere = devbox("down", "nb", "--host", "h1", "--json")  # another server's nb: h2's stays recorded
    assert elsewhere.returncode == 0 and json.loads(elsewhere.stdout)["removed"] is False
    assert "nb: h2" in (sandbox.home / ".config/devbox/boxes.yaml").read_text()
    down = devbox("down", "nb", "--json")
    assert down.returncode == 0 and contract.parse(down.stdout, shapes.DownJson)["host"] == "h2"
    assert "nb:" not in (sandbox.home / ".config" / "devbox" / "boxes.yaml").read_text()
    assert devbox("info", "nb").returncode == 6  # local now: no engine here
    # On the server, each acts there, never on to the host boxes.yaml records (a shared home
    # would make the server call itself, forever).
    sent = [c[1:] for c in fakessh.calls(h2) if c[1] != "--version"]
    assert all("--host" in c and c[c.index("--host") + 1] == "local" for c in sent), sent
    assert [c[1] for c in fakessh.calls(h2) if c[1] != "--version"] == [
        "up",
        "info",
        "exec",
        "logs",
        "up",
        "up",
        "down",
    ]


def test_remote_up_and_info_draw_the_panel_with_the_tunnel_command(sandbox: Sandbox, servers: Path) -> None:
    fakessh.add_host(servers, "alice@h1")
    hosts_file(sandbox, "h1")
    result = devbox("up", "nb", "--host", "h1")
    assert result.returncode == 0, result.stderr
    assert "alice/nb on h1" in result.stdout and "quotas" in result.stdout
    assert "Jupyter  http://127.0.0.1:32768/?token=t0k  (on the server)" in result.stdout
    assert "tunnel   devbox tunnel nb" in result.stdout


def test_another_devbox_version_is_refused_with_the_fix(sandbox: Sandbox, servers: Path) -> None:
    fakessh.add_host(servers, "alice@h2", version="0.99.1")
    hosts_file(sandbox, "h2")
    listed = devbox("ls", "--host", "h2", "--json")
    assert listed.returncode == 3 and json.loads(listed.stdout)["error"]["kind"] == "refused"
    result = devbox("up", "nb", "--host", "h2")
    assert result.returncode == 3
    assert (
        f"error: h2 runs devbox 0.99.1, this is {__version__}: install the same version on both"
        in result.stderr
    )
    assert f"pipx install devbox-gpu=={__version__}" in result.stderr


def test_a_real_devbox_on_the_server_answers_and_its_errors_keep_their_kind(
    sandbox: Sandbox, servers: Path
) -> None:
    fakessh.add_host(
        servers, "bob@hreal", mode="devbox", env={"DEVBOX_USER": "bob", "DOCKER_HOST": NO_ENGINE}
    )
    sandbox.write("home/.config/devbox/hosts.yaml", "hreal: ssh://bob@hreal\n")
    rendered = devbox("render", "default", "--host", "hreal", "--json")
    assert rendered.returncode == 0, rendered.stderr
    doc = contract.parse(rendered.stdout, shapes.RenderJson)
    assert (doc["host"], doc["owner"]) == ("hreal", "bob")
    plain = devbox("render", "default", "--host", "hreal")
    assert plain.stdout.startswith("docker run -d --name devbox-bob-default")
    info = devbox("info", "ghost", "--host", "hreal", "--json")
    error = contract.parse(info.stdout, shapes.ErrorJson)["error"]
    assert info.returncode == 6 and error["kind"] == "engine-unreachable"
    assert error["message"].startswith(f"hreal: cannot reach the Docker engine at {NO_ENGINE}")


def test_wrong_uses_of_hosts_are_clear(sandbox: Sandbox, servers: Path) -> None:
    none = devbox("ls", "--all-hosts", "--json")
    assert none.returncode == 5 and json.loads(none.stdout)["error"]["message"] == "no hosts configured"
    hosts_file(sandbox, "h1")
    auto = devbox("info", "nb", "--host", "auto", "--json")
    assert auto.returncode == 2 and "only places new boxes" in json.loads(auto.stdout)["error"]["message"]
    unknown = devbox("up", "nb", "--host", "h7")
    assert unknown.returncode == 5 and "no host named 'h7' (known: h1)" in unknown.stderr
    sandbox.write("home/.config/devbox/hosts.yaml", "h1: gpu1\n")
    bad = devbox("up", "nb", "--host", "h1")
    assert bad.returncode == 2 and "hosts.yaml:1:5" in bad.stderr


# --- the local paths stay as they were --------------------------------------------------


def test_the_fast_paths_hand_hosts_on_and_import_nothing_new(sandbox: Sandbox) -> None:
    assert fast._ls_args(["ls", "--all-hosts"]) is None and fast._ls_args(["ls", "--timeout", "3"]) is None
    assert fast._up_args(["up", "nb", "--host", "h2"])["host"] == "h2"  # type: ignore[index]
    assert fast._up_args(["up", "nb"])["host"] is None  # type: ignore[index]
    every = fast._ls_hosts_args(["ls", "--all-hosts", "-a", "--timeout=3", "--owner", "bob", "-q"])
    assert every == {
        "all_users": True,
        "json_output": False,
        "owner": "bob",
        "gpu": None,
        "quiet": True,
        "timeout": 3.0,
        "all_hosts": True,
    }
    for typer_explains in (["ls", "--all-hosts", "--timeout", "0"], ["ls", "--all-hosts", "--host", "h1"]):
        assert fast._ls_hosts_args(typer_explains) is None
    code = (
        "import sys; from devbox.cli import errors, fast; errors.state['keep_process'] = True; "
        "fast.run(['ls']); fast.run(['up', 'no-such-profile']); "
        "loaded = ' '.join(m for m in sys.modules if m.startswith('devbox')); "
        "print('typer' in sys.modules, fast.run(['ls', '--all-hosts']), 'typer' in sys.modules, loaded)"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, "DOCKER_HOST": NO_ENGINE},
        timeout=60,
    ).stdout.split()
    assert loaded[:3] == ["False", "5", "False"]  # no hosts here: not-found, told without typer
    loaded = loaded[3:]
    assert "devbox.cli.fast" in loaded
    new = {"devbox.ops.hosts", "devbox.ops.remote", "devbox.ops.sticky", "devbox.cli.onhost"}
    assert not new & set(loaded) and "devbox.policy.hostentries" not in loaded


def test_the_lab_gate_leaves_other_servers_to_the_user() -> None:
    assert labgate.elsewhere(["hosts"]) and labgate.elsewhere(["ls", "--all-hosts"])
    assert labgate.elsewhere(["up", "--host", "h2"]) and labgate.elsewhere(["info", "nb", "--host=h2"])
    assert not labgate.elsewhere(["up", "--host", "local"]) and not labgate.elsewhere(["up", "nb"])
