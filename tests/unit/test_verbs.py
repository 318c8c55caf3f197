"""The box verbs on the in-memory engine: what a user of `up`, `switch` and `rebuild` would notice.

Integration tests drive the same verbs on a real engine; these pin the decisions (create,
start, report, refuse, undo) quickly and without Docker.
"""

from __future__ import annotations

import threading
from dataclasses import replace

import pytest

from devbox.access.reports import BoxReport
from devbox.box import labels
from devbox.box.spec import ContainerSpec
from devbox.box.state import Box
from devbox.engine.base import BoxFailed
from devbox.engine.fake import FakeEngine
from devbox.errors import DevboxError
from devbox.ops import boxes, lifecycle, resolve
from devbox.ops.ready import BoxExited
from devbox.ops.reporter import QuietReporter
from devbox.placement.gpus import NoFreeGpu
from devbox.settings import Settings
from tests.conftest import Sandbox
from tests.unit.conftest import DEVBOX, NOTEBOOK, PLAIN


def profile(sandbox: Sandbox, name: str, body: str) -> str:
    return str(sandbox.write(f"work/{name}.yaml", body))


def up(engine: FakeEngine, settings: Settings, ref: str, **options: bool) -> BoxReport:
    return lifecycle.up(engine, resolve.resolve(ref, settings), QuietReporter(), **options)


def token(result: BoxReport) -> str | None:
    return result.jupyter.token if result.jupyter else None


def status(engine: FakeEngine, settings: Settings, name: str) -> str | None:
    box = boxes.find(engine, settings, name)
    return box.status if box else None


# --- up ----------------------------------------------------------------------------------


@pytest.mark.parametrize("image", [PLAIN, DEVBOX])
def test_up_creates_and_a_second_up_reports_the_same_box_and_token(
    sandbox: Sandbox, engine: FakeEngine, image: str
) -> None:
    (sandbox.home / ".ssh").mkdir()
    (sandbox.home / ".ssh/id_ed25519.pub").write_text("ssh-ed25519 AAAAC3Nz alice@host\n")
    ref = profile(sandbox, "nb", f"image: {image}\nports: {{jupyter: 8888}}\n")
    first = up(engine, sandbox.settings(), ref)
    assert first.action == "created" and first.box.running
    assert first.jupyter and first.jupyter.host == "127.0.0.1" and first.jupyter.port != 8888
    assert token(first) and f"?token={token(first)}" in first.jupyter.url
    again = up(engine, sandbox.settings(), ref)
    assert (again.action, again.box.id, token(again), again.changes) == (
        "running",
        first.box.id,
        token(first),
        (),
    )
    assert first.box.backend == "docker"  # the label every box carries


def test_up_starts_a_stopped_box_and_reports_this_run_token(sandbox: Sandbox, engine: FakeEngine) -> None:
    ref = profile(sandbox, "nb", NOTEBOOK)
    first = up(engine, sandbox.settings(), ref)
    engine.stop(first.box.id)
    started = up(engine, sandbox.settings(), ref)
    assert started.action == "started" and started.box.id == first.box.id and started.box.running
    assert token(started) and token(started) != token(first)  # the old run's token is dead


def test_up_after_a_profile_edit_reports_the_changes_and_recreate_applies_them(
    sandbox: Sandbox, engine: FakeEngine
) -> None:
    ref = profile(sandbox, "edit", NOTEBOOK + "shm_size: 64m\n")
    first = up(engine, sandbox.settings(), ref)
    profile(sandbox, "edit", NOTEBOOK + "shm_size: 128m\nenv: {MODE: fast}\n")
    stale = up(engine, sandbox.settings(), ref)
    assert stale.action == "running" and stale.box.id == first.box.id
    assert "shm_size: 64m → 128m" in stale.changes and "env MODE changed" in stale.changes
    fresh = up(engine, sandbox.settings(), ref, recreate=True)
    assert fresh.action == "recreated" and fresh.box.id != first.box.id
    assert fresh.box.shm_size == 128 * 1024**2
    assert up(engine, sandbox.settings(), ref).changes == ()
    assert [b.name for b in engine.list_boxes("alice")] == ["edit"]


