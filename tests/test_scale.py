"""Work grows linearly with the tensor and shard count: measured at two sizes, 4x apart.

No timed unit test decides speed here: each test times the same work at N and 4N in one process and bounds
the ratio (linear work gives 4 to 5, as Python's garbage collector walks a growing heap; a quadratic step 16),
plus one generous absolute ceiling on the 300,000-tensor header the README promises to inspect in seconds.
"""

from __future__ import annotations

import gc
import json
import os
import struct
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

import wsel
from wsel.checkpoint.index import open_checkpoint
from wsel.render import _rows, teacher_rows
from wsel.report import dumps

# Bounds that a quadratic step breaks by far and a loaded machine does not reach. Override on slow machines.
LINEAR_RATIO = float(os.environ.get("WSEL_LINEAR_RATIO", "8"))
INSPECT_300K_SECONDS = float(os.environ.get("WSEL_INSPECT_300K_SECONDS", "20"))  # measured ~4 s on 2 cores


def tiny_tensors(path: Path, n: int, prefix: str = "t") -> Path:
    """n one-byte U8 tensors `<prefix><i>.weight` in one file, written directly (seconds, not minutes)."""
    parts = [f'"{prefix}{i}.weight":{{"dtype":"U8","shape":[1],"data_offsets":[{i},{i + 1}]}}' for i in range(n)]
    header = ("{" + ",".join(parts) + "}").encode()
    path.write_bytes(struct.pack("<Q", len(header)) + header + bytes(n))
    return path


def sharded(folder: Path, shards: int, per_shard: int) -> Path:
    """`shards` files of `per_shard` tiny tensors each, and their index."""
    folder.mkdir()
    weight_map = {}
    for s in range(shards):
        name = f"model-{s:05d}.safetensors"
        tiny_tensors(folder / name, per_shard, prefix=f"s{s}.")
        weight_map.update({f"s{s}.{i}.weight": name for i in range(per_shard)})
    (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    return folder


def best_seconds(work: Callable[[], object], runs: int = 2) -> float:
    """The best of `runs` timings. What the test process already holds (the models and modules of the tests
    before, in one pytest run) is frozen out of the garbage collector's reach meanwhile: its full collections
    would otherwise walk that heap too, and the larger run, which triggers more of them, would look superlinear."""
    best = float("inf")
    gc.collect()
    gc.freeze()
    try:
        for _ in range(runs):
            start = time.perf_counter()
            work()
            best = min(best, time.perf_counter() - start)
    finally:
        gc.unfreeze()
    return best


def inspect_teacher(path: Path) -> None:
    report = wsel.teacher_report(open_checkpoint(path))
    dumps(report)
    teacher_rows(report["tensors"])


def inspect_template(teacher: Path, template: Path) -> None:
    report = wsel.plan_report(wsel.build_plan(teacher, template), None, "inspect")
    dumps(report)
    _rows(report)


def assert_linear(small: float, large: float, what: str) -> None:
    ratio = large / small
    print(f"\n{what}: {small:.2f} s, 4x the size {large:.2f} s (ratio {ratio:.1f})")
    assert ratio < LINEAR_RATIO, f"{what}: 4x the size took {ratio:.1f}x the time ({small:.2f} s → {large:.2f} s)"


def test_inspect_of_a_teacher_grows_linearly_with_its_tensors(tmp_path: Path) -> None:
    small, large = (
        tiny_tensors(tmp_path / "small.safetensors", 20_000),
        tiny_tensors(tmp_path / "large.safetensors", 80_000),
    )
    assert_linear(best_seconds(lambda: inspect_teacher(small)), best_seconds(lambda: inspect_teacher(large)),
                  "inspect (header, report, JSON, table rows)")  # fmt: skip


def test_planning_a_template_student_grows_linearly_with_its_tensors(tmp_path: Path) -> None:
    small, large = (
        tiny_tensors(tmp_path / "small.safetensors", 20_000),
        tiny_tensors(tmp_path / "large.safetensors", 80_000),
    )
    assert_linear(best_seconds(lambda: inspect_template(small, small)),
                  best_seconds(lambda: inspect_template(large, large)),
                  "plan of a template student (plan, report, JSON, table rows)")  # fmt: skip


def test_planning_grows_linearly_with_the_shard_count(tmp_path: Path) -> None:
    small, large = sharded(tmp_path / "small", 250, 40), sharded(tmp_path / "large", 1000, 40)
    template_small = tiny_tensors(tmp_path / "one-small.safetensors", 40, prefix="s0.")
    template_large = tiny_tensors(tmp_path / "one-large.safetensors", 40, prefix="s0.")

    def work(folder: Path, template: Path) -> None:
        inspect_teacher(folder)
        inspect_template(folder, template)

    assert_linear(best_seconds(lambda: work(small, template_small)), best_seconds(lambda: work(large, template_large)),
                  "open and plan a sharded teacher")  # fmt: skip


@pytest.mark.parametrize("as_json", [True, False], ids=["json", "table"])
def test_inspect_of_300k_tensors_takes_seconds(tmp_path: Path, as_json: bool) -> None:
    """The whole command, as a user runs it: a 24 MB header of 300,000 tensors (the terminal table stops at
    its row limit; --json lists all)."""
    teacher = tiny_tensors(tmp_path / "teacher.safetensors", 300_000)
    args = [sys.executable, "-m", "wsel", "inspect", "-t", str(teacher), *(["--json"] if as_json else [])]
    start = time.perf_counter()
    proc = subprocess.run(args, capture_output=True, text=True, timeout=10 * INSPECT_300K_SECONDS, check=False)
    seconds = time.perf_counter() - start
    print(f"\nwsel inspect of 300,000 tensors{' --json' if as_json else ''}: {seconds:.2f} s")
    assert proc.returncode == 0, proc.stderr[-2000:]
    if as_json:
        tensors = json.loads(proc.stdout)["tensors"]
        assert len(tensors) == 300_000
        assert [t["name"] for t in tensors[:3]] == ["t0.weight", "t1.weight", "t2.weight"]  # numeric order
        assert tensors[-1]["name"] == "t299999.weight"
    else:
        assert "... 299000 more rows: --json or --report FILE.md lists every one" in proc.stderr
        assert "300000 tensors, 300.0k parameters, 300.0 kB" in proc.stderr
    assert seconds < INSPECT_300K_SECONDS, f"took {seconds:.1f} s"
