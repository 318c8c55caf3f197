"""Who the caller is, and whose box a container name really is."""

from __future__ import annotations

import getpass

import pytest

from devbox import settings
from devbox.box import state
from devbox.engine.docker import decode
from devbox.errors import DevboxError, InvalidInput


def _no_passwd_entry() -> str:
    raise KeyError("getpwuid(): uid not found: 54321")


def test_devbox_user_is_enough_for_a_uid_with_no_passwd_entry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(getpass, "getuser", _no_passwd_entry)
    caller = settings.from_environment({"HOME": "/tmp", "DEVBOX_USER": "alice"})
    assert (caller.owner, caller.login) == ("alice", "alice")


def test_no_login_and_no_devbox_user_says_what_to_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(getpass, "getuser", _no_passwd_entry)
    with pytest.raises(InvalidInput) as caught:
        settings.from_environment({"HOME": "/tmp"})
    assert "DEVBOX_USER" in (caught.value.hint or "")


def _box(owner: str, name: str) -> state.Box:
    summary = {
        "Id": "c0ffee",
        "Names": [f"/devbox-{owner}-{name}"],
        "Image": "x",
        "State": "running",
        "Status": "Up",
        "Created": 0,
        "Labels": {"devbox.owner": owner, "devbox.box": name},
        "Ports": [],
    }
    return decode.from_summary(summary)


def test_a_container_name_shared_with_another_owner_is_refused() -> None:
    # Owner "ann" with box "lee-nb" and owner "ann-lee" with box "nb" meet at one name.
    theirs = _box("ann-lee", "nb")
    assert theirs.container == "devbox-ann-lee-nb"
    with pytest.raises(DevboxError) as caught:
        state.check_owner(theirs, "ann")
    assert "taken by ann-lee's box 'nb'" in caught.value.message
    state.check_owner(theirs, "ann-lee")  # its owner is fine
