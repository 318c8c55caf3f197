"""A second Docker engine with a stand-in NVIDIA hook: devbox's GPU requests on a real engine.

`python -m tests.standin.engine start|stop|status` (scripts/gpu-standin-engine). `start` runs
a dockerd of its own beside the main engine: its own data root, exec root (with its own
managed containerd), socket, pidfile, config file and bridge (`-b devboxgpu0`; never
`--bridge=none`, which makes dockerd delete the main engine's docker0), no iptables rules.
On its PATH is the stand-in `nvidia-container-runtime-hook` (hook.py), so Docker registers
its nvidia device driver: a DeviceRequest puts NVIDIA_VISIBLE_DEVICES in the OCI spec and
runs the hook, which shows the box exactly its GPUs of the 8x H100 capture. Then the images
the GPU tests need are copied over from the main engine, and one `docker run --gpus` checks
the chain. Idempotent: `start` on a running engine only refreshes the images. `stop` removes
everything it made: containers, mounts, data, exec root, socket, pidfile, bridge.

Needs root (dockerd). Standard library only.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
CAPTURE = REPO / "tests/fixtures/nvidia-smi/h100x8"  # the "driver" the hook shows boxes
IMAGES = ("devbox/debian:bookworm",)
HOOK = "nvidia-container-runtime-hook"


@dataclass(frozen=True)
class Instance:
    """One stand-in engine: its name names its folders, socket and pidfile; its own bridge."""

    name: str = "devbox-gpu-standin"
    bridge: str = "devboxgpu0"
    subnet: int = 7  # the bridge is 10.213.<subnet>.1/24

    @property
    def state(self) -> Path:
        """Data root, hook, capture, log."""
        return Path("/var/lib") / self.name

    @property
    def exec_root(self) -> Path:
        """Kept short: containerd's socket path lives under it."""
        return Path("/run") / self.name

    @property
    def socket(self) -> Path:
        """Where the engine listens."""
        return Path("/run") / f"{self.name}.sock"

    @property
    def pidfile(self) -> Path:
        """dockerd's pid."""
        return Path("/run") / f"{self.name}.pid"

    @property
    def host(self) -> str:
        """DOCKER_HOST for it."""
        return f"unix://{self.socket}"

    @property
    def address(self) -> str:
        """The bridge's address."""
        return f"10.213.{self.subnet}.1/24"


DEFAULT = Instance()
PRIVATE_PREFIX = "dbgs-"  # per-run instances (private()): /run/dbgs-<run>.sock, bridge dbgs<run>


def private(run: str) -> Instance:
    """An instance of one test run's own, so concurrent runs never share its 8 GPUs."""
    taken = subprocess.run(["ip", "-o", "-4", "addr"], capture_output=True, text=True, check=False).stdout
    start = int(run[:6], 16) % 240
    for step in range(240):
        subnet = 8 + (start + step) % 240
        if f" 10.213.{subnet}." not in taken:
            return Instance(f"{PRIVATE_PREFIX}{run}", f"dbgs{run[:8]}", subnet)
    raise StandinError("no free 10.213.x.0/24 subnet for a stand-in bridge")


class StandinError(RuntimeError):
    """The stand-in engine could not be started (or checked); the message says why."""


