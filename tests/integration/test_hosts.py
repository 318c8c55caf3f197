"""Must show (issue 12): several GPU servers over SSH, on three test hosts of this machine.

The hosts (tests/integration/hostsbed.py, scripts/test-hosts) are network namespaces with
their own dockerd (4 declared GPUs each) and sshd; the test users dbxhu1..4 run this
checkout's devbox on the client side, reaching h1..h3 through their ~/.ssh/config.
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import Engine
from tests.integration.hostsbed import GPU_BOX, GPUS_PER_HOST, HOSTS, USERS, Bed, hosts_session, one_test

NO_CAPACITY, REFUSED, UNREACHABLE = 4, 3, 6


@pytest.fixture(scope="module")
def hostsbed(engine: Engine) -> Iterator[Bed]:
    """h1..h3 for this module (about 45 s to make, 15 s to remove)."""
    yield from hosts_session()


@pytest.fixture
def bed(hostsbed: Bed) -> Iterator[Bed]:
    """The hosts for one test; its boxes, volumes, connections and files removed after it."""
    yield from one_test(hostsbed)


def _json(result: subprocess.CompletedProcess[str]) -> Any:
    try:
        return json.loads(result.stdout)
    except ValueError:
        raise AssertionError(
            f"not JSON (exit {result.returncode}):\n{result.stdout}\n{result.stderr}"
        ) from None


def _gpu_of(bed: Bed, host: str, box: dict[str, Any]) -> int:
    """The GPU the box holds, as the box's JSON says it."""
    gpus = box["gpus"]
    assert len(gpus) == 1, f"{host}: {box['name']} holds {gpus}"
    return int(gpus[0])


def _http_status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def _read_json_object(process: subprocess.Popen[str], timeout: float) -> dict[str, Any]:
    """The first JSON object a running command prints (it goes on running)."""
    assert process.stdout is not None
    deadline, text = time.monotonic() + timeout, ""
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        text += line
        try:
            data: dict[str, Any] = json.loads(text)
            return data
        except ValueError:
            continue
    process.kill()
    _, err = process.communicate(timeout=30)
    raise AssertionError(f"no JSON object within {timeout:g} s (exit {process.returncode}):\n{text}\n{err}")


def test_16_clients_place_12_boxes_on_12_distinct_gpus(bed: Bed) -> None:
    """Must show 1: 3 hosts x 4 GPUs, 16 concurrent `up --host auto` from 4 users."""
    runs = []
    for user in USERS:
        for i in range(4):
            profile = bed.write_profile(user, f"g{i}", GPU_BOX)
            runs.append((user, bed.start(user, "devbox", "up", str(profile), "--host", "auto", "--json")))
    placed: list[tuple[str, str, dict[str, Any]]] = []
    refused = []
    for user, process in runs:
        out, err = process.communicate(timeout=600)
        result = subprocess.CompletedProcess(process.args, process.returncode, out, err)
        if result.returncode == 0:
            placed.append((user, _json(result)["host"], _json(result)))
        else:
            assert result.returncode == NO_CAPACITY, f"{user}: exit {result.returncode}\n{out}\n{err}"
            assert _json(result)["error"]["kind"] == "no-capacity"
            refused.append(user)
    assert len(placed) == len(HOSTS) * GPUS_PER_HOST and len(refused) == 4, (placed, refused)
    pairs = [(host, _gpu_of(bed, host, box)) for _, host, box in placed]
    assert len(set(pairs)) == 12, Counter(pairs)
    assert {host for host, _ in pairs} == set(HOSTS)
    # The engines agree: each host runs exactly 4 boxes, each of its own user.
    for host in HOSTS:
        running = [c for c in bed.containers(host) if c["State"]["Running"]]
        assert len(running) == GPUS_PER_HOST, f"{host}: {[c['Name'] for c in running]}"
    # `ls --all-hosts --json`: each user sees their own boxes, each with its host; with --all
    # one user sees all 12.
    seen = set()
    for user in USERS:
        rows = bed.devbox_json(user, "ls", "--all-hosts")
        assert all("error" not in row for row in rows), rows
        mine = {(row["host"], row["name"]) for row in rows}
        assert mine == {(host, box["name"]) for u, host, box in placed if u == user}
        seen |= {(user, *pair) for pair in mine}
    assert len(seen) == 12
    everyone = bed.devbox_json(USERS[0], "ls", "--all-hosts", "--all")
    assert {(row["owner"], row["host"], row["name"]) for row in everyone} == seen
    # Later commands find a box's host without --host (sticky).
    user, host, box = placed[0]
    info = bed.devbox_json(user, "info", box["name"])
    assert info["host"] == host and info["name"] == box["name"]


