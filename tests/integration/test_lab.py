"""Must show (issue 11): lab mode on a real engine, with real accounts none of which is in the
docker group: alice, bob and dave (the lab group), carol (the lab group and the admins).

tests/integration/labhost.py installs lab mode for this module (and undoes it); the policy
there allows two GPUs per user out of 8 declared ones, and makes the `devboxadm` group admins.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import stat
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import Engine, docker, needs_tool
from tests.integration.labhost import (
    ETC,
    HELPER,
    POLICY_FILE,
    SUDOERS,
    Account,
    LabHost,
    audit_lines,
    audit_size,
    bind_mounts,
    default_profile_text,
    explain,
    lab_install,
    lab_session,
    light_profile,
    write_policy,
)

REFUSED, NO_CAPACITY = 3, 4


@pytest.fixture(scope="module")
def lab(engine: Engine) -> Iterator[LabHost]:
    """This host in lab mode, with the four accounts; everything undone after the module."""
    yield from lab_session()


@pytest.fixture(autouse=True)
def tidy(lab: LabHost) -> Iterator[None]:
    """Every box, volume, network and pinned bind a test made goes when it ends; the policy is reset."""
    yield
    lab.remove_boxes()
    write_policy()


def inspect(container: str) -> dict[str, Any]:
    data: list[dict[str, Any]] = json.loads(docker("inspect", container).stdout)
    return data[0]


def exists(container: str) -> bool:
    return docker("container", "inspect", container, check=False).returncode == 0


def demo_box(who: Account, folder: str, name: str, edit: str | None = None) -> Path:
    """The default profile's content as `~/FOLDER/NAME.yaml` (its `.` is that folder)."""
    body = default_profile_text()
    if edit:
        body = body.replace("user: host", edit)
    who.mkdir(folder)
    return who.profile(f"{folder}/{name}.yaml", body)


def uids_of(container: str, word: str) -> set[int]:
    """Host uids of the container's processes whose command line has `word`."""
    table = docker("top", container, "-o", "pid,uid,args").stdout.splitlines()[1:]
    return {int(row.split(None, 2)[1]) for row in table if word in row}


# --- 1 ---------------------------------------------------------------------------------------


@needs_tool("sudo")
def test_1_alice_has_no_docker_but_devbox_up_works_as_her(lab: LabHost) -> None:
    alice = lab["alice"]
    denied = lab.run_as(alice, ["docker", "ps"])
    assert denied.returncode != 0 and "permission denied" in denied.stderr.lower(), explain(denied)

    profile = demo_box(alice, "proj", "demo")
    box = lab.up_json(alice, str(profile), cwd=alice.home / "proj")
    assert box["owner"] == alice.name and box["container"] == alice.container("demo")
    info = inspect(alice.container("demo"))
    assert info["Config"]["Labels"]["devbox.owner"] == alice.name
    assert info["State"]["Running"] is True
    assert "no-new-privileges:true" in (info["HostConfig"]["SecurityOpt"] or [])
    # Every process of the box — Jupyter, sshd, the init — runs as alice's uid on the host:
    # no root at any moment without allow_root (the image protocol starts as her, too).
    assert uids_of(alice.container("demo"), "jupyter") == {alice.uid}
    assert uids_of(alice.container("demo"), "") == {alice.uid}
    # She logs in over SSH as herself, the box's host key checked against what devbox recorded.
    login = lab.devbox(alice, "ssh", "demo", "--", "id", "-u", cwd=alice.home / "proj")
    assert login.returncode == 0 and login.stdout.strip() == str(alice.uid), explain(login)
    # What she makes through the bind of her folder is hers.
    made = lab.devbox(alice, "exec", "demo", "--", "touch", "/workspace/made-in-box", cwd=alice.home / "proj")
    assert made.returncode == 0, explain(made)
    made_stat = (alice.home / "proj" / "made-in-box").stat()
    assert (made_stat.st_uid, made_stat.st_gid) == (alice.uid, alice.gid)
    listed = lab.devbox(alice, "ls", "--json")
    assert listed.returncode == 0, explain(listed)
    assert [(b["owner"], b["name"]) for b in json.loads(listed.stdout)] == [(alice.name, "demo")]


# --- 2 ---------------------------------------------------------------------------------------


