#!/usr/bin/env python3
"""devbox across several servers, as ratios against bare ssh + docker measured in the same run.

    scripts/test-hosts up 3 && .venv/bin/python bench/hosts.py [--runs N] [--user U] [--client-bin DIR]

1. `devbox ls --all-hosts` over h1..h3  vs  the same fan-out of bare
   `ssh hK docker ps --filter label=devbox.owner=USER`, three in parallel.   target <= 1.3x
2. `devbox up PROFILE --host h2` until its credentials are known  vs
   `ssh h2 docker run -d` + polling `ssh h2 docker logs` for the token.      target <= 1.2x

Runs on the test bed of scripts/test-hosts (network namespaces h1..h3 with their own dockerd
and sshd on this machine; root), as test user USER on the client side (ssh reads the config of
the account it runs as, so the bench runs as that account, not as root with another HOME).
The listing is compared twice: against bare `ssh HOST docker ps` (what a person types: a new
connection each, the issue's baseline) and against the same through a warm ControlMaster
(devbox's own options), where the ratio is devbox's own cost: Python starting on both ends.
Without the test bed it says so and exits 0: bench is no CI step. The boxes and containers it
makes carry the label devbox.bench=ID and are removed at the end; it holds the test bed's lock
meanwhile, so tests do not tear it down.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import os
import pwd
import re
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
STATE = Path(os.environ.get("DEVBOX_TEST_HOSTS_DIR") or "/run/devbox-test-hosts")
LOCK = Path("/run/lock/devbox-test-hosts.lock")
HOSTS = ("h1", "h2", "h3")
IMAGE = "devbox/box:0.1"  # prints its own token, so the plain `docker run` side has one to find
TOKEN_RE = re.compile(r"token=([0-9a-f]{48})")
BENCH = uuid.uuid4().hex[:6]
BOXES_PER_HOST = 5


def skip(message: str) -> None:
    print(f"bench/hosts.py: skipped: {message}")
    sys.exit(0)


def host_docker(host: str) -> list[str]:
    """docker on the test host's own engine, as root on this side (setup and cleanup only)."""
    return ["docker", "-H", f"unix://{STATE / host / 'docker.sock'}"]


def timed(action: Callable[[], object]) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


class Client:
    """Commands run as the test user on the client side, the way they would at their laptop."""

    def __init__(self, user: str, client_bin: Path) -> None:
        entry = pwd.getpwnam(user)
        self.user, self.uid, self.gid, self.home = user, entry.pw_uid, entry.pw_gid, Path(entry.pw_dir)
        self.groups = os.getgrouplist(user, entry.pw_gid)
        self.control = Path(tempfile.mkdtemp(prefix="dbx-bench-cm-"))
        os.chown(self.control, self.uid, self.gid)
        os.chmod(self.control, 0o700)
        self.env = {
            "HOME": str(self.home),
            "USER": user,
            "LOGNAME": user,
            "PATH": f"{client_bin}:/usr/bin:/bin",
            "LANG": "C.UTF-8",
        }
        # The baseline's ssh gets the ControlMaster devbox uses (ops/remote.py), in a folder of its own.
        self.ssh = ["ssh", "-o", "BatchMode=yes", "-o", "ControlMaster=auto"]
        self.ssh += ["-o", f"ControlPath={self.control}/%C", "-o", "ControlPersist=60", "-T"]

    def popen(self, argv: list[str]) -> subprocess.Popen[str]:
        return subprocess.Popen(
            argv,
            env=self.env,
            cwd=self.home,
            user=self.uid,
            group=self.gid,
            extra_groups=self.groups,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )

    def run(self, argv: list[str]) -> str:
        proc = self.popen(argv)
        out, err = proc.communicate()
        if proc.returncode != 0:
            raise SystemExit(f"bench/hosts.py: {' '.join(argv)} failed ({proc.returncode}): {err.strip()}")
        return out

    def on(self, host: str, *command: str) -> str:
        """`ssh HOST COMMAND` through the baseline's warm master."""
        return self.run([*self.ssh, host, *command])

    def stop_masters(self) -> None:
        for host in HOSTS:
            subprocess.run([*self.ssh, "-O", "exit", host], capture_output=True, check=False, user=self.uid)


