"""`hosts:` entries (the lab policy's key, and ~/.config/devbox/hosts.yaml): name → where.

A host is `ssh://[user@]address[:port]` (devbox on that server, reached through OpenSSH, so
~/.ssh/config applies: an address may be one of its Host aliases), `local` (this machine's
engine), or a Slurm cluster: `slurm:local` (this machine is a login node: sbatch, squeue here)
or `slurm://[user@]login[:port]` (they run on that login node over ssh; docs/slurm.md). Every
mistake is a located problem with the fix. Pure: no I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from devbox.errors import Origin, Problem
from devbox.profile import files
from devbox.profile.yamlsrc import Document, KeyPath

# The same rule as box and owner names: a host name shows up in JSON, tables and boxes.yaml.
NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$")
# `--host auto` picks a host; a host of that name could never be named.
RESERVED = ("auto",)
LOCAL = "local"
_USER = r"[a-zA-Z0-9_.][a-zA-Z0-9_.$-]*"
# A DNS name, an IPv4 address or an ssh_config alias; or an IPv6 address in brackets. Never
# starting with '-': ssh would read it as an option.
_ADDRESS = r"[a-zA-Z0-9_][a-zA-Z0-9_.-]*|\[[0-9a-fA-F:.]+\]"
_URL_RE = re.compile(rf"^ssh://(?:(?P<user>{_USER})@)?(?P<address>{_ADDRESS})(?::(?P<port>[0-9]{{1,5}}))?/?$")
_SLURM_RE = re.compile(
    rf"^slurm://(?:(?P<user>{_USER})@)?(?P<address>{_ADDRESS})(?::(?P<port>[0-9]{{1,5}}))?/?$"
)
SLURM_LOCAL = "slurm:local"
# sbatch options a lab may fix per cluster: slurm://login1?partition=gpu&time=8:00:00
SLURM_OPTIONS = ("partition", "time", "account", "qos")
_OPTION_RE = re.compile(r"^[A-Za-z0-9_.:+-]+$")
# Slurm's time formats: MM, MM:SS, HH:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS; or UNLIMITED.
TIME_RE = re.compile(r"^(\d+|\d+:\d{1,2}|\d+:\d{1,2}:\d{1,2}|\d+-\d{1,2}(:\d{1,2}){0,2}|UNLIMITED|INFINITE)$")
FORMS = "ssh://[user@]address[:port] or local"
SLURM_FORMS = "slurm:local or slurm://[user@]login[:port] (a Slurm cluster)"
EXAMPLE = "e.g. gpu2: ssh://alice@gpu2.lab.example.org, gpu3: ssh://10.0.0.3:2222, here: local, cluster: slurm://login1"


@dataclass(frozen=True)
class HostEntry:
    """One host as written: `target` is "user@address" or "address" (None: local). `slurm`:
    a Slurm cluster whose login node is `target` (None: this machine)."""

    name: str
    target: str | None
    port: int | None
    origin: Origin
    slurm: bool = False
    options: tuple[tuple[str, str], ...] = ()  # a Slurm cluster's sbatch options (SLURM_OPTIONS)

    @property
    def url(self) -> str:
        """The entry as written in a file: ssh://user@address:port, local, slurm:local, slurm://…"""
        query = "&".join(f"{k}={v}" for k, v in self.options)
        query = f"?{query}" if query else ""
        if self.target is None:
            return SLURM_LOCAL + query if self.slurm else LOCAL
        user, at, address = self.target.rpartition("@")
        shown = f"[{address}]" if ":" in address else address  # an IPv6 address
        port = f":{self.port}" if self.port is not None else ""
        return f"{'slurm' if self.slurm else 'ssh'}://{user}{at}{shown}{port}{query}"


def parse_value(value: Any) -> tuple[str | None, int | None] | str:
    """(target, port) for `local` or an ssh:// URL; else why not, as a message. (Slurm's forms:
    parse_entry.)"""
    parsed = parse_entry(value)
    if isinstance(parsed, str):
        return parsed
    if parsed[2] is not None:
        return f"'{files.shown(str(value).strip(), 60)}' is a Slurm cluster, not a server"
    return parsed[0], parsed[1]