def docker(
    *args: str, host: str | None = DEFAULT.host, check: bool = True, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """The docker CLI against `host` (None: the main engine, as DOCKER_HOST or the default says)."""
    argv = ["docker", *(["-H", host] if host else []), *args]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    if check and result.returncode != 0:
        raise StandinError(f"{' '.join(argv)} failed: {result.stderr.strip()}")
    return result


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip() not in ("", "<defunct>")
    except OSError:
        return False


def _pid(path: Path) -> int | None:
    try:
        pid = int(path.read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if _alive(pid) else None


def running(inst: Instance = DEFAULT) -> int | None:
    """The instance's dockerd pid when it runs and answers, else None."""
    pid = _pid(inst.pidfile)
    try:
        if pid is None or Path(f"/proc/{pid}/comm").read_text().strip() != "dockerd":
            return None
    except OSError:
        return None
    answered = docker("version", "--format", "{{.Server.Version}}", host=inst.host, check=False, timeout=20)
    return pid if answered.returncode == 0 else None


@contextlib.contextmanager
def _locked(inst: Instance) -> Iterator[None]:
    """One start or stop of an instance at a time (CI and a test fixture may both ask)."""
    lock = Path("/run") / f"{inst.name}.lock"
    with lock.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check)


def _bridge_up(inst: Instance) -> None:
    if _ip("link", "show", inst.bridge, check=False).returncode != 0:
        _ip("link", "add", inst.bridge, "type", "bridge")
    if inst.address.partition("/")[0] not in _ip("-o", "addr", "show", "dev", inst.bridge).stdout:
        _ip("addr", "add", inst.address, "dev", inst.bridge)
    _ip("link", "set", inst.bridge, "up")


def _install_hook(inst: Instance) -> Path:
    """The hook, its nvidia-smi and the capture, copied under the state folder (the checkout
    may change while the engine runs)."""
    bin_dir, lib = inst.state / "bin", inst.state / "lib"
    for folder in (bin_dir, lib):
        folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(HERE / "hook.py", lib / "hook.py")
    shutil.copyfile(HERE / "nvidia-smi", lib / "nvidia-smi")
    shutil.rmtree(lib / "capture", ignore_errors=True)
    shutil.copytree(CAPTURE, lib / "capture")
    wrapper = bin_dir / HOOK
    # dockerd execs the hook itself: a shebang with an absolute interpreter (the venv's base
    # interpreter: the hook needs only the standard library, and a venv may be rebuilt).
    wrapper.write_text(
        f"#!{os.path.realpath(sys.executable)}\n"
        "import sys\n"
        f"sys.path.insert(0, {str(lib)!r})\n"
        "from pathlib import Path\n"
        "import hook\n"
        f"sys.exit(hook.main(sys.argv, sys.stdin, Path({str(lib / 'capture')!r}), "
        f"Path({str(lib / 'nvidia-smi')!r}), Path({str(inst.state / 'hook.log')!r})))\n"
    )
    wrapper.chmod(0o755)
    (inst.state / "daemon.json").write_text("{}\n")  # not the main engine's /etc/docker/daemon.json
    return bin_dir


def _start_dockerd(inst: Instance, bin_dir: Path) -> None:
    (inst.state / "docker").mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k != "DOCKER_HOST"}
    env["PATH"] = f"{bin_dir}:{env.get('PATH', '/usr/sbin:/usr/bin:/sbin:/bin')}"
    argv = [
        "dockerd",
        f"--config-file={inst.state / 'daemon.json'}",
        f"--data-root={inst.state / 'docker'}",
        f"--exec-root={inst.exec_root}",
        f"--pidfile={inst.pidfile}",
        f"--host={inst.host}",
        f"--bridge={inst.bridge}",  # its own: --bridge=none would delete the main docker0
        "--iptables=false",
        "--ip-masq=false",
    ]
    with (inst.state / "dockerd.log").open("ab") as log:
        process = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env, start_new_session=True
        )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise StandinError(f"dockerd exited {process.returncode}:\n{_log_tail(inst)}")
        if docker("version", host=inst.host, check=False, timeout=10).returncode == 0:
            return
        time.sleep(0.3)
    raise StandinError(f"dockerd did not answer on {inst.host} within 60 s:\n{_log_tail(inst)}")