@contextlib.contextmanager
def test_bed() -> Iterator[None]:
    """The test bed, held: skips (exit 0) when it is not up or tests are using it."""
    if os.geteuid() != 0:
        skip("needs root (the test bed runs as root; the bench runs commands as a test user)")
    status = subprocess.run(
        [str(REPO / "scripts" / "test-hosts"), "status"], capture_output=True, text=True, check=False
    )
    if status.returncode != 0:
        said = status.stdout.strip() or status.stderr.strip()
        skip(f"the test bed is not up ({said}): scripts/test-hosts up 3")
    LOCK.parent.mkdir(parents=True, exist_ok=True)
    with open(LOCK, "a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            skip(f"the test bed is in use ({LOCK} is held): run the bench when the tests are done")
        yield


def ensure_image(host: str) -> None:
    """The baseline's image on the host (loaded from this machine's engine once, not timed)."""
    inspect = [*host_docker(host), "image", "inspect", IMAGE]
    if subprocess.run(inspect, capture_output=True, check=False).returncode == 0:
        return
    print(f"loading {IMAGE} into {host} (once)", file=sys.stderr)
    save = subprocess.Popen(["docker", "save", IMAGE], stdout=subprocess.PIPE)
    subprocess.run([*host_docker(host), "load", "-q"], stdin=save.stdout, check=True, capture_output=True)
    save.wait()


def bench_ls(client: Client, runs: int) -> tuple[float, float, float]:
    """ls --all-hosts with BOXES_PER_HOST stopped boxes on each host, against the bare fan-out."""
    for host in HOSTS:
        for i in range(BOXES_PER_HOST):
            labels = ["--label", f"devbox.owner={client.user}", "--label", f"devbox.box=bench{BENCH}{i}"]
            labels += ["--label", f"devbox.bench={BENCH}", "--label", "devbox.ports=jupyter:8888"]
            name = f"devbox-{client.user}-bench{BENCH}{i}"
            subprocess.run(
                [*host_docker(host), "create", "--name", name, *labels, IMAGE],
                check=True,
                capture_output=True,
            )

    def fan_out() -> None:
        listing = ["docker", "ps", "-a", "--filter", f"label=devbox.owner={client.user}"]
        procs = [client.popen([*client.ssh, host, *listing]) for host in HOSTS]
        for proc in procs:
            proc.communicate()
            assert proc.returncode == 0

    def bare_fan_out() -> None:
        # What a person types: plain ssh (their ~/.ssh/config, no master), three at once.
        listing = ["docker", "ps", "-a", "--filter", f"label=devbox.owner={client.user}"]
        procs = [client.popen(["ssh", "-o", "BatchMode=yes", "-T", host, *listing]) for host in HOSTS]
        for proc in procs:
            proc.communicate()
            assert proc.returncode == 0

    def ours() -> None:
        client.run(["devbox", "ls", "--all-hosts"])

    fan_out()
    ours()  # both warm: masters up, devbox's version check cached
    devbox_times: list[float] = []
    ssh_times: list[float] = []
    bare_times: list[float] = []
    sides = {fan_out: ssh_times, ours: devbox_times, bare_fan_out: bare_times}
    for i in range(runs):
        order = [fan_out, ours, bare_fan_out] if i % 2 == 0 else [bare_fan_out, ours, fan_out]
        for side in order:
            sides[side].append(timed(side))
    return statistics.median(devbox_times), statistics.median(ssh_times), statistics.median(bare_times)


def bench_up(client: Client, runs: int) -> tuple[float, float]:
    """up --host h2 until the credentials are known, against docker run -d + polling the log."""
    profile = client.home / f"bench{BENCH}.yaml"
    profile.write_text(f"image: {IMAGE}\nports: {{jupyter: 8888}}\n")
    os.chown(profile, client.uid, client.gid)
    box = profile.stem
    devbox_times: list[float] = []
    docker_times: list[float] = []

    def plain() -> None:
        def start_and_poll() -> None:
            labels = ["--label", f"devbox.owner={client.user}", "--label", f"devbox.bench={BENCH}"]
            cid = client.on("h2", "docker", "run", "-d", *labels, "-p", "127.0.0.1::8888", IMAGE).strip()
            while not TOKEN_RE.search(client.on("h2", "docker", "logs", cid, "2>&1")):
                time.sleep(0.05)

        docker_times.append(timed(start_and_poll))
        remove_bench_containers("h2")  # gone before the other side runs

    def ours() -> None:
        devbox_times.append(
            timed(lambda: client.run(["devbox", "up", str(profile), "--host", "h2", "--json"]))
        )
        client.run(["devbox", "down", box, "--host", "h2"])

    try:
        client.on("h2", "true")
        client.run(["devbox", "hosts"])  # devbox's master and version check warm, as the baseline's
        for i in range(runs):
            for side in (plain, ours) if i % 2 == 0 else (ours, plain):
                side()
    finally:
        subprocess.run(["rm", "-f", str(profile)], check=False)
        with contextlib.suppress(SystemExit):
            client.run(["devbox", "down", box, "--host", "h2"])
    return statistics.median(devbox_times), statistics.median(docker_times)


def remove_bench_containers(host: str) -> None:
    listing = [*host_docker(host), "ps", "-aq", "--filter", f"label=devbox.bench={BENCH}"]
    ids = subprocess.run(listing, capture_output=True, text=True, check=False).stdout.split()
    if ids:
        subprocess.run([*host_docker(host), "rm", "-f", *ids], capture_output=True, check=False)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=5, help="runs of each side (median is reported)")
    parser.add_argument("--user", default="dbxhu1", help="the test user the client side runs as")
    parser.add_argument(
        "--client-bin",
        type=Path,
        default=STATE / "client" / "bin",
        help="the folder of the client's `devbox` (default: the test bed's copy of this checkout)",
    )
    args = parser.parse_args()
    rows = []
    with test_bed():
        client = Client(args.user, args.client_bin)
        try:
            for host in HOSTS:
                ensure_image(host)
            ours_ls, warm_ls, bare_ls = bench_ls(client, args.runs * 2)
            bare = "3 x bare ssh docker ps, parallel"
            rows.append(("ls --all-hosts (3 hosts)", bare, ours_ls, bare_ls, 1.3))
            rows.append(
                ("ls --all-hosts (3 hosts)", "the same through a warm ControlMaster", ours_ls, warm_ls, 1.3)
            )
            rows.append(
                (
                    "up --host h2 → credentials",
                    "ssh docker run + poll logs",
                    *bench_up(client, args.runs),
                    1.2,
                )
            )
        finally:
            for host in HOSTS:
                remove_bench_containers(host)
            client.stop_masters()
            subprocess.run(["rm", "-rf", str(client.control)], check=False)
    print(f"{'measure':<28} {'devbox':>9} {'baseline':>9} {'ratio':>7} {'target':>7}  baseline")
    for name, base_name, ours, base, target in rows:
        ratio = ours / base
        verdict = "ok" if ratio <= target else "OVER"
        figures = f"{ours * 1000:7.0f}ms {base * 1000:7.0f}ms {ratio:6.2f}x {target:6.2f}x"
        print(f"{name:<28} {figures}  {base_name} [{verdict}]")


if __name__ == "__main__":
    main()
