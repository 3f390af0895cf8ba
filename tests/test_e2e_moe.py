"""Mixture-of-experts families end to end: Mixtral, OLMoE, Qwen2-MoE (with a shared expert) and Qwen3-MoE.

Tiny random teachers saved by transformers itself (one tensor per expert, as Hugging Face checkpoints store
them); students from `--set` with half the depth, half the width and half the experts, loaded back by
transformers with no missing or unexpected keys, run, and verified. A student keeping every expert but fewer
layers equals the cut teacher; a student with fewer experts has, element by element, the router rows and
the expert weights of the experts it keeps, in order, each kept expert with its layer's one `mlp[i]` set.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
import torch
import transformers as tf
from conftest import init_report, kept_indices, load_clean, run_cli, set_args
from safetensors.torch import load_file

from wsel.layers import compact_ranges

VOCAB = 64
ATTENTION = dict(vocab_size=VOCAB, hidden_size=64, num_hidden_layers=4, num_attention_heads=8, num_key_value_heads=4)
ATTENTION_STUDENT = dict(num_hidden_layers=2, hidden_size=32, num_attention_heads=4, num_key_value_heads=2)


@dataclass(frozen=True)
class MoeFamily:
    config_class: Any
    model_class: Any
    teacher: dict[str, Any]
    student: dict[str, Any]  # --set of a half-depth, half-width student with half the experts
    experts_key: str  # the config key of the expert count, as the teacher's config.json names it
    mlp_key: str  # the config key of each expert's width
    router: str  # the router's name in layer 0 ({layer}) and an expert's tensors ({expert}, {proj})
    expert: str
    projections: tuple[str, str, str]  # gate, up, down
    shared: bool = False  # Qwen2-MoE: an always-on shared expert and its one-row gate


FAMILIES = {
    "mixtral": MoeFamily(
        tf.MixtralConfig,
        tf.MixtralForCausalLM,
        dict(ATTENTION, intermediate_size=96, num_local_experts=4, num_experts_per_tok=2),
        dict(ATTENTION_STUDENT, intermediate_size=48, num_local_experts=2),
        "num_local_experts",
        "intermediate_size",
        "model.layers.{layer}.block_sparse_moe.gate.weight",
        "model.layers.{layer}.block_sparse_moe.experts.{expert}.{proj}.weight",
        ("w1", "w3", "w2"),
    ),
    "olmoe": MoeFamily(
        tf.OlmoeConfig,
        tf.OlmoeForCausalLM,
        dict(
            ATTENTION,
            intermediate_size=96,
            num_experts=4,
            num_experts_per_tok=2,
            pad_token_id=1,
            bos_token_id=0,
            eos_token_id=2,
        ),  # fmt: skip
        dict(ATTENTION_STUDENT, intermediate_size=48, num_experts=2),
        "num_experts",
        "intermediate_size",
        "model.layers.{layer}.mlp.gate.weight",
        "model.layers.{layer}.mlp.experts.{expert}.{proj}.weight",
        ("gate_proj", "up_proj", "down_proj"),
    ),
    "qwen2_moe": MoeFamily(
        tf.Qwen2MoeConfig,
        tf.Qwen2MoeForCausalLM,
        dict(
            ATTENTION,
            intermediate_size=96,
            moe_intermediate_size=32,
            shared_expert_intermediate_size=48,
            num_experts=4,
            num_experts_per_tok=2,
        ),  # fmt: skip
        dict(ATTENTION_STUDENT, moe_intermediate_size=16, shared_expert_intermediate_size=24, num_experts=2),
        "num_experts",
        "moe_intermediate_size",
        "model.layers.{layer}.mlp.gate.weight",
        "model.layers.{layer}.mlp.experts.{expert}.{proj}.weight",
        ("gate_proj", "up_proj", "down_proj"),
        shared=True,
    ),
    "qwen3_moe": MoeFamily(
        tf.Qwen3MoeConfig,
        tf.Qwen3MoeForCausalLM,
        dict(
            ATTENTION, head_dim=16, intermediate_size=96, moe_intermediate_size=32, num_experts=4, num_experts_per_tok=2
        ),  # fmt: skip
        dict(ATTENTION_STUDENT, moe_intermediate_size=16, num_local_experts=2),
        "num_local_experts",  # transformers 5 writes Qwen3-MoE's num_experts under this name
        "moe_intermediate_size",
        "model.layers.{layer}.mlp.gate.weight",
        "model.layers.{layer}.mlp.experts.{expert}.{proj}.weight",
        ("gate_proj", "up_proj", "down_proj"),
    ),
}
STRATEGIES = ("uniform", "first", "random", "magnitude")


def build_teacher(folder: Path, family: MoeFamily) -> torch.nn.Module:
    torch.manual_seed(0)
    model = family.model_class(family.config_class(**family.teacher)).eval()
    model.save_pretrained(folder)
    return model


def input_ids() -> torch.Tensor:
    return torch.randint(0, VOCAB, (2, 5), generator=torch.Generator().manual_seed(1))


@pytest.fixture(scope="module")
def teachers(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folders = {}
    for name, family in FAMILIES.items():
        folders[name] = tmp_path_factory.mktemp(name) / "teacher"
        build_teacher(folders[name], family)
    return folders


# ------------------------------------------------------------- 1. every family, every element strategy


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("name", list(FAMILIES))
def test_moe_student_loads_runs_and_verifies(tmp_path: Path, teachers: dict[str, Path], name: str, strategy: str):
    family, teacher_dir, out = FAMILIES[name], teachers[name], tmp_path / "student"
    report = init_report(teacher_dir, out, *set_args(family.student), "--elements", strategy)
    assert report["path"] == name
    model = load_clean(family.model_class, out)
    with torch.no_grad():
        logits = model(input_ids=input_ids()).logits
    assert tuple(logits.shape) == (2, 5, VOCAB)
    assert torch.isfinite(logits).all()
    written = json.loads((out / "config.json").read_text())
    for key, value in family.student.items():
        assert written[key] == value, key
    assert getattr(model.config, family.experts_key) == 2
    verified = run_cli("verify", "--teacher", teacher_dir, "--student", out, "--json")
    assert verified.exit_code == 0, verified.stdout + verified.stderr
    assert json.loads(verified.stdout)["ok"] is True

    # each student layer keeps 2 of the teacher's 4 experts, shown like a layer map
    kept = [kept_indices(report["axes"][f"experts[{layer}]"]).tolist() for layer in (0, 1)]
    if strategy == "uniform":
        assert kept == [[0, 2], [0, 2]]
        assert report["expert_maps"] == [
            {"layers": "0-1", "teacher_experts": 4, "kept": [0, 2], "summary": "0,2 of 4", "picture": "■□■□"}
        ]
    elif strategy == "first":
        assert kept == [[0, 1], [0, 1]]
    for m in report["expert_maps"]:
        assert len(m["kept"]) == 2 and m["teacher_experts"] == 4


def test_random_experts_repeat_with_the_seed_and_are_chosen_per_layer(tmp_path: Path, teachers: dict[str, Path]):
    family = FAMILIES["mixtral"]
    args = [*set_args(family.student), "--elements", "random", "--seed", "3"]
    first = init_report(teachers["mixtral"], tmp_path / "a", *args)
    again = init_report(teachers["mixtral"], tmp_path / "b", *args)
    assert first["axes"]["experts[0]"] == again["axes"]["experts[0]"]
    assert first["expert_maps"] == again["expert_maps"]
    assert (tmp_path / "a" / "model.safetensors").read_bytes() == (tmp_path / "b" / "model.safetensors").read_bytes()


def test_the_report_shows_each_layer_groups_kept_experts(tmp_path: Path, teachers: dict[str, Path]) -> None:
    family = FAMILIES["olmoe"]
    result = run_cli("inspect", "-t", teachers["olmoe"], *set_args(family.student), "--report", tmp_path / "r.md")
    assert result.exit_code == 0, result.stderr
    assert "experts of layers 0-1: ■□■□  0,2 of 4" in result.stderr
    assert "- experts of layers 0-1: 0,2 of 4" in (tmp_path / "r.md").read_text()


# -------------------------------------------------- 2. all experts, fewer layers: the cut teacher exactly


@pytest.mark.parametrize("name", list(FAMILIES))
def test_all_experts_fewer_layers_equals_the_cut_teacher(tmp_path: Path, name: str) -> None:
    family = FAMILIES[name]
    teacher_dir, out = tmp_path / "teacher", tmp_path / "student"
    teacher = build_teacher(teacher_dir, family)
    report = init_report(teacher_dir, out, "--set", "num_hidden_layers=2")
    assert report["expert_maps"] == [
        {"layers": "0-1", "teacher_experts": 4, "kept": [0, 1, 2, 3], "summary": "0-3 of 4", "picture": "■■■■"}
    ]
    student = load_clean(family.model_class, out)
    teacher.model.layers = teacher.model.layers[:2]
    teacher.config.num_hidden_layers = 2
    if getattr(teacher.config, "layer_types", None):
        teacher.config.layer_types = teacher.config.layer_types[:2]
    with torch.no_grad():
        expected = teacher(input_ids=input_ids(), use_cache=False).logits
        actual = student(input_ids=input_ids(), use_cache=False).logits
    torch.testing.assert_close(actual, expected, atol=0, rtol=0)
    t_state, s_state = load_file(teacher_dir / "model.safetensors"), load_file(out / "model.safetensors")
    assert set(s_state) == {k for k in t_state if ".layers.2." not in k and ".layers.3." not in k}
    for key, value in s_state.items():
        assert torch.equal(value, t_state[key]), key


# ------------------------------------------- 3. fewer experts: the router rows are the kept experts' rows


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("name", list(FAMILIES))
def test_fewer_experts_route_only_to_the_kept_experts(
    tmp_path: Path, teachers: dict[str, Path], name: str, strategy: str
) -> None:
    """Student router row j is the teacher's row of kept expert j (over the kept hidden dims), so each token
    is routed among the kept experts only, by the teacher's own scores for them; student expert j is the
    teacher's expert kept[j], every expert of a layer cut by the layer's one `mlp[i]` selection."""
    family, teacher_dir, out = FAMILIES[name], teachers[name], tmp_path / "student"
    report = init_report(teacher_dir, out, *set_args(family.student), "--elements", strategy)
    axes = report["axes"]
    teacher, student = load_file(teacher_dir / "model.safetensors"), load_file(out / "model.safetensors")
    hidden = kept_indices(axes["hidden"])
    gate, up, down = family.projections
    for layer in (0, 1):  # first-N layers: student layer i is teacher layer i
        kept = kept_indices(axes[f"experts[{layer}]"])
        assert len(kept) == 2 and kept.tolist() == sorted(kept.tolist())
        mlp = kept_indices(axes[f"mlp[{layer}]"])
        router = family.router.format(layer=layer)
        t_router, s_router = teacher[router], student[router]  # [experts, hidden]
        assert s_router.shape == (2, 32)
        for j, e in enumerate(kept.tolist()):
            for k, h in enumerate(hidden.tolist()):
                assert s_router[j, k] == t_router[e, h], (layer, j, k)
        for j, e in enumerate(kept.tolist()):
            s_name = family.expert.format(layer=layer, expert=j, proj="{}")
            t_name = family.expert.format(layer=layer, expert=e, proj="{}")
            for proj in (gate, up):
                assert torch.equal(student[s_name.format(proj)], teacher[t_name.format(proj)][mlp][:, hidden])
            assert torch.equal(student[s_name.format(down)], teacher[t_name.format(down)][hidden][:, mlp])
        assert family.expert.format(layer=layer, expert=2, proj=gate) not in student
        if family.shared:
            shared = kept_indices(axes[f"shared_mlp[{layer}]"])
            p = f"model.layers.{layer}.mlp."
            for proj in ("gate_proj", "up_proj"):
                t_weight = teacher[f"{p}shared_expert.{proj}.weight"]
                assert torch.equal(student[f"{p}shared_expert.{proj}.weight"], t_weight[shared][:, hidden])
            t_down = teacher[p + "shared_expert.down_proj.weight"]
            assert torch.equal(student[p + "shared_expert.down_proj.weight"], t_down[hidden][:, shared])
            t_gate = teacher[p + "shared_expert_gate.weight"]  # [1, hidden]: the shared expert's one-row gate
            assert torch.equal(student[p + "shared_expert_gate.weight"], t_gate[:, hidden])

    # and in transformers: the student's router, given the teacher's hidden states restricted to the kept
    # dims, scores exactly the kept experts as the teacher's router does
    model = load_clean(family.model_class, out)
    x = torch.randn(7, 32, generator=torch.Generator().manual_seed(2))
    router_weight = model.model.layers[0].mlp.gate.weight  # transformers 5 names every family's block `mlp`
    t_router = teacher[family.router.format(layer=0)]
    kept = kept_indices(axes["experts[0]"])
    assert torch.equal(router_weight.detach(), t_router[kept][:, hidden])
    s_logits, t_logits = x @ router_weight.T, x @ t_router[:, hidden].T  # [tokens, 2], [tokens, 4]
    torch.testing.assert_close(s_logits, t_logits[:, kept])  # equal up to the matmul's rounding
    top = kept[s_logits.topk(2).indices]  # each token's experts, as teacher expert ids
    assert set(top.flatten().tolist()) <= set(kept.tolist())


# ------------------------------------------------------------- 3b. dense layers beside experts (Qwen-MoE)

# Qwen2-MoE with every other layer dense (decoder_sparse_step 2: layers 0 and 2), Qwen3-MoE with layer 1 dense
DENSE = {"qwen2_moe": ({"decoder_sparse_step": 2}, [0, 2]), "qwen3_moe": ({"mlp_only_layers": [1]}, [1])}


def dense_teacher(folder: Path, name: str) -> tuple[MoeFamily, torch.nn.Module]:
    family = FAMILIES[name]
    family = replace(family, teacher={**family.teacher, **DENSE[name][0]})
    model = build_teacher(folder, family)
    dense = [i for i, layer in enumerate(model.model.layers) if hasattr(layer.mlp, "gate_proj")]
    assert dense == DENSE[name][1]  # as transformers builds it
    return family, model


@pytest.mark.parametrize(
    ("name", "layers", "mlp_only_layers", "written"),
    [
        ("qwen2_moe", "first", [0], ([], 2)),  # teacher layers 0 (dense), 1: the teacher's config builds that
        ("qwen2_moe", "last", [0], ([], 2)),  # teacher layers 2 (dense), 3: so does it here
        ("qwen2_moe", "0,1,2", [0, 2], ([], 2)),
        ("qwen2_moe", "1,2", [1], ([1], 1)),  # teacher layers 1, 2 (dense): stated as a list
        ("qwen3_moe", "first", [1], ([1], 1)),  # teacher layers 0, 1 (dense)
        ("qwen3_moe", "last", [], ([], 1)),  # teacher layers 2, 3: no dense layer
    ],
)
def test_dense_layers_follow_the_layer_map(
    tmp_path: Path, name: str, layers: str, mlp_only_layers: list[int], written: tuple[list[int], int]
) -> None:
    """A student layer has a dense MLP exactly when the teacher layer it reads has one: the student's config is
    kept when it already builds those, else lists them in mlp_only_layers with decoder_sparse_step 1."""
    family, _ = dense_teacher(tmp_path / "teacher", name)
    out = tmp_path / "student"
    student = {**family.student, "num_hidden_layers": len(layers.split(",")) if "," in layers else 2}
    report = init_report(tmp_path / "teacher", out, *set_args(student), "--layers", layers)
    config = json.loads((out / "config.json").read_text())
    assert (config["mlp_only_layers"], config["decoder_sparse_step"]) == written
    model = load_clean(family.model_class, out)
    assert [i for i, layer in enumerate(model.model.layers) if hasattr(layer.mlp, "gate_proj")] == mlp_only_layers
    with torch.no_grad():
        assert torch.isfinite(model(input_ids=input_ids()).logits).all()
    sparse = [i for i in range(student["num_hidden_layers"]) if i not in mlp_only_layers]  # keeping experts
    assert [m["layers"] for m in report["expert_maps"]] == [compact_ranges(sparse)]
    verified = run_cli("verify", "--teacher", tmp_path / "teacher", "--student", out)
    assert verified.exit_code == 0, verified.stdout + verified.stderr


@pytest.mark.parametrize("name", list(DENSE))
def test_dense_layers_depth_only_student_equals_the_cut_teacher(tmp_path: Path, name: str) -> None:
    family, teacher = dense_teacher(tmp_path / "teacher", name)
    out = tmp_path / "student"
    init_report(tmp_path / "teacher", out, "--set", "num_hidden_layers=2")
    student = load_clean(family.model_class, out)
    teacher.model.layers = teacher.model.layers[:2]
    teacher.config.num_hidden_layers = 2
    with torch.no_grad():
        expected = teacher(input_ids=input_ids(), use_cache=False).logits
        actual = student(input_ids=input_ids(), use_cache=False).logits
    torch.testing.assert_close(actual, expected, atol=0, rtol=0)


def test_a_dense_layer_list_the_map_contradicts_is_refused(tmp_path: Path) -> None:
    family, _ = dense_teacher(tmp_path / "teacher", "qwen3_moe")
    out = tmp_path / "student"
    args = [*set_args({**family.student, "mlp_only_layers": [0]}), "--layers", "last"]
    result = run_cli("init", "-t", tmp_path / "teacher", "-o", out, *args)
    assert result.exit_code != 0
    assert (
        result.stderr.strip()
        .splitlines()[-1]
        .endswith(
            "student mlp_only_layers = [0], decoder_sparse_step = 1 gives layer 0 a dense MLP, but under this layer "
            "map the layers that read dense teacher layers are none; pass --set 'mlp_only_layers=[]'"
        )
    ), result.stderr
    assert not out.exists()


# ------------------------------------------------------------------------------------ 4. refusals


@pytest.mark.parametrize("name", list(FAMILIES))
def test_more_experts_per_token_than_experts_is_refused(tmp_path: Path, teachers: dict[str, Path], name: str) -> None:
    family, out = FAMILIES[name], tmp_path / "student"
    result = run_cli("init", "-t", teachers[name], "-o", out, "--set", f"{family.experts_key}=1")
    assert result.exit_code != 0
    line = result.stderr.strip().splitlines()[-1]
    assert line.endswith(
        f"student num_experts_per_tok = 2 is more than its {family.experts_key} = 1; "
        f"pass --set num_experts_per_tok=1 or less, or keep {family.experts_key} at 2 or more"
    ), line
    assert not out.exists()
    ok = run_cli("init", "-t", teachers[name], "-o", out, "-q", "--set", f"{family.experts_key}=1",
                 "--set", "num_experts_per_tok=1")  # fmt: skip
    assert ok.exit_code == 0, ok.stderr
    load_clean(family.model_class, out)


def test_more_experts_than_the_teacher_is_refused(tmp_path: Path, teachers: dict[str, Path]) -> None:
    result = run_cli("init", "-t", teachers["mixtral"], "-o", tmp_path / "s", "--set", "num_local_experts=8")
    assert result.exit_code != 0
    assert "student experts (num_local_experts) is 8 but the teacher's is 4" in result.stderr
    assert "pass --set num_local_experts=4 or less" in result.stderr


def test_a_per_expert_template_needs_layers_and_an_expert_count(tmp_path: Path) -> None:
    from importlib import resources

    from wsel.arch.families import load_family
    from wsel.errors import ArchDataError

    doc = json.loads((resources.files("wsel.arch") / "mixtral.json").read_text())
    del doc["sizes"]["experts"]
    del doc["tensors"]["{p}layers.{layer}.block_sparse_moe.gate.weight"]  # the router's dim names experts itself
    path = tmp_path / "x.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(ArchDataError, match=r"\{expert\} needs \{layer\} in the name and an experts entry in sizes"):
        load_family(path)


# ------------------------------------- 5. teachers stored fused, as transformers 5 holds experts in memory


def save_fused(teacher_dir: Path, family: MoeFamily, folder: Path) -> None:
    """The teacher's in-memory state dict as it is (`mlp.experts.gate_up_proj` [experts, gate|up, hidden],
    `mlp.experts.down_proj` [experts, hidden, mlp]), which transformers 5 also loads from a file."""
    from safetensors.torch import save_file

    model = family.model_class.from_pretrained(teacher_dir)
    folder.mkdir()
    (folder / "config.json").write_bytes((teacher_dir / "config.json").read_bytes())
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    assert any(k.endswith("mlp.experts.gate_up_proj") for k in state)
    save_file(state, folder / "model.safetensors", metadata={"format": "pt"})


@pytest.mark.parametrize("options", [(), ("--rescale",), ("--elements", "random"), ("--elements", "magnitude")])
@pytest.mark.parametrize("name", list(FAMILIES))
def test_a_fused_teacher_gives_the_same_student(
    tmp_path: Path, teachers: dict[str, Path], name: str, options: tuple[str, ...]
) -> None:
    """The same student, written fused: the router and both stacks keep the same experts, gate and up rows
    block by block with the layer's one `mlp[i]`, so transformers computes the same logits as from the
    per-expert student (and --rescale scales each expert's input dim, as per expert). Under magnitude both
    forms score every teacher expert: the same experts and the same `mlp[i]` are kept."""
    family = FAMILIES[name]
    fused_dir = tmp_path / "fused"
    save_fused(teachers[name], family, fused_dir)
    args = [*set_args(family.student), *options]
    per_expert = init_report(teachers[name], tmp_path / "a", *args)
    fused = init_report(fused_dir, tmp_path / "b", *args)
    assert fused["expert_maps"] == per_expert["expert_maps"]
    assert fused["axes"] == per_expert["axes"]
    gate_up = next(t for t in fused["tensors"] if t["name"] == "model.layers.0.mlp.experts.gate_up_proj")
    assert gate_up["shape"] == [2, 2 * family.student[family.mlp_key], 32]
    assert gate_up["dims"][0]["axis"] == "experts[0]"
    assert gate_up["dims"][1]["axis"] == "mlp[0] | mlp[0]"
    a, b = load_clean(family.model_class, tmp_path / "a"), load_clean(family.model_class, tmp_path / "b")
    with torch.no_grad():
        torch.testing.assert_close(b(input_ids=input_ids()).logits, a(input_ids=input_ids()).logits, atol=0, rtol=0)
    assert run_cli("verify", "--teacher", fused_dir, "--student", tmp_path / "b").exit_code == 0


def test_a_fused_teacher_under_magnitude_loads_and_verifies(tmp_path: Path, teachers: dict[str, Path]) -> None:
    family = FAMILIES["qwen2_moe"]
    fused_dir = tmp_path / "fused"
    save_fused(teachers["qwen2_moe"], family, fused_dir)
    report = init_report(fused_dir, tmp_path / "s", *set_args(family.student), "--elements", "magnitude")
    assert all(len(m["kept"]) == 2 for m in report["expert_maps"])
    with torch.no_grad():
        assert torch.isfinite(load_clean(family.model_class, tmp_path / "s")(input_ids=input_ids()).logits).all()
    assert run_cli("verify", "--teacher", fused_dir, "--student", tmp_path / "s").exit_code == 0


def test_magnitude_keeps_the_experts_with_the_largest_weights(tmp_path: Path, teachers: dict[str, Path]) -> None:
    """An expert's score is its router row plus all of its weights: experts 1 and 3 made 10x larger are the ones
    kept, in every layer; and each layer's `mlp[i]` is scored over every teacher expert."""
    from safetensors.torch import save_file

    teacher_dir = tmp_path / "teacher"
    teacher_dir.mkdir()
    (teacher_dir / "config.json").write_bytes((teachers["mixtral"] / "config.json").read_bytes())
    state = load_file(teachers["mixtral"] / "model.safetensors")
    for name in state:
        if ".experts.1." in name or ".experts.3." in name:
            state[name] = state[name] * 10
    save_file(state, teacher_dir / "model.safetensors", metadata={"format": "pt"})
    family = FAMILIES["mixtral"]
    report = init_report(teacher_dir, tmp_path / "s", *set_args(family.student), "--elements", "magnitude")
    assert report["expert_maps"] == [
        {"layers": "0-1", "teacher_experts": 4, "kept": [1, 3], "summary": "1,3 of 4", "picture": "□■□■"}
    ]
    load_clean(family.model_class, tmp_path / "s")


@pytest.mark.parametrize("name", list(FAMILIES))
def test_flat_attention_keeps_the_experts_axis(tmp_path: Path, teachers: dict[str, Path], name: str) -> None:
    """`--attention flat` selects dims by size, but the router's rows still follow the `experts[i]` axis that
    picks the per-expert tensors (by size, a random router would keep other rows than the experts kept)."""
    family, out = FAMILIES[name], tmp_path / "student"
    args = [*set_args(family.student), "--attention", "flat", "--elements", "random", "--seed", "5"]
    report = init_report(teachers[name], out, *args)
    teacher, student = load_file(teachers[name] / "model.safetensors"), load_file(out / "model.safetensors")
    entries = {t["name"]: t for t in report["tensors"]}
    for layer in (0, 1):
        kept = kept_indices(report["axes"][f"experts[{layer}]"])
        router = entries[family.router.format(layer=layer)]
        assert router["dims"][0]["axis"] == f"experts[{layer}]"
        hidden = kept_indices(router["dims"][1])
        t_router = teacher[family.router.format(layer=layer)]
        assert torch.equal(student[family.router.format(layer=layer)], t_router[kept][:, hidden])
        for j, e in enumerate(kept.tolist()):
            s_name = family.expert.format(layer=layer, expert=j, proj=family.projections[0])
            assert entries[s_name]["teacher"] == family.expert.format(layer=layer, expert=e, proj=family.projections[0])
    load_clean(family.model_class, out)
    assert run_cli("verify", "--teacher", teachers[name], "--student", out).exit_code == 0
