"""The load-everything baseline that users run today: load every teacher shard with safetensors (or, for a
PyTorch folder of `pytorch_model*.bin` shards, with `torch.load(weights_only=True, mmap=False)`), apply the
paper's `uniform_element_selection` to each student tensor, save with `save_file`.

    python benchmarks/baseline.py TEACHER_DIR TENSORS.json OUT.safetensors

TENSORS.json lists the student tensors as [{"name", "teacher", "shape"}] (the benchmark takes them
from wsel's plan, so both programs make the same student).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file


# Copied as published from the paper's code (Xu et al., "Initializing Models with Larger Ones", ICLR 2024),
# as in tests/reference.py.
def uniform_element_selection(wt: torch.Tensor, s_shape: tuple[int, ...] | torch.Size) -> torch.Tensor:
    assert wt.dim() == len(s_shape), "Tensors have different number of dimensions"
    ws = wt.clone()
    for dim in range(wt.dim()):
        assert wt.shape[dim] >= s_shape[dim], "Teacher's dimension should not be smaller than student's dimension"
        if wt.shape[dim] % s_shape[dim] == 0:
            step = wt.shape[dim] // s_shape[dim]
            indices = torch.arange(s_shape[dim]) * step
        else:
            indices = torch.round(torch.linspace(0, wt.shape[dim] - 1, s_shape[dim])).long()
        ws = torch.index_select(ws, dim, indices)
    assert ws.shape == s_shape
    return ws


def load_teacher(teacher_dir: Path) -> dict[str, torch.Tensor]:
    """Every tensor of the teacher's shards: its safetensors files or, if it has none, its .bin files."""
    teacher: dict[str, torch.Tensor] = {}
    shards = sorted(teacher_dir.glob("*.safetensors"))
    for shard in shards:
        teacher.update(load_file(shard))
    if not shards:
        for shard in sorted(teacher_dir.glob("pytorch_model*.bin")):
            teacher.update(torch.load(shard, map_location="cpu", weights_only=True, mmap=False))
    return teacher


def main(teacher_dir: str, tensors_json: str, output: str) -> None:
    teacher = load_teacher(Path(teacher_dir))
    student = {}
    for t in json.loads(Path(tensors_json).read_text()):
        student[t["name"]] = uniform_element_selection(teacher[t["teacher"]], torch.Size(t["shape"]))
    Path(output).parent.mkdir(parents=True, exist_ok=True)
    save_file(student, output, metadata={"format": "pt"})


if __name__ == "__main__":
    main(*sys.argv[1:])
