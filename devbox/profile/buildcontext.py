"""A build context as Docker sends it: `.dockerignore` applied, the files kept, their digest.

The image tag of a `build:` profile hashes what the engine would be sent (docs/profiles.md),
so editing `environment.yml` makes a new tag and `up` can name the file. The same walk makes
the tarball a build sends (engine/docker/images.py), so the hash and the tarball agree.

The matcher is docker-py's (`docker.utils.build.PatternMatcher`, itself after moby's
fileutils), without its lower-casing: the engine matches case-sensitively on Linux. A folder
`.dockerignore` excludes is never read, unless a `!` pattern may reach inside it (as docker).
Reads the caller's files: in lab mode, call it inside `caller.rights(...)`.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devbox.errors import InvalidInput, Origin, Problem

LABEL = "devbox.build.inputs"  # on a built image: JSON {path: short hash} of its context's files
MANIFEST_CAP = 1000  # more files than this: the label keeps a count, `up` says "N files changed"
_CHUNK = 1 << 20
_RACY_NS = 2_000_000_000


@dataclass(frozen=True)
class Inputs:
    """What a build would send: a digest of it all, and each file's short hash."""

    digest: str  # sha256 hex over every path, its kind, mode and content
    files: dict[str, str]  # relative path → 12 hex digits (regular files and symlinks)


def _split(path: str) -> list[str]:
    return [part for part in path.split("/") if part and part != "."]


def _normalize(pattern: str) -> list[str]:
    """A pattern's parts as Go's filepath.Clean leaves them: no `.`, `..` eats its parent."""
    parts = _split(pattern.strip())
    out: list[str] = []
    for part in parts:
        if part == "..":
            if out:
                out.pop()
        else:
            out.append(part)
    return out


def _translate(pattern: str) -> str:
    """A shell pattern with `**` as a regular expression (docker-py's fnmatch.translate)."""
    i, n, res = 0, len(pattern), "^"
    while i < n:
        c = pattern[i]
        i += 1
        if c == "*":
            if i < n and pattern[i] == "*":
                i += 1
                if i < n and pattern[i] == "/":
                    i += 1
                res += ".*" if i >= n else "(.*/)?"
            else:
                res += "[^/]*"
        elif c == "?":
            res += "[^/]"
        elif c == "[":
            j = i
            if j < n and pattern[j] == "!":
                j += 1
            if j < n and pattern[j] == "]":
                j += 1
            while j < n and pattern[j] != "]":
                j += 1
            if j >= n:
                res += "\\["
            else:
                stuff = pattern[i:j].replace("\\", "\\\\")
                i = j + 1
                if stuff[0] == "!":
                    stuff = "^" + stuff[1:]
                elif stuff[0] == "^":
                    stuff = "\\" + stuff
                res += f"[{stuff}]"
        else:
            res += re.escape(c)
    return res + "$"


@dataclass(frozen=True)
class _Pattern:
    exclusion: bool
    dirs: tuple[str, ...]
    cleaned: str
    regex: re.Pattern[str]


def _pattern(text: str) -> _Pattern:
    exclusion = text.startswith("!")
    dirs = tuple(_normalize(text[1:] if exclusion else text))
    cleaned = "/".join(dirs)
    return _Pattern(exclusion, dirs, cleaned, re.compile(_translate(cleaned)))


class Matcher:
    """`.dockerignore` patterns: `excluded(path)` as the engine decides it (last match wins)."""

    def __init__(self, patterns: list[str]) -> None:
        self.patterns = [p for p in (_pattern(text) for text in patterns) if p.dirs]
        self.patterns.append(_pattern("!.dockerignore"))

    def excluded(self, path: str) -> bool:
        """True when `path` (relative, `/`-separated) is left out of the context."""
        matched = False
        parent = _split(os.path.dirname(path))
        for pattern in self.patterns:
            match = pattern.regex.match(path) is not None
            if not match and parent and len(pattern.dirs) <= len(parent):
                # A pattern naming a folder excludes everything under it.
                match = pattern.regex.match("/".join(parent[: len(pattern.dirs)])) is not None
            if match:
                matched = not pattern.exclusion
        return matched

    def may_reach_inside(self, folder: str) -> bool:
        """An excluded folder must still be walked when a `!` pattern may keep something in it."""
        return any(p.exclusion and p.cleaned.startswith(folder) for p in self.patterns)


def ignore_patterns(context: str) -> list[str]:
    """The `.dockerignore` lines of `context` (none when it has no such file)."""
    try:
        with open(os.path.join(context, ".dockerignore"), encoding="utf-8", errors="replace") as handle:
            lines = [line.strip() for line in handle.read().splitlines()]
    except FileNotFoundError:
        return []
    return [line for line in lines if line and not line.startswith("#")]


def walk(context: str, dockerfile: str) -> list[str]:
    """Every path the engine is sent (files, folders, links), relative and sorted.

    The Dockerfile and `.dockerignore` are always sent, as `docker build` does.
    """
    matcher = Matcher([*ignore_patterns(context), f"!{dockerfile}"])
    return sorted(_walk(context, "", matcher))


