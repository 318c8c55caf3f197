"""Host locks: exclusive, released on exit, and impossible for another local user to jam.

Each planted object (a FIFO, a link, another user's file, a held flock) must end in an
error within the wait allowed, naming who made or holds it, never in a hang.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from devbox import hostlock
from devbox.errors import DevboxError

OTHER_UID = 54321  # no such account needed: root can give a file to any uid


@pytest.fixture
def engine_host(tmp_path: Path) -> Iterator[str]:
    """A Unix socket standing for an engine: its lock path is this test's alone."""
    path = tmp_path / "engine.sock"
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(path))
    host = f"unix://{path}"
    yield host
    server.close()
    lock = Path(hostlock.engine_lock_path(host))
    if lock.is_symlink() or lock.exists():
        lock.unlink()


def _hold_in_child(code: str) -> subprocess.Popen[str]:
    """A process that takes a lock, says 'held', and keeps it until killed."""
    child = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "held", child.stderr.read() if child.stderr else ""
    return child


def test_a_user_lock_excludes_others_and_names_its_holder(tmp_path: Path) -> None:
    code = (
        "from pathlib import Path; from devbox import hostlock; import time\n"
        f"with hostlock.user_lock('box x', Path({str(tmp_path)!r}), 'devbox up devbox-alice-x'):\n"
        "    print('held', flush=True); time.sleep(60)\n"
    )
    child = _hold_in_child(code)
    try:
        started = time.monotonic()
        with (
            pytest.raises(DevboxError) as caught,
            hostlock.user_lock("box x", tmp_path, "second", timeout=0.3),
        ):
            pass
        assert time.monotonic() - started < 5
        assert f"pid {child.pid} (" in caught.value.message
        assert "devbox up devbox-alice-x" in caught.value.message
    finally:
        child.kill()
        child.wait()
    with hostlock.user_lock("box x", tmp_path, "third", timeout=5):  # released when its holder died
        pass
    assert oct((tmp_path / "locks").stat().st_mode & 0o777) == "0o700"


def test_the_engine_lock_is_shared_with_the_sockets_group_only(engine_host: str, tmp_path: Path) -> None:
    with hostlock.engine_lock(engine_host, tmp_path, "placing"):
        info = os.stat(hostlock.engine_lock_path(engine_host))
    assert info.st_gid == hostlock.engine_group(engine_host)
    assert info.st_mode & 0o777 == 0o660  # the engine's users; nobody else can open it to hold it


def test_a_fifo_at_the_lock_path_is_refused_at_once(engine_host: str, tmp_path: Path) -> None:
    path = hostlock.engine_lock_path(engine_host)
    os.mkfifo(path)
    os.chown(path, OTHER_UID, OTHER_UID)
    started = time.monotonic()
    with pytest.raises(hostlock.LockRefused) as caught, hostlock.engine_lock(engine_host, tmp_path, "x"):
        pass
    assert time.monotonic() - started < 2  # before the fix: blocked in open() forever
    assert "is a FIFO, made by uid 54321" in caught.value.message


def test_a_link_at_the_lock_path_is_refused(engine_host: str, tmp_path: Path) -> None:
    target = tmp_path / "victim"
    target.write_text("precious\n")
    os.symlink(target, hostlock.engine_lock_path(engine_host))
    with (
        pytest.raises(hostlock.LockRefused, match="symbolic link"),
        hostlock.engine_lock(engine_host, tmp_path, "x"),
    ):
        pass
    assert target.read_text() == "precious\n"  # never truncated to write the holder in


def test_another_users_file_at_the_lock_path_is_refused(engine_host: str, tmp_path: Path) -> None:
    path = hostlock.engine_lock_path(engine_host)
    Path(path).write_text("")
    os.chown(path, OTHER_UID, OTHER_UID)
    os.chmod(path, 0o644)
    with pytest.raises(hostlock.LockRefused) as caught, hostlock.engine_lock(engine_host, tmp_path, "x"):
        pass
    assert "belongs to uid 54321" in caught.value.message


def test_a_lock_file_anyone_may_open_is_refused(engine_host: str, tmp_path: Path) -> None:
    path = hostlock.engine_lock_path(engine_host)
    Path(path).write_text("")
    os.chmod(path, 0o666)  # root's, but open to all: anyone could hold it
    refused = pytest.raises(hostlock.LockRefused, match="may be opened by others")
    with refused, hostlock.engine_lock(engine_host, tmp_path, "x"):
        pass


def test_a_flock_held_by_a_stranger_is_named_from_proc_locks(engine_host: str, tmp_path: Path) -> None:
    with hostlock.engine_lock(engine_host, tmp_path, "making it"):
        pass
    path = hostlock.engine_lock_path(engine_host)
    # Holds the file without writing itself into it, as an intruder would.
    code = (
        f"import fcntl, os, time; fd = os.open({path!r}, os.O_RDONLY); fcntl.flock(fd, fcntl.LOCK_EX)\n"
        "print('held', flush=True); time.sleep(60)\n"
    )
    child = _hold_in_child(code)
    try:
        started = time.monotonic()
        soon = time.monotonic() + 0.3
        with (
            pytest.raises(DevboxError) as caught,
            hostlock.engine_lock(engine_host, tmp_path, "x", 600, soon),
        ):
            pass
        assert time.monotonic() - started < 5  # the operation's deadline, not the lock's 600 s
        assert f"pid {child.pid} (" in caught.value.message and "import fcntl" in caught.value.message
    finally:
        child.kill()
        child.wait()