def test_a_crash_while_starting_removes_the_box_and_its_new_volumes(
    sandbox: Sandbox, engine: FakeEngine
) -> None:
    ref = profile(sandbox, "crash", NOTEBOOK + "volumes: [crashdata:/data]\n")
    engine.script("devbox-alice-crash", [f"line-{i}" for i in range(1, 41)] + ["boom-marker"], exit_code=1)
    with pytest.raises(BoxExited) as caught:
        up(engine, sandbox.settings(), ref)
    assert "exited with code 1 before it was ready" in caught.value.message
    assert caught.value.details[-2:] == ("line-40", "boom-marker") and len(caught.value.details) == 30
    assert "--keep-failed" in (caught.value.hint or "")
    assert status(engine, sandbox.settings(), "crash") is None
    assert engine.volumes("alice") == []
    # A volume that was there before (it may hold data) is never taken back.
    engine.store.volumes["devbox-alice-crashdata"] = {labels.OWNER: "alice"}
    with pytest.raises(BoxExited):
        up(engine, sandbox.settings(), ref)
    assert engine.volumes("alice") == ["devbox-alice-crashdata"]
    with pytest.raises(BoxExited):
        up(engine, sandbox.settings(), ref, keep_failed=True)
    assert status(engine, sandbox.settings(), "crash") == "exited"  # kept for `devbox logs`


def test_a_taken_fixed_port_is_named_and_the_box_removed(sandbox: Sandbox, engine: FakeEngine) -> None:
    fixed = f"image: {PLAIN}\nports: {{jupyter: '18888:8888'}}\nvolumes: [bdata:/data]\n"
    up(engine, sandbox.settings(), profile(sandbox, "a", fixed))
    with pytest.raises(BoxFailed) as caught:
        up(engine, sandbox.settings(), profile(sandbox, "b", fixed.replace("bdata", "other")))
    assert "host port 18888 (ports: jupyter) is already taken" in caught.value.message
    assert "b.yaml" in (caught.value.hint or "")
    assert status(engine, sandbox.settings(), "b") is None
    assert engine.volumes("alice") == ["devbox-alice-bdata"]


def test_a_missing_image_fails_and_leaves_nothing(sandbox: Sandbox, engine: FakeEngine) -> None:
    ref = profile(sandbox, "ghost", "image: registry.invalid/nope:1\nvolumes: [g:/data]\n")
    with pytest.raises(BoxFailed, match=r"cannot pull registry\.invalid/nope:1"):
        up(engine, sandbox.settings(), ref)
    assert engine.list_boxes(None) == [] and engine.volumes("alice") == []


# --- names -------------------------------------------------------------------------------


def test_a_name_shared_with_another_owners_box_is_refused_naming_the_owner(
    sandbox: Sandbox, engine: FakeEngine
) -> None:
    # Owner ann with box "lee-nb" and owner ann-lee with box "nb" meet at one container name.
    lee, ann = sandbox.settings(DEVBOX_USER="ann-lee"), sandbox.settings(DEVBOX_USER="ann")
    theirs = up(engine, lee, profile(sandbox, "nb", NOTEBOOK + "volumes: [nb-data:/data]\n"))
    with pytest.raises(DevboxError) as caught:
        up(engine, ann, profile(sandbox, "lee-nb", NOTEBOOK))
    assert "taken by ann-lee's box 'nb'" in caught.value.message
    for lookup in (boxes.info, boxes.exec_target, boxes.find_own):
        with pytest.raises(DevboxError, match="taken by ann-lee"):
            lookup(engine, ann, "lee-nb")
    assert status(engine, lee, "nb") == "running" and boxes.find_own(engine, lee, "nb").id == theirs.box.id
    # Volume names collide the same way: ann's "lee-nb-data" is ann-lee's "nb-data".
    with pytest.raises(DevboxError, match="belongs to ann-lee"):
        up(engine, ann, profile(sandbox, "other", NOTEBOOK + "volumes: [lee-nb-data:/d]\n"))
    assert status(engine, ann, "other") is None