def _log_tail(inst: Instance, lines: int = 20) -> str:
    try:
        return "\n".join((inst.state / "dockerd.log").read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def ensure_images(inst: Instance, images: tuple[str, ...] = IMAGES) -> None:
    """Copy each image from the main engine unless the instance has that very image already."""
    for image in images:
        wanted = docker("image", "inspect", "-f", "{{.Id}}", image, host=None).stdout.strip()
        have = docker("image", "inspect", "-f", "{{.Id}}", image, host=inst.host, check=False).stdout.strip()
        if have == wanted:
            continue
        save = subprocess.Popen(["docker", "save", image], stdout=subprocess.PIPE)
        load = subprocess.run(
            ["docker", "-H", inst.host, "load", "-q"], stdin=save.stdout, capture_output=True
        )
        assert save.stdout is not None
        save.stdout.close()
        if save.wait() != 0 or load.returncode != 0:
            raise StandinError(
                f"could not copy {image} to {inst.host}: {load.stderr.decode(errors='replace')}"
            )


def _smoke_check(inst: Instance, image: str) -> None:
    """One box asks for GPU 3: the hook must run and show it exactly the UUID of GPU 3."""
    listed = docker(
        "run",
        "--rm",
        "--gpus",
        "device=3",
        image,
        "nvidia-smi",
        "-L",
        host=inst.host,
        check=False,
        timeout=60,
    )
    expected = next(
        line.split(", ")[1]
        for line in (CAPTURE / "query-gpu.csv").read_text().splitlines()[1:]
        if line.startswith("3, ")
    )
    if listed.returncode != 0 or expected not in listed.stdout or listed.stdout.count("GPU ") != 1:
        raise StandinError(
            f"the stand-in hook did not show a box its GPU: {listed.stdout}{listed.stderr}\n"
            f"dockerd log:\n{_log_tail(inst)}"
        )


def start(inst: Instance = DEFAULT, images: tuple[str, ...] = IMAGES, owner: int | None = None) -> None:
    """Start the instance (or reuse it when it runs) and give it `images`.

    `owner`: the pid of the test run it belongs to (a private instance); a later run stops
    instances whose owner is gone (sweep_orphans).
    """
    if os.geteuid() != 0:
        raise StandinError("the stand-in engine runs its own dockerd: run as root")
    if not shutil.which("dockerd"):
        raise StandinError("dockerd is not installed (scripts/ensure-engine installs docker.io)")
    with _locked(inst):
        if running(inst) is None:
            _clean(inst)  # what a killed run left: a stale pidfile, socket, mounts
            _bridge_up(inst)
            _start_dockerd(inst, _install_hook(inst))
            if owner is not None:
                (inst.state / "owner.pid").write_text(f"{owner}\n")
            ensure_images(inst, images)
            _smoke_check(inst, images[0])
        else:
            ensure_images(inst, images)


def _own_processes(inst: Instance) -> list[int]:
    """Processes the instance's dockerd started (containerd, shims): they name its folders."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdecimal() and int(entry.name) != os.getpid():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if f"{inst.exec_root}/" in cmdline or f"{inst.state}/" in cmdline:
                found.append(int(entry.name))
    return found


def _stop_pid(pid: int, timeout: float) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    if _alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _unmount(inst: Instance) -> None:
    """Unmount what dockerd left under its folders (overlays, shm, netns), deepest first."""
    roots = (f"{inst.state}/", f"{inst.exec_root}/")
    points = [
        line.split()[4].replace("\\040", " ")
        for line in Path("/proc/self/mountinfo").read_text().splitlines()
        if line.split()[4].startswith(roots)
    ]
    for point in sorted(set(points), key=len, reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True, check=False)


def _clean(inst: Instance) -> None:
    """Everything but a running dockerd: its processes, mounts, files."""
    for pid in _own_processes(inst):
        _stop_pid(pid, 10)
    _unmount(inst)
    for path in (inst.socket, inst.pidfile):
        path.unlink(missing_ok=True)
    for folder in (inst.exec_root, inst.state):
        shutil.rmtree(folder, ignore_errors=True)


def stop(inst: Instance = DEFAULT) -> None:
    """Stop the instance and remove all it made (bridge included), whether it runs or died."""
    with _locked(inst):
        pid = running(inst)
        if pid is not None:
            ids = docker("ps", "-aq", host=inst.host, check=False).stdout.split()
            if ids:
                docker("rm", "-f", *ids, host=inst.host, check=False, timeout=120)
        pid = pid or _pid(inst.pidfile)
        if pid is not None:
            _stop_pid(pid, 30)
        _clean(inst)
        if _ip("link", "show", inst.bridge, check=False).returncode == 0:
            _ip("link", "delete", inst.bridge, check=False)
    Path("/run", f"{inst.name}.lock").unlink(missing_ok=True)


def sweep_orphans() -> list[str]:
    """Stop private instances whose test run is gone (killed before it could stop them)."""
    stopped = []
    for state in Path("/var/lib").glob(f"{PRIVATE_PREFIX}*"):
        owner = _pid(state / "owner.pid")
        run = state.name[len(PRIVATE_PREFIX) :]
        if owner is None and (time.time() - state.stat().st_mtime) > 60:
            stop(Instance(state.name, f"dbgs{run[:8]}", 0))
            stopped.append(state.name)
    return stopped


def status(inst: Instance = DEFAULT) -> dict[str, object]:
    """Whether it runs, where, and which images it has."""
    pid = running(inst)
    listed = (
        docker("images", "--format", "{{.Repository}}:{{.Tag}}", host=inst.host, check=False) if pid else None
    )
    images = listed.stdout.split() if listed else []
    return {
        "running": pid is not None,
        "pid": pid,
        "host": inst.host,
        "state": str(inst.state),
        "images": images,
    }


def main(argv: list[str]) -> int:
    """start [IMAGE...] | stop | status."""
    verb, *rest = argv or ["status"]
    try:
        if verb == "start":
            start(DEFAULT, tuple(rest) or IMAGES)
            print(f"stand-in GPU engine running: DOCKER_HOST={DEFAULT.host}")
        elif verb == "stop":
            stop(DEFAULT)
            for name in sweep_orphans():
                print(f"stopped {name}, left by a test run that is gone")
            print("stand-in GPU engine stopped and removed")
        elif verb == "status":
            found = status(DEFAULT)
            print(json.dumps(found))
            return 0 if found["running"] else 3
        else:
            print("usage: gpu-standin-engine start [IMAGE...] | stop | status", file=sys.stderr)
            return 2
    except StandinError as exc:
        print(f"gpu-standin-engine: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
