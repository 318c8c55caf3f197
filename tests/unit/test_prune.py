"""`devbox prune`: removes what is stopped and stays stopped, never a box someone is using.

The listing and the removal are apart (a prompt may sit between them for minutes): a box its
owner starts meanwhile, an `up` at work between create and start, and the old box a rebuild
set aside (put back if the new one fails) must all survive.
"""

from __future__ import annotations

import json
import time

import pytest
from typer.testing import CliRunner

from devbox.cli.commands import app
from devbox.engine.fake import FakeEngine
from devbox.ops import admin
from devbox.ops.replace import aside_name
from tests.conftest import Sandbox

IMAGE = "devbox/box:0.1"
runner = CliRunner()


@pytest.fixture
def fake(sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch) -> FakeEngine:
    engine = FakeEngine()
    engine.add_image(IMAGE)
    monkeypatch.setattr("devbox.engine.connect", lambda timeout=60: engine)
    return engine


def _stopped_box(sandbox: Sandbox, engine: FakeEngine, name: str) -> str:
    """A box `name` made and stopped an hour ago; its container id."""
    profile = sandbox.write(f"work/{name}.yaml", f"image: {IMAGE}\n")
    engine.store.now = 1_700_000_000.0
    result = runner.invoke(app, ["up", str(profile), "--json"])
    assert result.exit_code == 0, result.output
    box = engine.find(f"devbox-alice-{name}", "alice")
    assert box is not None
    engine.stop(box.id)
    return box.id


def _prune(*args: str) -> tuple[list[str], str]:
    result = runner.invoke(app, ["prune", "--yes", "--json", *args])
    assert result.exit_code == 0, result.output
    return [b["name"] for b in json.loads(result.stdout)["removed"]], result.stderr


def test_a_box_started_after_the_listing_is_kept(
    sandbox: Sandbox, fake: FakeEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    started = _stopped_box(sandbox, fake, "busy")
    _stopped_box(sandbox, fake, "idle")
    listed = admin.prunable

    def owner_starts_busy_meanwhile(*args: object) -> object:
        found = listed(*args)  # type: ignore[arg-type]
        fake.start(started)  # e.g. while the admin read the prompt
        return found

    monkeypatch.setattr(admin, "prunable", owner_starts_busy_meanwhile)
    removed, said = _prune()
    assert removed == ["idle"]
    assert "kept alice/busy: it was started meanwhile" in said
    box = fake.inspect(started)
    assert box is not None and box.running


def test_a_box_an_up_is_still_making_is_not_listed(sandbox: Sandbox, fake: FakeEngine) -> None:
    _stopped_box(sandbox, fake, "old")
    fresh = sandbox.write("work/fresh.yaml", f"image: {IMAGE}\n")
    fake.store.now = time.time() - 60  # made a minute ago, not started yet
    assert runner.invoke(app, ["up", str(fresh), "--json"]).exit_code == 0
    box = fake.find("devbox-alice-fresh", "alice")
    assert box is not None
    with fake.store.lock:  # between the `up`'s create and its start
        container = fake.store.get(box.id)
        assert container is not None
        container.status = "created"
    removed, _ = _prune()
    assert removed == ["old"] and fake.inspect(box.id) is not None


def test_the_old_box_a_rebuild_set_aside_is_never_pruned(sandbox: Sandbox, fake: FakeEngine) -> None:
    aside = _stopped_box(sandbox, fake, "llm")
    fake.rename(aside, aside_name("devbox-alice-llm"))  # a rebuild killed while making the new box
    removed, _ = _prune()
    assert removed == [] and fake.inspect(aside) is not None