@needs_tool("sudo")
def test_2_environment_cannot_choose_the_owner_or_the_policy(lab: LabHost) -> None:
    alice, bob = lab["alice"], lab["bob"]
    profile = alice.profile("gpu/one.yaml", light_profile(gpus="1"))
    pretend = {"DEVBOX_USER": bob.name, "DOCKER_HOST": "unix:///nonexistent/docker.sock"}
    first = lab.devbox(alice, "up", str(profile), "--json", env=pretend)
    assert first.returncode == 0, explain(first)
    assert json.loads(first.stdout)["owner"] == alice.name
    assert "DEVBOX_USER" in first.stderr and "warning" in first.stderr.lower(), first.stderr
    assert inspect(alice.container("one"))["Config"]["Labels"]["devbox.owner"] == alice.name
    assert not exists(bob.container("one"))

    # A policy of her own, without limits: ignored; the lab's limit of 2 GPUs holds.
    open_policy = Path(f"/tmp/open-{alice.name}.yaml")
    open_policy.write_text("# no limits at all\nlimits: {}\n")
    os.chown(open_policy, alice.uid, alice.gid)
    try:
        mine = {"DEVBOX_POLICY": str(open_policy), "DEVBOX_GPU_INVENTORY": "64"}
        second = alice.profile("gpu/two.yaml", light_profile(gpus="1"))
        assert (done := lab.devbox(alice, "up", str(second), env=mine)).returncode == 0, explain(done)
        third = alice.profile("gpu/three.yaml", light_profile(gpus="1"))
        refused = lab.devbox(alice, "up", str(third), env=mine)
        # A per-user limit the running boxes use up is no-capacity (exit 4), as outside lab mode.
        assert refused.returncode == NO_CAPACITY, explain(refused)
        assert "DEVBOX_POLICY" in refused.stderr
        assert "max_gpus_per_user = 2" in refused.stderr and str(POLICY_FILE) in refused.stderr
        assert not exists(alice.container("three"))
    finally:
        open_policy.unlink(missing_ok=True)


# --- 3 ---------------------------------------------------------------------------------------


def made_for(owner: str) -> dict[str, list[str]]:
    """The containers, volumes and networks of `owner` (by label or name), and binds pinned on the host.

    Only this owner's: other test runs may make things on the same engine meanwhile.
    """
    found: dict[str, list[str]] = {}
    for kind, argv in (
        ("container", ["ps", "-aq", "--no-trunc"]),
        ("volume", ["volume", "ls", "-q"]),
        ("network", ["network", "ls", "-q", "--no-trunc"]),
    ):
        ids = docker(*argv).stdout.split()
        items = json.loads(docker(kind, "inspect", *ids, check=False).stdout or "[]") if ids else []
        found[kind] = sorted(
            str(i.get("Name"))
            for i in items
            if owner in str(i.get("Name"))
            or ((i.get("Config") or i).get("Labels") or {}).get("devbox.owner") == owner
        )
    found["mounts"] = sorted(
        point
        for line in Path("/proc/self/mountinfo").read_text().splitlines()
        if (point := line.split()[4]).startswith("/run/devbox")
    )
    return found


@needs_tool("sudo")
def test_3_alice_cannot_mount_what_is_not_hers_and_nothing_is_created(lab: LabHost) -> None:
    alice, bob = lab["alice"], lab["bob"]
    alice.symlink("sock", "/var/run/docker.sock")
    alice.symlink("bobs", str(bob.home))
    binds = {
        "etc": "/etc:/mnt/x:ro",
        "root": "/root:/mnt/x:ro",
        "bobhome": f"{bob.home}:/mnt/x:ro",
        "bobhomerw": f"{bob.home}:/mnt/x",
        "socklink": f"{alice.home}/sock:/var/run/docker.sock",
        "boblink": f"{alice.home}/bobs:/mnt/x:ro",
        "proc": "/proc:/mnt/x:ro",
        "usr": "/usr:/mnt/x:ro",
    }
    wrong: list[str] = []
    for name, bind in binds.items():
        profile = alice.profile(f"mounts/{name}.yaml", light_profile(extra=f'volumes: ["{bind}"]\n'))
        before = made_for(alice.name)
        result = lab.devbox(alice, "up", str(profile), cwd=alice.home / "mounts")
        after = made_for(alice.name)
        if result.returncode != REFUSED:
            wrong.append(f"{bind}: {explain(result)}")
        if after != before:
            made = {k: sorted(set(after[k]) - set(before[k])) for k in after}
            wrong.append(f"{bind}: made {made}")
        lab.remove_boxes()
    assert not wrong, "\n".join(wrong)

    # The control: her own folder, through a symlink in her home, is fine.
    alice.mkdir("data")
    alice.symlink("datalink", str(alice.home / "data"))
    own = alice.profile("mounts/own.yaml", light_profile(extra=f'volumes: ["{alice.home}/datalink:/data"]\n'))
    fine = lab.devbox(alice, "up", str(own), cwd=alice.home / "mounts")
    assert fine.returncode == 0, explain(fine)
    assert lab.devbox(alice, "down", "own").returncode == 0
    assert not bind_mounts([alice.name]), "down left a pinned bind mounted"


