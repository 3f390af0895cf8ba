"""A config.json student of a family without architecture data: the generic path, driven by config values."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from conftest import run_cli, save
from reference import uniform_element_selection
from safetensors.torch import load_file


def tinyformer(folder: Path) -> dict[str, torch.Tensor]:
    folder.mkdir()
    config = {"model_type": "tinyformer", "hidden_size": 24, "ffn_size": 40, "num_hidden_layers": 4, "vocab_size": 11}
    (folder / "config.json").write_text(json.dumps(config))
    gen = torch.Generator().manual_seed(0)
    tensors = {"tok.weight": torch.randn(11, 24, generator=gen), "final_norm.weight": torch.randn(24, generator=gen)}
    for i in range(4):
        tensors[f"blocks.{i}.ffn_in.weight"] = torch.randn(40, 24, generator=gen)
        tensors[f"blocks.{i}.ffn_out.weight"] = torch.randn(24, 40, generator=gen)
    save(folder / "model.safetensors", tensors)
    return tensors


def test_unknown_model_type_maps_dims_by_config_values(tmp_path: Path) -> None:
    tensors = tinyformer(tmp_path / "teacher")
    out = tmp_path / "student"
    result = run_cli("init", "-t", tmp_path / "teacher", "-o", out, "--json", "--set", "hidden_size=12",
                     "--set", "ffn_size=20", "--set", "num_hidden_layers=2")  # fmt: skip
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["path"] == "generic"
    assert report["warnings"][0] == (
        "no architecture data for model_type 'tinyformer': generic path, the paper's rule on every dim; "
        "dims mapped by config values: 24→12 (hidden_size), 40→20 (ffn_size)"
    )
    written = load_file(out / "model.safetensors")
    assert sorted(written) == sorted(
        ["tok.weight", "final_norm.weight"]
        + [f"blocks.{i}.{w}.weight" for i in range(2) for w in ("ffn_in", "ffn_out")]
    )
    for name, tensor in written.items():
        assert torch.equal(tensor, uniform_element_selection(tensors[name], tuple(tensor.shape))), name
    assert written["tok.weight"].shape == (11, 12)  # vocab_size unchanged: rows kept
    config = json.loads((out / "config.json").read_text())
    assert (config["hidden_size"], config["ffn_size"], config["num_hidden_layers"]) == (12, 20, 2)


def test_unknown_model_type_refuses_ambiguous_sizes(tmp_path: Path) -> None:
    tinyformer(tmp_path / "teacher")
    config = json.loads((tmp_path / "teacher" / "config.json").read_text())
    config["head_size"] = 24  # the same teacher value as hidden_size, set differently below
    (tmp_path / "teacher" / "config.json").write_text(json.dumps(config))
    result = run_cli("init", "-t", tmp_path / "teacher", "-o", tmp_path / "s", "--set", "hidden_size=12",
                     "--set", "head_size=8")  # fmt: skip
    assert result.exit_code == 1
    source = f"{tmp_path / 'teacher' / 'config.json'} with --set hidden_size=12 head_size=8"
    assert result.stderr == (
        f"wsel: error: {source}: hidden_size and head_size are both 24 in the teacher but differ in the student; "
        "without architecture data wsel cannot tell their dims apart: give a shape manifest\n"
    )
    assert not (tmp_path / "s").exists()
