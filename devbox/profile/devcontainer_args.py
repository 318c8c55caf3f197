"""The pieces of a devcontainer.json that are Docker's own syntax: runArgs, mount strings, ports.

Each is written into an `Out` (devcontainer_out.py), the profile being made, at the JSON
position it came from.
"""

from __future__ import annotations

import json
import re
import shlex
from typing import Any

from devbox.profile.devcontainer_out import Out
from devbox.profile.yamlsrc import KeyPath

# overrideCommand's loop (the spec's reference CLI runs the same): the box stays up, and a
# `docker stop` (SIGTERM) ends it at once.
KEEP_ALIVE = ("/bin/sh", "-c", "trap 'exit 0' TERM; while sleep 1000 & wait $!; do :; done")
IPC_MODES = ("host", "private", "shareable", "none")
_SUPPORTED = (
    "--gpus, --shm-size, --ipc, -e/--env, -v/--volume, --mount, --cpus, -m/--memory, -p/--publish, --init"
)
_WITH_VALUE = {
    "--gpus": "gpus",
    "--shm-size": "shm",
    "--ipc": "ipc",
    "-e": "env",
    "--env": "env",
    "-v": "volume",
    "--volume": "volume",
    "--mount": "mount",
    "--cpus": "cpus",
    "-m": "memory",
    "--memory": "memory",
    "-p": "publish",
    "--publish": "publish",
}
_VOLUME_NOOPS = ("cached", "delegated", "consistent")  # macOS-only hints Docker on Linux ignores


def forward_ports(out: Out, raw: Any, path: KeyPath) -> None:
    """forwardPorts: container ports on engine-picked host ports (another host's port skipped)."""
    items = raw if isinstance(raw, list) else [raw]
    for i, item in enumerate(items):
        where = (*path, i) if isinstance(raw, list) else path
        host, _, port = str(item).rpartition(":") if isinstance(item, str) else ("", "", item)
        if host and host not in ("localhost", "127.0.0.1", "0.0.0.0"):
            out.notes.append(f"forwardPorts {item!r} skipped: it is another host's port")
            continue
        number = port_number(out, port, where, 'e.g. 8888 or "localhost:8888"')
        if number is not None:
            out.port(number, None, where)


def app_port(out: Out, raw: Any, path: KeyPath) -> None:
    """appPort: 8000 publishes 8000:8000, "3000:8000" as written (a number, a string or a list)."""
    items = raw if isinstance(raw, list) else [raw]
    for i, item in enumerate(items):
        where = (*path, i) if isinstance(raw, list) else path
        text = str(item)
        if text.count(":") == 2:  # "127.0.0.1:8000:8000", as docker run -p takes it
            address, _, text = text.partition(":")
            out.notes.append(f"appPort {item}: the address {address} skipped; the lab's bind_address applies")
        host_text, _, container_text = text.rpartition(":")
        container = port_number(out, container_text, where)
        host = port_number(out, host_text, where) if host_text else container
        if container is not None and host is not None:
            out.port(container, host, where)


def mounts(out: Out, raw: Any, path: KeyPath) -> None:
    """mounts: --mount strings or the spec's {source, target, type} objects, as volumes."""
    if not isinstance(raw, list):
        out.fail(
            path, "mounts must be a list", '"mounts": ["source=${localEnv:HOME}/data,target=/data,type=bind"]'
        )
        return
    for i, item in enumerate(raw):
        where = (*path, i)
        if isinstance(item, str):
            fields = mount_fields(out, item, where)
        elif isinstance(item, dict):
            fields = {str(k): v for k, v in item.items()}
        else:
            out.fail(
                where,
                "a mount is a string or an object",
                '{"source": "...", "target": "...", "type": "bind"}',
            )
            continue
        if fields is not None:
            out.mount(fields, where)


def port_number(out: Out, raw: Any, where: KeyPath, hint: str = 'e.g. 8888 or "8080:8888"') -> int | None:
    """A port 1-65535 from a number or its text, else a problem at `where` (with `hint`)."""
    text = str(raw).strip() if not isinstance(raw, bool) else ""
    if text.isdecimal() and 1 <= int(text) <= 65535:
        return int(text)
    out.fail(where, f"{raw!r} is not a port (1-65535)", hint)
    return None


def mount_fields(out: Out, text: str, where: KeyPath) -> dict[str, Any] | None:
    """Docker's --mount syntax (type=bind,source=…,target=…,readonly) as a dict."""
    fields: dict[str, Any] = {}
    for part in text.split(","):
        name, eq, value = part.strip().partition("=")
        if not name:
            continue
        if name in ("readonly", "ro") and not eq:
            fields[name] = True
        elif name == "volume-nocopy":
            out.notes.append(f"mount option {name} skipped: a new volume gets the image's files")
        elif not eq:
            out.fail(where, f"mount field {name!r} has no value", "type=bind,source=/path,target=/path")
            return None
        elif name == "consistency":
            continue  # no effect on Linux
        elif name in ("bind-propagation", "bind-nonrecursive"):
            out.notes.append(f"mount option {name}={value} skipped: devbox binds with Docker's defaults")
        elif name not in ("type", "source", "src", "target", "destination", "dst", "readonly", "ro"):
            out.fail(where, f"mount field {name!r} is not supported", "type, source, target, readonly")
            return None
        else:
            fields[name] = value
    return fields


