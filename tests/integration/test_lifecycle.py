"""Must show (issue 3): the box lifecycle on a real engine, with real Jupyter servers."""

from __future__ import annotations

import json
import socket
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.integration.conftest import Caller, Engine, docker, make_caller

NOTEBOOK6 = "devbox/box:0.1"
LAB4 = "devbox/lab4:0.1"


def http_status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def up_json(caller: Caller, *args: str) -> dict[str, Any]:
    result = caller.devbox("up", *args, "--json")
    data: dict[str, Any] = json.loads(result.stdout)
    return data


def container_exists(name: str) -> bool:
    return docker("container", "inspect", name, check=False).returncode == 0


def volume_exists(name: str) -> bool:
    return docker("volume", "inspect", name, check=False).returncode == 0


@pytest.mark.parametrize("image", [NOTEBOOK6, LAB4])
def test_up_reports_a_jupyter_url_whose_token_works(caller: Caller, engine: Engine, image: str) -> None:
    profile = caller.write_profile("nb", f"image: {image}\nports: {{jupyter: 8888}}\nready: {{timeout: 90}}")
    box = up_json(caller, str(profile))
    jupyter, published = box["jupyter"], box["ports"]["jupyter"]
    url = urlsplit(jupyter["url"])
    assert url.hostname == "127.0.0.1" and published["address"] == "127.0.0.1"
    assert url.port == published["host_port"] and published["host_port"] != 8888
    assert jupyter["auth"] == "token" and len(jupyter["token"]) >= 32
    base = f"{url.scheme}://{url.netloc}{url.path}"
    assert http_status(f"{base}api/status?token={jupyter['token']}") == 200
    assert http_status(f"{base}api/status") == 403
    # Idempotent: a second up reports the same running box and a token that still works.
    again = up_json(caller, str(profile))
    assert again["id"] == box["id"] and again["action"] == "running"
    assert again["jupyter"]["token"] == jupyter["token"]


def test_two_owners_get_two_boxes_and_ls_separates_them(engine: Engine, tmp_path: Path) -> None:
    alice, bob = make_caller(tmp_path / "a", "alice"), make_caller(tmp_path / "b", "bob")
    body = f"image: {NOTEBOOK6}\nports: {{jupyter: 8888}}"
    boxes = [up_json(who, str(who.write_profile("shared", body))) for who in (alice, bob)]
    assert boxes[0]["container"] != boxes[1]["container"]
    assert boxes[0]["ports"]["jupyter"]["host_port"] != boxes[1]["ports"]["jupyter"]["host_port"]
    everyone = json.loads(alice.devbox("ls", "--all", "--json").stdout)
    owners = {b["owner"] for b in everyone if b["name"] == "shared"}
    assert {alice.owner, bob.owner} <= owners
    assert all("jupyter" not in b or b["jupyter"] is None for b in everyone)  # no credentials in ls
    mine = json.loads(alice.devbox("ls", "--json").stdout)
    assert [b["owner"] for b in mine] == [alice.owner]
    assert "shared" in alice.devbox("ls").stdout


def _exec(caller: Caller, box: str, script: str) -> str:
    return caller.devbox("exec", box, "--", "sh", "-c", script).stdout


def test_named_volume_survives_down_and_up_and_purge_deletes_it(caller: Caller, engine: Engine) -> None:
    profile = caller.write_profile(
        "keep", f"image: {NOTEBOOK6}\nports: {{jupyter: 8888}}\nvolumes: [data:/data]"
    )
    up_json(caller, str(profile))
    _exec(caller, "keep", "echo precious > /data/file")
    down = json.loads(caller.devbox("down", "keep", "--json").stdout)
    assert down["removed"] is True and down["volumes_kept"] == [f"devbox-{caller.owner}-data"]
    assert not container_exists(caller.container("keep"))
    up_json(caller, str(profile))
    assert _exec(caller, "keep", "cat /data/file").strip() == "precious"
    # Without --yes and without a terminal, --purge refuses instead of deleting silently.
    refused = caller.devbox("down", "keep", "--purge", check=False)
    assert refused.returncode == 2 and "--yes" in refused.stderr
    assert container_exists(caller.container("keep"))
    caller.devbox("down", "keep", "--purge", "--yes")
    assert not volume_exists(f"devbox-{caller.owner}-data")
    up_json(caller, str(profile))
    assert _exec(caller, "keep", "cat /data/file 2>/dev/null || echo gone").strip() == "gone"
    assert "nothing to remove" in caller.devbox("down", "never-made").stdout


def test_rebuild_after_editing_shm_size_keeps_the_volume(caller: Caller, engine: Engine) -> None:
    body = f"image: {NOTEBOOK6}\nports: {{jupyter: 8888}}\nvolumes: [data:/data]\nshm_size: {{shm}}"
    profile = caller.write_profile("edit", body.replace("{shm}", "64m"))
    first = up_json(caller, str(profile))
    _exec(caller, "edit", "echo kept > /data/file")
    profile.write_text(profile.read_text().replace("shm_size: 64m", "shm_size: 128m"))
    stale = up_json(caller, str(profile))
    assert stale["id"] == first["id"]
    assert any(c.startswith("shm_size: 64m → 128m") for c in stale["changes"])
    rebuilt = json.loads(caller.devbox("rebuild", "edit", "--json").stdout)
    assert rebuilt["id"] != first["id"] and rebuilt["jupyter"]["token"]
    assert engine.inspect("container", rebuilt["id"])["HostConfig"]["ShmSize"] == 128 * 1024**2
    assert _exec(caller, "edit", "cat /data/file").strip() == "kept"
    assert up_json(caller, str(profile))["changes"] == []


