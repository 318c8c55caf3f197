"""A stand-in for nvidia-container-runtime-hook: makes a box's requested GPUs "visible" in it.

Docker 20.10 registers its `nvidia` device driver when a program of this name is on dockerd's
PATH at start. A device request then puts NVIDIA_VISIBLE_DEVICES into the container's OCI
spec and runs the hook as `nvidia-container-runtime-hook prestart`, with the OCI state (id,
bundle) on stdin; the bundle's config.json names the rootfs and the environment.

The real hook mounts the devices and the driver's nvidia-smi into the rootfs. This one writes
a box's view of the host capture into the rootfs (/usr/share/devbox-standin-smi: the selected
GPUs renumbered from 0, as nvidia-smi shows them inside a container) and the stand-in
nvidia-smi as /usr/bin/nvidia-smi. So `nvidia-smi -L` in the box lists exactly its GPUs with
the host's UUIDs. An id the host does not have fails the start, as the real hook does.

Standard library only: dockerd runs it with the interpreter named in its shebang
(tests/standin/engine.py writes the wrapper).
"""

from __future__ import annotations

import json
import re
import shutil
import sys
import time
from pathlib import Path
from typing import TextIO

VIEW = "usr/share/devbox-standin-smi"
_INDEX_RE = re.compile(r"^(\|\s+)(\d+)(\s)")


def _select(visible: str, rows: list[list[str]], header: list[str]) -> list[list[str]] | str:
    """The capture rows NVIDIA_VISIBLE_DEVICES names, or the error for an unknown id."""
    if visible == "all":
        return rows
    if visible in ("none", ""):
        return []
    index, uuid = header.index("index"), header.index("uuid")
    chosen = []
    for wanted in visible.split(","):
        found = [r for r in rows if wanted.strip() in (r[index], r[uuid])]
        if not found:
            return f"nvidia-container-cli: device error: {wanted}: unknown device"
        chosen.append(found[0])
    return chosen


def _list_lines(text: str, uuids: list[str]) -> list[str]:
    """`nvidia-smi -L` lines of the chosen GPUs (MIG devices under them kept), renumbered."""
    blocks: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in text.splitlines():
        match = re.match(r"^GPU \d+: (.*) \(UUID: (GPU-[^)]+)\)$", line)
        if match:
            current = blocks.setdefault(match.group(2), [match.group(1)])
        elif current is not None and line.startswith("  "):
            current.append(line)
    lines = []
    for new, uuid in enumerate(uuids):
        name, *mig = blocks.get(uuid, ["?"])
        lines += [f"GPU {new}: {name} (UUID: {uuid})", *mig]
    return lines


def _summary(text: str, old_indices: list[str]) -> str:
    """The banner and the chosen GPUs' blocks of plain `nvidia-smi`, renumbered; no processes."""
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith("|====")), len(lines) - 1) + 1
    blocks: dict[str, list[str]] = {}
    i = start
    while i + 3 < len(lines) and (match := _INDEX_RE.match(lines[i])):
        blocks[match.group(2)] = lines[i : i + 4]
        i += 4
    out = lines[:start]
    for new, old in enumerate(old_indices):
        block = list(blocks.get(old, []))
        match = _INDEX_RE.match(block[0]) if block else None
        if match:
            number = str(new).rjust(len(match.group(2)))
            block[0] = match.group(1) + number + block[0][match.end(2) :]
        out += block
    return "\n".join([*out, "", "|  No running processes found  |", ""])


def write_view(root: Path, capture: Path, smi: Path, visible: str) -> list[str] | str:
    """Write the box's view of `capture` under `root`; the UUIDs it shows, or an error."""
    table = (capture / "query-gpu.csv").read_text().splitlines()
    header_line, body = table[0], [line for line in table[1:] if line.strip()]
    header = [h.split(" [")[0] for h in header_line.split(", ")]
    rows = [line.split(", ") for line in body]
    chosen = _select(visible, rows, header)
    if isinstance(chosen, str):
        return chosen
    index, uuid = header.index("index"), header.index("uuid")
    view = root / VIEW
    view.mkdir(parents=True, exist_ok=True)
    renumbered = [
        [str(new) if col == index else cell for col, cell in enumerate(r)] for new, r in enumerate(chosen)
    ]
    (view / "query-gpu.csv").write_text("\n".join([header_line, *(", ".join(r) for r in renumbered)]) + "\n")
    uuids = [r[uuid] for r in chosen]
    (view / "list.txt").write_text(
        "".join(f"{line}\n" for line in _list_lines((capture / "list.txt").read_text(), uuids))
    )
    # A box sees no other container's processes (its own PID namespace).
    apps_header = (capture / "compute-apps.csv").read_text().splitlines()[0]
    (view / "compute-apps.csv").write_text(apps_header + "\n")
    (view / "summary.txt").write_text(
        _summary((capture / "summary.txt").read_text(), [r[index] for r in chosen])
    )
    if (capture / "version.txt").exists():
        shutil.copyfile(capture / "version.txt", view / "version.txt")
    target = root / "usr/bin/nvidia-smi"
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(smi, target)
    target.chmod(0o755)
    return uuids


def main(argv: list[str], stdin: TextIO, capture: Path, smi: Path, log: Path) -> int:
    """The hook: `prestart` writes the view; other stages do nothing."""
    if argv[1:2] != ["prestart"]:
        return 0
    state = json.load(stdin)
    bundle = Path(state["bundle"])
    config = json.loads((bundle / "config.json").read_text())
    root = Path(config["root"]["path"])
    root = root if root.is_absolute() else bundle / root
    # Docker appends NVIDIA_VISIBLE_DEVICES after the box's own env: the last one counts.
    env = dict(item.partition("=")[::2] for item in config.get("process", {}).get("env", []))
    visible = env.get("NVIDIA_VISIBLE_DEVICES", "")
    if visible == "void":
        return 0
    result = write_view(root, capture, smi, visible)
    with log.open("a") as out:
        out.write(
            json.dumps({"time": time.time(), "id": state.get("id"), "visible": visible, "result": result})
            + "\n"
        )
    if isinstance(result, str):
        print(result, file=sys.stderr)
        return 1
    return 0
