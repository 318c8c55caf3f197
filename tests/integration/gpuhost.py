"""A host with NVIDIA GPUs, stood in for: nvidia-smi replaying a capture, the stand-in engine.

`GpuHost` runs the real devbox CLI as lab users whose PATH has the stand-in nvidia-smi
(tests/standin/nvidia-smi) fed with a copy of a capture from tests/fixtures/nvidia-smi, so a
test may edit what the "driver" reports. `standin_session` gives the second dockerd with the
stand-in hook (tests/standin/engine.py): started for these tests unless it runs already
(then it is left running), and swept of what the tests made.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import OWNER_PREFIX, RUN_ID, TEST_LABEL
from tests.standin import engine as standin

TESTS = Path(__file__).resolve().parents[1]
CAPTURES = TESTS / "fixtures" / "nvidia-smi"
STANDIN_SMI = TESTS / "standin" / "nvidia-smi"
BASE_IMAGE = "devbox/debian:bookworm"


def capture_rows(capture: Path) -> list[dict[str, str]]:
    """The rows of a capture's query-gpu.csv, by field name (units dropped from the names)."""
    header, *rows = (capture / "query-gpu.csv").read_text().splitlines()
    names = [name.split(" [")[0] for name in header.split(", ")]
    return [dict(zip(names, row.split(", "), strict=True)) for row in rows if row.strip()]


# The stand-in engine these tests use: a private one per run (concurrent runs would share its
# 8 GPUs), or the one .ci/run started when DEVBOX_GPU_STANDIN=shared.
ACTIVE = [standin.DEFAULT]


