"""Multi-head latent attention end to end: DeepSeek-V2 (queries without a latent, as V2-Lite) and DeepSeek-V3.

Tiny random teachers saved by transformers itself (a dense first layer, then experts routed in groups beside
shared experts); students from `--set` with half the depth, half the width, half the latent ranks, half of each
head's no-RoPE, RoPE and value dims and half the experts, loaded back by transformers with no missing or
unexpected keys, run, and verified. The indices are checked against ones computed here: whole heads, each
head's no-RoPE and RoPE dims kept apart, RoPE pairs (interleaved, or halves) with the teacher's frequencies,
experts inside their routing groups, and the dense first layers following the layer map.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
import transformers as tf
from conftest import init_report, kept_indices, load_clean, run_cli, set_args
from safetensors.torch import load_file

VOCAB = 64
ATTENTION = dict(
    vocab_size=VOCAB, hidden_size=64, num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=4,
    kv_lora_rank=32, qk_nope_head_dim=16, qk_rope_head_dim=8, v_head_dim=16, max_position_embeddings=64,
)  # fmt: skip
MOE = dict(
    intermediate_size=96, moe_intermediate_size=32, n_routed_experts=8, n_shared_experts=2, num_experts_per_tok=2,
    first_k_dense_replace=1,
)  # fmt: skip
STUDENT = dict(
    num_hidden_layers=2, hidden_size=32, num_attention_heads=2, kv_lora_rank=16,
    qk_nope_head_dim=8, qk_rope_head_dim=4, v_head_dim=8, intermediate_size=48, moe_intermediate_size=16,
    n_routed_experts=4,
)  # fmt: skip


@dataclass(frozen=True)
class Family:
    config_class: Any
    model_class: Any
    teacher: dict[str, Any]
    student: dict[str, Any]
    query: str  # the projection whose rows are heads*(nope | rope): q_proj, or q_b_proj after the query latent


FAMILIES = {
    # V2-Lite's form: queries straight from the hidden states, experts routed without groups
    "deepseek_v2": Family(
        tf.DeepseekV2Config,
        tf.DeepseekV2ForCausalLM,
        dict(ATTENTION, **MOE, q_lora_rank=None),
        STUDENT,
        "q_proj",
    ),
    # V3: a query latent, 8 experts in 2 groups (a token chooses 1 group), the router's score-correction bias
    "deepseek_v3": Family(
        tf.DeepseekV3Config,
        tf.DeepseekV3ForCausalLM,
        dict(ATTENTION, **MOE, q_lora_rank=48, n_group=2, topk_group=1),
        dict(STUDENT, q_lora_rank=24),
        "q_b_proj",
    ),
}
STRATEGIES = ("uniform", "first", "random", "magnitude")


def build_teacher(folder: Path, family: Family, **changes: Any) -> torch.nn.Module:
    torch.manual_seed(0)
    model = family.model_class(family.config_class(**{**family.teacher, **changes})).eval()
    model.save_pretrained(folder)
    return model


def input_ids() -> torch.Tensor:
    return torch.randint(0, VOCAB, (2, 5), generator=torch.Generator().manual_seed(1))


def verified(teacher_dir: Path, out: Path) -> None:
    result = run_cli("verify", "--teacher", teacher_dir, "--student", out, "--json")
    assert result.exit_code == 0, result.stdout + result.stderr
    assert json.loads(result.stdout)["ok"] is True


@pytest.fixture(scope="module")
def teachers(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folders = {}
    for name, family in FAMILIES.items():
        folders[name] = tmp_path_factory.mktemp(name) / "teacher"
        build_teacher(folders[name], family)
    return folders


# ------------------------------------------------------------- 1. both families, every element strategy


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("name", list(FAMILIES))
def test_mla_student_loads_runs_and_verifies(tmp_path: Path, teachers: dict[str, Path], name: str, strategy: str):
    family, out = FAMILIES[name], tmp_path / "student"
    report = init_report(teachers[name], out, *set_args(family.student), "--elements", strategy)
    assert report["path"] == "deepseek"
    model = load_clean(family.model_class, out)
    with torch.no_grad():
        logits = model(input_ids=input_ids()).logits
    assert tuple(logits.shape) == (2, 5, VOCAB)
    assert torch.isfinite(logits).all()
    written = json.loads((out / "config.json").read_text())
    for key, value in family.student.items():
        assert written[key] == value, key
    # keys that restate other sizes follow the student's (transformers derives the first two the same way; MLA
    # gives every query head its own key and value)
    assert (written["qk_head_dim"], written["head_dim"], written["num_key_value_heads"]) == (12, 4, 2)
    assert (model.config.qk_head_dim, model.config.head_dim) == (12, 4)
    verified(teachers[name], out)
    # layer 0 is dense (the teacher's first_k_dense_replace = 1), layer 1 keeps 4 of 8 experts
    state = load_file(out / "model.safetensors")
    assert state["model.layers.0.mlp.gate_proj.weight"].shape == (48, 32)
    assert "model.layers.0.mlp.gate.weight" not in state and "experts[0]" not in report["axes"]
    assert state["model.layers.1.mlp.gate.weight"].shape == (4, 32)
    assert [m["layers"] for m in report["expert_maps"]] == ["1"]


@pytest.mark.parametrize("options", [("--attention", "flat"), ("--rescale",), ("--dtype", "bf16")])
def test_other_options_load_and_verify(tmp_path: Path, teachers: dict[str, Path], options: tuple[str, ...]) -> None:
    family, out = FAMILIES["deepseek_v3"], tmp_path / "student"
    init_report(teachers["deepseek_v3"], out, *set_args(family.student), *options)
    with torch.no_grad():
        assert torch.isfinite(load_clean(family.model_class, out)(input_ids=input_ids()).logits.float()).all()
    verified(teachers["deepseek_v3"], out)


# -------------------------------------------------- 2. fewer layers only: the cut teacher exactly


@pytest.mark.parametrize("name", list(FAMILIES))
def test_depth_only_student_equals_the_cut_teacher(tmp_path: Path, name: str) -> None:
    family = FAMILIES[name]
    teacher_dir, out = tmp_path / "teacher", tmp_path / "student"
    teacher = build_teacher(teacher_dir, family)
    report = init_report(teacher_dir, out, "--set", "num_hidden_layers=2")
    assert report["expert_maps"][0]["kept"] == list(range(8))  # every expert of layer 1
    student = load_clean(family.model_class, out)
    teacher.model.layers = teacher.model.layers[:2]
    teacher.config.num_hidden_layers = 2
    with torch.no_grad():
        expected = teacher(input_ids=input_ids(), use_cache=False).logits
        actual = student(input_ids=input_ids(), use_cache=False).logits
    torch.testing.assert_close(actual, expected, atol=0, rtol=0)
    t_state, s_state = load_file(teacher_dir / "model.safetensors"), load_file(out / "model.safetensors")
    assert set(s_state) == {k for k in t_state if ".layers.2." not in k and ".layers.3." not in k}
    for key, value in s_state.items():
        assert torch.equal(value, t_state[key]), key


# ------------------------------------- 3. whole heads, no-RoPE and RoPE dims apart, RoPE pairs kept


def head_rows(heads: list[int], parts: list[tuple[int, list[int]]]) -> torch.Tensor:
    """The teacher rows of a [heads * (part | part ...)] projection: for each kept head, each part's kept dims
    at that part's offset within the head (parts: (teacher size, kept dims))."""
    width = sum(size for size, _ in parts)
    rows = []
    for head in heads:
        offset = head * width
        for size, dims in parts:
            rows += [offset + d for d in dims]
            offset += size
    return torch.tensor(rows)