def _options(query: str) -> tuple[tuple[str, str], ...] | str:
    """A Slurm entry's `?key=value&…` as pairs; else why not."""
    pairs = []
    for part in query.split("&"):
        key, sep, val = part.partition("=")
        if key not in SLURM_OPTIONS or not sep:
            known = ", ".join(k + "=…" for k in SLURM_OPTIONS)
            return f"'{files.shown(part, 40)}': a Slurm host's options are {known}"
        if not _OPTION_RE.match(val) or (key == "time" and not TIME_RE.match(val)):
            return f"'{files.shown(part, 40)}' is no {key} Slurm reads (e.g. time=8:00:00, partition=gpu)"
        pairs.append((key, val))
    return tuple(pairs)


Entry = tuple[str | None, int | None, tuple[tuple[str, str], ...] | None]


def parse_entry(value: Any) -> Entry | str:
    """(target, port, slurm options: None for a server) for any host form; else why not."""
    if not isinstance(value, str):
        return f"a host is {FORMS}, not {files.shown(repr(value), 40)}"
    text, _, query = value.strip().partition("?")
    if text == LOCAL and not query:
        return None, None, None
    slurm = text.startswith("slurm://") or text == SLURM_LOCAL
    if query and not slurm:
        return f"'{files.shown(value.strip(), 60)}': only a Slurm host takes ?options"
    options = _options(query) if query else ()
    if isinstance(options, str):
        return options
    if text == SLURM_LOCAL:
        return None, None, options
    match = (_SLURM_RE if slurm else _URL_RE).match(text)
    if match is None:
        if "://" in text and not text.startswith("ssh://") and not slurm:
            return (
                f"'{files.shown(text, 60)}': devbox reaches hosts over ssh only ({FORMS}; or {SLURM_FORMS})"
            )
        return f"'{files.shown(text, 60)}' is not {SLURM_FORMS if slurm else FORMS}"
    port = match["port"]
    if port is not None and not 1 <= int(port) <= 65535:
        return f"port {port} of '{files.shown(text, 60)}' is not 1 to 65535"
    address = match["address"].strip("[]")
    target = f"{match['user']}@{address}" if match["user"] else address
    return target, int(port) if port is not None else None, options if slurm else None


def parse_hosts(doc: Document, path: KeyPath, problems: list[Problem]) -> list[HostEntry]:
    """The mapping at `path` of `doc` (() for a whole hosts.yaml); problems appended, located."""
    data: Any = doc.data
    for key in path:
        data = data.get(key) if isinstance(data, dict) else None
    if data is None:
        return []
    if not isinstance(data, dict):
        problems.append(Problem(doc.origin(path), f"hosts is a mapping of host names to {FORMS}", EXAMPLE))
        return []
    entries = []
    for name, value in data.items():
        where = doc.origin((*path, name))
        key_where = doc.key_origin((*path, name))
        text = str(name)
        if not isinstance(name, str) or not NAME_RE.match(name):
            problems.append(
                Problem(
                    key_where,
                    f"host name '{files.shown(text, 40)}' may hold letters, digits, '_', '.' and '-' only, "
                    "starting with a letter or digit",
                    "e.g. gpu2",
                )
            )
            continue
        if name in RESERVED:
            problems.append(
                Problem(key_where, f"'{name}' is reserved: --host {name} picks a host", "name it e.g. gpu2")
            )
            continue
        if isinstance(value, dict) and not path:
            problems.append(
                Problem(
                    where,
                    f"'{name}' is a mapping: a host is {FORMS}",
                    "hosts.yaml is the mapping itself (gpu2: ssh://gpu2), without a hosts: key",
                )
            )
            continue
        parsed = parse_entry(value)
        if isinstance(parsed, str):
            problems.append(Problem(where, f"host '{name}': {parsed}", EXAMPLE))
            continue
        if name == LOCAL and (parsed[0] is not None or parsed[2] is not None):
            problems.append(
                Problem(
                    where,
                    "'local' means this machine's engine; it cannot be an ssh host",
                    "name it e.g. gpu2",
                )
            )
            continue
        slurm = parsed[2] is not None
        entries.append(HostEntry(name, parsed[0], parsed[1], where, slurm, parsed[2] or ()))
    return entries