def test_a_box_that_exits_fails_with_its_last_lines_and_is_removed(caller: Caller, engine: Engine) -> None:
    # One stream only: Docker does not keep the order between a container's stdout and stderr.
    script = "for i in $(seq 1 40); do echo line-$i; done; echo boom-marker; exit 1"
    profile = caller.write_profile(
        "crash",
        f"image: {NOTEBOOK6}\nports: {{jupyter: 8888}}\ncommand: [sh, -c, '{script}']\n"
        "volumes: [crashdata:/data]",
    )
    result = caller.devbox("up", str(profile), check=False)
    assert result.returncode == 1
    assert "exited with code 1" in result.stderr
    assert "boom-marker" in result.stderr and "line-40" in result.stderr
    assert "line-11\n" not in result.stderr  # only the last 30 lines
    assert not container_exists(caller.container("crash"))
    # The volume this failed `up` made (empty) goes with it...
    assert not volume_exists(f"devbox-{caller.owner}-crashdata")
    # ...but a volume that was there before, with data in it, is never touched.
    volume = f"devbox-{caller.owner}-crashdata"
    docker("volume", "create", "--label", f"devbox.owner={caller.owner}", volume)
    assert caller.devbox("up", str(profile), check=False).returncode == 1
    assert volume_exists(volume)


def test_a_missing_image_fails_fast_and_leaves_nothing(caller: Caller, engine: Engine) -> None:
    profile = caller.write_profile(
        "ghost", "image: registry.invalid/devbox/nope:1\nvolumes: [ghostdata:/data]"
    )
    started = time.monotonic()
    result = caller.devbox("up", str(profile), check=False, timeout=90)
    assert time.monotonic() - started < 60
    assert result.returncode == 1
    assert "cannot pull registry.invalid/devbox/nope:1" in result.stderr
    assert not container_exists(caller.container("ghost"))
    assert not volume_exists(f"devbox-{caller.owner}-ghostdata")


def test_a_taken_fixed_port_is_named(caller: Caller, engine: Engine) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        profile = caller.write_profile(
            "clash", f"image: {NOTEBOOK6}\nports: {{jupyter: '{port}:8888'}}\nvolumes: [clashdata:/data]"
        )
        result = caller.devbox("up", str(profile), check=False)
    assert result.returncode == 1
    assert f"host port {port} (ports: jupyter) is already taken" in result.stderr
    assert "clash.yaml:2:" in result.stderr  # where to change it
    assert not container_exists(caller.container("clash"))
    assert not volume_exists(f"devbox-{caller.owner}-clashdata")


def test_a_name_shared_with_another_owners_box_is_not_theirs(engine: Engine, tmp_path: Path) -> None:
    # Owner X with box "lee-nb" and owner X-lee with box "nb" meet at one container name.
    ann = make_caller(tmp_path / "ann", "ann")
    lee = make_caller(tmp_path / "annlee", "ann-lee")
    body = f"image: {NOTEBOOK6}\nports: {{jupyter: 8888}}\nvolumes: [nb-data:/data]"
    up_json(lee, str(lee.write_profile("nb", body)))
    assert ann.container("lee-nb") == lee.container("nb")
    for command in (
        ["info", "lee-nb"],
        ["down", "lee-nb", "--purge", "--yes"],
        ["exec", "lee-nb", "--", "true"],
    ):
        refused = ann.devbox(*command, check=False)
        assert refused.returncode != 0 and "taken by" in refused.stderr, command
    refused = ann.devbox("up", str(ann.write_profile("lee-nb", body)), check=False)
    assert refused.returncode != 0 and "taken by" in refused.stderr
    assert engine.inspect("container", lee.container("nb"))["State"]["Running"] is True
    # Volume names collide the same way: ann's "lee-nb-data" is lee's "nb-data".
    other = ann.write_profile(
        "other", f"image: {NOTEBOOK6}\nports: {{jupyter: 8888}}\nvolumes: [lee-nb-data:/d]"
    )
    refused = ann.devbox("up", str(other), check=False)
    assert refused.returncode != 0 and f"belongs to {lee.owner}" in refused.stderr
    assert not container_exists(ann.container("other"))
    assert volume_exists(f"devbox-{lee.owner}-nb-data")


def test_a_plain_image_running_as_a_uid_gets_a_volume_it_can_write(caller: Caller, engine: Engine) -> None:
    # The image knows no user 4242; its new volume must still be writable by it.
    profile = caller.write_profile(
        "asuid",
        f"image: {NOTEBOOK6}\nports: {{jupyter: 8888}}\nuser: '4242:4242'\n"
        "env: {HOME: /tmp}\nvolumes: [uiddata:/data]",
    )
    box = up_json(caller, str(profile))
    wrote = docker("exec", box["container"], "sh", "-c", "echo x > /data/f && stat -c %u:%g /data/f")
    assert wrote.stdout.strip() == "4242:4242"
    helpers = docker("ps", "-aq", "--filter", "label=devbox.helper").stdout.split()
    assert helpers == []  # the one-shot chown container is gone