def test_a_name_taken_between_looking_and_creating(sandbox: Sandbox, engine: FakeEngine) -> None:
    ref = profile(sandbox, "nb", NOTEBOOK)
    # Another `up` of this very box made it first: this one reports that box.
    engine.clash_on_create("devbox-alice-nb", "alice")
    result = up(engine, sandbox.settings(), ref)
    assert result.action == "running" and token(result)
    assert len(engine.list_boxes("alice")) == 1
    # Someone else's box took the name: refused, naming them.
    engine.clash_on_create("devbox-alice-other", "mallory")
    with pytest.raises(DevboxError, match="taken by mallory's box"):
        up(engine, sandbox.settings(), profile(sandbox, "other", NOTEBOOK))


def test_no_box_of_that_name_is_one_error(sandbox: Sandbox, engine: FakeEngine) -> None:
    with pytest.raises(DevboxError) as caught:
        boxes.info(engine, sandbox.settings(), "never-made")
    assert caught.value.message == "no box named 'never-made'" and caught.value.kind == "not-found"


# --- switch ------------------------------------------------------------------------------


def test_switch_stops_the_others_and_a_failed_switch_starts_them_again(
    sandbox: Sandbox, engine: FakeEngine
) -> None:
    me = sandbox.settings()
    up(engine, me, profile(sandbox, "first", NOTEBOOK))
    stopped, result = lifecycle.switch(
        engine, resolve.resolve(profile(sandbox, "second", NOTEBOOK), me), QuietReporter()
    )
    assert stopped == ["first"] and result.box.name == "second" and result.action == "created"
    assert (status(engine, me, "first"), status(engine, me, "second")) == ("exited", "running")
    assert up(engine, me, str(sandbox.cwd / "first.yaml")).action == "started"
    engine.fail_start("devbox-alice-third", "Docker refused starting the box: out of memory")
    third = resolve.resolve(profile(sandbox, "third", NOTEBOOK), me)
    with pytest.raises(BoxFailed) as caught:
        lifecycle.switch(engine, third, QuietReporter())
    assert "first, second started again" in (caught.value.hint or "")
    assert sorted((b.name, b.status) for b in engine.list_boxes("alice")) == [
        ("first", "running"),
        ("second", "running"),
    ]


def test_a_failed_switch_does_not_start_a_box_whose_gpu_was_taken_meanwhile(
    sandbox: Sandbox, engine: FakeEngine
) -> None:
    # Starting a stopped box is a placement too: its GPUs are checked under the engine lock.
    me = sandbox.settings(DEVBOX_GPU_INVENTORY="1")
    bob = sandbox.settings(DEVBOX_USER="bob", DEVBOX_GPU_INVENTORY="1")
    up(engine, me, profile(sandbox, "first", NOTEBOOK + "gpus: 1\n"))
    third = resolve.resolve(profile(sandbox, "third", NOTEBOOK), me)
    real_start = engine.start

    def bob_takes_the_gpu_then_third_fails(box_id: str) -> None:
        starting = engine.inspect(box_id)
        if starting is not None and starting.name == "third":
            up(engine, bob, profile(sandbox, "train", NOTEBOOK + "gpus: 1\n"))  # GPU 0 is free now
            raise BoxFailed("Docker refused starting the box: out of memory")
        real_start(box_id)

    engine.start = bob_takes_the_gpu_then_third_fails  # type: ignore[method-assign]
    with pytest.raises(BoxFailed) as caught:
        lifecycle.switch(engine, third, QuietReporter())
    assert "could not start again: first (box 'first' had GPU 0, which another box took" in (
        caught.value.hint or ""
    )
    assert status(engine, me, "first") == "exited"  # not running on bob's GPU
    holders = [b for b in engine.list_boxes(None) if b.running and "0" in b.gpus]
    assert [(b.owner, b.name) for b in holders] == [("bob", "train")]


# --- rebuild -----------------------------------------------------------------------------


