"""Replacing a box on a real engine: a replacement that fails leaves the old box running."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests.integration.conftest import Caller, Engine, docker
from tests.integration.test_lifecycle import NOTEBOOK6, up_json

DEVBOX = "devbox/devbox:0.1"  # the devbox image protocol: devbox copies keys and token in


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _ours(caller: Caller) -> list[str]:
    """Every container of this caller, whatever its name (nothing stray may be left)."""
    found = docker("ps", "-a", "--filter", f"label=devbox.owner={caller.owner}", "--format", "{{.Names}}")
    return sorted(found.stdout.split())


def test_a_rebuild_onto_a_taken_port_keeps_the_old_box_running(caller: Caller, engine: Engine) -> None:
    port = _free_port()
    holder = caller.write_profile("holder", f"image: {NOTEBOOK6}\nports: {{jupyter: '{port}:8888'}}")
    up_json(caller, str(holder))
    profile = caller.write_profile(
        "nb", f"image: {NOTEBOOK6}\nports: {{jupyter: 8888}}\nvolumes: [nbdata:/data]"
    )
    first = up_json(caller, str(profile))
    profile.write_text(profile.read_text().replace("jupyter: 8888", f"jupyter: '{port}:8888'"))
    refused = caller.devbox("rebuild", "nb", check=False)
    assert refused.returncode != 0
    assert f"host port {port}" in refused.stderr and "left as it was" in refused.stderr, refused.stderr
    old = engine.inspect("container", caller.container("nb"))
    assert old["Id"] == first["id"] and old["State"]["Running"] is True
    assert _ours(caller) == [caller.container("holder"), caller.container("nb")]


# `devbox up` signalled (SIGKILL: no undo runs; SIGINT: Ctrl-C) just before one of its steps.
_SIGNALLED_AT = """
import os, signal, sys
from devbox.engine.docker.engine import DockerEngine
number = getattr(signal, sys.argv.pop(1))
setattr(DockerEngine, sys.argv.pop(1), lambda *_: os.kill(os.getpid(), number))
from devbox.cli import main
main()
"""


@pytest.mark.parametrize(
    ("sig", "step"),
    [
        ("SIGKILL", "create"),
        ("SIGKILL", "put_files"),
        ("SIGKILL", "start"),
        ("SIGINT", "put_files"),
        ("SIGINT", "start"),
    ],
)
def test_an_up_interrupted_at_each_step_is_finished_by_the_next(
    caller: Caller, engine: Engine, sig: str, step: str
) -> None:
    profile = caller.write_profile(
        "half", f"image: {DEVBOX}\nports: {{jupyter: 8888}}\nvolumes: [halfdata:/data]"
    )
    stopped = subprocess.run(
        [sys.executable, "-c", _SIGNALLED_AT, sig, step, "up", str(profile)],
        cwd=caller.cwd,
        env=caller.environ,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if sig == "SIGINT":
        assert stopped.returncode == 130, stopped.stderr
        assert "Traceback" not in stopped.stderr
        assert _ours(caller) == [] and _volumes(caller) == []  # Ctrl-C leaves nothing half-made
    else:
        assert stopped.returncode == -signal.SIGKILL, stopped.stderr
    again = up_json(caller, str(profile))
    assert again["jupyter"]["token"]
    assert engine.inspect("container", caller.container("half"))["State"]["Running"] is True
    assert _ours(caller) == [caller.container("half")]
    assert _volumes(caller) == [f"devbox-{caller.owner}-halfdata"]


def _volumes(caller: Caller) -> list[str]:
    return docker("volume", "ls", "-q", "--filter", f"label=devbox.owner={caller.owner}").stdout.split()


# `devbox ...` with one function replaced by a failure: Ctrl-C, or a full disk.
_FAILING_AT = """
import errno, importlib, os, signal, sys
module, name, how = importlib.import_module(sys.argv.pop(1)), sys.argv.pop(1), sys.argv.pop(1)
def fail(*_, **__):
    if how == "ENOSPC":
        raise OSError(errno.ENOSPC, "No space left on device")
    os.kill(os.getpid(), signal.SIGINT)
