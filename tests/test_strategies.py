"""Element and layer strategies: exact index sets, consistency per axis, determinism, rescaling."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import run_cli, save, write_manifest
from safetensors import safe_open
from safetensors.torch import load_file

from wsel.axes import DimLabel
from wsel.errors import PlanError
from wsel.layers import layer_indices
from wsel.options import parse_layer_strategy
from wsel.plan.importance import split_label
from wsel.strategies import ElementStrategy, top_indices


def test_first_and_uniform_index_sets() -> None:
    assert ElementStrategy("first").choose("hidden", 10, 4).indices().tolist() == [0, 1, 2, 3]
    assert ElementStrategy("uniform").choose("hidden", 10, 4).indices().tolist() == [0, 3, 6, 9]
    assert ElementStrategy("random").choose("hidden", 10, 10).is_identity  # nothing to choose


def test_random_is_seeded_per_axis() -> None:
    a = ElementStrategy("random", seed=1).choose("hidden", 100, 10).indices().tolist()
    assert a == ElementStrategy("random", seed=1).choose("hidden", 100, 10).indices().tolist()  # deterministic
    assert a != ElementStrategy("random", seed=2).choose("hidden", 100, 10).indices().tolist()  # seeds differ
    assert a != ElementStrategy("random", seed=1).choose("mlp[0]", 100, 10).indices().tolist()  # axes differ
    assert a == sorted(set(a)) and len(a) == 10 and all(0 <= i < 100 for i in a)
    # The exact set is part of the contract (same seed, same output, across versions of numpy's PCG64).
    assert ElementStrategy("random", seed=0).choose("hidden", 8, 3).indices().tolist() == _expected_random(
        0, "hidden", 8, 3
    )


def _expected_random(seed: int, axis: str, teacher: int, student: int) -> list[int]:
    import hashlib

    key = int.from_bytes(hashlib.sha256(axis.encode()).digest()[:8], "little")
    return sorted(np.random.default_rng([seed, key]).choice(teacher, size=student, replace=False).tolist())


def test_magnitude_takes_the_top_scores_ties_to_the_lower_index() -> None:
    scores = np.array([1.0, 5.0, 3.0, 5.0, 0.0, 3.0])
    assert top_indices(scores, 3).tolist() == [1, 2, 3]  # 5, 5, then the first 3
    strategy = ElementStrategy("magnitude", scores={"hidden": scores})
    assert strategy.choose("hidden", 6, 2).indices().tolist() == [1, 3]
    with pytest.raises(PlanError, match="no importance scores for axis mlp"):
        strategy.choose("mlp", 6, 2)


def test_split_label_marginalizes_blocks_and_products() -> None:
    # q|k rows of 2 heads x 2 dims, then 1 kv head x 2 dims: scores per row 0..5.
    values = np.arange(6, dtype=float)
    sizes = {"heads[0]": 2, "kv_heads[0]": 1, "head_dim": 2}
    parts = split_label(DimLabel.parse("heads[0]*head_dim | kv_heads[0]*head_dim"), values, sizes)
    assert [(axis, scores.tolist()) for axis, scores in parts] == [
        ("heads[0]", [0 + 1, 2 + 3]),
        ("head_dim", [0 + 2, 1 + 3]),
        ("kv_heads[0]", [4 + 5]),
        ("head_dim", [4, 5]),
    ]


@pytest.mark.parametrize(
    ("strategy", "teacher", "student", "kept"),
    [
        ("first", 12, 4, [0, 1, 2, 3]),
        ("last", 12, 4, [8, 9, 10, 11]),
        ("uniform", 12, 4, [0, 4, 7, 11]),  # round(linspace(0, 11, 4)) = 0, 3.67, 7.33, 11
        ("uniform", 6, 3, [0, 2, 5]),  # 2.5 rounds to even
        ("uniform", 12, 1, [0]),
        ("0,2,4,6", 12, 4, [0, 2, 4, 6]),
    ],
)
def test_layer_strategies(strategy: str, teacher: int, student: int, kept: list[int]) -> None:
    assert layer_indices(parse_layer_strategy(strategy), teacher, student, "model.layers") == kept


@pytest.mark.parametrize(
    ("strategy", "message"),
    [
        ("0,2", "--layers 0,2: 2 layers listed for 'model.layers' but the student has 4"),
        ("0,2,2,4", "--layers 0,2,2,4: layers of 'model.layers' must be increasing and below the teacher's 12"),
        ("0,2,4,12", "--layers 0,2,4,12: layers of 'model.layers' must be increasing and below the teacher's 12"),
        ("every", "--layers 'every': expected first, uniform, last or a list such as 0,2,4,6 (for 'model.layers')"),
    ],
)
def test_layer_list_errors(strategy: str, message: str) -> None:
    with pytest.raises(PlanError) as exc:
        layer_indices(parse_layer_strategy(strategy), 12, 4, "model.layers")
    assert str(exc.value) == message


# ------------------------------------------------------------------------------ through the CLI


def ids(rows: int, cols: int, scale: float = 1.0) -> torch.Tensor:
    """[rows, cols] with value row * 1000 + col: every element names its own position."""
    return (torch.arange(rows)[:, None] * 1000 + torch.arange(cols)[None, :]).float() * scale


def toy(tmp_path: Path, layers: int = 4) -> tuple[Path, dict[str, torch.Tensor], Path]:
    """A generic 64-wide teacher and a 32-wide student manifest with half the layers."""
    tensors = {"embed.weight": ids(10, 64), "norm.weight": torch.arange(64).float()}
    for i in range(layers):
        tensors[f"layers.{i}.up.weight"] = ids(96, 64)
        tensors[f"layers.{i}.down.weight"] = ids(64, 96)
    teacher = save(tmp_path / "teacher.safetensors", tensors)
    shapes = {"embed.weight": (10, 32), "norm.weight": (32,)}
    for i in range(layers // 2):
        shapes[f"layers.{i}.up.weight"] = (48, 32)
        shapes[f"layers.{i}.down.weight"] = (32, 48)
    return teacher, tensors, write_manifest(tmp_path / "student.json", shapes)


def init(teacher: Path, student: Path, out: Path, *args: str) -> dict[str, torch.Tensor]:
    result = run_cli("init", "-t", teacher, "-s", student, "-o", out, "-q", *args)
    assert result.exit_code == 0, result.stderr
    return load_file(out)


def kept_columns(t: torch.Tensor) -> list[int]:
    return (t[0] % 1000).long().tolist()


def kept_rows(t: torch.Tensor) -> list[int]:
    return (t[:, 0] // 1000).long().tolist()


@pytest.mark.parametrize("elements", ["random", "first", "uniform"])
def test_every_tensor_of_an_axis_shares_one_index_set(tmp_path: Path, elements: str) -> None:
    teacher, _, student = toy(tmp_path)
    out = init(teacher, student, tmp_path / "s.safetensors", "--elements", elements, "--seed", "7")
    hidden = kept_columns(out["embed.weight"])
    assert out["norm.weight"].long().tolist() == hidden
    for i in range(2):
        assert kept_columns(out[f"layers.{i}.up.weight"]) == hidden  # hidden read
        assert kept_rows(out[f"layers.{i}.down.weight"]) == hidden  # hidden written
        assert kept_rows(out[f"layers.{i}.up.weight"]) == kept_columns(out[f"layers.{i}.down.weight"])  # mlp
    expected = ElementStrategy(elements, seed=7).choose("64→32", 64, 32).indices().tolist()
    assert hidden == expected


def test_random_seeds_repeat_and_differ(tmp_path: Path) -> None:
    teacher, _, student = toy(tmp_path)
    a = (tmp_path / "a.safetensors", tmp_path / "b.safetensors", tmp_path / "c.safetensors")
    init(teacher, student, a[0], "--elements", "random", "--seed", "3")
    init(teacher, student, a[1], "--elements", "random", "--seed", "3")
    init(teacher, student, a[2], "--elements", "random", "--seed", "4")
    assert a[0].read_bytes() == a[1].read_bytes()
    assert load_file(a[0])["norm.weight"].tolist() != load_file(a[2])["norm.weight"].tolist()


def test_magnitude_keeps_the_heaviest_indices_consistently(tmp_path: Path) -> None:
    # Hidden indices 3, 10, 20, ... are made heavy in every tensor that carries hidden; MLP neuron j
    # of layer i is heavy when j % 3 == i. Magnitude must find exactly those, the same everywhere.
    rng = np.random.default_rng(0)
    heavy = sorted(rng.choice(64, size=32, replace=False).tolist())
    weight = torch.ones(64)
    weight[heavy] = 10.0
    tensors = {"embed.weight": torch.ones(10, 64) * weight, "norm.weight": weight.clone()}
    for i in range(2):
        neurons = torch.ones(96)
        neurons[torch.arange(96) % 2 == i] = 10.0
        tensors[f"layers.{i}.up.weight"] = neurons[:, None] * weight[None, :]
        tensors[f"layers.{i}.down.weight"] = weight[:, None] * neurons[None, :]
    teacher = save(tmp_path / "teacher.safetensors", tensors)
    shapes = {"embed.weight": (10, 32), "norm.weight": (32,)}
    for i in range(2):
        shapes[f"layers.{i}.up.weight"] = (48, 32)
        shapes[f"layers.{i}.down.weight"] = (32, 48)
    student = write_manifest(tmp_path / "s.json", shapes)
    result = run_cli("init", "-t", teacher, "-s", student, "-o", tmp_path / "out.safetensors", "--elements",
                     "magnitude", "--json", "-q")  # fmt: skip
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["axes"]["64→32"]["indices"] == heavy
    # The generic path knows the MLP axis by size only (96→48): one set for both layers, by summed
    # importance; every neuron has the same total there, so ties keep the lowest indices.
    assert report["axes"]["96→48"] == {"rule": "stride", "teacher": 96, "student": 48, "start": 0, "step": 1}
    out = load_file(tmp_path / "out.safetensors")
    assert torch.equal(out["norm.weight"], torch.full((32,), 10.0))
    assert torch.equal(out["embed.weight"], torch.full((10, 32), 10.0))


def test_magnitude_scores_do_not_depend_on_the_block_size(tmp_path: Path) -> None:
    import wsel
    from wsel.plan.importance import compute_scores

    teacher, _, student = toy(tmp_path)
    plan = wsel.build_plan(teacher, student)
    big, small = compute_scores(plan), compute_scores(plan, block_bytes=256)  # 1 row per read for wide rows
    assert big.keys() == small.keys() == {"64→32", "96→48"}
    for axis in big:
        np.testing.assert_allclose(big[axis], small[axis], rtol=1e-12)


def test_layer_maps_through_the_cli(tmp_path: Path) -> None:
    teacher, tensors, student = toy(tmp_path, layers=6)  # student: 3 layers of 6
    for layers, kept in (("first", [0, 1, 2]), ("last", [3, 4, 5]), ("uniform", [0, 2, 5]), ("1,3,4", [1, 3, 4])):
        out_path = tmp_path / f"{layers}.safetensors"
        result = run_cli("init", "-t", teacher, "-s", student, "-o", out_path, "--layers", layers, "--json")
        assert result.exit_code == 0, result.stderr
        report = json.loads(result.stdout)
        assert report["layer_maps"][0]["map"] == [[i, t] for i, t in enumerate(kept)]
        assert report["layer_maps"][0]["picture"] == "".join("■" if i in kept else "□" for i in range(6))
        with safe_open(str(out_path), "pt") as f:
            assert json.loads(f.metadata()["wsel.layer_map"]) == {"layers": kept}
        assert {t["name"]: t["teacher"] for t in report["tensors"]}[
            "layers.2.up.weight"
        ] == f"layers.{kept[2]}.up.weight"


def test_layer_lists_per_stage(tmp_path: Path) -> None:
    # Two stages of 4 blocks; the student keeps blocks 1,3 of stage 0 and 0,1,2 of stage 1.
    tensors = {f"stages.{s}.blocks.{b}.w": torch.full((2,), float(10 * s + b)) for s in range(2) for b in range(4)}
    teacher = save(tmp_path / "teacher.safetensors", tensors)
    shapes = {f"stages.0.blocks.{b}.w": (2,) for b in range(2)} | {f"stages.1.blocks.{b}.w": (2,) for b in range(3)}
    student = write_manifest(tmp_path / "s.json", shapes)
    out = init(teacher, student, tmp_path / "out.safetensors", "--layers", "1,3;0,1,2")
    assert {k: int(v[0]) for k, v in out.items()} == {
        "stages.0.blocks.0.w": 1, "stages.0.blocks.1.w": 3,
        "stages.1.blocks.0.w": 10, "stages.1.blocks.1.w": 11, "stages.1.blocks.2.w": 12,
    }  # fmt: skip
    result = run_cli("init", "-t", teacher, "-s", student, "-o", tmp_path / "x.safetensors", "--layers", "1,3")
    assert result.exit_code == 1
    assert result.stderr == "wsel: error: --layers 1,3: 2 layers listed for 'stages.1.blocks' but the student has 3\n"


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_rescale_multiplies_by_sqrt_of_the_input_shrink(tmp_path: Path, dtype: torch.dtype) -> None:
    # up.weight [96, 64] → [48, 32]: its input dim (1) shrank 64 → 32, so × sqrt(2);
    # down.weight [64, 96] → [32, 48]: input 96 → 48, × sqrt(2); embed and norm: never rescaled.
    teacher, tensors, student = toy(tmp_path)
    teacher = save(tmp_path / "t16.safetensors", {k: v.to(dtype) for k, v in tensors.items()})
    plain = init(teacher, student, tmp_path / "a.safetensors")
    scaled = init(teacher, student, tmp_path / "b.safetensors", "--rescale")
    factor = math.sqrt(64 / 32)
    for name in plain:
        if name.endswith(("up.weight", "down.weight")):
            expected = (plain[name].float() * factor).to(dtype)  # documented: float32 product, rounded to dtype
            assert torch.equal(scaled[name], expected), name
        else:
            assert torch.equal(scaled[name], plain[name]), name
