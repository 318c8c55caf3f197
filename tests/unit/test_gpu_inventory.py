"""The host's GPUs as nvidia-smi reports them (captures of real drivers), busy GPUs, CUDA.

nvidia-smi here is the stand-in (tests/standin/nvidia-smi) replaying tests/fixtures/nvidia-smi;
the integration tests (test_gpu_engine.py) run the same through a real engine.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from devbox.box.state import Box
from devbox.engine.base import EngineFacts
from devbox.engine.fake import FakeEngine
from devbox.errors import InvalidInput
from devbox.ops import admin, lifecycle, resolve
from devbox.ops.reporter import QuietReporter
from devbox.placement import cuda, gpus, inventory
from devbox.placement.inventory import ComputeApp, Gpu
from devbox.profile import loader
from devbox.profile.flags import Overrides, to_layers
from devbox.profile.model import GpuRequest
from devbox.profile.quotas import parse_gpus
from tests.conftest import Sandbox

TESTS = Path(__file__).resolve().parents[1]
CAPTURES = TESTS / "fixtures" / "nvidia-smi"
IMAGE = "devbox/box:0.1"


@pytest.fixture
def smi_path(tmp_path: Path) -> str:
    """A PATH whose nvidia-smi is the stand-in."""
    folder = tmp_path / "smi-bin"
    folder.mkdir()
    (folder / "nvidia-smi").symlink_to(TESTS / "standin" / "nvidia-smi")
    return f"{folder}:/usr/bin:/bin"


def host(smi_path: str, capture: str) -> dict[str, str]:
    return {"PATH": smi_path, "DEVBOX_STANDIN_SMI": str(CAPTURES / capture)}


# --- reading nvidia-smi ------------------------------------------------------------------


def test_eight_h100s_with_their_uuids(smi_path: str) -> None:
    found = inventory.read(host(smi_path, "h100x8")).gpus
    assert found is not None and len(found) == 8
    listed = (CAPTURES / "h100x8" / "list.txt").read_text().splitlines()
    assert [f"GPU {g.index}: {g.name} (UUID: {g.uuid})" for g in found] == listed  # -L agrees
    assert {(g.memory_total, g.memory_used, g.utilization, g.declared) for g in found} == {
        (81559, 0, 0, False)
    }


def test_mig_mode_reports_na_which_is_unknown_not_zero(smi_path: str) -> None:
    found = inventory.read(host(smi_path, "a100-mig")).gpus
    assert found is not None
    assert [g.utilization for g in found] == [0, None, None, 93]
    assert [g.index for g in found] == ["0", "1", "2", "3"]  # MIG devices are no extra GPUs


def test_the_driver_and_its_cuda_version(smi_path: str) -> None:
    assert inventory.driver(host(smi_path, "h100x8")) == inventory.Driver("550.90.07", "12.4")  # --version
    assert inventory.driver(host(smi_path, "a100-mig")) == inventory.Driver("535.216.01", "12.2")  # banner
    r610 = "| NVIDIA-SMI 610.43.02              KMD Version: 610.43.02     CUDA UMD Version: 13.3     |"
    assert inventory.parse_driver(r610) == inventory.Driver("610.43.02", "13.3")
    assert inventory.parse_driver("CUDA Version: N/A") == inventory.Driver(None, None)
    assert inventory.driver({"DEVBOX_GPU_INVENTORY": "8"}) is None


def test_no_or_a_broken_nvidia_smi_says_why(smi_path: str, tmp_path: Path) -> None:
    assert inventory.read({"PATH": str(tmp_path)}) == inventory.Reading(None, "nvidia-smi is not on PATH")
    broken = inventory.read({"PATH": smi_path, "DEVBOX_STANDIN_SMI": str(tmp_path)})
    assert broken.gpus is None and "couldn't communicate with the NVIDIA driver" in broken.why_not


def test_compute_processes_and_the_container_each_runs_in(smi_path: str, tmp_path: Path) -> None:
    apps = inventory.compute_apps(host(smi_path, "a100-mig"))
    assert [(a.pid, a.memory) for a in apps] == [(34965, 14195), (55111, 20481)]
    assert inventory.compute_apps(host(smi_path, "h100x8")) == []
    box_id = "ab" * 32
    proc = tmp_path / "proc"
    for pid, cgroup in (
        (10, f"12:memory:/docker/{box_id}\n0::/\n"),  # cgroup v1, cgroupfs
        (11, f"0::/system.slice/docker-{box_id}.scope\n"),  # cgroup v2, systemd
        (12, "0::/user.slice/user-1000.slice/session-4.scope\n"),  # a login session
    ):
        (proc / str(pid)).mkdir(parents=True)
        (proc / str(pid) / "cgroup").write_text(cgroup)
    assert [inventory.container_of(pid, proc) for pid in (10, 11, 12, 13)] == [box_id, box_id, None, None]


# --- busy outside devbox -----------------------------------------------------------------


def gpu(index: int, used: int | None = 0) -> Gpu:
    return Gpu(str(index), f"GPU-{index}", "H100", 81559, used, 0)


def holder(box_id: str, ids: str) -> Box:
    return Box(
        id=box_id, container=f"devbox-o-{box_id}", name=box_id, owner="o", profile="", image="",
        status="running", status_text="", created=1.0, spec_hash="", gpus=tuple(ids.split(",")), ports=(),
    )  # fmt: skip


def test_busy_outside_devbox_by_processes_or_memory() -> None:
    inv = [gpu(0, 20990), gpu(1, 4398), gpu(2, 612), gpu(3, 30000), gpu(4, 30000), gpu(5, None)]
    apps = [
        ComputeApp("GPU-0", 48211, 20480, None),  # a process on the host
        ComputeApp("GPU-3", 7, 30000, "box-a"),  # in a devbox box
        ComputeApp("GPU-9", 8, 1, None),  # a GPU not in the inventory: ignored
    ]
    held = {"4": holder("box-b", "4")}
    busy = gpus.outside_use(inv, apps, {"box-a", "box-b"}, held, 1024)
    assert busy == {"0": gpus.Busy(1, 20990), "1": gpus.Busy(0, 4398)}  # 612 MiB: under; held: the box's
    assert busy["0"].describe() == "20990 MiB used, 1 process"
    assert gpus.outside_use(inv, apps, set(), {}, 1024).keys() == {"0", "1", "3", "4"}
    declared = [Gpu("0", "GPU-declared-0", "declared GPU", 0, 50000, 0, True)]
    assert gpus.outside_use(declared, [], set(), {}, 1024) == {}  # bookkeeping: never busy


def test_a_count_never_takes_a_busy_gpu_a_named_one_warns() -> None:
    inv = [gpu(0, 20990), gpu(1), gpu(2)]
    busy = {"0": gpus.Busy(1, 20990)}
    assert gpus.allocate(GpuRequest("count", count=2), inv, {}, busy) == ("1", "2")
    with pytest.raises(gpus.NoFreeGpu) as caught:
        gpus.allocate(GpuRequest("count", count=1), inv, {"1": holder("a", "1"), "2": holder("b", "2")}, busy)
    assert "asked for 1, 0 of 3 free" in caught.value.message
    assert "busy outside devbox: GPU 0 (20990 MiB used, 1 process)" in (caught.value.hint or "")
    assert gpus.allocate(GpuRequest("devices", devices=("0",)), inv, {}, busy) == ("0",)
    assert gpus.busy_warnings(("0", "1"), busy) == [
        "GPU 0 is busy outside devbox (20990 MiB used, 1 process): the box shares it with "
        "processes devbox did not start"
    ]


# --- CUDA against the driver -------------------------------------------------------------


def test_what_cuda_an_image_needs() -> None:
    require = "cuda>=12.8 brand=tesla,driver>=470,driver<471 brand=unknown,driver>=470,driver<471"
    assert cuda.image_need({"NVIDIA_REQUIRE_CUDA": require, "CUDA_VERSION": "12.8.1"}, {}) == cuda.Need(
        "12.8", "NVIDIA_REQUIRE_CUDA=cuda>=12.8"
    )
    assert cuda.image_need({"CUDA_VERSION": "11.8.0"}, {}) == cuda.Need("11.8", "CUDA_VERSION=11.8.0")
    assert cuda.image_need({"CUDA_VERSION": "11.8.0"}, {cuda.IMAGE_LABEL: "12.1"}).version == "12.1"  # type: ignore[union-attr]
    assert cuda.image_need({"PATH": "/usr/bin"}, {}) is None


def test_a_newer_cuda_than_the_driver_gives_is_refused_with_both_versions() -> None:
    need = cuda.Need("12.8", "CUDA_VERSION=12.8.0")
    with pytest.raises(cuda.CudaTooNew) as caught:
        cuda.check(need, "12.2", "535.216.01", "pytorch/pytorch:2.7.0-cuda12.8")
    assert caught.value.kind == "refused"
    assert "needs CUDA 12.8 (CUDA_VERSION=12.8.0)" in caught.value.message
    assert "driver 535.216.01 supports CUDA 12.2 at most" in caught.value.message
    assert "CUDA 12.2 or older" in (caught.value.hint or "") and "≥ 570.26" in (caught.value.hint or "")
    cuda.check(cuda.Need("12.2", "x"), "12.2", None, "i")  # equal is fine
    cuda.check(cuda.Need("11.8", "x"), "12.4", None, "i")
    assert cuda.disabled({"NVIDIA_DISABLE_REQUIRE": "1"}) and not cuda.disabled({})


# --- the profile's side ------------------------------------------------------------------


def test_a_quoted_number_of_gpus_is_an_error_with_the_fix() -> None:
    zero = parse_gpus("0")
    assert isinstance(zero, str) and "for GPU 0 write gpus: [0], for one GPU gpus: 1" in zero
    two = parse_gpus("2")
    assert isinstance(two, str) and "gpus: 2" in two and "gpus: [2]" in two
    assert parse_gpus(0) == GpuRequest("none") and parse_gpus(2) == GpuRequest("count", count=2)


def test_the_gpus_flag_counts_but_zero_is_refused(sandbox: Sandbox) -> None:
    layers, problems = to_layers(Overrides(gpus="2"), sandbox.settings())
    assert not problems and layers[0].values["gpus"] == GpuRequest("count", count=2)
    _, problems = to_layers(Overrides(gpus="0"), sandbox.settings())
    assert [p.origin.source for p in problems] == ["--gpus"] and "gpus: [0]" in problems[0].message


@pytest.mark.parametrize("name", ["NVIDIA_VISIBLE_DEVICES", "CUDA_VISIBLE_DEVICES"])
def test_variables_that_pick_gpus_are_refused(sandbox: Sandbox, name: str) -> None:
    sandbox.write("work/p.yaml", f"image: x\nenv: {{{name}: '3'}}\n")
    with pytest.raises(InvalidInput) as caught:
        loader.load("./p.yaml", sandbox.settings())
    assert name in caught.value.problems[0].message
    assert "gpus: [0, 3]" in (caught.value.problems[0].hint or "")
    _, problems = to_layers(Overrides(env=[f"{name}=1"]), sandbox.settings())
    assert problems and name in problems[0].message
    sandbox.write("work/gpu.env", f"{name}=0\n")
    sandbox.write("work/q.yaml", "image: x\nenv_file: gpu.env\n")
    with pytest.raises(InvalidInput) as caught:
        loader.load("./q.yaml", sandbox.settings())
    assert f"sets {name}" in caught.value.problems[0].message


# --- the verbs on the in-memory engine ---------------------------------------------------


def up_on(engine: FakeEngine, sandbox: Sandbox, body: str, **env: str) -> lifecycle.BoxReport:
    ref = str(sandbox.write("work/box.yaml", f"image: {IMAGE}\n{body}"))
    return lifecycle.up(engine, resolve.resolve(ref, sandbox.settings(**env)), QuietReporter())


@pytest.fixture
def fake() -> FakeEngine:
    engine = FakeEngine()
    engine.add_image(IMAGE)
    return engine


def test_gpus_none_sets_void_and_a_gpu_box_its_ids(sandbox: Sandbox, fake: FakeEngine, smi_path: str) -> None:
    none = up_on(fake, sandbox, "gpus: none\n")
    assert fake.store.get(none.box.container).env["NVIDIA_VISIBLE_DEVICES"] == "void"  # type: ignore[union-attr]
    fake.remove(none.box.id)
    two = up_on(fake, sandbox, "gpus: 2\n", **host(smi_path, "h100x8"))
    assert two.box.gpus == ("0", "1")
    assert fake.store.get(two.box.container).env["NVIDIA_VISIBLE_DEVICES"] == "0,1"  # type: ignore[union-attr]


def test_without_an_inventory_a_gpu_box_is_refused_before_anything_exists(
    sandbox: Sandbox, fake: FakeEngine, tmp_path: Path
) -> None:
    with pytest.raises(gpus.NoGpuInventory) as caught:
        up_on(fake, sandbox, "gpus: [0]\n", PATH=str(tmp_path))
    assert caught.value.kind == "refused" and "nvidia-smi is not on PATH" in caught.value.message
    assert "DEVBOX_GPU_INVENTORY=8" in (caught.value.hint or "") and "--gpus none" in (
        caught.value.hint or ""
    )
    assert fake.list_boxes(None) == [] and fake.store.volumes == {}


def test_cuda_too_new_is_refused_before_the_volumes(
    sandbox: Sandbox, fake: FakeEngine, smi_path: str
) -> None:
    fake.store.image_envs[IMAGE] = {"CUDA_VERSION": "12.4.1"}
    with pytest.raises(cuda.CudaTooNew):
        up_on(fake, sandbox, "gpus: 1\nvolumes: [data:/data]\n", **host(smi_path, "a100-mig"))
    assert fake.list_boxes(None) == [] and fake.store.volumes == {}
    report = up_on(fake, sandbox, "gpus: 1\nvolumes: [data:/data]\n", **host(smi_path, "h100x8"))  # 12.4
    assert report.box.gpus == ("0",)


def test_a_named_busy_gpu_is_given_with_a_warning(sandbox: Sandbox, fake: FakeEngine, smi_path: str) -> None:
    report = up_on(fake, sandbox, "gpus: [0]\n", **host(smi_path, "h100x8-busy"))
    assert report.box.gpus == ("0",)
    assert report.warnings[0].startswith("GPU 0 is busy outside devbox (20990 MiB used, 1 process)")


def test_doctor_warns_for_declared_gpus_and_fails_for_real_ones(
    sandbox: Sandbox, fake: FakeEngine, smi_path: str
) -> None:
    assert fake.facts() == EngineFacts("Fake", "1.0", "1.0", ("runc",))  # no GPU runtime
    declared = {c.name: c for c in admin.doctor(fake, sandbox.settings(DEVBOX_GPU_INVENTORY="8"))}
    assert declared["gpu runtime"].status == "warn" and "declared" in declared["gpu runtime"].detail
    real = {c.name: c for c in admin.doctor(fake, sandbox.settings(**host(smi_path, "a100-mig")))}
    assert real["gpu runtime"].status == "fail"
    assert real["gpus"].detail == "4 GPU(s) visible to nvidia-smi; driver 535.216.01, CUDA 12.2"
