"""How engine answers become errors: Docker explains in JSON; anything else is not Docker."""

from __future__ import annotations

import json
from collections.abc import Callable
from urllib.parse import unquote

import pytest

from devbox.box import labels
from devbox.box.spec import ContainerSpec
from devbox.engine.base import BoxFailed
from devbox.engine.docker.api import ApiError, DockerAPI, _raise_for_status
from devbox.engine.docker.engine import DockerEngine, connect
from devbox.errors import EngineUnreachable
from devbox.ops import resolve
from tests.conftest import Sandbox


class Answer:
    def __init__(self, status: int, body: bytes) -> None:
        self.status = status
        self.body = body

    def read(self) -> bytes:
        return self.body


def test_dockers_json_message_is_the_explanation() -> None:
    with pytest.raises(ApiError) as caught:
        _raise_for_status(Answer(409, b'{"message": "Conflict. The container name is in use"}'))  # type: ignore[arg-type]
    assert (caught.value.status, caught.value.from_docker) == (409, True)
    assert caught.value.message.startswith("Conflict.")


def test_an_html_error_page_is_marked_as_not_from_docker() -> None:
    with pytest.raises(ApiError) as caught:
        _raise_for_status(Answer(404, b"<html><body>File not found</body></html>"))  # type: ignore[arg-type]
    assert caught.value.from_docker is False


def test_success_passes() -> None:
    _raise_for_status(Answer(200, b"{}"))  # type: ignore[arg-type]


# --- an engine that goes away, or never was one --------------------------------------------


class Gone:
    """A transport to an engine that stopped: every request is refused."""

    def open(self, *_: object) -> Answer:
        raise ConnectionRefusedError(111, "Connection refused")


class Talks:
    """A transport to a server that answers 200 with `body` (not Docker's JSON, or cut short)."""

    def __init__(self, body: bytes) -> None:
        self.body = body

    def open(self, *_: object) -> Answer:
        return Answer(200, self.body)


def engine_over(transport: object) -> DockerEngine:
    return DockerEngine(DockerAPI(transport, 5, "unix:///gone.sock"), "unix:///gone.sock")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "step",
    [
        lambda e: e.stop("c"),
        lambda e: e.remove("c"),
        lambda e: e.remove_volume("v"),
        lambda e: e.put_files("c", {"/run/devbox/x": ("x", 0o600)}),
        lambda e: e.own_folders("c", ["/data"], 1000, 1000),
        lambda e: e.has_file("c", "/run/devbox/x"),
        lambda e: e.list_boxes(None),
        lambda e: e.start("c"),
    ],
)
def test_every_call_to_a_gone_engine_is_engine_unreachable(step: Callable[[DockerEngine], object]) -> None:
    with pytest.raises(EngineUnreachable) as caught:
        step(engine_over(Gone()))
    assert caught.value.kind == "engine-unreachable"
    assert "cannot reach the Docker engine at unix:///gone.sock" in caught.value.message


@pytest.mark.parametrize("body", [b"hello, not json", b'[{"Id": "abc", "Na'])
def test_an_answer_that_is_not_dockers_json_is_a_clear_error(body: bytes) -> None:
    with pytest.raises(EngineUnreachable) as caught:
        engine_over(Talks(body)).list_boxes(None)
    assert "answered, but not as a Docker engine does" in caught.value.message


class WebServer:
    """A transport to a web server that is no engine: every path is its HTML 404 page."""

    def open(self, *_: object) -> Answer:
        return Answer(404, b"<!DOCTYPE HTML><html><body>File not found</body></html>")


@pytest.mark.parametrize("look", [lambda e: e.image_exists("devbox/devbox:0.1"), lambda e: e.find("c", "me")])
def test_a_web_servers_404_is_no_engine_not_a_missing_image(look: Callable[[DockerEngine], object]) -> None:
    # Taken as "no such image", up went on to pull and failed with the server's HTML page.
    with pytest.raises(EngineUnreachable, match="not a Docker engine"):
        look(engine_over(WebServer()))


