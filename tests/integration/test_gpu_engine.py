"""Must show (issue 10): GPUs through a real engine, with a stand-in NVIDIA hook and driver.

The stand-in engine (tests/standin/engine.py) is a second dockerd with a stand-in
nvidia-container-runtime-hook on its PATH: Docker's own nvidia device driver handles devbox's
DeviceRequests and runs the hook, which shows each box exactly its GPUs. The host's
nvidia-smi replays captures of real drivers (tests/fixtures/nvidia-smi). The main engine has
no hook, so the "no GPU runtime" path runs there.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import RUN_ID, Engine, docker
from tests.integration.gpuhost import (
    BASE_IMAGE,
    GpuHost,
    build_on_standin,
    capture_rows,
    on_standin,
    standin_session,
)

SLEEPER = f"image: {BASE_IMAGE}\ncommand: [sleep, infinity]\n"


def uuids_inside(container: str) -> list[str]:
    """The UUIDs `nvidia-smi -L` lists inside a box on the stand-in engine."""
    listed = on_standin("exec", container, "nvidia-smi", "-L").stdout.splitlines()
    return [line.split("(UUID: ")[1].rstrip(")") for line in listed if line.startswith("GPU ")]


def inspect(container: str) -> dict[str, object]:
    """`docker inspect` on the stand-in engine."""
    found: dict[str, object] = json.loads(on_standin("inspect", container).stdout)[0]
    return found


def device_ids(container: str) -> list[str]:
    """The device ids of the one GPU request the engine holds for `container`."""
    host_config = inspect(container)["HostConfig"]
    assert isinstance(host_config, dict)
    requests = host_config["DeviceRequests"]
    assert isinstance(requests, list) and len(requests) == 1, requests
    request = requests[0]
    # Device ids, never a count: a count-0 request attaches nothing, and a count lets Docker
    # pick the first N GPUs whatever devbox allocated.
    assert request["Count"] == 0 and request["Capabilities"] == [["gpu"]], request
    assert request["DeviceIDs"], request
    return list(request["DeviceIDs"])


def label_ids(container: str) -> list[str]:
    """The GPU indices devbox labelled the box with."""
    config = inspect(container)["Config"]
    assert isinstance(config, dict)
    return str(config["Labels"]["devbox.placement.gpus"]).split(",")


@pytest.fixture(scope="module")
def standin_engine() -> Iterator[str]:
    """The stand-in engine (started for this module unless it runs already)."""
    yield from standin_session()


@pytest.fixture
def make_host(standin_engine: str, tmp_path: Path) -> Iterator[Callable[[str], GpuHost]]:
    """Hosts whose nvidia-smi replays a capture, boxes on the stand-in engine; their boxes go
    when the test ends."""
    made: list[GpuHost] = []

    def make(capture: str) -> GpuHost:
        made.append(GpuHost(tmp_path / str(len(made)), capture, standin_engine))
        return made[-1]

    yield make
    for host in made:
        host.remove_boxes()


@pytest.fixture
def h100(make_host: Callable[[str], GpuHost]) -> GpuHost:
    """Eight idle H100s on the stand-in engine."""
    return make_host("h100x8")


def test_the_engine_gets_device_ids_and_the_box_sees_exactly_its_gpus(h100: GpuHost) -> None:
    two = h100.up_json("ann", str(h100.profile("two", SLEEPER + "gpus: 2")))
    box = h100.container("ann", "two")
    ids = device_ids(box)
    assert ids == label_ids(box) == [str(i) for i in two["gpus"]]  # type: ignore[attr-defined]
    assert len(ids) == 2
    assert uuids_inside(box) == [h100.uuid_of(i) for i in ids]

    five = h100.up_json("bob", str(h100.profile("five", SLEEPER + f"gpus: [{h100.uuid_of(5)}]")))
    assert five["gpus"] == [5]
    assert device_ids(h100.container("bob", "five")) == ["5"]
    assert uuids_inside(h100.container("bob", "five")) == [h100.uuid_of(5)]

    for user, name in (("ann", "two"), ("bob", "five")):
        assert h100.devbox(user, "down", name).returncode == 0
    every = h100.up_json("cat", str(h100.profile("every", SLEEPER + "gpus: all")))
    assert every["gpus"] == list(range(8))
    assert device_ids(h100.container("cat", "every")) == [str(i) for i in range(8)]
    assert uuids_inside(h100.container("cat", "every")) == [r["uuid"] for r in h100.rows()]


def test_sixteen_concurrent_ups_on_the_engine_get_eight_distinct_gpus(h100: GpuHost) -> None:
    profile = str(h100.profile("train", SLEEPER + "gpus: 1"))
    processes = [h100.start(f"u{i:02d}", "up", profile, "--json") for i in range(16)]
    results = [(p, *p.communicate(timeout=300)) for p in processes]
    won = [json.loads(out) for p, out, _ in results if p.returncode == 0]
    lost = [json.loads(out)["error"] for p, out, _ in results if p.returncode == 4]
    assert len(won) == 8 and len(lost) == 8, [r for r in results if r[0].returncode not in (0, 4)][:3]
    seen = []
    for box in won:
        ids = device_ids(box["container"])
        assert ids == label_ids(box["container"]) == [str(box["gpus"][0])]
        inside = uuids_inside(box["container"])
        assert inside == [h100.uuid_of(ids[0])]  # one GPU, the one devbox labelled
        seen += inside
    assert sorted(seen) == sorted(r["uuid"] for r in h100.rows())  # 8 distinct: all of them
    assert all(err["kind"] == "no-capacity" and "no free GPU" in err["message"] for err in lost)


def test_a_gpu_busy_outside_devbox_is_shown_and_never_picked(
    make_host: Callable[[str], GpuHost], tmp_path: Path
) -> None:
    host = make_host("h100x8-busy")
    # The capture: GPU 0 runs a process (20990 MiB), GPU 3 has 4398 MiB used and no process
    # listed, GPU 5 has 612 MiB used (under the 1024 MiB default).
    table = {g["index"]: g for g in json.loads(host.devbox("ann", "gpus", "--json").stdout)}
    assert table[0]["busy_outside"] == {"processes": 1, "memory_used_mib": 20990}
    assert table[3]["busy_outside"] == {"processes": 0, "memory_used_mib": 4398}
    assert table[5]["busy_outside"] is None and table[1]["busy_outside"] is None
    text = host.devbox("ann", "gpus").stdout
    line0 = next(line for line in text.splitlines() if line.startswith("0 "))
    assert "busy (outside devbox): 20990 MiB used, 1 process" in line0

    six = host.up_json("ann", str(host.profile("six", SLEEPER + "gpus: 6")))
    assert six["gpus"] == [1, 2, 4, 5, 6, 7]  # every GPU but the busy ones
    one = host.devbox("bob", "up", str(host.profile("one", SLEEPER + "gpus: 1")))
    assert one.returncode == 4, one.stderr  # only busy GPUs left: no capacity, GPU 0 not taken
    assert "busy outside devbox: GPU 0 (20990 MiB used, 1 process)" in one.stderr

    # Asked for by number, a busy GPU is given, with a warning.
    assert host.devbox("ann", "down", "six").returncode == 0
    zero = host.up_json("cat", str(host.profile("zero", SLEEPER + "gpus: [0]")))
    assert zero["gpus"] == [0] and device_ids(host.container("cat", "zero")) == ["0"]
    assert any("GPU 0 is busy outside devbox (20990 MiB used, 1 process)" in w for w in zero["warnings"])

    # A process in a devbox box is no outside use, wherever it runs; the threshold is policy.
    pid = str(inspect(host.container("cat", "zero"))["State"]["Pid"])  # type: ignore[index]
    apps = host.capture / "compute-apps.csv"
    apps.write_text(apps.read_text() + f"{host.uuid_of(2)}, {pid}, python, 30000 MiB\n")
    gpus_csv = host.capture / "query-gpu.csv"
    rows = gpus_csv.read_text().splitlines()
    rows[3] = rows[3].replace(", 0 MiB, ", ", 30000 MiB, ")  # GPU 2 (line 0 is the header)
    gpus_csv.write_text("\n".join(rows) + "\n")
    host.policy = tmp_path / "policy.yaml"
    host.policy.write_text("gpu_busy_memory_mib: 8192\n")
    table = {g["index"]: g for g in json.loads(host.devbox("ann", "gpus", "--json").stdout)}
    assert table[2]["memory_used_mib"] == 30000 and table[2]["busy_outside"] is None
    assert table[3]["busy_outside"] is None  # 4398 MiB is under this policy's 8192
    assert table[0]["busy_outside"] == {"processes": 1, "memory_used_mib": 20990}


def test_an_image_for_a_newer_cuda_is_refused_before_anything_is_made(
    make_host: Callable[[str], GpuHost],
) -> None:
    host = make_host("a100-mig")  # driver 535.216.01: CUDA 12.2
    configured = build_on_standin(
        f"devbox-test/cuda-env:{RUN_ID}",
        'ENV NVIDIA_REQUIRE_CUDA="cuda>=12.8 brand=tesla,driver>=470,driver<471" CUDA_VERSION=12.8.0',
    )
    labelled = build_on_standin(f"devbox-test/cuda-label:{RUN_ID}", "LABEL devbox.image.cuda=12.8")
    for name, image in (("env", configured), ("label", labelled)):
        profile = host.profile(
            name, f"image: {image}\ncommand: [sleep, infinity]\ngpus: 1\nvolumes: [data:/data]"
        )
        result = host.devbox("ann", "up", str(profile))
        assert result.returncode == 3, result.stderr  # refused
        assert "needs CUDA 12.8" in result.stderr and "supports CUDA 12.2" in result.stderr
        assert "535.216.01" in result.stderr
        assert "older" in result.stderr and "upgrade the NVIDIA driver" in result.stderr
        assert on_standin("ps", "-aq", "--filter", f"name={host.container('ann', name)}").stdout == ""
        volumes = on_standin("volume", "ls", "-q").stdout.split()
        assert f"devbox-{host.owner('ann')}-data" not in volumes
    # Without GPUs there is no driver to match: the same image runs.
    none = host.profile("plain", f"image: {configured}\ncommand: [sleep, infinity]\ngpus: none")
    assert host.up_json("ann", str(none))["status"] == "running"


def test_gpus_and_doctor_show_the_driver_cuda_and_na(make_host: Callable[[str], GpuHost]) -> None:
    host = make_host("a100-mig")
    table = json.loads(host.devbox("ann", "gpus", "--json").stdout)
    assert {(g["driver_version"], g["cuda_version"]) for g in table} == {("535.216.01", "12.2")}
    assert [g["utilization"] for g in table] == [0, None, None, 93]  # MIG mode: [N/A], not 0
    text = host.devbox("ann", "gpus").stdout.splitlines()
    assert text[0] == "driver 535.216.01, CUDA 12.2"
    assert next(line for line in text if line.startswith("1 ")).split()[5] == "n/a"
    checks = {c["check"]: c for c in json.loads(host.devbox("ann", "doctor", "--json").stdout)["checks"]}
    assert "4 GPU(s) visible to nvidia-smi; driver 535.216.01, CUDA 12.2" in checks["gpus"]["detail"]


def test_gpus_none_voids_the_image_and_no_inventory_refuses_gpus(
    make_host: Callable[[str], GpuHost],
) -> None:
    host = make_host("h100x8")
    cuda_like = build_on_standin(f"devbox-test/visible-all:{RUN_ID}", "ENV NVIDIA_VISIBLE_DEVICES=all")
    profile = host.profile("cpu", f"image: {cuda_like}\ncommand: [sleep, infinity]\ngpus: none")
    host.up_json("ann", str(profile))
    config = inspect(host.container("ann", "cpu"))["Config"]
    env = [e for e in config["Env"] if e.startswith("NVIDIA_VISIBLE_DEVICES=")]  # type: ignore[index]
    assert env == ["NVIDIA_VISIBLE_DEVICES=void"]
    assert inspect(host.container("ann", "cpu"))["HostConfig"]["DeviceRequests"] in (None, [])  # type: ignore[index]

    wanted = host.profile("zero", SLEEPER + "gpus: [0]")
    host.smi = False  # no nvidia-smi, nothing declared
    refused = host.devbox("bob", "up", str(wanted))
    assert refused.returncode == 3, refused.stderr
    assert "cannot see this host's GPUs (nvidia-smi is not on PATH)" in refused.stderr
    assert "DEVBOX_GPU_INVENTORY" in refused.stderr and "--gpus none" in refused.stderr
    host.smi = True
    (host.capture / "query-gpu.csv").unlink()  # nvidia-smi there, but the driver does not answer
    broken = host.devbox("bob", "up", str(wanted))
    assert broken.returncode == 3 and "couldn't communicate with the NVIDIA driver" in broken.stderr
    assert on_standin("ps", "-aq", "--filter", f"name={host.container('bob', 'zero')}").stdout == ""


def test_the_main_engine_without_the_hook_refuses_gpus_and_keeps_nothing(
    engine: Engine, tmp_path: Path
) -> None:
    if engine.has_gpu_runtime:
        pytest.skip("this engine has a GPU runtime: the failure path cannot happen here")
    host = GpuHost(tmp_path, "h100x8", None)  # a real-looking inventory, the GPU-less engine
    profile = host.profile("gpu", SLEEPER + "gpus: 1\nvolumes: [scratch:/scratch]")
    result = host.devbox("ann", "up", str(profile))
    assert result.returncode == 1, result.stderr
    assert "no GPU runtime" in result.stderr and "NVIDIA Container Toolkit" in result.stderr
    assert "--gpus none" in result.stderr
    assert docker("ps", "-aq", "--filter", f"name={host.container('ann', 'gpu')}").stdout == ""
    assert f"devbox-{host.owner('ann')}-scratch" not in docker("volume", "ls", "-q").stdout.split()


def test_the_captures_are_what_the_tests_assume() -> None:
    """Guards the fixtures: 8 distinct H100 UUIDs, shared by the busy capture, A100 MIG n/a."""
    root = Path(__file__).resolve().parents[1] / "fixtures" / "nvidia-smi"
    h100, busy = capture_rows(root / "h100x8"), capture_rows(root / "h100x8-busy")
    assert len({r["uuid"] for r in h100}) == 8 and [r["uuid"] for r in h100] == [r["uuid"] for r in busy]
    assert {r["name"] for r in h100} == {"NVIDIA H100 80GB HBM3"}
    a100 = capture_rows(root / "a100-mig")
    assert [r["utilization.gpu"] for r in a100 if r["mig.mode.current"] == "Enabled"] == ["[N/A]", "[N/A]"]
