"""A tiny local conda channel for the `environments:` tests, made offline.

Packages are plain `.tar.bz2` conda packages (info/index.json, info/paths.json, info/files and
the payload) written with the standard library; the channel is indexed by py-rattler's
`index_fs` (the indexer pixi and rattler-build use), so the repodata is what a real channel has.

`python` here is a stand-in, not CPython: a `bin/python` symlink to the image's
/usr/bin/python3 and a `pyvenv.cfg` beside it, which makes the environment a venv over the
image's interpreter (with its system packages, so the image's ipykernel serves the kernel).
Packages then drop their modules into `lib/python3.11/site-packages`, as noarch: python
packages do, and `PREFIX/bin/python -c 'import dbxpkga'` imports them from the environment.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import tarfile
import time
from dataclasses import dataclass, field
from pathlib import Path

SITE = "lib/python3.11/site-packages"


@dataclass(frozen=True)
class Package:
    """One package: files (relative path → text), symlinks (relative path → target)."""

    name: str
    version: str
    depends: tuple[str, ...] = ()
    files: dict[str, str] = field(default_factory=dict)
    links: dict[str, str] = field(default_factory=dict)


def module(name: str, version: str, depends: tuple[str, ...] = ("python",)) -> Package:
    """A package holding one importable module that knows its own name and version."""
    text = f'NAME = "{name}"\nVERSION = "{version}"\n'
    return Package(name, version, depends, files={f"{SITE}/{name}/__init__.py": text})


PYTHON = Package(
    "python",
    "3.11.0",
    files={"pyvenv.cfg": "home = /usr/bin\ninclude-system-site-packages = true\nversion = 3.11.2\n"},
    links={"bin/python": "/usr/bin/python3", "bin/python3": "/usr/bin/python3"},
)


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    info.mtime = int(time.time())
    tar.addfile(info, io.BytesIO(data))


def build_package(pkg: Package, folder: Path) -> Path:
    """Write `pkg` as NAME-VERSION-0.tar.bz2 (noarch: generic) into `folder`."""
    index = {
        "name": pkg.name,
        "version": pkg.version,
        "build": "0",
        "build_number": 0,
        "depends": list(pkg.depends),
        "noarch": "generic",
        "subdir": "noarch",
        "license": "MIT",
        "timestamp": int(time.time() * 1000),
    }
    paths = [
        {
            "_path": path,
            "path_type": "hardlink",
            "sha256": hashlib.sha256(text.encode()).hexdigest(),
            "size_in_bytes": len(text.encode()),
        }
        for path, text in pkg.files.items()
    ] + [{"_path": path, "path_type": "softlink"} for path in pkg.links]
    target = folder / f"{pkg.name}-{pkg.version}-0.tar.bz2"
    with tarfile.open(target, "w:bz2") as tar:
        _add(tar, "info/index.json", json.dumps(index).encode())
        _add(tar, "info/paths.json", json.dumps({"paths": paths, "paths_version": 1}).encode())
        _add(tar, "info/files", "".join(f"{p}\n" for p in [*pkg.files, *pkg.links]).encode())
        for path, text in pkg.files.items():
            _add(tar, path, text.encode())
        for path, dest in pkg.links.items():
            info = tarfile.TarInfo(path)
            info.type = tarfile.SYMTYPE
            info.linkname = dest
            info.mtime = int(time.time())
            tar.addfile(info)
    return target


def make_channel(root: Path, packages: list[Package]) -> Path:
    """A channel folder at `root` holding `packages`, indexed; returns `root`."""
    import rattler.index

    noarch = root / "noarch"
    noarch.mkdir(parents=True, exist_ok=True)
    (root / "linux-64").mkdir(exist_ok=True)
    for pkg in packages:
        build_package(pkg, noarch)
    for subdir in ("noarch", "linux-64"):
        asyncio.run(rattler.index.index_fs(root, target_platform=rattler.Subdir(subdir), force=True))
    return root