def test_an_engine_address_with_a_port_out_of_range_is_a_clear_error() -> None:
    with pytest.raises(EngineUnreachable) as caught:
        connect("tcp://127.0.0.1:99999", 5)
    assert "the engine address tcp://127.0.0.1:99999 is not valid" in caught.value.message


# --- named volumes: never left behind by Ctrl-C, never left without labels by a purge --------


class MiniDocker:
    """Volumes and containers as the engine keeps them, for DockerEngine.create."""

    def __init__(self) -> None:
        self.volumes: dict[str, dict[str, str]] = {}
        self.containers: dict[str, list[str]] = {}
        self.interrupt_volume_create = False
        self.purges = 0  # how many container creates a `down --purge` runs just before

    def open(self, method: str, path: str, data: bytes | None, *_: object) -> Answer:
        path = unquote(path.split("?", maxsplit=1)[0])
        sent = json.loads(data) if data else {}
        if method == "GET" and path.startswith("/volumes/"):
            found = self.volumes.get(path.removeprefix("/volumes/"))
            return Answer(200, json.dumps({"Labels": found}).encode()) if found is not None else missing()
        if method == "POST" and path == "/volumes/create":
            self.volumes[sent["Name"]] = sent["Labels"]
            if self.interrupt_volume_create:
                raise KeyboardInterrupt  # the engine made it; devbox never heard back
            return Answer(201, b"{}")
        if method == "POST" and path == "/containers/create":
            if self.purges:
                self.purges -= 1
                self.volumes.clear()
            named = [b.split(":")[0] for b in sent["HostConfig"]["Binds"] if not b.startswith("/")]
            for volume in named:
                self.volumes.setdefault(volume, {})  # made anew by the engine: no labels
            self.containers[f"c{len(self.containers)}"] = named
            return Answer(201, json.dumps({"Id": f"c{len(self.containers) - 1}"}).encode())
        if method == "DELETE" and path.startswith("/containers/"):
            self.containers.pop(path.removeprefix("/containers/"), None)
            return Answer(204, b"")
        if method == "DELETE" and path.startswith("/volumes/"):
            name = path.removeprefix("/volumes/")
            if any(name in used for used in self.containers.values()):
                return Answer(409, b'{"message": "volume is in use"}')
            return Answer(204, b"") if self.volumes.pop(name, None) is not None else missing()
        raise AssertionError(f"unexpected {method} {path}")


def missing() -> Answer:
    return Answer(404, b'{"message": "no such thing"}')


def spec_with_volume(sandbox: Sandbox) -> ContainerSpec:
    ref = sandbox.write("work/vol.yaml", "image: devbox/box:0.1\nvolumes: [data:/data]\n")
    return resolve.resolve(str(ref), sandbox.settings()).spec


def test_ctrl_c_while_a_volume_is_made_leaves_no_volume(sandbox: Sandbox) -> None:
    docker = MiniDocker()
    docker.interrupt_volume_create = True
    with pytest.raises(KeyboardInterrupt):
        engine_over(docker).create(spec_with_volume(sandbox), {})
    assert docker.volumes == {} and docker.containers == {}


@pytest.mark.parametrize("purges", [1, 2])
def test_a_purge_beside_an_up_never_leaves_a_volume_without_labels(sandbox: Sandbox, purges: int) -> None:
    docker = MiniDocker()
    docker.volumes["devbox-alice-data"] = {labels.OWNER: "alice"}  # there before: the purge takes it
    docker.purges = purges
    engine = engine_over(docker)
    box_id = engine.create(spec_with_volume(sandbox), {})
    assert list(docker.containers) == [box_id]
    assert docker.volumes["devbox-alice-data"].get(labels.OWNER) == "alice"
    assert engine.volumes_made == ["devbox-alice-data"]


def test_a_purge_that_keeps_winning_is_an_error_and_leaves_nothing_bare(sandbox: Sandbox) -> None:
    docker = MiniDocker()
    docker.purges = 99
    with pytest.raises(BoxFailed, match="removed again and again"):
        engine_over(docker).create(spec_with_volume(sandbox), {})
    assert docker.containers == {} and docker.volumes == {}