def _walk(root: str, rel: str, matcher: Matcher) -> Iterator[str]:
    with os.scandir(os.path.join(root, rel) if rel else root) as entries:
        for entry in entries:
            path = f"{rel}/{entry.name}" if rel else entry.name
            excluded = matcher.excluded(path)
            if not excluded:
                yield path
            if not entry.is_dir(follow_symlinks=False):
                continue
            if excluded and not matcher.may_reach_inside(path):
                continue  # .git, data/: never read
            yield from _walk(root, path, matcher)


def _file_hash(full: str) -> str:
    digest = hashlib.sha256()
    with open(full, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _load_cache(path: Path | None) -> dict[str, list[Any]]:
    if path is None:
        return {}
    try:
        found = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return found if isinstance(found, dict) else {}


def _save_cache(path: Path | None, cache: dict[str, list[Any]]) -> None:
    """Best effort: a cache that cannot be written only costs the next scan its reads."""
    if path is None:
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.{os.getpid()}")
        temporary.write_text(json.dumps(cache), encoding="utf-8")
        os.replace(temporary, path)
    except OSError:
        pass


def cache_file(folder: Path, context: str) -> Path:
    """Where the content hashes of `context`'s files are kept between runs (under `folder`)."""
    digest = hashlib.sha256(os.fsencode(context)).hexdigest()[:16]
    return folder / "buildinputs" / f"{digest}.json"


def scan(context: str, dockerfile: str, cache: Path | None = None) -> Inputs:
    """The digest and per-file hashes of what a build of `context` sends.

    `cache`: a file keeping each file's hash with its size, times and inode, so an unchanged
    file is not read again (a 200 MB context costs its stats, not its bytes). A file the caller
    cannot read is an error naming it, as `docker build` would fail on it.
    """
    total = hashlib.sha256()
    files: dict[str, str] = {}
    known = _load_cache(cache)
    seen: dict[str, list[Any]] = {}
    # A file changed within the clock's granularity of this scan may change again with the
    # same size and times (git's "racily clean"): it is not kept, so the next scan reads it.
    fresh = time.time_ns() - _RACY_NS
    try:
        paths = walk(context, dockerfile)
    except OSError as exc:
        # The folder it could not list, not the context: that may hold thousands.
        raise _unreadable(str(exc.filename or context), exc) from None
    for rel in paths:
        full = os.path.join(context, rel)
        try:
            info = os.lstat(full)
            mode = stat.S_IMODE(info.st_mode)
            if stat.S_ISREG(info.st_mode):
                # ctime moves on every write and chmod and cannot be set back: a safe key.
                key = [info.st_size, info.st_mtime_ns, info.st_ctime_ns, info.st_ino]
                before = known.get(rel)
                # A cache from another version, or edited by hand, is read past, not trusted.
                if (
                    isinstance(before, list)
                    and len(before) == 5
                    and isinstance(before[4], str)
                    and before[:4] == key
                ):
                    content = before[4]
                else:
                    content = _file_hash(full)
                if info.st_ctime_ns < fresh:
                    seen[rel] = [*key, content]
            elif stat.S_ISLNK(info.st_mode):
                content = hashlib.sha256(os.fsencode(os.readlink(full))).hexdigest()
            else:
                content = ""  # folders (and what tar skips): their name and mode only
        except OSError as exc:
            raise _unreadable(full, exc) from None
        kind = stat.S_IFMT(info.st_mode)
        # A name need not be UTF-8 (tar sends its bytes): its bytes, as the file system has them.
        total.update(os.fsencode(f"{rel}\0{kind:o}\0{mode:o}\0{content}\n"))
        if content:
            files[rel] = hashlib.sha256(f"{mode:o}:{content}".encode()).hexdigest()[:12]
    if seen != known:
        _save_cache(cache, seen)
    return Inputs(total.hexdigest(), files)


def _unreadable(path: str, exc: OSError) -> InvalidInput:
    why = exc.strerror or str(exc)
    return InvalidInput(
        f"cannot read {path} in the build context: {why}",
        [Problem(Origin(path), why)],
        "make it readable, or leave it out of the build with .dockerignore",
    )


def manifest_label(files: dict[str, str]) -> str:
    """The `devbox.build.inputs` label: the files' hashes, or only their count past the cap."""
    value = json.dumps({"files": files}, sort_keys=True, separators=(",", ":"))
    # A label travels as one argument of `docker build` (128 KiB at most) and in every inspect.
    if len(files) > MANIFEST_CAP or len(value) > 64 * 1024:
        return json.dumps({"count": len(files)})
    return value


def changed(label: str | None, files: dict[str, str]) -> str:
    """What changed since the image whose label is `label`, for `up`: names, or a count.

    "" when the label says nothing (an image built before the label, or by hand).
    """
    try:
        old = json.loads(label or "")
    except ValueError:
        return ""
    if not isinstance(old, dict):
        return ""
    before = old.get("files")
    if not isinstance(before, dict):
        count = old.get("count")
        return f"{count}+ files in the build context" if isinstance(count, int) else ""
    names = sorted(
        [p for p in files if before.get(p) != files[p]] + [f"{p} (removed)" for p in before if p not in files]
    )
    if len(names) > 5:
        return f"{len(names)} files changed ({', '.join(names[:3])}, …)"
    return ", ".join(names)