def test_a_rebuild_with_no_free_gpu_keeps_the_old_box(sandbox: Sandbox, engine: FakeEngine) -> None:
    me, bob = (
        sandbox.settings(DEVBOX_GPU_INVENTORY="1"),
        sandbox.settings(DEVBOX_USER="bob", DEVBOX_GPU_INVENTORY="1"),
    )
    up(engine, bob, profile(sandbox, "train", NOTEBOOK + "gpus: 1\n"))
    ref = profile(sandbox, "nb", NOTEBOOK)
    old = up(engine, me, ref)
    profile(sandbox, "nb", NOTEBOOK + "gpus: 1\n")
    with pytest.raises(NoFreeGpu) as caught:
        lifecycle.rebuild(engine, resolve.resolve(ref, me), QuietReporter(), pull=False, no_cache=False)
    assert "bob/train" in (caught.value.hint or "") and "box 'nb' was left as it was" in (
        caught.value.hint or ""
    )
    kept = boxes.find_own(engine, me, "nb")
    assert kept.id == old.box.id and kept.running


def test_a_rebuild_over_the_gpu_limit_keeps_the_old_box(sandbox: Sandbox, engine: FakeEngine) -> None:
    sandbox.write("lab/policy.yaml", "limits: {max_gpus_per_user: 1}\n")
    me = sandbox.settings(DEVBOX_GPU_INVENTORY="4")
    up(engine, me, profile(sandbox, "train", NOTEBOOK + "gpus: 1\n"))
    ref = profile(sandbox, "nb", NOTEBOOK)
    old = up(engine, me, ref)
    profile(sandbox, "nb", NOTEBOOK + "gpus: 1\n")
    with pytest.raises(DevboxError) as caught:
        lifecycle.rebuild(engine, resolve.resolve(ref, me), QuietReporter(), pull=False, no_cache=False)
    assert "max_gpus_per_user" in str([p.message for p in caught.value.problems])
    assert "box 'nb' was left as it was" in (caught.value.hint or "")
    assert boxes.find_own(engine, me, "nb").id == old.box.id
    # Within the limits, rebuild replaces the box and keeps its volumes' names.
    profile(sandbox, "nb", NOTEBOOK)
    rebuilt = lifecycle.rebuild(engine, resolve.resolve(ref, me), QuietReporter(), pull=False, no_cache=False)
    assert rebuilt.action == "rebuilt" and rebuilt.box.id != old.box.id


# --- GPUs --------------------------------------------------------------------------------