@pytest.mark.parametrize(
    ("name", "interleave", "rope"),
    [
        ("deepseek_v2", None, [0, 1, 4, 5]),  # V2 always pairs 2i, 2i+1: pairs 0 and 2 of 4
        ("deepseek_v3", True, [0, 1, 4, 5]),
        ("deepseek_v3", False, [0, 2, 4, 6]),  # rotate_half pairs i, i+4: pairs 0 and 2 of 4
    ],
)
def test_queries_keys_and_values_keep_whole_heads_and_rope_pairs(
    tmp_path: Path, name: str, interleave: bool | None, rope: list[int]
) -> None:
    family = FAMILIES[name]
    teacher_dir, out = tmp_path / "teacher", tmp_path / "student"
    build_teacher(teacher_dir, family, **({} if interleave is None else {"rope_interleave": interleave}))
    init_report(teacher_dir, out, *set_args(family.student))
    teacher, student = load_file(teacher_dir / "model.safetensors"), load_file(out / "model.safetensors")
    half_of = {n: list(range(0, n, 2)) for n in (16, 32, 48, 64)}  # the paper's uniform rule, T = 2S
    heads, hidden, nope, value = [0, 2], half_of[64], half_of[16], half_of[16]
    p = "model.layers.1.self_attn."
    query_columns = half_of[48] if family.query == "q_b_proj" else hidden
    expected = {
        family.query: (head_rows(heads, [(16, nope), (8, rope)]), query_columns),
        "kv_a_proj_with_mqa": (torch.tensor(half_of[32] + [32 + d for d in rope]), hidden),  # latent | RoPE key
        "kv_b_proj": (head_rows(heads, [(16, nope), (16, value)]), half_of[32]),
        "o_proj": (torch.tensor(hidden), head_rows(heads, [(16, value)]).tolist()),
    }
    for proj, (rows, columns) in expected.items():
        want = teacher[f"{p}{proj}.weight"][rows][:, columns]
        assert torch.equal(student[f"{p}{proj}.weight"], want), proj

    # transformers' own rotary embedding: the student rotates its kept RoPE dims as the teacher rotates them
    t_model, s_model = (family.model_class.from_pretrained(d).eval() for d in (teacher_dir, out))
    apply = (
        tf.models.deepseek_v3.modeling_deepseek_v3.apply_rotary_pos_emb
        if interleave is False
        else tf.models.deepseek_v3.modeling_deepseek_v3.apply_rotary_pos_emb_interleave
    )
    positions = torch.arange(6)[None, :]
    x = torch.randn(1, 1, 6, 8, generator=torch.Generator().manual_seed(3))  # [batch, head, positions, rope dims]
    if name == "deepseek_v2":  # V2 rotates through complex numbers: freqs_cis
        modeling = tf.models.deepseek_v2.modeling_deepseek_v2
        t_freqs = t_model.model.rotary_emb(x, positions).to(x.device)
        s_freqs = s_model.model.rotary_emb(x[..., rope], positions)
        t_rotated, _ = modeling.apply_rotary_emb(x, x, t_freqs)
        s_rotated, _ = modeling.apply_rotary_emb(x[..., rope], x[..., rope], s_freqs)
    else:
        t_rotated, _ = apply(x, x, *t_model.model.rotary_emb(x, positions))
        s_rotated, _ = apply(x[..., rope], x[..., rope], *s_model.model.rotary_emb(x[..., rope], positions))
        if interleave:  # the interleaved form writes evens then odds: put the pairs back in place
            t_rotated = torch.stack([t_rotated[..., :4], t_rotated[..., 4:]], -1).flatten(-2)
            s_rotated = torch.stack([s_rotated[..., :2], s_rotated[..., 2:]], -1).flatten(-2)
    torch.testing.assert_close(s_rotated, t_rotated[..., rope])


