"""How engine answers become errors: Docker explains in JSON; anything else is not Docker."""

from __future__ import annotations

import pytest

from devbox.engine.docker.api import ApiError, _raise_for_status


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
