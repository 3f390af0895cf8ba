"""End to end on two-tower families (CLIP, SigLIP): tiny random teachers saved by transformers itself, a
student halving each tower's depth and width by `--set` on nested keys (`text_config.hidden_size`), loaded
back by transformers with no missing, unexpected or mismatched keys, and run (image and text embeddings).

Each tower is its own stack: its own hidden, heads and mlp axes (`text.hidden`, `vision.heads[0]`), its own
depth and layer map; whole heads are kept in each tower independently; logit scale (and SigLIP's bias) are
copied; a depth-only student equals the teacher cut to its first layers.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
import transformers as tf
from conftest import init_report, load_clean, run_cli, set_args
from safetensors.torch import load_file

BATCH, SEQ, IMAGE = 2, 7, 32
TEXT = dict(
    vocab_size=64, hidden_size=64, intermediate_size=96, num_hidden_layers=4, num_attention_heads=8,
    max_position_embeddings=16,
)  # fmt: skip
VISION = dict(
    hidden_size=48, intermediate_size=80, num_hidden_layers=4, num_attention_heads=4, image_size=IMAGE, patch_size=8
)
# half of each tower: text 8 heads of 8 → 4 heads of 8, vision 4 heads of 12 → 2 heads of 12
HALF = {
    "text_config.hidden_size": 32,
    "text_config.intermediate_size": 48,
    "text_config.num_attention_heads": 4,
    "text_config.num_hidden_layers": 2,
    "vision_config.hidden_size": 24,
    "vision_config.intermediate_size": 40,
    "vision_config.num_attention_heads": 2,
    "vision_config.num_hidden_layers": 2,
}


@dataclass(frozen=True)
class Family:
    config_class: Any
    model_class: Any
    teacher: dict[str, Any]  # top-level config keys beside text_config and vision_config
    text: dict[str, Any]  # extra text_config keys
    student: dict[str, Any]  # --set keys beyond HALF
    scalars: tuple[str, ...]  # tensors copied whole
    projection: int  # the student's embedding width (image and text embeddings)


FAMILIES = {
    "clip": Family(
        tf.CLIPConfig, tf.CLIPModel, {"projection_dim": 20}, {}, {"projection_dim": 10}, ("logit_scale",), 10
    ),
    # SigLIP compares the text head's output with the pooled image features: projection_size = vision hidden_size,
    # which the student's follows without being set
    "siglip": Family(
        tf.SiglipConfig,
        tf.SiglipModel,
        {},
        {"projection_size": 48},
        {},
        ("logit_scale", "logit_bias"),
        24,
    ),
}


def build_teacher(folder: Path, family: Family) -> torch.nn.Module:
    torch.manual_seed(0)
    config = family.config_class(text_config=TEXT | family.text, vision_config=VISION, **family.teacher)
    model = family.model_class(config).eval()
    model.save_pretrained(folder)
    return model


def inputs() -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    return {
        "input_ids": torch.randint(0, TEXT["vocab_size"], (BATCH, SEQ), generator=gen),
        "pixel_values": torch.randn(BATCH, 3, IMAGE, IMAGE, generator=gen),
    }


@pytest.fixture(params=list(FAMILIES))
def family_name(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.mark.parametrize("elements", ["uniform", "random", "magnitude"])
def test_half_size_student_loads_runs_and_verifies(tmp_path: Path, family_name: str, elements: str) -> None:
    family = FAMILIES[family_name]
    teacher_dir, out = tmp_path / "teacher", tmp_path / "student"
    build_teacher(teacher_dir, family)
    report = init_report(teacher_dir, out, "--elements", elements, *set_args(HALF | family.student))
    assert report["path"] == family_name
    assert [m["group"] for m in report["layer_maps"]] == ["text_model.encoder.layers", "vision_model.encoder.layers"]
    assert [m["map"] for m in report["layer_maps"]] == [[[0, 0], [1, 1]]] * 2

    model = load_clean(family.model_class, out)
    with torch.no_grad():
        y = model(**inputs())
    for embeds in (y.text_embeds, y.image_embeds):
        assert tuple(embeds.shape) == (BATCH, family.projection)
        assert torch.isfinite(embeds).all()
    assert torch.isfinite(y.logits_per_image).all()
    written = json.loads((out / "config.json").read_text())
    for key, value in HALF.items():
        stack, name = key.split(".")
        assert written[stack][name] == value, key

    verified = run_cli("verify", "--teacher", teacher_dir, "--student", out, "--json")
    assert verified.exit_code == 0, verified.stdout + verified.stderr
    assert json.loads(verified.stdout)["ok"] is True


def test_depth_only_student_equals_the_cut_teacher(tmp_path: Path, family_name: str) -> None:
    """Each tower keeps its own depth: text 2 of 4, vision 3 of 4."""
    family = FAMILIES[family_name]
    teacher_dir, out = tmp_path / "teacher", tmp_path / "student"
    teacher = build_teacher(teacher_dir, family)
    depths = {"text_config.num_hidden_layers": 2, "vision_config.num_hidden_layers": 3}
    init_report(teacher_dir, out, *set_args(depths))
    student = load_clean(family.model_class, out)

    teacher.text_model.encoder.layers = teacher.text_model.encoder.layers[:2]
    teacher.vision_model.encoder.layers = teacher.vision_model.encoder.layers[:3]
    with torch.no_grad():
        expected, actual = teacher(**inputs()), student(**inputs())
    for key in ("text_embeds", "image_embeds", "logits_per_image"):
        torch.testing.assert_close(getattr(actual, key), getattr(expected, key), atol=1e-6, rtol=1e-6)
    t_state, s_state = load_file(teacher_dir / "model.safetensors"), load_file(out / "model.safetensors")
    kept = {k for k in t_state if not (".layers.3." in k or (k.startswith("text_model") and ".layers.2." in k))}
    assert set(s_state) == kept
    for key, value in s_state.items():
        assert torch.equal(value, t_state[key]), key


def kept(report: dict[str, Any], axis: str) -> list[int]:
    """The teacher indices an axis keeps, from the report."""
    entry = report["axes"][axis]
    if entry["rule"] == "copy":
        return list(range(entry["teacher"]))
    if "indices" in entry:
        return list(entry["indices"])
    return list(range(entry["start"], entry["start"] + entry["step"] * entry["student"], entry["step"]))


@pytest.mark.parametrize("elements", ["uniform", "random"])
def test_whole_heads_in_each_tower(tmp_path: Path, family_name: str, elements: str) -> None:
    """q rows are whole heads (head_dim kept) in each tower, each tower by its own heads axis: rows of the
    student's q are the teacher's rows of the kept head ids, columns its tower's kept hidden dims."""
    family = FAMILIES[family_name]
    teacher_dir, out = tmp_path / "teacher", tmp_path / "student"
    build_teacher(teacher_dir, family)
    report = init_report(teacher_dir, out, "--elements", elements, *set_args(HALF | family.student))
    teacher, student = load_file(teacher_dir / "model.safetensors"), load_file(out / "model.safetensors")
    for tower, heads, head_dim in (("text", 8, 8), ("vision", 4, 12)):
        hidden = kept(report, f"{tower}.hidden")
        for layer in (0, 1):
            ids = kept(report, f"{tower}.heads[{layer}]")
            assert len(ids) == heads // 2
            p = f"{tower}_model.encoder.layers.{layer}.self_attn."
            t_q = teacher[p + "q_proj.weight"].view(heads, head_dim, -1)  # [heads, head_dim, hidden]
            s_q = student[p + "q_proj.weight"].view(heads // 2, head_dim, -1)
            assert torch.equal(s_q, t_q[ids][..., hidden])
            t_o = teacher[p + "out_proj.weight"].view(-1, heads, head_dim)  # [hidden, heads, head_dim]
            v_dims = kept(report, f"{tower}.v_head_dim")
            assert torch.equal(
                student[p + "out_proj.weight"], t_o[hidden][:, ids][..., v_dims].reshape(len(hidden), -1)
            )
    if elements == "uniform":
        assert kept(report, "text.heads[0]") == [0, 2, 4, 6]
        assert kept(report, "vision.heads[0]") == [0, 2]
        # the paper's flat rule on q rows (0:64:2) would keep half of every head's dims instead
        flat = init_report(teacher_dir, tmp_path / "flat", "--attention", "flat", *set_args(HALF | family.student))
        assert "text.heads[0]" not in flat["axes"]


def test_scalars_are_copied(tmp_path: Path, family_name: str) -> None:
    family = FAMILIES[family_name]
    teacher_dir, out = tmp_path / "teacher", tmp_path / "student"
    teacher = build_teacher(teacher_dir, family)
    with torch.no_grad():  # not their initial values, so a copy is told from a fresh init
        for name in family.scalars:
            getattr(teacher, name).fill_(0.75)
    teacher.save_pretrained(teacher_dir)
    report = init_report(teacher_dir, out, *set_args(HALF | family.student))
    actions = {t["name"]: t["action"] for t in report["tensors"]}
    student = load_clean(family.model_class, out)
    for name in family.scalars:
        assert actions[name] == "copy"
        assert torch.equal(getattr(student, name), getattr(teacher, name)), name


def test_text_positions_truncate_and_vision_positions_are_kept(tmp_path: Path, family_name: str) -> None:
    family = FAMILIES[family_name]
    teacher_dir, out = tmp_path / "teacher", tmp_path / "student"
    build_teacher(teacher_dir, family)
    report = init_report(
        teacher_dir, out, *set_args(HALF | family.student | {"text_config.max_position_embeddings": 8})
    )
    load_clean(family.model_class, out)
    teacher, student = load_file(teacher_dir / "model.safetensors"), load_file(out / "model.safetensors")
    text_hidden, vision_hidden = kept(report, "text.hidden"), kept(report, "vision.hidden")
    name = "text_model.embeddings.position_embedding.weight"
    assert torch.equal(student[name], teacher[name][:8][:, text_hidden])
    name = "vision_model.embeddings.position_embedding.weight"
    assert torch.equal(student[name], teacher[name][:, vision_hidden])  # every patch position kept
    name = "vision_model.embeddings.patch_embedding.weight"
    assert torch.equal(student[name], teacher[name][vision_hidden])  # channels and kernel kept


def test_refuses_a_changed_image_geometry(tmp_path: Path, family_name: str) -> None:
    family = FAMILIES[family_name]
    teacher_dir, out = tmp_path / "teacher", tmp_path / "student"
    build_teacher(teacher_dir, family)
    result = run_cli("init", "-t", teacher_dir, "-o", out, *set_args(HALF | {"vision_config.image_size": 16}))
    assert result.exit_code == 1
    source = f"{teacher_dir / 'config.json'} with --set " + " ".join(
        f"{k}={v}" for k, v in (HALF | {"vision_config.image_size": 16}).items()
    )
    assert result.stderr == (
        f"wsel: error: {source}: student patches ((vision_config.image_size / vision_config.patch_size) ** 2"
        f"{' + 1' if family_name == 'clip' else ''}) is {5 if family_name == 'clip' else 4} but the teacher's is "
        f"{17 if family_name == 'clip' else 16}; this axis is never subsampled: keep it at "
        f"{17 if family_name == 'clip' else 16}\n"
    )
    assert not out.exists()


def test_siglip_text_projection_follows_the_vision_width(tmp_path: Path) -> None:
    """text_config.projection_size restates vision_config.hidden_size: written as the student's (24) when left at
    the teacher's; set to anything else, refused with the value that works."""
    family = FAMILIES["siglip"]
    teacher_dir, out = tmp_path / "teacher", tmp_path / "student"
    build_teacher(teacher_dir, family)
    init_report(teacher_dir, out, *set_args(HALF))
    assert json.loads((out / "config.json").read_text())["text_config"]["projection_size"] == 24
    wrong = HALF | {"text_config.projection_size": 20}
    result = run_cli("init", "-t", teacher_dir, "-o", tmp_path / "wrong", *set_args(wrong))
    assert result.exit_code == 1
    assert result.stderr.strip().endswith(
        "student text_config.projection_size = 20, but vision_config.hidden_size = 24 for the student, and the "
        "teacher's text_config.projection_size restates its vision_config.hidden_size; pass --set "
        "text_config.projection_size=24, or --set vision_config.hidden_size=20 (text_config.projection_size follows it)"
    ), result.stderr
    assert not (tmp_path / "wrong").exists()


def test_layer_lists_per_tower(tmp_path: Path, family_name: str) -> None:
    """`--layers` lists, one per layer group (`;`, in sorted group order: text, then vision)."""
    family = FAMILIES[family_name]
    teacher_dir, out = tmp_path / "teacher", tmp_path / "student"
    build_teacher(teacher_dir, family)
    report = init_report(teacher_dir, out, "--layers", "1,3;0,2", *set_args(HALF | family.student))
    assert [m["map"] for m in report["layer_maps"]] == [[[0, 1], [1, 3]], [[0, 0], [1, 2]]]
    model = load_clean(family.model_class, out)
    with torch.no_grad():
        assert torch.isfinite(model(**inputs()).logits_per_image).all()


def test_siglip_pooling_head_keeps_whole_heads(tmp_path: Path) -> None:
    """The vision tower's attention-pooling head (nn.MultiheadAttention: in_proj rows q|k|v, each heads*head_dim)
    keeps whole heads of each block, as its encoder layers do; the text head's rows follow vision.hidden (the
    image embedding space it is compared in)."""
    family = FAMILIES["siglip"]
    teacher_dir, out = tmp_path / "teacher", tmp_path / "student"
    build_teacher(teacher_dir, family)
    report = init_report(teacher_dir, out, "--elements", "random", *set_args(HALF | family.student))
    teacher, student = load_file(teacher_dir / "model.safetensors"), load_file(out / "model.safetensors")
    ids, hidden = kept(report, "vision.heads"), kept(report, "vision.hidden")
    t_in = teacher["vision_model.head.attention.in_proj_weight"].view(3, 4, 12, 48)  # [q|k|v, heads, head_dim, hidden]
    s_in = student["vision_model.head.attention.in_proj_weight"].view(3, 2, 12, 24)
    assert torch.equal(s_in[0], t_in[0][ids][..., hidden])  # q
    assert torch.equal(s_in[1], t_in[1][kept(report, "vision.kv_heads")][..., hidden])  # k
    text_hidden = kept(report, "text.hidden")
    assert torch.equal(student["text_model.head.weight"], teacher["text_model.head.weight"][hidden][:, text_hidden])


def test_target_params_refuses_a_model_of_several_stacks(tmp_path: Path) -> None:
    teacher_dir, out = tmp_path / "teacher", tmp_path / "student"
    build_teacher(teacher_dir, FAMILIES["clip"])
    result = run_cli("init", "-t", teacher_dir, "-o", out, "--target-params", "50%")
    assert result.exit_code == 1
    assert result.stderr == (
        f"wsel: error: {teacher_dir / 'config.json'}: --target-params searches the sizes of one stack, and clip has "
        "several (text, vision); give each stack's sizes with --set instead\n"
    )
    assert not out.exists()