def _tokens(out: Out, raw: list[Any], path: KeyPath) -> list[tuple[str, KeyPath]]:
    """Each runArgs word with its position; "--shm-size 8g" written as one item is two words."""
    tokens: list[tuple[str, KeyPath]] = []
    for i, item in enumerate(raw):
        where = (*path, i)
        if not isinstance(item, str):
            out.fail(where, f"runArgs entries are strings, not {item!r}", '["--shm-size", "8g"]')
            continue
        flag, space, rest = item.strip().partition(" ")
        values = rest.split()[0 if "=" in flag else 1 :]  # the words after the flag's own value
        if item.startswith("-") and any(word.startswith("-") for word in values):
            # "--gpus all --shm-size 8g" (or "--gpus=all --privileged") as one string: docker
            # gets it as one argument and refuses it; reading a value out of it would hide a flag.
            out.fail(
                where,
                f"runArgs {item.strip()!r} holds several arguments in one string",
                "write each as its own string: " + json.dumps(_words(item)),
            )
            continue
        if item.startswith("-") and space and "=" not in flag:
            tokens += [(flag, where), (rest.strip(), where)]
        else:
            tokens.append((item.strip(), where))
    return tokens


def _words(item: str) -> list[str]:
    """An item's words as a shell splits them (plain whitespace when its quotes do not pair)."""
    try:
        return shlex.split(item)
    except ValueError:
        return item.split()


def run_args(out: Out, raw: Any, path: KeyPath) -> None:
    """The `docker run` arguments devbox can honour, mapped to profile keys; others refused."""
    if not isinstance(raw, list):
        out.fail(path, "runArgs must be a list of strings", '["--gpus", "all", "--shm-size", "8g"]')
        return
    tokens = _tokens(out, raw, path)
    i = 0
    while i < len(tokens):
        word, where = tokens[i]
        i += 1
        if word == "--init":
            continue  # devbox boxes always run an init
        name, eq, value = word.partition("=")
        if not word.startswith("--") and len(word) > 2 and word.startswith("-") and not eq:
            name, value, eq = word[:2], word[2:], "="  # -eKEY=VALUE, -p8080:80
        what = _WITH_VALUE.get(name)
        if what is None:
            shown = name if name.startswith("-") else word
            out.fail(where, f"runArgs {shown!r} is not supported", f"devbox maps {_SUPPORTED}; remove it")
            if name.startswith("-") and not eq and i < len(tokens) and not tokens[i][0].startswith("-"):
                i += 1  # its value (--network host): one refusal, not a second for "host"
            continue
        if not eq:
            if i >= len(tokens):
                out.fail(where, f"runArgs {name} needs a value", f'["{name}", "VALUE"]')
                break
            value, where = tokens[i]
            i += 1
        _one_arg(out, what, name, value.strip(), where)


def _one_arg(out: Out, what: str, flag: str, value: str, where: KeyPath) -> None:
    if what == "gpus":
        gpus = _gpus(value)
        if gpus is None:
            out.fail(where, f"--gpus {value!r} is not all, a count or device=IDS", '"--gpus", "all"')
        else:
            out.put(("gpus",), gpus, where)
    elif what == "shm":
        out.put(("shm_size",), value, where)
    elif what == "ipc":
        if value not in IPC_MODES:
            out.fail(where, f"--ipc {value!r} is not supported", "--ipc host, private, shareable or none")
        else:
            out.set_extra("ipc", value, where)
    elif what == "env":
        key, eq, text = value.partition("=")
        if eq:
            out.put(("env", key), text, where)
        elif key in out.env:
            out.put(("env", key), out.env[key], where)  # -e NAME passes the caller's value on
    elif what == "volume":
        parts = value.split(":")
        if parts[0].startswith(("/", ".")) and out.unset_in(where, parts[0]):
            return
        if len(parts) == 3:
            modes = [m for m in parts[2].split(",") if m and m not in _VOLUME_NOOPS]
            parts = parts[:2] + ([",".join(modes)] if modes else [])
        index = len(out.data.get("volumes", []))
        out.put(("volumes", index), ":".join(parts), where)
    elif what == "mount":
        fields = mount_fields(out, value, where)
        if fields is not None:
            out.mount(fields, where)
    elif what in ("cpus", "memory"):
        out.put(("resources", what), value, where)
    elif what == "publish":
        _publish(out, value, where)


def _gpus(value: str) -> Any:
    text = value.strip().strip("\"'")
    if text == "all":
        return "all"
    if text.isdecimal():
        return int(text)
    fields = dict(part.partition("=")[::2] for part in re.split(r",(?=[a-z]+=)", text))
    if "device" in fields:
        return [d.strip() for d in fields["device"].split(",") if d.strip()]
    if "count" in fields:
        count = fields["count"]
        return "all" if count == "all" else int(count) if count.isdecimal() else None
    if set(fields) <= {"driver", "capabilities"} and fields:
        return "all"  # --gpus capabilities=…: Docker reads it as every GPU
    return None


def _publish(out: Out, value: str, where: KeyPath) -> None:
    text, _, proto = value.partition("/")
    if proto and proto != "tcp":
        out.fail(where, f"-p {value!r}: devbox publishes TCP ports only", "drop /" + proto)
        return
    parts = text.rsplit(":", 2)
    if len(parts) == 3:
        out.notes.append(f"-p {value}: the address {parts[0]} skipped; the lab's bind_address applies")
        parts = parts[1:]
    container = port_number(out, parts[-1], where)
    host = port_number(out, parts[0], where) if len(parts) == 2 and parts[0] else None
    if container is not None and (host is not None or len(parts) == 1 or not parts[0]):
        out.port(container, host, where)
