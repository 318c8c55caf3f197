"""What the unit tests of the verbs share: the in-memory engine with the images they use."""

from __future__ import annotations

import pytest

from devbox.box import labels
from devbox.engine.fake import FakeEngine

PLAIN = "devbox/box:0.1"  # prints its own token, as notebook does
DEVBOX = "devbox/devbox:0.1"  # the devbox image protocol: devbox copies the token in
NOTEBOOK = f"image: {PLAIN}\nports: {{jupyter: 8888}}\n"


@pytest.fixture
def engine() -> FakeEngine:
    """A fresh in-memory engine that has both kinds of image."""
    fake = FakeEngine()
    fake.add_image(PLAIN)
    fake.add_image(DEVBOX, {labels.PROTOCOL: "1"})
    return fake
