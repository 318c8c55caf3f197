#!/usr/bin/env python3
"""devbox speed, as ratios against a plain-Docker baseline measured in the same run.

    .venv/bin/python bench/bench.py [--runs N]

1. `devbox up` until its credentials are known  vs  `docker run -d` + polling `docker logs`
   for the token, same image, runs alternating.               target <= 1.10x
2. `devbox ls` with 50 boxes  vs  `docker ps --filter label=...`.   target <= 5x
3. `devbox --help`  vs  bare `python -c pass`.                    target <= 4x

Needs a running engine and the devbox/box image (scripts/build-images). Everything it
creates carries the owner bench-<id> and is removed at the end.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

IMAGE = "devbox/box:0.1"
TOKEN_RE = re.compile(r"token=([0-9a-f]{48})")
OWNER = f"bench-{uuid.uuid4().hex[:6]}"
ENV = {**os.environ, "DEVBOX_USER": OWNER, "DEVBOX_LAB_DIR": tempfile.mkdtemp(prefix="devbox-bench-lab-")}
DEVBOX = [sys.executable, "-m", "devbox"]


def run(argv: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, check=True, env=ENV, **kwargs)  # type: ignore[call-overload, no-any-return]


def logs(cid: str) -> str:
    result = run(["docker", "logs", cid])
    return result.stdout + result.stderr


def timed(action: Callable[[], object]) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def docker_run_and_poll() -> None:
    cid = run(
        ["docker", "run", "-d", "--label", f"devbox.owner={OWNER}", "-p", "127.0.0.1::8888", IMAGE]
    ).stdout.strip()
    try:
        while not TOKEN_RE.search(logs(cid)):
            time.sleep(0.05)
    finally:
        BASELINE_CONTAINERS.append(cid)


BASELINE_CONTAINERS: list[str] = []


def bench_up(runs: int, workdir: Path) -> tuple[float, float]:
    profile = workdir / "benchbox.yaml"
    profile.write_text(f"image: {IMAGE}\nports: {{jupyter: 8888}}\n")
    devbox_times, docker_times = [], []

    def plain() -> None:
        docker_times.append(timed(docker_run_and_poll))
        # Gone before the other side runs: a box still settling would slow whoever comes next.
        subprocess.run(["docker", "rm", "-f", *BASELINE_CONTAINERS], capture_output=True, check=False)
        BASELINE_CONTAINERS.clear()

    def ours() -> None:
        devbox_times.append(timed(lambda: run([*DEVBOX, "up", str(profile), "--json"], cwd=workdir)))
        run([*DEVBOX, "down", "benchbox"], cwd=workdir)

    for i in range(runs):
        # Alternate which side goes first, so neither always runs on a machine warmed by the other.
        for side in (plain, ours) if i % 2 == 0 else (ours, plain):
            side()
    return statistics.median(devbox_times), statistics.median(docker_times)


def bench_ls(runs: int, boxes: int = 50) -> tuple[float, float]:
    for i in range(boxes):
        labels = [
            "--label",
            f"devbox.owner={OWNER}",
            "--label",
            f"devbox.box=b{i}",
            "--label",
            "devbox.ports=jupyter:8888",
        ]
        run(["docker", "create", "--name", f"devbox-{OWNER}-b{i}", *labels, "-p", "127.0.0.1::8888", IMAGE])
    devbox_times, docker_times = [], []
    for _ in range(runs):
        docker_times.append(
            timed(lambda: run(["docker", "ps", "-a", "--filter", f"label=devbox.owner={OWNER}"]))
        )
        devbox_times.append(timed(lambda: run([*DEVBOX, "ls"])))
    return statistics.median(devbox_times), statistics.median(docker_times)


def bench_help(runs: int) -> tuple[float, float]:
    devbox_times, python_times = [], []
    for _ in range(runs):
        python_times.append(timed(lambda: run([sys.executable, "-c", "pass"])))
        devbox_times.append(timed(lambda: run([*DEVBOX, "--help"])))
    return statistics.median(devbox_times), statistics.median(python_times)


def bench_gpu_ups(workdir: Path, count: int = 16) -> tuple[float, float]:
    """16 concurrent `devbox up`s for 16 owners, gpus: 1 each, 8 declared GPUs (8 win, 8 are
    refused)  vs  16 sequential plain `docker run -d` of the same image and command."""
    profile = workdir / "gpubox.yaml"
    profile.write_text("image: devbox/debian:bookworm\ncommand: [sleep, infinity]\ngpus: 1\n")
    env = {**ENV, "DEVBOX_GPU_INVENTORY": "8"}

    def concurrent() -> None:
        procs = [
            subprocess.Popen(
                [*DEVBOX, "up", str(profile), "--json"],
                cwd=workdir,
                env={**env, "DEVBOX_USER": f"{OWNER}-u{i}"},
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for i in range(count)
        ]
        codes = [p.wait() for p in procs]
        assert codes.count(0) == 8, codes

    def sequential() -> None:
        for _ in range(count):
            label = ["--label", f"devbox.owner={OWNER}-plain"]
            run(["docker", "run", "-d", *label, "devbox/debian:bookworm", "sleep", "infinity"])

    ours = timed(concurrent)
    base = timed(sequential)
    ids = run(["docker", "ps", "-aq", "--filter", f"name=devbox-{OWNER}-u"]).stdout.split()
    ids += run(["docker", "ps", "-aq", "--filter", f"label=devbox.owner={OWNER}-plain"]).stdout.split()
    if ids:
        subprocess.run(["docker", "rm", "-f", *ids], capture_output=True, check=False)
    return ours, base


def cleanup() -> None:
    listing = ["docker", "ps", "-aq", "--filter", f"label=devbox.owner={OWNER}"]
    ids = subprocess.run(listing, capture_output=True, text=True, check=False).stdout.split()
    if ids:
        subprocess.run(["docker", "rm", "-f", *ids], capture_output=True, check=False)


def byte_compiled() -> None:
    """Compile devbox's modules, as `pip install` does for what it installs.

    A source checkout under PYTHONDONTWRITEBYTECODE (set on some machines) never keeps its
    .pyc files: each run would compile ~80 modules again, ~60 ms of an `up`, and the bench
    would time the machine's setting rather than devbox.
    """
    import compileall

    import devbox

    compileall.compile_dir(str(Path(devbox.__file__).parent), quiet=1)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=5, help="runs of each side (median is reported)")
    args = parser.parse_args()
    byte_compiled()
    rows = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            rows.append(
                ("devbox up → credentials", "docker run + poll logs", *bench_up(args.runs, Path(tmp)), 1.10)
            )
        rows.append(("devbox ls (50 boxes)", "docker ps --filter label", *bench_ls(args.runs * 2), 5.0))
        rows.append(("devbox --help", "python -c pass", *bench_help(args.runs * 2), 4.0))
        with tempfile.TemporaryDirectory() as tmp:
            rows.append(("16 concurrent gpu ups", "16 sequential docker run", *bench_gpu_ups(Path(tmp)), 0.0))
    finally:
        cleanup()
    print(f"{'measure':<26} {'devbox':>9} {'baseline':>9} {'ratio':>7} {'target':>7}  baseline")
    for name, base_name, ours, base, target in rows:
        ratio = ours / base
        verdict = "reported" if not target else "ok" if ratio <= target else "OVER"
        figures = f"{ours * 1000:7.0f}ms {base * 1000:7.0f}ms {ratio:6.2f}x {target:6.2f}x"
        print(f"{name:<26} {figures}  {base_name} [{verdict}]")


if __name__ == "__main__":
    main()
