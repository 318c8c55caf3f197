"""SSH key material: the caller's login key, each box's host key, devbox's known_hosts file.

paramiko makes the keys (RSA for a caller without one, ECDSA for host keys: paramiko cannot
generate Ed25519). Host keys are made by devbox and copied into the box before it starts, so
the very first login is verified against a key devbox recorded, never trust-on-first-use.

In lab mode (docs/lab.md) devbox runs as root for its caller: every file here is read and
written with the caller's rights (`caller.rights`), files 0600 and folders 0700, so nothing
in their home belongs to root and nothing they could not read is read for them.
"""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from devbox import caller, hostlock, settings
from devbox.errors import DevboxError, InvalidInput, Origin, Problem
from devbox.labmode import BINDS_DIR
from devbox.profile import filekeys, files

KNOWN_HOSTS = "known_hosts"
DEVBOX_KEY = "id_rsa_devbox"


@dataclass(frozen=True)
class LoginKey:
    """The public key to authorize, and the private key file to log in with (None: ssh's default)."""

    public: str
    identity_file: str | None
    generated: bool = False


def _lock_folder(config_dir: Path, who: caller.Caller | None) -> Path:
    """Where the key's lock lives: the caller's config dir, or in lab mode a root-only folder
    (devbox runs as root there and must not leave root's files in their home)."""
    return config_dir if who is None else BINDS_DIR.parent / "locks" / str(who.uid)


def _write_private(path: Path, text: str) -> None:
    """`path` holding `text`, mode 0600 whatever it was (a file made before may have been 0644)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        os.fchmod(fd, 0o600)
        handle.write(text)


def login_key(config_dir: Path, home: Path, explicit: str | None) -> LoginKey:
    """The profile's key, else ~/.ssh/id_ed25519.pub, else id_rsa.pub, else devbox's own (made once)."""
    who = settings.lab_caller()
    with caller.rights(who):
        found = _chosen_key(home, explicit)
        private = config_dir / DEVBOX_KEY
        if found is not None or private.is_file():
            return found or _own_key(private)
    # Several first `up`s at once (a new user starting two boxes) must make one pair.
    lock = f"login key {private}"
    with hostlock.user_lock(lock, _lock_folder(config_dir, who), "making the SSH login key", timeout=60):
        with caller.rights(who):
            made = private.is_file()
        if not made:
            public_path = private.with_name(private.name + ".pub")
            _make_login_key(private, public_path, who)
            with caller.rights(who):
                return LoginKey(public_path.read_text().strip(), str(private), generated=True)
    with caller.rights(who):
        return _own_key(private)


def _chosen_key(home: Path, explicit: str | None) -> LoginKey | None:
    """The profile's key (checked), else the first good default of the caller's; None if neither."""
    if explicit:
        # The profile checked it on loading; read and check again, it is what the box gets.
        text, problem = filekeys.read_authorized_keys(explicit)
        if problem is not None:
            raise InvalidInput(
                f"ssh.authorized_keys {files.shown(explicit)} {problem}",
                [
                    Problem(
                        Origin(files.shown(explicit)),
                        problem,
                        "give a public key file, e.g. ~/.ssh/id_ed25519.pub",
                    )
                ],
            )
        return LoginKey(text.strip(), _identity(Path(explicit)))
    for public in (home / ".ssh/id_ed25519.pub", home / ".ssh/id_rsa.pub"):
        text, problem = filekeys.read_authorized_keys(str(public))
        if problem is None:  # else the next one: an unreadable or odd default is no reason to stop
            return LoginKey(text.strip(), _identity(public))
    return None


def _own_key(private: Path) -> LoginKey:
    """devbox's own pair, made earlier."""
    public_path = private.with_name(private.name + ".pub")
    if not public_path.is_file():
        raise DevboxError(f"{public_path} is missing", f"delete {private} so devbox makes a new pair")
    return LoginKey(public_path.read_text().strip(), str(private))


def _identity(public: Path) -> str | None:
    """The private half beside a public key file, if it is there."""
    private = public.with_suffix("") if public.suffix == ".pub" else None
    return str(private) if private is not None and files.is_file(str(private)) else None


def _make_login_key(private: Path, public_path: Path, who: caller.Caller | None) -> None:
    """A new pair, made as root (paramiko may import modules only root can read), written as `who`."""
    import paramiko

    key = paramiko.RSAKey.generate(3072)
    pem = io.StringIO()
    key.write_private_key(pem)
    with caller.rights(who):
        _write_pair(private, public_path, f"{key.get_name()} {key.get_base64()} devbox\n", pem.getvalue())