def test_a_host_without_sshd_is_a_row_and_auto_places_elsewhere(bed: Bed) -> None:
    """Must show 2: h3's sshd stopped."""
    made = set()
    for host in HOSTS:
        box = bed.write_profile(USERS[0], f"on-{host}", GPU_BOX)
        bed.devbox(USERS[0], "up", str(box), "--host", host, "--json", check=True)
        made.add((host, f"on-{host}"))
    bed.stop_sshd("h3")
    made.discard(("h3", "on-h3"))
    listing = bed.devbox(USERS[0], "ls", "--all-hosts", "--json", timeout=120)
    assert listing.returncode == UNREACHABLE, listing.stderr
    rows = _json(listing)
    errors = [row for row in rows if "error" in row]
    assert [row["host"] for row in errors] == ["h3"], rows
    assert errors[0]["error"]["kind"] == "engine-unreachable"
    assert errors[0]["error"]["message"]
    assert {(row["host"], row["name"]) for row in rows if "error" not in row} == made
    # The human table says it too, and exits the same.
    table = bed.devbox(USERS[0], "ls", "--all-hosts", timeout=120)
    assert table.returncode == UNREACHABLE
    assert "h3" in table.stdout + table.stderr and "h1" in table.stdout
    # `up --host auto` places on the others.
    for i in range(3):
        profile = bed.write_profile(USERS[1], f"a{i}", GPU_BOX)
        result = bed.devbox(USERS[1], "up", str(profile), "--host", "auto", "--json", timeout=300)
        assert result.returncode == 0, result.stdout + result.stderr
        assert _json(result)["host"] in ("h1", "h2")


def test_tunnel_reaches_jupyter_on_another_host(bed: Bed) -> None:
    """Must show 3: `devbox tunnel NAME` for a box on h2; /api/status 200 with the token, 403 without."""
    user = USERS[2]
    box = bed.devbox_json(user, "up", "--host", "h2", timeout=300)
    assert box["host"] == "h2"
    token = box["jupyter"]["token"]
    tunnel = bed.start(user, "devbox", "tunnel", box["name"], "--json")
    try:
        shown = _read_json_object(tunnel, 120)
        assert "error" not in shown, shown
        url = urllib.parse.urlsplit(shown["jupyter_url"])
        assert url.hostname == "127.0.0.1" and url.port not in (None, box["ports"]["jupyter"]["host_port"])
        assert dict(urllib.parse.parse_qsl(url.query)).get("token") == token
        base = f"{url.scheme}://{url.netloc}"
        assert _http_status(f"{base}/api/status?token={token}") == 200
        assert _http_status(f"{base}/api/status") == 403
        assert _http_status(f"{base}/api/status?token={'0' * len(token)}") == 403
    finally:
        tunnel.send_signal(signal.SIGINT)
        tunnel.communicate(timeout=30)
    # The tunnel is gone with it.
    assert _gone(f"{base}/api/status?token={token}")


def _gone(url: str) -> bool:
    try:
        _http_status(url)
    except (urllib.error.URLError, ConnectionError, OSError):
        return True
    return False


def _ssh_options(bed: Bed, user: str, alias: str) -> dict[str, str]:
    """What ssh makes of ~/.ssh/config for `alias` (ssh -G), key → value."""
    shown = bed.run(user, "ssh", "-G", "-F", str(bed.home(user) / ".ssh" / "config"), alias, check=True)
    return dict(line.split(" ", 1) for line in shown.stdout.splitlines() if " " in line)


def _ssh_true(bed: Bed, user: str, name: str) -> subprocess.CompletedProcess[str]:
    config = str(bed.home(user) / ".ssh" / "config")
    return bed.run(user, "ssh", "-F", config, "-o", "BatchMode=yes", f"devbox-{name}", "true", timeout=60)


def _restart_until_port_changes(bed: Bed, user: str, name: str, profile: str, host: str | None) -> None:
    """`devbox down` + `up PROFILE` until the box's SSH port is another one (docker may reuse it)."""
    where = ["--host", host] if host else []
    before = bed.devbox_json(user, "info", name, *where)["ports"]["ssh"]["host_port"]
    for _ in range(3):
        bed.devbox(user, "down", name, *where, check=True, timeout=120)
        after = bed.devbox_json(user, "up", profile, *where, timeout=300)["ports"]["ssh"]["host_port"]
        if after != before:
            return
    raise AssertionError(f"the SSH port of {name} stayed {before} over 3 restarts")


