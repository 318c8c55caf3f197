from __future__ import annotations

from pathlib import Path

import pytest

from devbox.box.state import Box
from devbox.errors import DevboxError
from devbox.placement.gpus import MoreGpusThanHost, NoFreeGpu, NoSuchGpu, allocate, holdings, losing_to
from devbox.placement.inventory import Gpu, declared_inventory, parse_smi_csv
from devbox.profile.model import GpuRequest

SMI = """0, GPU-aaaa-0001, NVIDIA H100 80GB HBM3, 81559, 70000, 95
1, GPU-aaaa-0002, NVIDIA H100 80GB HBM3, 81559, 10, 0
2, GPU-aaaa-0003, NVIDIA H100 80GB HBM3, 81559, 3000, [N/A]
"""


def box(name: str, gpus: str, status: str = "running", created: float = 1.0, box_id: str = "") -> Box:
    return Box(
        id=box_id or name, container=f"devbox-o-{name}", name=name, owner="o", profile="", image="",
        status=status, status_text="", created=created, spec_hash="", gpus=tuple(gpus.split(",")), ports=(),
    )  # fmt: skip


def test_nvidia_smi_csv() -> None:
    gpus = parse_smi_csv(SMI)
    assert [(g.index, g.uuid, g.memory_used, g.utilization) for g in gpus] == [
        ("0", "GPU-aaaa-0001", 70000, 95),
        ("1", "GPU-aaaa-0002", 10, 0),
        ("2", "GPU-aaaa-0003", 3000, None),  # [N/A] is unknown, not 0
    ]
    assert gpus[0].name == "NVIDIA H100 80GB HBM3" and gpus[0].memory_total == 81559


def test_declared_count() -> None:
    gpus = declared_inventory("4")
    assert [g.index for g in gpus] == ["0", "1", "2", "3"] and all(g.declared for g in gpus)


def test_count_takes_the_least_used_free_gpus() -> None:
    gpus = parse_smi_csv(SMI)
    assert allocate(GpuRequest("count", count=1), gpus, {}) == ("1",)
    assert allocate(GpuRequest("count", count=2), gpus, {}) == ("1", "2")
    assert allocate(GpuRequest("count", count=1), gpus, {"1": box("a", "1")}) == ("2",)


def test_refusals_name_the_holders() -> None:
    gpus = parse_smi_csv(SMI)
    held = {"0": box("train", "0"), "1": box("eval", "1")}
    with pytest.raises(NoFreeGpu) as caught:
        allocate(GpuRequest("count", count=2), gpus, held)
    assert "asked for 2, 1 of 3 free" in caught.value.message
    assert caught.value.hint and "o/train" in caught.value.hint and "o/eval" in caught.value.hint
    with pytest.raises(NoFreeGpu, match="GPU 0 is held"):
        allocate(GpuRequest("devices", devices=("GPU-aaaa-0001",)), gpus, held)
    with pytest.raises(NoFreeGpu, match="gpus: all needs every GPU"):
        allocate(GpuRequest("all"), gpus, held)
    assert allocate(GpuRequest("devices", devices=("GPU-aaaa-0003",)), gpus, held) == ("2",)


def test_a_request_this_host_can_never_meet_is_not_a_wait_for_capacity() -> None:
    # no-capacity (exit 4) tells a script to wait or try another host; these never succeed here.
    gpus = parse_smi_csv(SMI)
    with pytest.raises(NoSuchGpu, match="no GPU 7") as unknown:
        allocate(GpuRequest("devices", devices=("7",)), gpus, {})
    assert unknown.value.kind == "not-found"
    with pytest.raises(MoreGpusThanHost, match="asked for 4 GPUs, and this host has 3") as too_many:
        allocate(GpuRequest("count", count=4), gpus, {})
    assert too_many.value.kind == "refused" and too_many.value.hint == "ask for at most gpus: 3"


def test_stopped_boxes_hold_nothing() -> None:
    boxes = [box("a", "0", "exited"), box("b", "1", "created"), box("c", "none")]
    assert set(holdings(boxes)) == {"1"}


def test_the_first_created_keeps_the_gpu_whoever_asks() -> None:
    early, late = box("early", "3", box_id="zz"), box("late", "3", box_id="aa")
    created = {"zz": 100, "aa": 200}
    assert losing_to(late, ("3",), [early], created) is early
    assert losing_to(early, ("3",), [late], created) is None
    tie = {"zz": 100, "aa": 100}  # same nanosecond: the smaller id keeps it
    assert losing_to(early, ("3",), [late], tie) is late
    assert losing_to(late, ("3",), [early], tie) is None


def test_declared_inventory_file(tmp_path: object) -> None:
    from pathlib import Path

    path = Path(str(tmp_path)) / "gpus.csv"
    path.write_text(SMI)
    assert [g.index for g in declared_inventory(str(path))] == ["0", "1", "2"]
    assert all(isinstance(g, Gpu) and g.declared for g in declared_inventory(str(path)))


def test_an_inventory_file_with_no_gpu_rows_is_an_error(tmp_path: Path) -> None:
    broken = tmp_path / "gpus.csv"
    broken.write_text("0, GPU-aaaa, A100\n")  # three columns: not nvidia-smi's six
    with pytest.raises(DevboxError) as caught:
        declared_inventory(str(broken))
    assert "lists no GPU" in caught.value.message