# --- 4 ---------------------------------------------------------------------------------------


@needs_tool("sudo")
def test_4_only_bob_uses_his_box_carol_the_admin_may_list_and_remove_it(lab: LabHost) -> None:
    alice, bob, carol = lab["alice"], lab["bob"], lab["carol"]
    box = lab.up_json(bob, str(demo_box(bob, "proj", "nb")), cwd=bob.home / "proj")
    token = (box.get("jupyter") or {}).get("token")
    assert token, f"bob's box reports no Jupyter token: {box}"
    start = audit_size()

    attempts = {
        "info": ["info", bob.ref("nb"), "--json"],
        "exec": ["exec", bob.ref("nb"), "--", "cat", "/run/devbox/jupyter_token"],
        "logs": ["logs", bob.ref("nb")],
        "down": ["down", bob.ref("nb")],
        "ssh": ["ssh", bob.ref("nb"), "--", "true"],
    }
    wrong = []
    for command, argv in attempts.items():
        result = lab.devbox(alice, *argv)
        if result.returncode != REFUSED:
            wrong.append(explain(result))
        if token in result.stdout + result.stderr:
            wrong.append(f"{command}: bob's token is in alice's output")
    assert not wrong, "\n".join(wrong)
    assert inspect(bob.container("nb"))["State"]["Running"] is True

    # alice sees bob's box, without credentials.
    seen = lab.devbox(alice, "ls", "--all", "--json")
    assert seen.returncode == 0, explain(seen)
    assert (bob.name, "nb") in [(b["owner"], b["name"]) for b in json.loads(seen.stdout)]
    shown = lab.devbox(alice, "ls", "--all")
    assert shown.returncode == 0 and "nb" in shown.stdout, explain(shown)
    assert token not in seen.stdout + seen.stderr + shown.stdout + shown.stderr

    # carol, an admin, lists everyone's boxes and removes bob's.
    listed = lab.devbox(carol, "ls", "--all", "--json")
    assert listed.returncode == 0, explain(listed)
    assert (bob.name, "nb") in [(b["owner"], b["name"]) for b in json.loads(listed.stdout)]
    assert token not in listed.stdout
    removed = lab.devbox(carol, "down", bob.ref("nb"))
    assert removed.returncode == 0, explain(removed)
    assert not exists(bob.container("nb"))

    lines = audit_lines(start)
    for command in attempts:
        assert any(
            r.get("user") == alice.name
            and r.get("uid") == alice.uid
            and r.get("command") == command
            and r.get("result") == "refused"
            and r.get("owner") == bob.name
            and r.get("box") == "nb"
            and r.get("exit") == REFUSED
            and r.get("why")
            for r in lines
        ), f"no audit line for alice's {command}: {lines}"
    assert any(
        r.get("user") == alice.name and r.get("command") == "ls" and r.get("result") == "allowed"
        for r in lines
    )
    assert any(
        r.get("user") == carol.name
        and r.get("command") == "down"
        and r.get("result") == "allowed"
        and r.get("owner") == bob.name
        for r in lines
    ), f"no audit line for carol's down: {lines}"
    assert not any(token in json.dumps(r) for r in lines), "a token in the audit log"
    mode = os.stat("/var/log/devbox/audit.log")
    assert mode.st_uid == 0 and stat.S_IMODE(mode.st_mode) & 0o077 == 0


# --- 5 ---------------------------------------------------------------------------------------


