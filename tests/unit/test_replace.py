"""Replacing a box (rebuild, up --recreate, switch) never loses the one that ran: on the fake engine.

Each failure, Ctrl-C included, leaves the old box as it was: the same container, running.
"""

from __future__ import annotations

import errno
from typing import NoReturn

import pytest

from devbox.access.reports import BoxReport
from devbox.engine.base import BoxFailed, EngineUnavailable
from devbox.engine.fake import FakeEngine
from devbox.ops import boxes, create, lifecycle, replace, resolve
from devbox.ops.reporter import QuietReporter
from devbox.settings import Settings
from tests.conftest import Sandbox
from tests.unit.conftest import DEVBOX, NOTEBOOK
from tests.unit.test_verbs import profile


def containers(engine: FakeEngine) -> list[tuple[str, str]]:
    """Every container there is, whatever its name: nothing stray may be left."""
    return sorted((c.name, c.status) for c in engine.store.containers.values())


def interrupt(*_: object, **__: object) -> NoReturn:
    raise KeyboardInterrupt


def test_a_rebuild_onto_a_taken_port_keeps_the_old_box_running(sandbox: Sandbox, engine: FakeEngine) -> None:
    me = sandbox.settings()
    lifecycle.up(
        engine,
        resolve.resolve(profile(sandbox, "b", NOTEBOOK.replace("8888", "'18888:8888'")), me),
        QuietReporter(),
    )
    ref = profile(sandbox, "nb", NOTEBOOK)
    old = lifecycle.up(engine, resolve.resolve(ref, me), QuietReporter())
    profile(sandbox, "nb", NOTEBOOK.replace("8888", "'18888:8888'"))
    with pytest.raises(BoxFailed) as caught:
        lifecycle.rebuild(engine, resolve.resolve(ref, me), QuietReporter(), pull=False, no_cache=False)
    assert "18888" in caught.value.message
    assert "box 'nb' was left as it was (started again)" in (caught.value.hint or "")
    kept = boxes.find_own(engine, me, "nb")
    assert kept.id == old.box.id and kept.running
    assert containers(engine) == [("devbox-alice-b", "running"), ("devbox-alice-nb", "running")]