def _write_pair(private: Path, public_path: Path, public: str, pem: str) -> None:
    partial = private.with_name(f"{private.name}.{os.getpid()}.partial")
    try:
        private.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        # Created 0600 from the start: the key is never readable by others, not even briefly.
        # Public half first, private renamed into place last: whoever sees the private file
        # sees a whole pair.
        _write_private(public_path, public)
        _write_private(partial, pem)
        os.replace(partial, private)
    except OSError as exc:
        for leftover in (partial, public_path):  # no half pair: the next try makes a whole one
            with contextlib.suppress(OSError):
                leftover.unlink()
        raise _cannot_write(private.parent, exc) from None


def _cannot_write(folder: Path, exc: OSError) -> DevboxError:
    """A full or read-only config folder, said as such (not "failed unexpectedly")."""
    return DevboxError(
        f"cannot write devbox's SSH files in {folder}: {exc.strerror or exc}",
        "free space there or make it writable, or point DEVBOX_CONFIG_DIR at another folder",
    )


@dataclass(frozen=True)
class HostKey:
    """A box's SSH host key: the private half goes into the box, the public half to known_hosts."""

    private_pem: str
    public: str  # "ecdsa-sha2-nistp256 AAAA..."


def new_host_key() -> HostKey:
    """A fresh ECDSA P-256 host key."""
    import paramiko

    key = paramiko.ECDSAKey.generate()
    buffer = io.StringIO()
    key.write_private_key(buffer)
    return HostKey(buffer.getvalue(), f"{key.get_name()} {key.get_base64()}")


def host_alias(owner: str, box: str) -> str:
    """The name a box's host key is filed under (ssh -o HostKeyAlias), stable across port changes."""
    return f"devbox-{owner}-{box}"


def known_hosts_path(config_dir: Path) -> Path:
    """devbox's own known_hosts file (ssh's UserKnownHostsFile for devbox boxes)."""
    return config_dir / KNOWN_HOSTS


def record_host_key(config_dir: Path, alias: str, public: str) -> None:
    """File `public` under `alias`, replacing what was filed there (a rebuild makes a new key)."""

    def filed(lines: list[str]) -> list[str]:
        return [*(line for line in lines if line.split(" ", 1)[0] != alias), f"{alias} {public}"]

    _edit_known_hosts(config_dir, filed)


def forget_host_key(config_dir: Path, alias: str) -> None:
    """Drop `alias` from known_hosts (its box is gone)."""
    with caller.rights(settings.lab_caller()):
        if not known_hosts_path(config_dir).is_file():
            return  # nothing filed: no lock folder made either (a `down` on a fresh machine)

    def dropped(lines: list[str]) -> list[str] | None:
        kept = [line for line in lines if line.split(" ", 1)[0] != alias]
        return None if len(kept) == len(lines) else kept

    _edit_known_hosts(config_dir, dropped)


def _edit_known_hosts(config_dir: Path, edit: Callable[[list[str]], list[str] | None]) -> None:
    """known_hosts rewritten as `edit` says (None: left as it is), under the caller's lock.

    Two `up`s (or an `up` and a `down`) of one user at once each read, edit and write the
    file: without the lock the last writer dropped the other's entry. Locked and written as
    `login_key` does (the lock as root in lab mode, the file with the caller's rights).
    """
    who = settings.lab_caller()
    path = known_hosts_path(config_dir)
    with (
        hostlock.user_lock(
            f"known hosts {path}", _lock_folder(config_dir, who), "recording an SSH host key", timeout=60
        ),
        caller.rights(who),
    ):
        lines = edit(_read(path))
        if lines is not None:
            _replace_private(path, "".join(f"{line}\n" for line in lines))


def _replace_private(path: Path, text: str) -> None:
    """`path` replaced by a new 0600 file holding `text`, at once: a reader (ssh, another
    devbox) sees the old file or the new one, never an empty or half-written one."""
    # A hidden name ending in ".partial": never a file ssh reads, nor one devbox reads back.
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        with contextlib.suppress(FileNotFoundError):
            partial.unlink()  # left by a killed devbox that had this pid; we hold the lock
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            os.fchmod(fd, 0o600)  # whatever the umask
            handle.write(text)
        os.replace(partial, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            partial.unlink()
        raise _cannot_write(path.parent, exc) from None


def recorded_host_key(config_dir: Path, alias: str) -> str | None:
    """The public key filed under `alias`, or None."""
    with caller.rights(settings.lab_caller()):
        lines = _read(known_hosts_path(config_dir))
    for line in lines:
        name, _, key = line.partition(" ")
        if name == alias:
            return key
    return None


def _read(path: Path) -> list[str]:
    """The non-blank lines of a known_hosts-like file; a line that is not UTF-8 is skipped
    (a damaged file must not fail an `up` after its box was made, nor a `down` half-way)."""
    if not path.is_file():
        return []
    text = path.read_bytes().decode("utf-8", "replace")
    return [line for line in text.splitlines() if line.strip() and "\ufffd" not in line]
