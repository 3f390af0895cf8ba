"""PyTorch checkpoints (torch.save's zip archive) as teachers, end to end through the CLI: the same student,
byte for byte, as from the same teacher saved as safetensors; views, shared storages and every dtype; nested
state dicts (--teacher-key); sharded pytorch_model.bin folders; verify; a payload that never runs."""

from __future__ import annotations

import argparse
import json
import os
import pickle
import shutil
from pathlib import Path

import pytest
import torch
import transformers as tf
from conftest import run_cli, save, write_manifest
from safetensors import safe_open

LLAMA = dict(
    vocab_size=64,
    hidden_size=64,
    intermediate_size=96,
    num_hidden_layers=4,
    num_attention_heads=8,
    num_key_value_heads=4,
    tie_word_embeddings=False,
)
SETS = (
    "num_hidden_layers=2",
    "hidden_size=32",
    "intermediate_size=48",
    "num_attention_heads=4",
    "num_key_value_heads=2",
)
SET_ARGS = [arg for s in SETS for arg in ("--set", s)]


def tensor_bytes(path: Path) -> dict[str, tuple[str, tuple[int, ...], bytes]]:
    """Every tensor of a safetensors output: dtype, shape and exact bytes (the metadata aside)."""
    files = sorted(path.glob("*.safetensors")) if path.is_dir() else [path]
    found = {}
    for file in files:
        with safe_open(file, "pt") as f:
            for name in f.keys():  # noqa: SIM118 - safe_open is not a dict
                t = f.get_tensor(name)
                found[name] = (
                    str(t.dtype),
                    tuple(t.shape),
                    t.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes(),
                )
    return found


def init(teacher: Path, out: Path, *args: str | Path) -> None:
    result = run_cli("init", "--teacher", teacher, "-o", out, "--quiet", *args)
    assert result.exit_code == 0, result.stderr