def test_a_lock_folder_others_can_write_is_refused(tmp_path: Path) -> None:
    (tmp_path / "locks").mkdir(mode=0o777)
    os.chmod(tmp_path / "locks", 0o777)
    with pytest.raises(hostlock.LockRefused, match="lock folder"), hostlock.user_lock("y", tmp_path, "x"):
        pass


def test_an_engine_without_a_local_socket_gets_a_lock_of_the_callers_own(tmp_path: Path) -> None:
    host = f"tcp://{uuid.uuid4().hex}.invalid:2376"
    with hostlock.engine_lock(host, tmp_path, "placing"):
        assert not os.path.exists(hostlock.engine_lock_path(host))
        assert len(list((tmp_path / "locks").iterdir())) == 1


def _another_users_lock_file() -> str:
    """An engine (socket of group ENGINE_GID in a folder anyone may enter) whose lock file is
    as another user's devbox leaves it just after making it: 0600, not yet opened to the group."""
    folder = Path(tempfile.mkdtemp(prefix="devbox-lock-test-", dir="/tmp"))
    folder.chmod(0o755)
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(folder / "engine.sock"))
    os.chown(folder / "engine.sock", -1, ENGINE_GID)
    host = f"unix://{folder / 'engine.sock'}"
    lock = hostlock.engine_lock_path(host)
    Path(lock).write_text("")
    os.chown(lock, OTHER_UID, ENGINE_GID)
    os.chmod(lock, 0o600)
    _SOCKETS.append((sock, folder, lock))
    return host


_SOCKETS: list[tuple[socket.socket, Path, str]] = []
ENGINE_GID = 54321
SECOND_UID = 54322  # another member of the engine's group


@pytest.fixture
def second_user() -> Iterator[None]:
    yield
    for sock, folder, lock in _SOCKETS:
        sock.close()
        Path(lock).unlink(missing_ok=True)
        shutil.rmtree(folder)
    _SOCKETS.clear()


def _lock_as_second_user(host: str) -> Callable[[], str]:
    """Take the engine lock of `host` in a forked child running as SECOND_UID (a member of the
    engine's group): a function that waits for it and returns "held" or the error."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never back into pytest
        answer = "held"
        try:
            os.setgroups([ENGINE_GID])
            os.setgid(ENGINE_GID)
            os.setuid(SECOND_UID)
            with hostlock.engine_lock(host, Path("/nonexistent"), "placing", timeout=5):
                pass
        except BaseException as exc:
            answer = str(getattr(exc, "message", exc))
        os.write(write, answer.encode())
        os._exit(0)
    os.close(write)

    def result() -> str:
        with os.fdopen(read, "rb") as pipe:
            answer = pipe.read().decode()
        os.waitpid(pid, 0)
        return answer

    return result


def test_two_users_first_up_at_once_share_the_new_lock_file(second_user: None) -> None:
    """Two users' first `up`s on a fresh engine: the second meets the first's file while it is
    still 0600 (made, not yet opened to the group) and must wait for it, not refuse it."""
    host = _another_users_lock_file()
    result = _lock_as_second_user(host)
    time.sleep(0.3)  # the maker's fchown and fchmod, late
    os.chmod(hostlock.engine_lock_path(host), 0o660)
    assert result() == "held"


def test_another_users_lock_file_that_stays_closed_is_refused(second_user: None) -> None:
    host = _another_users_lock_file()
    started = time.monotonic()
    answer = _lock_as_second_user(host)()
    assert "cannot be opened by you: it belongs to uid 54321" in answer, answer
    assert time.monotonic() - started < 10  # a short wait for the maker, never a hang


def test_our_own_lock_file_left_unshared_by_a_killed_run_is_shared(engine_host: str, tmp_path: Path) -> None:
    path = hostlock.engine_lock_path(engine_host)
    Path(path).write_text("")
    os.chmod(path, 0o600)  # made, then killed before its group and mode were set
    os.chown(path, -1, OTHER_UID)
    with hostlock.engine_lock(engine_host, tmp_path, "placing"):
        info = os.stat(path)
    assert (info.st_gid, info.st_mode & 0o777) == (hostlock.engine_group(engine_host), 0o660)


def test_root_waits_for_another_users_lock_file_being_made(engine_host: str, tmp_path: Path) -> None:
    """Root opens a 0600 file anyway: in its first moment another user's file has neither the
    engine's group nor its mode yet, which is no reason to refuse it."""
    path = hostlock.engine_lock_path(engine_host)
    Path(path).write_text("")
    os.chmod(path, 0o600)
    os.chown(path, OTHER_UID, OTHER_UID)
    group = hostlock.engine_group(engine_host)
    assert group is not None

    def maker_shares_it_late() -> None:
        time.sleep(0.3)
        os.chown(path, -1, group)
        os.chmod(path, 0o660)

    sharing = threading.Thread(target=maker_shares_it_late)
    sharing.start()
    with hostlock.engine_lock(engine_host, tmp_path, "placing"):
        pass
    sharing.join()
