"""A stand-in for `ssh` in unit tests: each target is a fake server described by a folder.

Installed on PATH as `ssh` (see `install`). The folder `$FAKESSH_DIR/<target>[:<port>]/`
holds `host.json`: {"mode": ..., "version": "0.1.0", "gpus": N, "env": {...}}. Modes:
- "stub" (default): answers like devbox's --json would, from a small state (state.json) kept
  under a lock, so concurrent clients race as they do on real servers: `--version`,
  `gpus`, `up` (allocates GPUs, no-capacity when they are gone), `render`, `ls`, `info`, `down`.
- "devbox": runs this checkout's `python -m devbox` with the command's arguments.
- "down": ssh's own failure (exit 255, "Connection refused").
- "hang": never answers.
`ssh -O check` says a master runs, with the pid `host.json` names ("master", default 4242):
change it to play a new connection. Every devbox command is appended to `calls.log` in the
host's folder (one JSON list per line).
"""

from __future__ import annotations

import fcntl
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

_WITH_VALUE = set("bcDEeFIiJLlmOopQRSWw")


def install(bin_dir: Path, state_dir: Path) -> None:
    """Put an `ssh` on `bin_dir` that runs this module with FAKESSH_DIR=`state_dir`."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    script = bin_dir / "ssh"
    pythonpath = os.pathsep.join(p for p in sys.path if p)
    script.write_text(
        "#!/bin/sh\n"
        f"FAKESSH_DIR={shlex.quote(str(state_dir))} PYTHONPATH={shlex.quote(pythonpath)} "
        f'exec {shlex.quote(sys.executable)} {shlex.quote(__file__)} "$@"\n'
    )
    script.chmod(0o755)


def add_host(state_dir: Path, target: str, **config: Any) -> Path:
    """A fake server answering for `target` ("alice@h1", or "alice@h1:2222" with a port)."""
    folder = state_dir / target
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "host.json").write_text(json.dumps({"mode": "stub", "version": "0.1.0", "gpus": 4, **config}))
    return folder


def calls(folder: Path) -> list[list[str]]:
    """The devbox command lines this fake server was given, in order."""
    log = folder / "calls.log"
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def _parse(argv: list[str]) -> tuple[dict[str, list[str]], str, list[str]]:
    options: dict[str, list[str]] = {}
    rest = list(argv)
    while rest and rest[0].startswith("-"):
        arg = rest.pop(0)
        if arg == "--":
            break
        letters = arg[1:]
        for i, letter in enumerate(letters):
            if letter in _WITH_VALUE:
                value = letters[i + 1 :] or rest.pop(0)
                options.setdefault(letter, []).append(value)
                break
            options.setdefault(letter, []).append("")
    target = rest.pop(0)
    return options, target, shlex.split(" ".join(rest))


def _print(data: Any, code: int = 0) -> None:
    sys.stdout.write(json.dumps(data) + "\n")
    sys.stdout.flush()
    raise SystemExit(code)


def _error(kind: str, message: str, code: int) -> None:
    _print({"error": {"kind": kind, "message": message, "problems": [], "hint": None}}, code)


def _box(name: str, owner: str, gpus: list[int], host: str) -> dict[str, Any]:
    return {
        "name": name,
        "container": f"devbox-{owner}-{name}",
        "owner": owner,
        "host": host,
        "created": 1_700_000_000,
        "created_iso": "2023-11-14T22:13:20Z",
        "id": f"id-{name}",
        "status": "running",
        "profile": f"/profiles/{name}.yaml",
        "image": "example.org/nb:1",
        "inside": {},
        "gpus": gpus,
        "ports": {"jupyter": {"container": 8888, "host_port": 32768, "address": "127.0.0.1"}},
        "volumes": [],
    }


def _report(box: dict[str, Any], action: str) -> dict[str, Any]:
    port = box["ports"]["jupyter"]["host_port"]
    return {
        **box,
        "started": 1_700_000_000,
        "started_iso": "2023-11-14T22:13:20Z",
        "action": action,
        "shm_size": None,
        "memory": None,
        "nano_cpus": None,
        "pids_limit": None,
        "jupyter": {"url": f"http://127.0.0.1:{port}/?token=t0k", "token": "t0k", "auth": "token"},
        "ssh": None,
        "credentials": {},
        "changes": [],
        "warnings": [],
    }


def _value(args: list[str], flag: str) -> str | None:
    for i, arg in enumerate(args):
        if arg == flag and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith(flag + "="):
            return arg.split("=", 1)[1]
    return None


def _stub(folder: Path, config: dict[str, Any], args: list[str]) -> None:
    host, owner = f"unix:///fake/{folder.name}.sock", config.get("owner", "alice")
    if args == ["--version"]:
        print(f"devbox {config['version']}")
        raise SystemExit(0)
    lock = os.open(folder / "state.lock", os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(lock, fcntl.LOCK_EX)
    state_file = folder / "state.json"
    state = json.loads(state_file.read_text()) if state_file.exists() else {"boxes": {}}
    boxes: dict[str, dict[str, Any]] = state["boxes"]
    command = args[0] if args else ""
    if args[1:3] == ["--host", "local"]:  # exec and ssh get it before NAME (their rest is the command)
        args = [args[0], *args[3:]]
    name = Path(args[1]).stem if len(args) > 1 and not args[1].startswith("-") else "default"
    if command == "gpus" and not int(config["gpus"]):
        _error("failed", "no GPUs known on this host: nvidia-smi is missing, nothing declared", 1)
    if command == "gpus":
        held = {g: b for b in boxes.values() for g in b["gpus"]}
        _print(
            [
                {
                    "host": host,
                    "index": i,
                    "uuid": f"GPU-{folder.name}-{i}",
                    "model": "declared GPU",
                    "memory_used_mib": None,
                    "memory_total_mib": None,
                    "utilization": None,
                    "declared": True,
                    "holder": (
                        {k: held[i][k] for k in ("name", "container", "owner", "created", "created_iso")}
                        | {"host": host}
                    )
                    if i in held
                    else None,
                    "busy_outside": None,
                    "driver_version": None,
                    "cuda_version": None,
                }
                for i in range(int(config["gpus"]))
            ]
        )
    asked = int(_value(args, "--gpus") or config.get("profile_gpus", 1))
    if command == "render":
        _print({"name": name, "host": host, "gpu_request": {"kind": "count", "count": asked, "devices": []}})
    if command == "up":
        time.sleep(float(config.get("up_delay", 0)))
        if name in boxes:
            _print(_report(boxes[name], "running"))
        held = {g for b in boxes.values() for g in b["gpus"]}
        free = [i for i in range(int(config["gpus"])) if i not in held]
        if len(free) < asked:
            _error("no-capacity", f"no free GPU: asked for {asked}, {len(free)} of {config['gpus']} free", 4)
        boxes[name] = _box(name, owner, free[:asked], host)
        state_file.write_text(json.dumps(state))
        _print(_report(boxes[name], "created"))
    if command == "exec":
        print("exec in " + name + ": " + shlex.join(args[args.index("--") + 1 :]))
        raise SystemExit(0)
    if command == "logs":
        print(f"log of {name}: " + shlex.join(args[2:]))
        raise SystemExit(0)
    if command == "ls":
        _print([{**b, "uptime": "Up 1 second"} for b in boxes.values()])
    if command == "info":
        if name not in boxes:
            _error("not-found", f"no box named '{name}'", 5)
        _print(_report(boxes[name], "running"))
    if command == "down":
        removed = boxes.pop(name, None) is not None
        state_file.write_text(json.dumps(state))
        _print(
            {
                "name": name,
                "container": f"devbox-{owner}-{name}",
                "owner": owner,
                "host": host,
                "removed": removed,
                "volumes_removed": [],
                "volumes_kept": [],
                "volumes_in_use": [],
            }
        )
    _error("invalid", f"the fake server does not know {args!r}", 2)


def main(argv: list[str]) -> None:
    """Act as `ssh OPTIONS TARGET COMMAND` towards the fake server of TARGET."""
    options, target, command = _parse(argv)
    port = options.get("p", [""])[-1]
    folder = Path(os.environ["FAKESSH_DIR"]) / (f"{target}:{port}" if port else target)
    if not (folder / "host.json").exists():
        sys.stderr.write(f"ssh: Could not resolve hostname {target}: Name or service not known\n")
        raise SystemExit(255)
    config = json.loads((folder / "host.json").read_text())
    if "O" in options:  # a ControlMaster command: answered here, like ssh's own mux
        if config["mode"] == "down":
            sys.stderr.write("Control socket connect: No such file or directory\n")
            raise SystemExit(255)
        sys.stderr.write(f"Master running (pid={config.get('master', 4242)})\n")
        raise SystemExit(0)
    if config["mode"] == "down":
        sys.stderr.write(f"ssh: connect to host {target} port {port or 22}: Connection refused\n")
        raise SystemExit(255)
    with open(folder / "calls.log", "a") as log:
        log.write(json.dumps(command) + "\n")
    if config["mode"] == "hang":
        time.sleep(60)
    if command[:1] != ["devbox"]:
        sys.stderr.write(f"sh: 1: {command[0] if command else ''}: not found\n")
        raise SystemExit(127)
    if config["mode"] == "devbox":
        env = {**os.environ, **config.get("env", {})}
        raise SystemExit(subprocess.call([sys.executable, "-m", "devbox", *command[1:]], env=env))
    _stub(folder, config, command[1:])


if __name__ == "__main__":
    main(sys.argv[1:])