def _check_written_entry(bed: Bed, user: str, name: str, profile: str, host: str | None) -> None:
    bed.devbox(user, "ssh-config", "--write", check=True, timeout=120)
    options = _ssh_options(bed, user, f"devbox-{name}")
    assert options["stricthostkeychecking"] == "true", options
    assert "proxy" in options.get("proxycommand", ""), options
    assert _ssh_true(bed, user, name).returncode == 0
    _restart_until_port_changes(bed, user, name, profile, host)
    result = _ssh_true(bed, user, name)
    assert result.returncode == 0, result.stderr
    # Host key checked: with another key pinned under the entry's alias, ssh refuses.
    known = Path(options["userknownhostsfile"].split()[0])
    alias = options["hostkeyalias"]
    original = known.read_text()
    other = subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(bed.state / "other-key")],
        capture_output=True,
        check=True,
    )
    assert other.returncode == 0
    other_key = " ".join((bed.state / "other-key.pub").read_text().split()[:2])
    try:
        known.write_text(f"{alias} {other_key}\n")
        refused = _ssh_true(bed, user, name)
        assert refused.returncode != 0
        assert "host key" in refused.stderr.lower() or "verification failed" in refused.stderr.lower()
    finally:
        known.write_text(original)
        for leftover in ("other-key", "other-key.pub"):
            (bed.state / leftover).unlink(missing_ok=True)


def test_ssh_config_entries_survive_a_restart_remote_and_local(bed: Bed) -> None:
    """Must show 4: `ssh-config --write`, box restarted (new port): `ssh devbox-NAME true` still works."""
    user = USERS[3]
    remote = bed.devbox_json(user, "up", "--host", "h2", timeout=300)
    assert remote["host"] == "h2"
    _check_written_entry(bed, user, remote["name"], "default", "h2")
    # A box of this machine (its engine: the user is in the docker group there).
    local_profile = bed.write_profile(user, "here", "extends: default\n")
    local = bed.devbox_json(user, "up", str(local_profile), timeout=300)
    assert local["name"] == "here"
    _check_written_entry(bed, user, "here", str(local_profile), None)


def test_another_minor_version_is_refused_with_the_fix(bed: Bed) -> None:
    """Must show 5: h3 runs devbox 0.2.0; the client (0.1.x) refuses it and says what to install."""
    from devbox import __version__

    user = USERS[0]
    major, minor, *_ = __version__.split(".")
    other = f"{major}.{int(minor) + 1}.0"
    with bed.devbox_version("h3", other):
        bed.forget_connections(user)
        profile = bed.write_profile(user, "skew", GPU_BOX)
        result = bed.devbox(user, "up", str(profile), "--host", "h3", "--json")
        assert result.returncode == REFUSED, result.stdout + result.stderr
        error = _json(result)["error"]
        assert error["kind"] == "refused"
        assert f"h3 runs devbox {other}, this is {__version__}" in error["message"]
        assert f"pipx install devbox-gpu=={__version__}" in error["message"] + (error.get("hint") or "")
        assert not bed.containers("h3")
        # Every way in says the same: a named box's command, a listing of all hosts.
        info = bed.devbox(user, "info", "skew", "--host", "h3", "--json")
        assert info.returncode == REFUSED and f"runs devbox {other}" in _json(info)["error"]["message"]
        listing = bed.devbox(user, "ls", "--all-hosts", "--json")
        rows = {row["host"]: row for row in _json(listing)}
        assert rows["h3"]["error"]["kind"] == "refused", rows
        hosts = {row["host"]: row for row in _json(bed.devbox(user, "hosts", "--json"))}
        assert hosts["h3"]["version"] == other and hosts["h1"]["version"] == __version__
        assert hosts["h3"]["error"]["kind"] == "refused" and hosts["h1"]["error"] is None
        # `up --host auto` never lands there.
        placed = bed.devbox_json(user, "up", str(bed.write_profile(user, "skew2", GPU_BOX)), "--host", "auto")
        assert placed["host"] in ("h1", "h2")
    # Another patch release of the same minor is fine.
    with bed.devbox_version("h3", f"{major}.{minor}.{random.randint(50, 99)}"):
        bed.forget_connections(user)
        placed = bed.devbox_json(user, "up", str(profile), "--host", "h3")
        assert placed["host"] == "h3"