@needs_tool("sudo")
def test_5_sixteen_concurrent_ups_from_four_users_on_eight_gpus(lab: LabHost) -> None:
    people = [lab[name] for name in ("alice", "bob", "carol", "dave")]
    profiles = {
        (who.short, i): who.profile(f"conc/g{i}.yaml", light_profile(gpus="1"))
        for who in people
        for i in range(4)
    }
    processes = [
        (who, lab.start(who, lab.devbox_argv("up", str(profiles[who.short, i]), "--json"), cwd=who.home))
        for i in range(4)
        for who in people
    ]
    results = [(who, p, *p.communicate(timeout=600)) for who, p in processes]
    won = [(who, json.loads(out)) for who, p, out, _ in results if p.returncode == 0]
    lost = [(who, json.loads(out)["error"]) for who, p, out, _ in results if p.returncode == NO_CAPACITY]
    odd = [
        f"{who.name}: exit {p.returncode}: {out[-600:]}{err[-600:]}"
        for who, p, out, err in results
        if p.returncode not in (0, NO_CAPACITY)
    ]
    assert len(won) == 8 and len(lost) == 8, "\n".join(odd) or f"{len(won)} won, {len(lost)} lost"
    assert all(err["kind"] == "no-capacity" for _, err in lost)
    for who in people:
        assert sum(1 for w, _ in won if w is who) == 2, f"{who.name} got other than 2 GPU boxes"
        assert all(box["owner"] == who.name for w, box in won if w is who)

    running = [
        inspect(c)
        for c in docker("ps", "-q", "--filter", "label=devbox.placement.gpus").stdout.split()
        if inspect(c)["Config"]["Labels"].get("devbox.owner") in lab.owners()
    ]
    assert len(running) == 8
    held = [c["Config"]["Labels"]["devbox.placement.gpus"] for c in running]
    assert sorted(held) == [str(i) for i in range(8)], held  # one each, none shared
    assert sorted(str(box["gpus"][0]) for _, box in won) == [str(i) for i in range(8)]


# --- 6 ---------------------------------------------------------------------------------------

PROBE = """
import socket, sys
try:
    socket.create_connection((sys.argv[1], 8888), timeout=5).close()
except OSError as exc:
    print("unreachable", exc)
else:
    print("reachable")
"""


@needs_tool("sudo")
def test_6_no_root_box_for_alice_and_no_way_into_bobs_network(lab: LabHost) -> None:
    alice, bob = lab["alice"], lab["bob"]
    as_root = demo_box(alice, "proj", "rootbox", edit="user: root")
    refused = lab.devbox(alice, "up", str(as_root), cwd=alice.home / "proj")
    assert refused.returncode == REFUSED and "allow_root" in refused.stderr, explain(refused)
    assert not exists(alice.container("rootbox"))

    lab.up_json(bob, str(demo_box(bob, "proj", "web")), cwd=bob.home / "proj")
    lab.up_json(bob, str(demo_box(bob, "proj", "peer")), cwd=bob.home / "proj")
    lab.up_json(alice, str(demo_box(alice, "proj", "probe")), cwd=alice.home / "proj")
    bob_networks = inspect(bob.container("web"))["NetworkSettings"]["Networks"]
    assert list(bob_networks) == [f"devbox-{bob.name}"], list(bob_networks)
    address = bob_networks[f"devbox-{bob.name}"]["IPAddress"]
    assert list(inspect(alice.container("probe"))["NetworkSettings"]["Networks"]) == [f"devbox-{alice.name}"]

    # The control: bob's other box reaches his Jupyter through his network.
    ok = lab.devbox(bob, "exec", "peer", "--", "python3", "-c", PROBE, address)
    assert ok.stdout.strip() == "reachable", explain(ok)
    blocked = lab.devbox(alice, "exec", "probe", "--", "python3", "-c", PROBE, address)
    assert blocked.stdout.startswith("unreachable"), explain(blocked)


# --- 7 ---------------------------------------------------------------------------------------


def lab_files() -> dict[str, tuple[str, int, int, int, int]]:
    """What lab install wrote: path → (content hash, mode, uid, gid, mtime)."""
    paths = [ETC, *sorted(ETC.rglob("*")), SUDOERS, HELPER.parent, HELPER]
    found = {}
    for path in paths:
        st = path.lstat()
        digest = hashlib.sha256(path.read_bytes()).hexdigest() if stat.S_ISREG(st.st_mode) else "-"
        found[str(path)] = (digest, st.st_mode, st.st_uid, st.st_gid, st.st_mtime_ns)
    return found