@pytest.mark.parametrize("one_lock", [True, False])
def test_two_boxes_racing_for_one_gpu_exactly_one_wins(
    sandbox: Sandbox, engine: FakeEngine, one_lock: bool
) -> None:
    # one_lock: both wait for one host lock. Without it (two hosts sharing one engine) the
    # check after creating decides: the box the engine created first keeps the GPU.
    ref = profile(sandbox, "train", NOTEBOOK + "gpus: 1\n")
    results: dict[str, BoxReport | Exception] = {}

    def run(owner: str) -> None:
        config = {} if one_lock else {"XDG_CONFIG_HOME": str(sandbox.root / owner)}
        settings = sandbox.settings(DEVBOX_USER=owner, DEVBOX_GPU_INVENTORY="1", **config)
        try:
            results[owner] = up(engine.client(), settings, ref)  # each its own process
        except Exception as exc:
            results[owner] = exc

    if not one_lock:
        # Both pick GPU 0 before either creates: the check after creating must decide.
        engine.store.before_create = threading.Barrier(2, timeout=20).wait
    threads = [threading.Thread(target=run, args=(owner,)) for owner in ("ann", "bob")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    won = [r for r in results.values() if isinstance(r, BoxReport)]
    lost = [r for r in results.values() if isinstance(r, NoFreeGpu)]
    assert len(won) == 1 and len(lost) == 1, results
    assert won[0].box.gpus == ("0",)
    assert "asked for 1, 0 of 1 free" in lost[0].message
    assert [b.owner for b in engine.list_boxes(None)] == [won[0].box.owner]
    loser_removed = any(verb == "remove" for verb, _ in engine.store.calls)
    assert loser_removed is not one_lock  # without a shared lock, the loser made its box, then gave it up


# --- the plan ----------------------------------------------------------------------------


@pytest.fixture
def planned(sandbox: Sandbox, engine: FakeEngine) -> tuple[Box, ContainerSpec, ContainerSpec]:
    """A running box, the spec it was made from, and the spec after an edit of shm_size."""
    ref = profile(sandbox, "p", NOTEBOOK + "shm_size: 64m\n")
    made = up(engine, sandbox.settings(), ref)
    box = engine.inspect(made.box.id)
    assert box is not None
    same = resolve.resolve(ref, sandbox.settings()).spec
    profile(sandbox, "p", NOTEBOOK + "shm_size: 1g\n")
    return box, same, resolve.resolve(ref, sandbox.settings()).spec


@pytest.mark.parametrize(
    ("there", "edited", "recreate", "action", "changed"),
    [
        (None, False, False, "create", False),
        (None, False, True, "create", False),
        ("running", False, False, "noop", False),
        ("running", True, False, "noop", True),
        ("exited", False, False, "start", False),
        ("exited", True, False, "start", True),
        ("running", False, True, "recreate", False),
        ("exited", True, True, "recreate", True),
    ],
)
def test_plan_up_decides_from_the_box_and_the_spec_alone(
    planned: tuple[Box, ContainerSpec, ContainerSpec],
    there: str | None,
    edited: bool,
    recreate: bool,
    action: str,
    changed: bool,
) -> None:
    box, same, after_edit = planned
    current = replace(box, status=there) if there else None
    plan = lifecycle.plan_up(current, after_edit if edited else same, recreate)
    assert plan.action == action and plan.box == current
    assert plan.changes == (("shm_size: 64m → 1g",) if changed else ())


# --- lab mode: each owner's boxes on their own network ---------------------------------------


def _lab_settings(sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch, name: str, uid: int) -> Settings:
    """`name`'s lab-mode settings; caller.rights is a no-op here (unit tests may run as root)."""
    from contextlib import nullcontext
    from pathlib import Path

    from devbox import caller, settings

    monkeypatch.setattr(caller, "rights", lambda who: nullcontext())
    who = caller.Caller(name, uid, uid, (uid,), Path(sandbox.home))
    return settings.for_caller(who, {}, sandbox.cwd, sandbox.lab)


def test_lab_boxes_join_their_owners_network_and_run_as_their_owner(
    sandbox: Sandbox, engine: FakeEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    ref = profile(sandbox, "nb", NOTEBOOK)
    alice = up(engine, _lab_settings(sandbox, monkeypatch, "alice", 1000), ref)
    bob = up(engine, _lab_settings(sandbox, monkeypatch, "bob", 1001), ref)
    again = up(engine, _lab_settings(sandbox, monkeypatch, "alice", 1000), profile(sandbox, "nb2", NOTEBOOK))
    assert alice.box.running and bob.box.running and again.box.running
    assert engine.store.networks == {
        "devbox-alice": {labels.OWNER: "alice", labels.NETWORK: "1"},
        "devbox-bob": {labels.OWNER: "bob", labels.NETWORK: "1"},
    }
    assert [c for c in engine.store.calls if c[0] == "network"] == [
        ("network", "devbox-alice"),
        ("network", "devbox-bob"),
    ]
    made = {c.name: c.spec for c in engine.store.containers.values()}
    assert made["devbox-alice-nb"].network == "devbox-alice" and made["devbox-bob-nb"].network == "devbox-bob"
    assert made["devbox-alice-nb"].user == "1000:1000" and made["devbox-bob-nb"].user == "1001:1001"


def test_a_lab_box_never_joins_a_network_of_that_name_devbox_did_not_make(
    sandbox: Sandbox, engine: FakeEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine.store.networks["devbox-alice"] = {labels.OWNER: "mallory"}
    with pytest.raises(DevboxError, match="devbox did not make it for alice"):
        up(engine, _lab_settings(sandbox, monkeypatch, "alice", 1000), profile(sandbox, "nb", NOTEBOOK))
    assert engine.store.containers == {}