def test_a_rope_head_dim_that_cannot_keep_pairs_is_refused(tmp_path: Path, teachers: dict[str, Path]) -> None:
    out = tmp_path / "student"
    result = run_cli("init", "-t", teachers["deepseek_v3"], "-o", out, "--set", "qk_rope_head_dim=6")
    assert result.exit_code != 0
    assert (
        result.stderr.strip()
        .splitlines()[-1]
        .endswith(
            "head_dim (qk_rope_head_dim) 8 → 6 cannot keep RoPE pairs and frequencies (rotary dims 8 → 6); "
            "head_dim sizes that work: 2, 4, 8; e.g. --set qk_rope_head_dim=8 (the teacher's)"
        )
    ), result.stderr
    assert not out.exists()


# ---------------------------------------- 4. fewer experts: kept inside their groups, router rows follow


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_experts_stay_in_their_groups_and_the_router_follows(
    tmp_path: Path, teachers: dict[str, Path], strategy: str
) -> None:
    """V3 routes a token to its best group first: student group g (experts 2g, 2g+1) must be 2 experts of one
    teacher group (experts 4G..4G+3), whatever the strategy; the router's rows and score-correction bias are
    the kept experts', and student expert j is teacher expert kept[j]."""
    teacher_dir, out = teachers["deepseek_v3"], tmp_path / "student"
    report = init_report(teacher_dir, out, *set_args(FAMILIES["deepseek_v3"].student), "--elements", strategy)
    axes = report["axes"]
    kept = kept_indices(axes["experts[1]"]).tolist()
    assert len(kept) == 4 and kept == sorted(kept)
    assert [kept[0] // 4, kept[2] // 4] == [kept[1] // 4, kept[3] // 4], kept  # each pair within one group
    assert kept_indices(axes["expert_groups[1]"]).tolist() == [kept[0] // 4, kept[2] // 4] == [0, 1]
    if strategy == "uniform":
        assert kept == [0, 2, 4, 6]
    teacher, student = load_file(teacher_dir / "model.safetensors"), load_file(out / "model.safetensors")
    hidden, mlp = kept_indices(axes["hidden"]), kept_indices(axes["mlp[1]"])
    p = "model.layers.1.mlp."
    assert torch.equal(student[p + "gate.weight"], teacher[p + "gate.weight"][kept][:, hidden])
    assert torch.equal(student[p + "gate.e_score_correction_bias"], teacher[p + "gate.e_score_correction_bias"][kept])
    for j, e in enumerate(kept):
        for proj in ("gate_proj", "up_proj"):
            want = teacher[f"{p}experts.{e}.{proj}.weight"][mlp][:, hidden]
            assert torch.equal(student[f"{p}experts.{j}.{proj}.weight"], want)
        down = teacher[f"{p}experts.{e}.down_proj.weight"][hidden][:, mlp]
        assert torch.equal(student[f"{p}experts.{j}.down_proj.weight"], down)
    shared = kept_indices(axes["shared_mlp[1]"])
    assert len(shared) == 32  # moe_intermediate_size 16 × 2 shared experts
    shared_gate = teacher[p + "shared_experts.gate_proj.weight"][shared][:, hidden]
    assert torch.equal(student[p + "shared_experts.gate_proj.weight"], shared_gate)


@pytest.mark.parametrize(("strategy", "kept"), [("uniform", [0, 1, 2, 3]), ("magnitude", [4, 5, 6, 7])])
def test_fewer_expert_groups_keep_whole_groups(
    tmp_path: Path, teachers: dict[str, Path], strategy: str, kept: list[int]
) -> None:
    """One group of 4 from the teacher's 2: uniform keeps group 0; magnitude the group whose experts weigh more
    (teacher group 1's weights ×10 here), each whole."""
    from safetensors.torch import save_file

    teacher_dir = tmp_path / "teacher"
    teacher_dir.mkdir()
    (teacher_dir / "config.json").write_bytes((teachers["deepseek_v3"] / "config.json").read_bytes())
    state = load_file(teachers["deepseek_v3"] / "model.safetensors")
    heavy = {k: v * 10 for k, v in state.items() if any(f".experts.{e}." in k for e in (4, 5, 6, 7))}
    save_file({**state, **heavy}, teacher_dir / "model.safetensors", metadata={"format": "pt"})
    student = dict(FAMILIES["deepseek_v3"].student, n_group=1)
    report = init_report(teacher_dir, tmp_path / "student", *set_args(student), "--elements", strategy)
    assert kept_indices(report["axes"]["expert_groups[1]"]).tolist() == [kept[0] // 4]
    assert kept_indices(report["axes"]["experts[1]"]).tolist() == kept
    with torch.no_grad():
        model = load_clean(FAMILIES["deepseek_v3"].model_class, tmp_path / "student")
        assert torch.isfinite(model(input_ids=input_ids()).logits).all()


def test_a_fused_teacher_gives_the_same_student(tmp_path: Path, teachers: dict[str, Path]) -> None:
    """transformers 5 holds experts fused ([experts, gate|up, hidden]) and loads that form from a file too."""
    from safetensors.torch import save_file

    family, fused_dir = FAMILIES["deepseek_v3"], tmp_path / "fused"
    fused_dir.mkdir()
    (fused_dir / "config.json").write_bytes((teachers["deepseek_v3"] / "config.json").read_bytes())
    state = family.model_class.from_pretrained(teachers["deepseek_v3"]).state_dict()
    assert "model.layers.1.mlp.experts.gate_up_proj" in state
    save_file({k: v.contiguous() for k, v in state.items()}, fused_dir / "model.safetensors", metadata={"format": "pt"})
    args = [*set_args(family.student), "--elements", "random"]
    per_expert, fused = (
        init_report(teachers["deepseek_v3"], tmp_path / "a", *args),
        init_report(fused_dir, tmp_path / "b", *args),
    )
    assert fused["axes"] == per_expert["axes"]
    a, b = load_clean(family.model_class, tmp_path / "a"), load_clean(family.model_class, tmp_path / "b")
    with torch.no_grad():
        torch.testing.assert_close(b(input_ids=input_ids()).logits, a(input_ids=input_ids()).logits, atol=0, rtol=0)
    verified(fused_dir, tmp_path / "b")


# ------------------------------------------------------- 5. dense first layers follow the layer map


def test_dense_first_layers_follow_the_layer_map(tmp_path: Path, teachers: dict[str, Path]) -> None:
    """`--layers last` reads teacher layers 2 and 3, both with experts: the student has no dense layer, and its
    config says so (else transformers would build layer 0 dense and find expert weights)."""
    family, out = FAMILIES["deepseek_v3"], tmp_path / "student"
    args = ["--set", "num_hidden_layers=2", "--layers", "last"]
    result = run_cli("init", "-t", teachers["deepseek_v3"], "-o", out, *args)
    assert result.exit_code == 0, result.stderr
    assert "first_k_dense_replace 1 → 0: student layers none read the teacher's dense layers (0)" in result.stderr
    assert json.loads((out / "config.json").read_text())["first_k_dense_replace"] == 0
    model = load_clean(family.model_class, out)
    assert hasattr(model.model.layers[0].mlp, "experts")
    with torch.no_grad():
        assert torch.isfinite(model(input_ids=input_ids()).logits).all()
    verified(teachers["deepseek_v3"], out)


def test_a_dense_layer_count_the_map_contradicts_is_refused(tmp_path: Path, teachers: dict[str, Path]) -> None:
    out = tmp_path / "student"
    result = run_cli("init", "-t", teachers["deepseek_v3"], "-o", out, "--set", "num_hidden_layers=2",
                     "--set", "first_k_dense_replace=2")  # fmt: skip
    assert result.exit_code != 0
    assert (
        result.stderr.strip()
        .splitlines()[-1]
        .endswith(
            "student first_k_dense_replace = 2 gives layers 0-1 a dense MLP, but under this layer map the layers that "
            "read dense teacher layers are 0; pass --set first_k_dense_replace=1"
        )
    ), result.stderr
    assert not out.exists()


# ------------------------------------------------------------------------------- 6. routing refusals


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (
            {"n_routed_experts": 3},
            "student experts (n_routed_experts) = 3 is not a multiple of expert_groups (n_group) = 2",
        ),
        (
            {"n_group": 1},
            "student has 8 experts per expert group but the teacher has 4; keep experts (n_routed_experts) / "
            "expert_groups (n_group) at most 4 so every expert keeps its expert group",
        ),
        (
            {"topk_group": 3},
            "student topk_group = 3 is more than its n_group = 2; pass --set topk_group=2 or less",  # 2 at most
        ),
        (
            {"n_routed_experts": 4, "num_experts_per_tok": 3},
            "student num_experts_per_tok = 3 is more than the 2 experts of the topk_group = 1 groups a token "
            "chooses; pass --set num_experts_per_tok=2 or less, or a larger topk_group",
        ),
    ],
)
def test_routing_a_student_cannot_do_is_refused(
    tmp_path: Path, teachers: dict[str, Path], changes: dict[str, Any], message: str
) -> None:
    out = tmp_path / "student"
    result = run_cli("init", "-t", teachers["deepseek_v3"], "-o", out, *set_args(changes))
    assert result.exit_code != 0
    assert result.stderr.strip().splitlines()[-1].endswith(message), result.stderr
    assert not out.exists()


# --------------------------------------- 7. what full-size DeepSeek-V3 checkpoints hold beyond the model


def copy_with(teacher_dir: Path, folder: Path, extra: dict[str, torch.Tensor]) -> Path:
    """The teacher folder with `extra` tensors added to its weights."""
    from safetensors.torch import save_file

    folder.mkdir()
    (folder / "config.json").write_bytes((teacher_dir / "config.json").read_bytes())
    state = load_file(teacher_dir / "model.safetensors")
    save_file({**state, **extra}, folder / "model.safetensors", metadata={"format": "pt"})
    return folder


def test_multi_token_prediction_layers_are_left_out(tmp_path: Path, teachers: dict[str, Path]) -> None:
    """DeepSeek-V3 stores its multi-token-prediction module as one more layer (`model.layers.61` of 61), with
    tensors of its own (`enorm`, `eh_proj`, ...) that transformers does not build: never read, noted, and the
    student's config says it has none."""
    teacher_dir = teachers["deepseek_v3"]
    state = load_file(teacher_dir / "model.safetensors")
    mtp = {k.replace("layers.3.", "layers.4."): v for k, v in state.items() if ".layers.3." in k}
    mtp |= {"model.layers.4.enorm.weight": torch.ones(64), "model.layers.4.eh_proj.weight": torch.zeros(64, 128)}
    folder = copy_with(teacher_dir, tmp_path / "teacher", mtp)
    out = tmp_path / "student"
    result = run_cli("init", "-t", folder, "-o", out, *set_args(FAMILIES["deepseek_v3"].student))
    assert result.exit_code == 0, result.stderr
    assert "teacher layers 4 (num_nextn_predict_layers) are not layers of the model: left out" in result.stderr
    assert json.loads((out / "config.json").read_text())["num_nextn_predict_layers"] == 0
    assert not any(".layers.4." in k or ".layers.2." in k for k in load_file(out / "model.safetensors"))
    load_clean(FAMILIES["deepseek_v3"].model_class, out)
    verified(folder, out)


def test_an_fp8_block_scaled_teacher_is_refused(tmp_path: Path, teachers: dict[str, Path]) -> None:
    scale = {"model.layers.0.self_attn.kv_b_proj.weight_scale_inv": torch.ones(1, 1)}
    folder = copy_with(teachers["deepseek_v3"], tmp_path / "teacher", scale)
    out = tmp_path / "student"
    result = run_cli("init", "-t", folder, "-o", out, *set_args(FAMILIES["deepseek_v3"].student))
    assert result.exit_code != 0
    assert result.stderr.strip().splitlines()[-1] == (
        "wsel: error: teacher tensor 'model.layers.0.self_attn.kv_b_proj.weight_scale_inv' is a block scale of an "
        "FP8 checkpoint; wsel copies the stored bytes and cannot rescale FP8 blocks: convert the teacher to BF16 "
        "first (e.g. with DeepSeek's fp8_cast_bf16.py), then select from that"
    )
    assert not out.exists()


def test_target_params_is_refused_in_one_line(tmp_path: Path, teachers: dict[str, Path]) -> None:
    out = tmp_path / "student"
    result = run_cli("init", "-t", teachers["deepseek_v3"], "-o", out, "--target-params", "50%", "--multiple-of", "16")
    assert result.exit_code != 0
    assert result.stderr.strip() == (
        f"wsel: error: {teachers['deepseek_v3'] / 'config.json'}: --target-params does not search deepseek students "
        "(layers of two kinds: first_k_dense_replace); give the student's sizes with --set instead"
    )
    assert not out.exists()


def test_a_long_expert_map_is_summarized() -> None:
    """DeepSeek-V3 keeps, say, 64 of 256 experts per layer: the report says `0,4,8,...,252 (every 4th)`, not 64
    numbers, and the table leaves out the 256-mark picture (the JSON keeps `kept` and `picture`)."""
    from wsel.report import expert_maps
    from wsel.select import Selection, from_indices

    every_4th, scattered = Selection(256, 0, 4, 64), from_indices(256, list(range(0, 128, 2)) + [129, 200])
    maps = expert_maps({"experts[3]": every_4th, "experts[4]": every_4th, "experts[5]": scattered})
    assert [(m["layers"], m["summary"]) for m in maps] == [
        ("3-4", "0,4,8,...,252 (every 4th) of 256"),
        ("5", ",".join(map(str, range(0, 128, 2))) + ",129,200 of 256"),
    ]
    assert maps[0]["kept"] == list(range(0, 256, 4)) and len(maps[0]["picture"]) == 256
    assert expert_maps({"experts[0]": Selection(64, 0, 2, 32)})[0]["summary"] == "0,2,4,...,62 (every 2nd) of 64"
    assert expert_maps({"experts[0]": Selection(8, 0, 2, 4)})[0]["summary"] == "0,2,4,6 of 8"  # short: as it is


def test_the_table_leaves_out_a_picture_of_more_than_64_experts(tmp_path: Path, monkeypatch) -> None:
    """A teacher of 128 experts: the table's line stays readable (smaller ones keep it: test_e2e_moe.py)."""
    monkeypatch.setenv("COLUMNS", "1000")
    family = FAMILIES["deepseek_v2"]
    teacher_dir = tmp_path / "teacher"
    build_teacher(teacher_dir, family, n_routed_experts=128, num_hidden_layers=2, vocab_size=VOCAB)
    result = run_cli("inspect", "-t", teacher_dir, "--set", "n_routed_experts=32")
    assert result.exit_code == 0, result.stderr
    assert "experts of layers 1: 0,4,8,...,124 (every 4th) of 128\n" in result.stderr
    result = run_cli("inspect", "-t", teacher_dir, "--set", "n_routed_experts=64")
    assert "experts of layers 1: 0,2,4,...,126 (every 2nd) of 128\n" in result.stderr


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        (
            "deepseek_v2",
            16,
            "student q_lora (q_lora_rank) is 16 but the teacher has no q_lora (its q_lora_rank is absent or null); a "
            "student cannot have what its teacher lacks: pass --set q_lora_rank=null, as the teacher's",
        ),
        (
            "deepseek_v3",
            None,
            "student has no q_lora (its q_lora_rank is absent or null) but the teacher's is 48; pass --set "
            "q_lora_rank=48 or less",
        ),
    ],
)
def test_a_query_latent_only_one_side_has_is_refused(
    tmp_path: Path, teachers: dict[str, Path], name: str, value: int | None, message: str
) -> None:
    """V2-Lite's queries have no latent (q_lora_rank null: q_proj), V3's have one (q_a_proj, q_b_proj): a student
    cannot switch, as its config would name tensors the teacher lacks (it was written, and failed to load)."""
    out = tmp_path / "student"
    result = run_cli("init", "-t", teachers[name], "-o", out, "--set", f"q_lora_rank={json.dumps(value)}")
    assert result.exit_code != 0
    assert result.stderr.strip().splitlines()[-1].endswith(message), result.stderr
    assert f"with --set q_lora_rank={json.dumps(value)}:" in result.stderr  # as typed: null, not None
    assert not out.exists()
