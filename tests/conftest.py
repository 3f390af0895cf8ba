"""Shared test helpers: tiny checkpoints built in the test, and a CLI runner."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner, Result
from safetensors.torch import save_file

from wsel.cli import cli


def random_state(shapes: dict[str, Sequence[int]], seed: int = 0, dtype: torch.dtype = torch.float32) -> dict:
    """Random tensors of the given shapes (floating), deterministic per seed."""
    gen = torch.Generator().manual_seed(seed)
    return {name: torch.randn(*shape, generator=gen).to(dtype) for name, shape in shapes.items()}


def save(path: Path, tensors: dict[str, torch.Tensor]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path), metadata={"format": "pt"})
    return path


def save_sharded(folder: Path, tensors: dict[str, torch.Tensor], shards: int) -> Path:
    """A Hugging Face style sharded folder: model-0000i-of-0000N.safetensors + index."""
    folder.mkdir(parents=True, exist_ok=True)
    names = list(tensors)
    per = -(-len(names) // shards)
    weight_map = {}
    for i in range(shards):
        shard = f"model-{i + 1:05d}-of-{shards:05d}.safetensors"
        part = {n: tensors[n] for n in names[i * per : (i + 1) * per]}
        save(folder / shard, part)
        weight_map.update({n: shard for n in part})
    total = sum(t.numel() * t.element_size() for t in tensors.values())
    (folder / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map})
    )
    return folder


def write_manifest(path: Path, shapes: dict[str, Sequence[int]]) -> Path:
    path.write_text(json.dumps({k: list(v) for k, v in shapes.items()}))
    return path


def run_cli(*args: str | Path, input: str | None = None) -> Result:
    """Invoke `wsel` in-process; stdout and stderr are kept apart."""
    return CliRunner().invoke(cli, [str(a) for a in args], input=input, catch_exceptions=False)


@pytest.fixture
def tiny_teacher(tmp_path: Path) -> Path:
    """A 4-layer toy transformer-ish teacher as one file."""
    shapes = {"embed.weight": (50, 16), "head.weight": (10, 16), "norm.weight": (16,)}
    for i in range(4):
        shapes[f"layers.{i}.attn.weight"] = (48, 16)
        shapes[f"layers.{i}.mlp.weight"] = (64, 16)
    return save(tmp_path / "teacher.safetensors", random_state(shapes))