@pytest.fixture(scope="module")
def llama(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """One random Llama, as a safetensors folder and as a pytorch_model.bin folder (same config.json)."""
    root = tmp_path_factory.mktemp("llama")
    torch.manual_seed(0)
    model = tf.LlamaForCausalLM(tf.LlamaConfig(**LLAMA))
    st, pt = root / "st", root / "pt"
    model.save_pretrained(st)
    pt.mkdir()
    shutil.copy(st / "config.json", pt / "config.json")
    torch.save(model.state_dict(), pt / "pytorch_model.bin")
    return st, pt


def test_a_bin_folder_gives_the_student_of_its_safetensors_twin(tmp_path: Path, llama: tuple[Path, Path]) -> None:
    st, pt = llama
    init(st, tmp_path / "from-st", *SET_ARGS)
    init(pt, tmp_path / "from-pt", *SET_ARGS)
    expected = tensor_bytes(tmp_path / "from-st")
    assert tensor_bytes(tmp_path / "from-pt") == expected and len(expected) == 2 + 2 * 9 + 1
    model, info = tf.LlamaForCausalLM.from_pretrained(tmp_path / "from-pt", output_loading_info=True)
    assert not any(info.values()), info
    result = run_cli("verify", "--teacher", pt, "--student", tmp_path / "from-pt")
    assert result.exit_code == 0, result.stderr


def test_a_sharded_bin_folder(tmp_path: Path, llama: tuple[Path, Path]) -> None:
    st, pt = llama
    state = torch.load(pt / "pytorch_model.bin", weights_only=True)
    names = sorted(state)
    folder = tmp_path / "sharded"
    folder.mkdir()
    shutil.copy(pt / "config.json", folder)
    weight_map = {}
    for i, part in enumerate((names[: len(names) // 2], names[len(names) // 2 :])):
        shard = f"pytorch_model-{i + 1:05d}-of-00002.bin"
        torch.save({n: state[n] for n in part}, folder / shard)
        weight_map.update(dict.fromkeys(part, shard))
    (folder / "pytorch_model.bin.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    init(st, tmp_path / "from-st", *SET_ARGS)
    init(folder, tmp_path / "from-shards", *SET_ARGS)
    assert tensor_bytes(tmp_path / "from-shards") == tensor_bytes(tmp_path / "from-st")


# Tensors as state dicts hold them: views into one storage, transposed, windowed, channels-last, tied.
def _awkward_state() -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    qkv = torch.randn(24, 8, generator=gen)
    w = torch.randn(6, 10, generator=gen)
    conv = torch.randn(8, 4, 3, 3, generator=gen).contiguous(memory_format=torch.channels_last)
    tied = torch.randn(12, 8, generator=gen)
    return {
        "q.weight": qkv[0:8],  # views of one storage, at offsets
        "k.weight": qkv[8:16],
        "v.weight": qkv[16:24],
        "t.weight": w.t(),  # [10, 6], strides (1, 10)
        "window.weight": w[:, 2:9],  # [6, 7], strides (10, 1), offset 2
        "conv.weight": conv,  # [8, 4, 3, 3] stored as [8, 3, 3, 4]
        "embed.weight": tied,
        "head.weight": tied,  # the same tensor twice
        "scalar": torch.tensor(3.5),
    }


AWKWARD_STUDENT = {
    "q.weight": (4, 4),
    "k.weight": (4, 8),
    "v.weight": (8, 4),
    "t.weight": (5, 3),
    "window.weight": (3, 4),
    "conv.weight": (4, 2, 3, 3),
    "embed.weight": (6, 4),
    "head.weight": (6, 4),
    "scalar": (),
}


def test_views_and_shared_storages_read_as_their_values(tmp_path: Path) -> None:
    state = _awkward_state()
    torch.save(state, tmp_path / "teacher.pt")
    save(tmp_path / "teacher.safetensors", {k: v.clone() for k, v in state.items()})
    student = write_manifest(tmp_path / "student.json", AWKWARD_STUDENT)
    init(tmp_path / "teacher.safetensors", tmp_path / "a.safetensors", "--student-config", student)
    init(tmp_path / "teacher.pt", tmp_path / "b.safetensors", "--student-config", student)
    expected = tensor_bytes(tmp_path / "a.safetensors")
    assert tensor_bytes(tmp_path / "b.safetensors") == expected
    assert expected["t.weight"][1] == (5, 3)
    result = run_cli("verify", "--teacher", tmp_path / "teacher.pt", "--student", tmp_path / "b.safetensors")
    assert result.exit_code == 0, result.stderr


DTYPES = [
    torch.float64,
    torch.float32,
    torch.float16,
    torch.bfloat16,
    torch.int64,
    torch.int32,
    torch.int16,
    torch.int8,
    torch.uint8,
    torch.bool,
    torch.float8_e4m3fn,
    torch.float8_e5m2,
]


def test_every_dtype_gives_the_same_bytes(tmp_path: Path) -> None:
    gen = torch.Generator().manual_seed(2)
    base = torch.randn(6, 10, generator=gen) * 8
    state = {f"t{i}": base.to(dtype) for i, dtype in enumerate(DTYPES)}
    state |= {f"t{i}.view": base.to(dtype).t() for i, dtype in enumerate(DTYPES)}  # strided, each dtype
    torch.save(state, tmp_path / "teacher.pth")
    save(tmp_path / "teacher.safetensors", {k: v.clone() for k, v in state.items()})
    # floats are subsampled; integer and bool tensors (ids, flags) only ever copied whole
    student = write_manifest(
        tmp_path / "student.json",
        {k: tuple(s // 2 for s in v.shape) if v.is_floating_point() else tuple(v.shape) for k, v in state.items()},
    )
    init(tmp_path / "teacher.safetensors", tmp_path / "a.safetensors", "--student-config", student)
    init(tmp_path / "teacher.pth", tmp_path / "b.safetensors", "--student-config", student)
    expected = tensor_bytes(tmp_path / "a.safetensors")
    assert tensor_bytes(tmp_path / "b.safetensors") == expected
    assert {v[0] for v in expected.values()} == {str(d) for d in DTYPES}


def _training_checkpoint(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """As timm's and the paper's training scripts save: the weights under "model", an EMA copy, and the rest."""
    gen = torch.Generator().manual_seed(3)
    model = {"layers.0.w": torch.randn(8, 8, generator=gen), "layers.1.w": torch.randn(8, 8, generator=gen)}
    ema = {k: v * 0.5 for k, v in model.items()}
    torch.save(
        {"model": model, "model_ema": ema, "epoch": 3, "args": argparse.Namespace(lr=0.1), "optimizer": {}}, path
    )
    return model, ema


def test_a_nested_checkpoint_needs_its_key_and_verify_remembers_it(tmp_path: Path) -> None:
    model, ema = _training_checkpoint(tmp_path / "checkpoint.pth")
    save(tmp_path / "ema.safetensors", ema)
    student = write_manifest(tmp_path / "student.json", {"layers.0.w": (4, 4)})
    teacher = tmp_path / "checkpoint.pth"
    result = run_cli("init", "-t", teacher, "--student-config", student, "-o", tmp_path / "x.safetensors")
    assert result.exit_code == 1
    assert result.stderr == (
        f'wsel: error: {teacher}: holds several state dicts ("model", "model_ema"); '
        "choose one with --teacher-key NAME\n"
    )
    assert not (tmp_path / "x.safetensors").exists()

    out = tmp_path / "student.safetensors"
    init(teacher, out, "--student-config", student, "--teacher-key", "model_ema")
    init(tmp_path / "ema.safetensors", tmp_path / "twin.safetensors", "--student-config", student)
    assert tensor_bytes(out) == tensor_bytes(tmp_path / "twin.safetensors")
    ok = run_cli("verify", "-t", teacher, "--teacher-key", "model_ema", "-s", out, "--json")
    assert ok.exit_code == 0 and json.loads(ok.stdout)["ok"] is True
    wrong = run_cli("verify", "-t", teacher, "--teacher-key", "model", "-s", out, "--json")
    assert wrong.exit_code == 1
    assert json.loads(wrong.stdout)["mismatches"][0] == (
        "the student was made from the teacher's state dict 'model_ema', not 'model'; pass --teacher-key model_ema"
    )

    shown = run_cli("inspect", "-t", teacher, "--teacher-key", "model_ema", "--json")
    assert json.loads(shown.stdout)["teacher"] | {"path": None} == {
        "path": None,
        "files": ["checkpoint.pth"],
        "tensors": 2,
        "parameters": 128,
        "bytes": 512,
        "layer_groups": [{"group": "layers", "layers": 2}],
        "format": "pytorch",
        "key": "model_ema",
    }


def test_inspect_names_the_format(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "1000")
    _training_checkpoint(tmp_path / "checkpoint.pth")
    result = run_cli("inspect", "-t", tmp_path / "checkpoint.pth", "--teacher-key", "model")
    assert result.exit_code == 0, result.stderr
    assert "format: PyTorch checkpoint, state dict 'model', read without running its pickle\n" in result.stderr


def test_teacher_key_on_safetensors_is_refused(tmp_path: Path, tiny_teacher: Path) -> None:
    result = run_cli("inspect", "-t", tiny_teacher, "--teacher-key", "model")
    assert result.exit_code == 1
    assert result.stderr == (
        f"wsel: error: {tiny_teacher}: --teacher-key model applies to PyTorch checkpoints, not to this safetensors "
        "file; leave it out\n"
    )


class _Payload:
    """Unpickling this runs os.system: the canary file appears if anything ever unpickles it."""

    def __init__(self, canary: Path) -> None:
        self.canary = canary

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return os.system, (f"touch {self.canary}",)


def test_a_payload_in_a_torch_archive_never_runs(tmp_path: Path) -> None:
    canary = tmp_path / "canary"
    teacher = tmp_path / "model.pt"
    torch.save({"w": torch.zeros(4), "x": _Payload(canary)}, teacher, pickle_module=pickle)
    out = tmp_path / "out.safetensors"
    result = run_cli("init", "-t", teacher, "--student-config", write_manifest(tmp_path / "s.json", {"w": (2,)}),
                     "-o", out)  # fmt: skip
    assert result.exit_code == 1
    assert result.stderr.startswith(f"wsel: error: {teacher}: ") and "posix.system" in result.stderr
    assert result.stderr.count("\n") == 1
    assert not canary.exists() and not out.exists()