setattr(module, name, fail)
from devbox.cli import main
main()
"""


def _failing(caller: Caller, where: str, how: str, *args: str) -> subprocess.CompletedProcess[str]:
    module, _, name = where.rpartition(".")
    return subprocess.run(
        [sys.executable, "-c", _FAILING_AT, module, name, how, *args],
        cwd=caller.cwd,
        env=caller.environ,
        capture_output=True,
        text=True,
        timeout=180,
    )


def test_up_recreate_with_a_full_config_folder_keeps_the_old_box(caller: Caller, engine: Engine) -> None:
    profile = caller.write_profile("full", f"image: {DEVBOX}\nports: {{jupyter: 8888}}")
    first = up_json(caller, str(profile))
    failed = _failing(
        caller, "devbox.access.sshkeys.record_host_key", "ENOSPC", "up", "--recreate", str(profile)
    )
    assert failed.returncode != 0 and "No space left" in failed.stderr, failed.stderr
    old = engine.inspect("container", caller.container("full"))
    assert old["Id"] == first["id"] and old["State"]["Running"] is True
    assert _ours(caller) == [caller.container("full")]


def test_ctrl_c_during_switch_starts_the_other_boxes_again(caller: Caller, engine: Engine) -> None:
    first = caller.write_profile("first", f"image: {NOTEBOOK6}\nports: {{jupyter: 8888}}")
    second = caller.write_profile("second", f"image: {NOTEBOOK6}\nports: {{jupyter: 8888}}")
    up_json(caller, str(first))
    stopped = _failing(caller, "devbox.ops.ready.wait_ready", "SIGINT", "switch", str(second))
    assert stopped.returncode == 130, stopped.stderr
    assert engine.inspect("container", caller.container("first"))["State"]["Running"] is True
    assert _ours(caller) == [caller.container("first")]


def _dying_engine(path: Path, target: str, last: bytes) -> threading.Thread:
    """A proxy on a Unix socket to the engine that stops answering after the request starting `last`."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(16)

    def pump(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
            sink.shutdown(socket.SHUT_WR)

    def serve() -> None:
        while True:
            client, _ = listener.accept()
            first = client.recv(65536)
            engine = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            engine.connect(target)
            engine.sendall(first)
            threading.Thread(target=pump, args=(client, engine), daemon=True).start()
            answer = threading.Thread(target=pump, args=(engine, client), daemon=True)
            answer.start()
            if first.startswith(last):
                answer.join(30)
                client.close()
                listener.close()  # the engine is gone: every later request is refused
                return

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return thread


def test_the_engine_gone_right_after_the_create_is_engine_unreachable(
    caller: Caller, engine: Engine, tmp_path: Path
) -> None:
    target = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    if not target.startswith("unix://"):
        pytest.skip("the proxy stands in front of a Unix socket")
    profile = caller.write_profile(
        "gone", f"image: {DEVBOX}\nports: {{jupyter: 8888}}\nvolumes: [gonedata:/data]"
    )
    _dying_engine(tmp_path / "engine.sock", target.removeprefix("unix://"), b"POST /containers/create")
    result = subprocess.run(
        [sys.executable, "-m", "devbox", "up", str(profile)],
        cwd=caller.cwd,
        env={**caller.environ, "DOCKER_HOST": f"unix://{tmp_path / 'engine.sock'}"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 6, result.stderr
    assert "cannot reach the Docker engine" in result.stderr and "unexpectedly" not in result.stderr
    # The engine back: a plain `up` makes the box the lost one left half-made.
    again = up_json(caller, str(profile))
    assert again["jupyter"]["token"]
    assert _ours(caller) == [caller.container("gone")]
    assert _volumes(caller) == [f"devbox-{caller.owner}-gonedata"]
