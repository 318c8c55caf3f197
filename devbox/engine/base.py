"""What every engine backend shares: the errors verbs can tell apart."""

from __future__ import annotations

from devbox.errors import DevboxError


class EngineUnavailable(DevboxError):
    """The engine does not answer."""


class BoxFailed(DevboxError):
    """Docker refused to create or start the box."""


class NameTaken(BoxFailed):
    """A container of this name appeared between looking and creating (a concurrent `up`)."""
