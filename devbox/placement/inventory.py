"""The host's GPUs as its NVIDIA driver reports them: nvidia-smi, or a declared inventory.

Declared: DEVBOX_GPU_INVENTORY, else the policy's `gpu_inventory` (a count or a CSV path).

Three readings, each one nvidia-smi call: the GPUs (`--query-gpu`), the compute processes on
them (`--query-compute-apps`, each mapped to the container its cgroup names), and the driver
with the highest CUDA version it supports. nvidia-smi rather than NVML bindings: no extra
dependency, and these few fields are stable across drivers. `[N/A]` and `[Not Supported]`
(MIG mode, some boards) are read as None, never as 0: an unknown load is not an idle GPU.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from devbox.errors import InvalidInput, Origin, Problem
from devbox.policy import rules
from devbox.profile import files

SMI_QUERY = "index,uuid,name,memory.total,memory.used,utilization.gpu"
APPS_QUERY = "gpu_uuid,pid,used_memory"
_TIMEOUT = 20.0
# A container id as runc names cgroups: /docker/<id>, docker-<id>.scope, .../<id> under k8s.
_CONTAINER_ID_RE = re.compile(r"[0-9a-f]{64}")
# `nvidia-smi` and `--version`, across drivers: "Driver Version: 535.216.01", "DRIVER version :
# 590.48.01", and from R610 "KMD Version: 610.43.02" / "CUDA UMD Version: 13.3".
_DRIVER_RE = re.compile(r"(?:driver|kmd) version\s*:\s*([0-9][0-9.]*)", re.IGNORECASE)
_CUDA_RE = re.compile(r"cuda (?:umd )?version\s*:\s*([0-9][0-9.]*)", re.IGNORECASE)


@dataclass(frozen=True)
class Gpu:
    """One GPU of the host (memory in MiB, utilisation in %; None: the driver reports n/a)."""

    index: str
    uuid: str
    name: str
    memory_total: int | None
    memory_used: int | None
    utilization: int | None
    declared: bool = False


@dataclass(frozen=True)
class ComputeApp:
    """A process with a CUDA context on a GPU, and the container it runs in (None: none found)."""

    gpu_uuid: str
    pid: int
    memory: int | None  # MiB
    container: str | None


@dataclass(frozen=True)
class Driver:
    """The NVIDIA driver's version and the highest CUDA version it supports ("12.2")."""

    version: str | None
    cuda: str | None


@dataclass(frozen=True)
class Reading:
    """What could be read: the GPUs (None: no inventory), and why not when there is none."""

    gpus: list[Gpu] | None
    why_not: str = ""


def number(text: str) -> int | None:
    """A numeric nvidia-smi field; None for "[N/A]", "[Not Supported]" and other non-numbers."""
    try:
        return int(float(text.strip().split(" ")[0]))  # "81559 MiB" when units were not dropped
    except ValueError:
        return None


def parse_smi_csv(text: str, declared: bool = False) -> list[Gpu]:
    """Rows of `nvidia-smi --query-gpu=index,uuid,name,memory.total,memory.used,utilization.gpu
    --format=csv,noheader,nounits` (a header line, if present, is skipped)."""
    import csv  # here, not at the top: most boxes ask for no GPU, and `up` is timed

    gpus = []
    for row in csv.reader(text.splitlines(), skipinitialspace=True):
        if len(row) < 6 or not row[0].strip().isdecimal():
            continue
        index, uuid, name = (c.strip() for c in row[:3])
        gpus.append(Gpu(index, uuid, name, number(row[3]), number(row[4]), number(row[5]), declared))
    return gpus


@dataclass(frozen=True)
class Declared:
    """A declared inventory's value ("8", a CSV path), and where it was said (for messages)."""

    value: str
    name: str = "DEVBOX_GPU_INVENTORY"  # the variable, or the policy key `gpu_inventory`
    origin: Origin | None = None  # None: the variable itself


def declared(environ: Mapping[str, str], policy: rules.Policy | None = None) -> Declared | None:
    """The GPUs declared by DEVBOX_GPU_INVENTORY, else by the policy's `gpu_inventory`, or None.

    The variable wins and the policy's is the fallback. In lab mode the helper starts from a
    clean environment (whatever the caller set), so the policy's is what counts.
    """
    value = environ.get("DEVBOX_GPU_INVENTORY")
    if value:
        return Declared(value)
    value = rules.gpu_inventory_value(policy) if policy is not None else None
    if value is None or policy is None:
        return None
    return Declared(value, "gpu_inventory", policy.origins.get("gpu_inventory", Origin(policy.source)))