def on_standin(*args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """The docker CLI against the stand-in engine."""
    result = standin.docker(*args, host=ACTIVE[0].host, check=False, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"docker -H {ACTIVE[0].host} {' '.join(args)}: {result.stderr}")
    return result


class GpuHost:
    """Lab users of one host whose nvidia-smi replays `capture`; boxes go to `docker_host`."""

    def __init__(self, root: Path, capture: str, docker_host: str | None) -> None:
        self.root = root
        self.prefix = f"{OWNER_PREFIX}-h{uuid.uuid4().hex[:3]}"
        self.capture = root / "capture"
        shutil.copytree(CAPTURES / capture, self.capture)
        self.bin = root / "bin"
        self.bin.mkdir()
        (self.bin / "nvidia-smi").symlink_to(STANDIN_SMI)
        (root / "lab").mkdir()
        self.docker_host = docker_host
        self.policy: Path | None = None
        self.smi = True  # False: no nvidia-smi on PATH

    def rows(self) -> list[dict[str, str]]:
        """What the host's nvidia-smi reports per GPU."""
        return capture_rows(self.capture)

    def uuid_of(self, index: int | str) -> str:
        """The UUID of host GPU `index`."""
        return next(r["uuid"] for r in self.rows() if r["index"] == str(index))

    def owner(self, user: str) -> str:
        """The devbox owner name of `user`."""
        return f"{self.prefix}-{user}"

    def container(self, user: str, box: str) -> str:
        """The container of `user`'s box."""
        return f"devbox-{self.owner(user)}-{box}"

    def env(self, user: str) -> dict[str, str]:
        """The environment devbox runs in for `user`."""
        env = {k: v for k, v in os.environ.items() if k not in ("DEVBOX_GPU_INVENTORY", "DEVBOX_POLICY")}
        path = [
            p for p in env.get("PATH", "/usr/bin:/bin").split(":") if not (Path(p) / "nvidia-smi").exists()
        ]
        env["PATH"] = ":".join(([str(self.bin)] if self.smi else []) + path)
        env |= {"DEVBOX_STANDIN_SMI": str(self.capture), "DEVBOX_USER": self.owner(user)}
        env["DEVBOX_LAB_DIR"] = str(self.root / "lab")
        env.pop("DOCKER_HOST", None)
        if self.docker_host:
            env["DOCKER_HOST"] = self.docker_host
        if self.policy:
            env["DEVBOX_POLICY"] = str(self.policy)
        return env

    def profile(self, name: str, body: str) -> Path:
        """A profile file (labelled with this run's id, so the sweep finds what it makes)."""
        path = self.root / f"{name}.yaml"
        path.write_text(body + f'\nlabels: {{"{TEST_LABEL}": "{RUN_ID}"}}\n')
        return path

    def start(self, user: str, *args: str) -> subprocess.Popen[str]:
        """Start the real CLI as `user` and return at once."""
        return subprocess.Popen(
            [sys.executable, "-m", "devbox", *args],
            cwd=self.root,
            env=self.env(user),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def devbox(self, user: str, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        """Run the real CLI as `user` to its end."""
        process = self.start(user, *args)
        out, err = process.communicate(timeout=timeout)
        return subprocess.CompletedProcess(process.args, process.returncode, out, err)

    def remove_boxes(self) -> None:
        """Remove this host's boxes and volumes now: GPU holders would starve the next test."""
        for kind, listing in (("container", ["ps", "-aq"]), ("volume", ["volume", "ls", "-q"])):
            if self.docker_host is None:
                continue  # the main engine: the session sweep (conftest) removes them
            found = on_standin(*listing, "--filter", "label=devbox.owner", check=False).stdout.split()
            if not found:
                continue
            items = json.loads(on_standin(kind, "inspect", *found, check=False).stdout or "[]")
            mine = [
                i.get("Id") or i["Name"]
                for i in items
                if ((i.get("Config") or i).get("Labels") or {})
                .get("devbox.owner", "")
                .startswith(self.prefix)
            ]
            if mine:
                on_standin(kind, "rm", "-f", *mine, check=False)

    def up_json(self, user: str, *args: str) -> dict[str, object]:
        """`devbox up ... --json` that must succeed."""
        result = self.devbox(user, "up", *args, "--json")
        assert result.returncode == 0, result.stdout + result.stderr
        found: dict[str, object] = json.loads(result.stdout)
        return found


def sweep_standin() -> None:
    """Remove the containers, volumes and images this run made on the stand-in engine."""
    for kind, listing in (("container", ["ps", "-aq"]), ("volume", ["volume", "ls", "-q"])):
        ids = on_standin(*listing, check=False).stdout.split()
        if not ids:
            continue
        items = json.loads(on_standin(kind, "inspect", *ids, check=False).stdout or "[]")
        doomed = []
        for item in items:
            labels = (item.get("Config") or item).get("Labels") or {}
            if labels.get(TEST_LABEL) == RUN_ID or labels.get("devbox.owner", "").startswith(OWNER_PREFIX):
                doomed.append(item.get("Id") or item["Name"])
        if doomed:
            on_standin(kind, "rm", "-f", *doomed, check=False)
    images = on_standin(
        "images", "-q", "--filter", f"label={TEST_LABEL}={RUN_ID}", check=False
    ).stdout.split()
    if images:
        on_standin("rmi", "-f", *set(images), check=False)


def build_on_standin(tag: str, dockerfile: str) -> str:
    """Build a small image FROM the base on the stand-in engine (labelled: swept at the end)."""
    body = f"FROM {BASE_IMAGE}\n{dockerfile}\nLABEL {TEST_LABEL}={RUN_ID}\n"
    result = subprocess.run(
        ["docker", "-H", ACTIVE[0].host, "build", "-q", "-t", tag, "-"],
        input=body,
        capture_output=True,
        text=True,
        env={**os.environ, "DOCKER_BUILDKIT": "0"},
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return tag


def standin_session() -> Iterator[str]:
    """For a module fixture: the stand-in engine's address. In CI one that cannot start fails.

    A private engine for this run, stopped at the end; with DEVBOX_GPU_STANDIN=shared the
    default one (scripts/gpu-standin-engine), left running if it ran. What the tests made
    is swept either way.
    """
    shared = os.environ.get("DEVBOX_GPU_STANDIN") == "shared"
    try:
        inst = standin.DEFAULT if shared else standin.private(RUN_ID)
        was_running = standin.running(inst) is not None
        if not shared:
            standin.sweep_orphans()
        standin.start(inst, owner=None if shared else os.getpid())
    except (standin.StandinError, OSError, subprocess.SubprocessError) as exc:
        message = f"the stand-in GPU engine did not start: {exc} (scripts/gpu-standin-engine start)"
        if os.environ.get("CI"):
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    ACTIVE[0] = inst
    try:
        yield inst.host
    finally:
        sweep_standin()
        if not was_running:
            standin.stop(inst)