@pytest.mark.parametrize("where", ["login_key", "record_host_key"])
def test_up_recreate_with_a_full_config_folder_keeps_the_old_box(
    sandbox: Sandbox, engine: FakeEngine, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    me = sandbox.settings()
    ref = profile(sandbox, "nb", f"image: {DEVBOX}\nports: {{jupyter: 8888}}\n")
    old = lifecycle.up(engine, resolve.resolve(ref, me), QuietReporter())

    def full(*_: object, **__: object) -> NoReturn:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(create.sshkeys, where, full)
    with pytest.raises(OSError, match="No space left"):
        lifecycle.up(engine, resolve.resolve(ref, me), QuietReporter(), recreate=True)
    kept = boxes.find_own(engine, me, "nb")
    assert kept.id == old.box.id and kept.running
    assert containers(engine) == [("devbox-alice-nb", "running")]


def test_ctrl_c_while_the_new_box_gets_ready_restores_the_old_one(
    sandbox: Sandbox, engine: FakeEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    me = sandbox.settings()
    ref = profile(sandbox, "nb", NOTEBOOK)
    old = lifecycle.up(engine, resolve.resolve(ref, me), QuietReporter())
    monkeypatch.setattr(create, "wait_ready", interrupt)
    with pytest.raises(KeyboardInterrupt):
        lifecycle.rebuild(engine, resolve.resolve(ref, me), QuietReporter(), pull=False, no_cache=False)
    kept = boxes.find_own(engine, me, "nb")
    assert kept.id == old.box.id and kept.running
    assert containers(engine) == [("devbox-alice-nb", "running")]


def test_a_stopped_box_replaced_in_vain_stays_stopped(sandbox: Sandbox, engine: FakeEngine) -> None:
    me = sandbox.settings()
    ref = profile(sandbox, "nb", NOTEBOOK)
    old = lifecycle.up(engine, resolve.resolve(ref, me), QuietReporter())
    engine.stop(old.box.id)
    engine.fail_start("devbox-alice-nb", "Docker refused starting the box: out of memory")
    with pytest.raises(BoxFailed) as caught:
        lifecycle.up(engine, resolve.resolve(ref, me), QuietReporter(), recreate=True)
    assert "box 'nb' was left as it was" in (caught.value.hint or "")
    assert boxes.find_own(engine, me, "nb").id == old.box.id
    assert containers(engine) == [("devbox-alice-nb", "exited")]


def test_up_puts_back_a_box_a_killed_replacement_left_set_aside(sandbox: Sandbox, engine: FakeEngine) -> None:
    me = sandbox.settings()
    ref = profile(sandbox, "nb", NOTEBOOK)
    old = lifecycle.up(engine, resolve.resolve(ref, me), QuietReporter())
    # What a `rebuild` killed (SIGKILL) after setting the old box aside leaves.
    engine.stop(old.box.id)
    engine.rename(old.box.id, replace.aside_name("devbox-alice-nb"))
    again = lifecycle.up(engine, resolve.resolve(ref, me), QuietReporter())
    assert again.action == "started" and again.box.id == old.box.id
    assert containers(engine) == [("devbox-alice-nb", "running")]


def test_ctrl_c_during_switch_starts_the_stopped_boxes_again(
    sandbox: Sandbox, engine: FakeEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    me = sandbox.settings()
    lifecycle.up(engine, resolve.resolve(profile(sandbox, "first", NOTEBOOK), me), QuietReporter())
    lifecycle.up(engine, resolve.resolve(profile(sandbox, "second", NOTEBOOK), me), QuietReporter())
    monkeypatch.setattr(lifecycle, "up", interrupt)
    with pytest.raises(KeyboardInterrupt):
        lifecycle.switch(engine, resolve.resolve(profile(sandbox, "third", NOTEBOOK), me), QuietReporter())
    assert containers(engine) == [("devbox-alice-first", "running"), ("devbox-alice-second", "running")]


# --- a half-made box left by an interrupted `up` -------------------------------------------


def killed_up(engine: FakeEngine, monkeypatch: pytest.MonkeyPatch, ref: str, me: Settings, at: str) -> None:
    """An `up` killed (SIGKILL: no undo) at `at`: "put_files" (before the copy-in) or "wait" (after start)."""
    with monkeypatch.context() as patched:
        patched.setattr(create, "_undo", lambda *_: None)
        if at == "put_files":
            patched.setattr(engine, "put_files", interrupt)
        else:
            patched.setattr(engine, "put_files", lambda *_: None)  # started without its keys
            patched.setattr(create, "wait_ready", interrupt)
        with pytest.raises(KeyboardInterrupt):
            lifecycle.up(engine, resolve.resolve(ref, me), QuietReporter())


@pytest.mark.parametrize("at", ["put_files", "wait"])
def test_up_makes_a_half_made_box_again(
    sandbox: Sandbox, engine: FakeEngine, monkeypatch: pytest.MonkeyPatch, at: str
) -> None:
    me = sandbox.settings()
    ref = profile(sandbox, "nb", f"image: {DEVBOX}\nports: {{jupyter: 8888}}\n")
    killed_up(engine, monkeypatch, ref, me, at)
    left = boxes.find_own(engine, me, "nb")
    engine.stop(left.id)  # "wait": it ran without its keys and then stopped
    again = lifecycle.up(engine, resolve.resolve(ref, me), QuietReporter())
    assert again.action == "created" and again.box.id != left.id and token(again)
    assert containers(engine) == [("devbox-alice-nb", "running")]


def test_a_stopped_box_with_its_keys_is_started_not_made_again(sandbox: Sandbox, engine: FakeEngine) -> None:
    me = sandbox.settings()
    ref = profile(sandbox, "nb", f"image: {DEVBOX}\nports: {{jupyter: 8888}}\n")
    first = lifecycle.up(engine, resolve.resolve(ref, me), QuietReporter())
    engine.stop(first.box.id)
    again = lifecycle.up(engine, resolve.resolve(ref, me), QuietReporter())
    assert again.action == "started" and again.box.id == first.box.id


def token(result: BoxReport) -> str | None:
    return result.jupyter.token if result.jupyter else None


# --- the engine gone while cleaning up ------------------------------------------------------


def gone(*_: object, **__: object) -> NoReturn:
    raise EngineUnavailable("cannot reach the Docker engine at unix:///gone.sock")


def test_an_error_while_cleaning_up_never_replaces_the_one_that_failed(
    sandbox: Sandbox, engine: FakeEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    me = sandbox.settings()
    ref = profile(sandbox, "nb", f"image: {DEVBOX}\nports: {{jupyter: 8888}}\n")
    monkeypatch.setattr(engine, "remove", gone)
    monkeypatch.setattr(engine, "remove_volumes", gone)
    with monkeypatch.context() as patched:
        patched.setattr(engine, "put_files", interrupt)
        with pytest.raises(KeyboardInterrupt):  # not the cleanup's EngineUnavailable
            lifecycle.up(engine, resolve.resolve(ref, me), QuietReporter())
    monkeypatch.undo()
    engine.store.containers.clear()
    engine.fail_start("devbox-alice-nb", "Docker refused starting the box: out of memory")
    monkeypatch.setattr(engine, "remove", gone)
    with pytest.raises(BoxFailed) as caught:
        lifecycle.up(engine, resolve.resolve(ref, me), QuietReporter())
    assert "out of memory" in caught.value.message
    assert "cleaning up failed too (cannot reach the Docker engine" in (caught.value.hint or "")


@pytest.mark.parametrize("new_ready", [True, False])
def test_a_replacement_killed_beside_a_new_box_leaves_no_stray_and_no_wedge(
    sandbox: Sandbox, engine: FakeEngine, new_ready: bool
) -> None:
    # SIGKILL after the new box was made: both the new box and the old one set aside exist.
    # Before, every later rebuild stopped the box and failed on the taken .replaced name.
    me = sandbox.settings()
    ref = profile(sandbox, "nb", NOTEBOOK)
    old = lifecycle.up(engine, resolve.resolve(ref, me), QuietReporter())
    engine.stop(old.box.id)
    engine.rename(old.box.id, replace.aside_name("devbox-alice-nb"))
    new = lifecycle.up(engine, resolve.resolve(ref, me), QuietReporter())  # the name is free: a new box
    if not new_ready:
        engine.stop(new.box.id)
    again = lifecycle.up(engine, resolve.resolve(ref, me), QuietReporter())
    assert containers(engine) == [("devbox-alice-nb", "running")]
    assert again.box.id == (new.box.id if new_ready else old.box.id)
    rebuilt = lifecycle.rebuild(engine, resolve.resolve(ref, me), QuietReporter(), pull=False, no_cache=False)
    assert rebuilt.action == "rebuilt" and containers(engine) == [("devbox-alice-nb", "running")]


def test_ctrl_c_while_switch_stops_a_box_leaves_it_running(
    sandbox: Sandbox, engine: FakeEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Ctrl-C cuts the stop request short, but the engine goes on stopping the box: a start
    # sent at once lands first and is undone. Modelled here: a stop cut short completes right
    # after the next start, unless a second stop waited for it first.
    me = sandbox.settings()
    lifecycle.up(engine, resolve.resolve(profile(sandbox, "first", NOTEBOOK), me), QuietReporter())
    real_stop, real_start = engine.stop, engine.start
    in_flight: set[str] = set()
    interrupted: list[str] = []  # the first stop is the one Ctrl-C cuts short

    def stop(container: str, timeout: int = 10) -> None:
        if not interrupted:
            interrupted.append(container)
            in_flight.add(container)
            raise KeyboardInterrupt
        in_flight.discard(container)
        real_stop(container, timeout)

    def start(container: str) -> None:
        real_start(container)
        if container in in_flight:
            in_flight.discard(container)
            real_stop(container)  # the stop the engine was still carrying out

    monkeypatch.setattr(engine, "stop", stop)
    monkeypatch.setattr(engine, "start", start)
    with pytest.raises(KeyboardInterrupt):
        lifecycle.switch(engine, resolve.resolve(profile(sandbox, "third", NOTEBOOK), me), QuietReporter())
    assert containers(engine) == [("devbox-alice-first", "running")]