def declared_inventory(value: str, said: Declared | None = None) -> list[Gpu]:
    """DEVBOX_GPU_INVENTORY (or `said`, the policy's): a count ("8") or an nvidia-smi CSV's path."""
    said = said or Declared(value)
    name, where = said.name, said.origin or Origin(said.name)
    if value.strip().isdecimal():
        # A typo, not a machine: never a list of 10**11.
        if len(value.strip()) > 4 or int(value) > rules.MOST_DECLARED_GPUS:
            raise InvalidInput(
                f"{name}={value[:20]} is more GPUs than a machine has",
                [Problem(where, f"at most {rules.MOST_DECLARED_GPUS}")],
                "set it to the number of GPUs, e.g. 8",
            )
        # A count says how many, nothing else: memory and use are unknown (null), never 0.
        return [
            Gpu(str(i), f"GPU-declared-{i}", "declared GPU", None, None, None, True)
            for i in range(int(value))
        ]
    path = Path(value)
    if not files.is_file(value):  # never raises, whatever the variable holds
        raise InvalidInput(
            f"{name}={value} is neither a count nor a file",
            [Problem(where, "neither a count nor a file")],
            "set it to a number of GPUs (8) or an nvidia-smi CSV file",
        )
    try:
        gpus = parse_smi_csv(files.read_text(value), declared=True)
    except ValueError as exc:
        raise InvalidInput(f"{name}={value} {exc}", [Problem(where, str(exc))]) from None
    if not gpus:
        # Silently meaning "no GPUs" would refuse every GPU box with a misleading message.
        raise InvalidInput(
            f"{name}={value} lists no GPU",
            [Problem(Origin(str(path)), "no GPU line")],
            "each line: index, uuid, name, memory.total, memory.used, utilization.gpu "
            "(nvidia-smi --query-gpu=... --format=csv,noheader,nounits)",
        )
    return gpus


def _smi(environ: Mapping[str, str], *args: str) -> tuple[str | None, str]:
    """(stdout, "") of nvidia-smi ARGS, or (None, why it gave nothing)."""
    import shutil
    import subprocess

    smi = shutil.which("nvidia-smi", path=environ.get("PATH"))
    if not smi:
        return None, "nvidia-smi is not on PATH"
    try:
        result = subprocess.run(
            [smi, *args],
            capture_output=True,
            text=True,
            timeout=_TIMEOUT,
            check=False,
            env=dict(environ),
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, f"{smi} did not run: {exc}"
    if result.returncode != 0:
        said = (result.stdout + result.stderr).strip().splitlines()
        return None, f"{smi} failed: {said[0] if said else f'exit status {result.returncode}'}"
    return result.stdout, ""


def read(environ: Mapping[str, str], policy: rules.Policy | None = None) -> Reading:
    """The host's GPUs: declared (DEVBOX_GPU_INVENTORY, else the policy's gpu_inventory), else
    from nvidia-smi."""
    said = declared(environ, policy)
    if said is not None:
        return Reading(declared_inventory(said.value, said))
    out, why = _smi(environ, f"--query-gpu={SMI_QUERY}", "--format=csv,noheader,nounits")
    if out is None:
        return Reading(None, why)
    return Reading(parse_smi_csv(out))


def container_of(pid: int, proc: Path = Path("/proc")) -> str | None:
    """The id of the container process `pid` runs in, read from its cgroup (None: none, or gone)."""
    try:
        text = (proc / str(pid) / "cgroup").read_text()
    except OSError:
        return None
    found = _CONTAINER_ID_RE.findall(text)
    return found[-1] if found else None


def parse_apps_csv(text: str, proc: Path = Path("/proc")) -> list[ComputeApp]:
    """Rows of `nvidia-smi --query-compute-apps=gpu_uuid,pid,used_memory --format=csv,noheader,nounits`."""
    import csv

    apps = []
    for row in csv.reader(text.splitlines(), skipinitialspace=True):
        if len(row) < 3 or not row[1].strip().isdecimal():
            continue
        pid = int(row[1])
        apps.append(ComputeApp(row[0].strip(), pid, number(row[2]), container_of(pid, proc)))
    return apps


def compute_apps(environ: Mapping[str, str]) -> list[ComputeApp]:
    """The processes using the host's GPUs now ([] when nvidia-smi cannot tell)."""
    out, _ = _smi(environ, f"--query-compute-apps={APPS_QUERY}", "--format=csv,noheader,nounits")
    return parse_apps_csv(out) if out else []


def parse_driver(text: str) -> Driver:
    """Driver and CUDA versions from `nvidia-smi --version` or the banner of plain `nvidia-smi`."""
    driver, cuda = _DRIVER_RE.search(text), _CUDA_RE.search(text)
    return Driver(driver.group(1) if driver else None, cuda.group(1) if cuda else None)


def driver(environ: Mapping[str, str], policy: rules.Policy | None = None) -> Driver | None:
    """The driver's version and CUDA version; None without nvidia-smi (or a declared inventory)."""
    if declared(environ, policy) is not None:
        return None  # declared GPUs have no driver to ask
    out, _ = _smi(environ, "--version")  # short, but only since R525 or so
    found = parse_driver(out) if out else Driver(None, None)
    if found.cuda is None:
        out, _ = _smi(environ)  # every driver prints both in its banner
        found = parse_driver(out) if out else found
    return found if found.version or found.cuda else None