@needs_tool("sudo")
def test_7_install_is_idempotent_and_a_writable_policy_stops_everything(lab: LabHost) -> None:
    before = lab_files()
    again = lab_install()
    assert again.returncode == 0, explain(again)
    assert lab_files() == before

    alice = lab["alice"]
    profile = alice.profile("seven/box.yaml", light_profile())
    commands = [
        ["ls"],
        ["ls", "--all"],
        ["up", str(profile)],
        ["info", "box"],
        ["logs", "box"],
        ["exec", "box", "--", "true"],
        ["down", "box"],
        ["gpus"],
    ]
    weakenings: list[tuple[str, Callable[[], None]]] = [
        ("chmod o+w", lambda: POLICY_FILE.chmod(0o646)),
        ("chown alice", lambda: os.chown(POLICY_FILE, alice.uid, alice.gid)),
    ]
    for how, weaken in weakenings:
        weaken()
        try:
            wrong = []
            for argv in commands:
                result = lab.devbox(alice, *argv, cwd=alice.home / "seven")
                fixed = "chmod go-w" in result.stderr or "chown root" in result.stderr
                if result.returncode != REFUSED or str(POLICY_FILE) not in result.stderr or not fixed:
                    wrong.append(f"{how}: {explain(result)}")
            assert not wrong, "\n".join(wrong)
            assert not exists(alice.container("box"))
        finally:
            write_policy()
    works = lab.devbox(alice, "ls", cwd=alice.home / "seven")
    assert works.returncode == 0, explain(works)


# --- beyond the must-shows: what a hostile user tried in review ----------------------------


@needs_tool("sudo")
def test_a_signal_relayed_by_sudo_ends_up_like_ctrl_c_nothing_half_made_and_audited(lab: LabHost) -> None:
    # alice owns the sudo process, so she can make it relay SIGTERM to the root helper in
    # the middle of an `up`; it must clean up as Ctrl-C does and still write its audit line.
    alice = lab["alice"]
    waits = alice.profile(
        "hang/waits.yaml", light_profile(extra="ports: {jupyter: 8888}\nready: {timeout: 60}\n")
    )
    since = audit_size()
    process = lab.start(alice, lab.devbox_argv("up", str(waits), "--progress", "plain"))
    deadline = time.monotonic() + 60
    while not exists(alice.container("waits")) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert exists(alice.container("waits")), "the box was never created"
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert not exists(alice.container("waits")), "the half-made box was left behind"
    assert not [m for m in bind_mounts([alice.name]) if "/waits/" in m], "a pin was left behind"
    ups = [line for line in audit_lines(since) if line.get("command") == "up" and line["user"] == alice.name]
    assert ups and ups[-1]["result"] == "interrupted" and ups[-1]["exit"] == 130, ups


@needs_tool("sudo")
def test_a_file_alice_cannot_read_stays_unread_and_her_uid_never_runs_with_group_root(lab: LabHost) -> None:
    alice, bob = lab["alice"], lab["bob"]
    # `policy check FILE` reads FILE as her: /etc/shadow's lines are not quoted back.
    shadow = lab.devbox(alice, "policy", "check", "/etc/shadow")
    assert shadow.returncode != 0 and "root:" not in shadow.stdout + shadow.stderr, explain(shadow)
    # `profiles` lists only folders she may list: a link to bob's profiles shows nothing of his.
    bob.profile(".config/devbox/profiles/secret-project.yaml", light_profile())
    config = alice.mkdir(".config/devbox", mode=0o700)
    (config / "profiles").symlink_to(bob.home / ".config" / "devbox" / "profiles")
    os.lchown(config / "profiles", alice.uid, alice.gid)
    listed = lab.devbox(alice, "profiles", "--json")
    assert "secret-project" not in listed.stdout + listed.stderr, explain(listed)
    # `user: UID` alone would run with gid 0 (the image has no entry for her uid): her gid is added.
    only_uid = alice.profile("uid/bare.yaml", light_profile(extra=f'user: "{alice.uid}"\n'))
    made = lab.devbox(alice, "up", str(only_uid), "--json")
    assert made.returncode == 0, explain(made)
    assert inspect(alice.container("bare"))["Config"]["User"] == f"{alice.uid}:{alice.gid}"
