"""End to end on encoder-decoder families (T5, BART, Whisper): tiny random teachers saved by transformers, students
from `--set`, loaded back by transformers with no missing, unexpected or mismatched keys, and run.

The encoder and the decoder are stacks with their own depth keys and layer maps; attention keeps whole heads
(q rows checked against the kept head ids); a depth-only student equals the teacher cut to its first layers,
tensor by tensor; T5's relative attention bias keeps every bucket and follows the kept heads.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
import torch
import transformers as tf
from conftest import load_clean, run_cli, set_args
from safetensors.torch import load_file

import wsel

VOCAB = 64
BATCH = 2
SEQ = 5


@dataclass(frozen=True)
class Family:
    config_class: Any
    model_class: Any
    teacher: dict[str, Any]
    student: dict[str, Any]  # half depth, half width, half the heads, by --set
    depths: dict[str, str]  # stack's layer group (as the report names it) → its depth key
    heads: dict[str, str]  # stack → its heads key
    q_weight: dict[str, str]  # stack → the name of layer {layer}'s self-attention q weight
    hidden: str  # the width key


T5 = Family(
    tf.T5Config,
    tf.T5ForConditionalGeneration,
    dict(vocab_size=VOCAB, d_model=24, d_kv=6, d_ff=40, num_layers=4, num_decoder_layers=4, num_heads=4),
    dict(d_model=12, d_ff=20, num_heads=2, num_layers=2, num_decoder_layers=2),
    {"encoder.block": "num_layers", "decoder.block": "num_decoder_layers"},
    {"encoder": "num_heads", "decoder": "num_heads"},
    {
        "encoder": "encoder.block.{layer}.layer.0.SelfAttention.q.weight",
        "decoder": "decoder.block.{layer}.layer.0.SelfAttention.q.weight",
    },
    "d_model",
)

BART = Family(
    tf.BartConfig,
    tf.BartForConditionalGeneration,
    dict(
        vocab_size=VOCAB, d_model=24, encoder_layers=4, decoder_layers=4, encoder_attention_heads=4,
        decoder_attention_heads=4, encoder_ffn_dim=40, decoder_ffn_dim=32, max_position_embeddings=20,
    ),
    dict(
        d_model=12, encoder_layers=2, decoder_layers=2, encoder_attention_heads=2, decoder_attention_heads=2,
        encoder_ffn_dim=20, decoder_ffn_dim=16,
    ),
    {"model.encoder.layers": "encoder_layers", "model.decoder.layers": "decoder_layers"},
    {"encoder": "encoder_attention_heads", "decoder": "decoder_attention_heads"},
    {
        "encoder": "model.encoder.layers.{layer}.self_attn.q_proj.weight",
        "decoder": "model.decoder.layers.{layer}.self_attn.q_proj.weight",
    },
    "d_model",
)  # fmt: skip

# Whisper: 8 mel bins, 30 encoder positions (60 input frames); the student halves both stacks' positions too.
WHISPER = Family(
    tf.WhisperConfig,
    tf.WhisperForConditionalGeneration,
    dict(
        vocab_size=VOCAB, d_model=24, encoder_layers=4, decoder_layers=4, encoder_attention_heads=4,
        decoder_attention_heads=4, encoder_ffn_dim=40, decoder_ffn_dim=32, num_mel_bins=8, max_source_positions=30,
        max_target_positions=20, pad_token_id=1, bos_token_id=1, eos_token_id=2, decoder_start_token_id=1,
        suppress_tokens=[], begin_suppress_tokens=[],
    ),
    dict(
        d_model=12, encoder_layers=2, decoder_layers=2, encoder_attention_heads=2, decoder_attention_heads=2,
        encoder_ffn_dim=20, decoder_ffn_dim=16, max_source_positions=15, max_target_positions=10,
    ),
    {"model.encoder.layers": "encoder_layers", "model.decoder.layers": "decoder_layers"},
    {"encoder": "encoder_attention_heads", "decoder": "decoder_attention_heads"},
    {
        "encoder": "model.encoder.layers.{layer}.self_attn.q_proj.weight",
        "decoder": "model.decoder.layers.{layer}.self_attn.q_proj.weight",
    },
    "d_model",
)  # fmt: skip

FAMILIES = {"t5": T5, "bart": BART, "whisper": WHISPER}


# ------------------------------------------------------------------------------------------ helpers


def build_teacher(folder: Path, family: Family) -> torch.nn.Module:
    torch.manual_seed(0)
    model = family.model_class(family.config_class(**family.teacher)).eval()
    model.save_pretrained(folder)
    return model


def sample_inputs(name: str, source_positions: int = 30) -> dict[str, Any]:
    gen = torch.Generator().manual_seed(1)
    ids = torch.randint(3, VOCAB, (BATCH, SEQ), generator=gen)
    if name == "whisper":  # [batch, mel bins, frames]: the encoder's convolutions halve the frames to its positions
        features = torch.randn(BATCH, 8, 2 * source_positions, generator=gen)
        return {"input_features": features, "decoder_input_ids": ids[:, :3]}
    return {"input_ids": ids, "decoder_input_ids": ids[:, :3]}


def student_inputs(name: str, family: Family, sets: dict[str, Any]) -> dict[str, Any]:
    return sample_inputs(name, sets.get("max_source_positions", family.teacher.get("max_source_positions", 30)))


@pytest.fixture(scope="module")
def teachers(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folders = {}
    for name, family in FAMILIES.items():
        folders[name] = tmp_path_factory.mktemp(name)
        build_teacher(folders[name], family)
    return folders


# ------------------------------------------------------------------------------ 1. half-size students


@pytest.mark.parametrize("name", list(FAMILIES))
def test_half_size_student_loads_runs_and_verifies(tmp_path: Path, teachers: dict[str, Path], name: str) -> None:
    family, out = FAMILIES[name], tmp_path / "student"
    result = run_cli("init", "-t", teachers[name], "-o", out, "--json", "-q", *set_args(family.student))
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["path"] == name
    assert {m["group"]: m["summary"] for m in report["layer_maps"]} == {
        group: "0-1 → 0-1 of 4" for group in family.depths
    }
    model = load_clean(family.model_class, out)
    with torch.no_grad():
        logits = model(**student_inputs(name, family, family.student)).logits
    assert tuple(logits.shape) == (BATCH, 3, VOCAB)
    assert torch.isfinite(logits).all()
    written = json.loads((out / "config.json").read_text())
    for key, value in family.student.items():
        assert written[key] == value, key
    verified = run_cli("verify", "--teacher", teachers[name], "--student", out, "--json")
    assert verified.exit_code == 0, verified.stdout + verified.stderr
    assert json.loads(verified.stdout)["ok"] is True


@pytest.mark.parametrize("name", list(FAMILIES))
def test_encoder_and_decoder_take_their_own_depths(tmp_path: Path, teachers: dict[str, Path], name: str) -> None:
    """One stack 1 layer deep, the other 3, mapped on their own (`--layers uniform`: spread over each stack)."""
    family, out = FAMILIES[name], tmp_path / "student"
    (encoder, e_key), (decoder, d_key) = family.depths.items()
    sets = family.student | {e_key: 1, d_key: 3}
    result = run_cli("init", "-t", teachers[name], "-o", out, "--json", "-q", "--layers", "uniform", *set_args(sets))
    assert result.exit_code == 0, result.stderr
    maps = {m["group"]: m["map"] for m in json.loads(result.stdout)["layer_maps"]}
    assert maps == {encoder: [[0, 0]], decoder: [[0, 0], [1, 2], [2, 3]]}
    model = load_clean(family.model_class, out)
    with torch.no_grad():
        assert torch.isfinite(model(**student_inputs(name, family, sets)).logits).all()
    student, teacher = load_file(out / "model.safetensors"), load_file(teachers[name] / "model.safetensors")
    hidden = slice(0, family.teacher[family.hidden], 2)
    for s_layer, t_layer in ((1, 2), (2, 3)):  # the decoder's layers 1, 2 read teacher layers 2, 3
        q = family.q_weight["decoder"]
        t_q = teacher[q.format(layer=t_layer)]
        assert torch.equal(
            student[q.format(layer=s_layer)], t_q.view(4, -1, t_q.shape[1])[0::2, :, hidden].flatten(0, 1)
        )
    assert run_cli("verify", "--teacher", teachers[name], "--student", out).exit_code == 0


@pytest.mark.parametrize(
    "options", [("--elements", "magnitude"), ("--attention", "flat"), ("--rescale",), ("--dtype", "bf16")]
)
@pytest.mark.parametrize("name", list(FAMILIES))
def test_student_under_every_option_loads_and_verifies(
    tmp_path: Path, teachers: dict[str, Path], name: str, options: tuple[str, ...]
) -> None:
    """Magnitude scores each stack's axes (`encoder.heads[i]`, `decoder.mlp[i]`) and the shared `hidden`."""
    family, out = FAMILIES[name], tmp_path / "student"
    result = run_cli("init", "-t", teachers[name], "-o", out, "-q", *options, *set_args(family.student))
    assert result.exit_code == 0, result.stderr
    model = load_clean(family.model_class, out)
    with torch.no_grad():
        assert torch.isfinite(model.float()(**student_inputs(name, family, family.student)).logits).all()
    assert run_cli("verify", "--teacher", teachers[name], "--student", out).exit_code == 0


def test_t5_v1_1_gated_student_loads(tmp_path: Path) -> None:
    """T5 v1.1 / FLAN-T5: gated `wi_0`/`wi_1`, both rows following the layer's `decoder.mlp[i]`."""
    family = replace(T5, teacher=T5.teacher | {"feed_forward_proj": "gated-gelu"})
    teacher_dir, out = tmp_path / "teacher", tmp_path / "student"
    build_teacher(teacher_dir, family)
    result = run_cli("init", "-t", teacher_dir, "-o", out, "-q", *set_args(family.student))
    assert result.exit_code == 0, result.stderr
    load_clean(family.model_class, out)
    student, teacher = load_file(out / "model.safetensors"), load_file(teacher_dir / "model.safetensors")
    for gate in ("wi_0", "wi_1"):
        name = f"decoder.block.1.layer.2.DenseReluDense.{gate}.weight"
        assert torch.equal(student[name], teacher[name][0::2, 0::2])  # [d_ff 40 → 20, d_model 24 → 12]
    assert run_cli("verify", "--teacher", teacher_dir, "--student", out).exit_code == 0


# ----------------------------------------------------------------------------- 2. depth-only students


def truncate(model: torch.nn.Module, name: str, n: int) -> None:
    """Keep the first n layers of both stacks in place."""
    if name == "t5":
        model.encoder.block = model.encoder.block[:n]
        model.decoder.block = model.decoder.block[:n]
    else:
        model.model.encoder.layers = model.model.encoder.layers[:n]
        model.model.decoder.layers = model.model.decoder.layers[:n]


@pytest.mark.parametrize("name", list(FAMILIES))
def test_depth_only_student_equals_the_cut_teacher(tmp_path: Path, name: str) -> None:
    family, teacher_dir, out = FAMILIES[name], tmp_path / "teacher", tmp_path / "student"
    teacher = build_teacher(teacher_dir, family)
    sets = dict.fromkeys(family.depths.values(), 2)
    result = run_cli("init", "-t", teacher_dir, "-o", out, "-q", *set_args(sets))
    assert result.exit_code == 0, result.stderr
    student = load_clean(family.model_class, out)

    t_state, s_state = load_file(teacher_dir / "model.safetensors"), load_file(out / "model.safetensors")
    assert set(s_state) == {k for k in t_state if not re.search(r"\.(block|layers)\.(2|3)\.", k)}
    for key, value in s_state.items():
        assert torch.equal(value, t_state[key]), key

    truncate(teacher, name, 2)
    inputs = sample_inputs(name)
    with torch.no_grad():
        expected, actual = teacher(**inputs, use_cache=False).logits, student(**inputs, use_cache=False).logits
    torch.testing.assert_close(actual, expected, atol=1e-5, rtol=1e-5)


# ------------------------------------------------------------------------------------- 3. whole heads


def kept(plan: Any, axis: str) -> list[int]:
    return [int(i) for i in plan.axes[axis].indices()]


@pytest.mark.parametrize("elements", ["uniform", "random"])
@pytest.mark.parametrize("name", list(FAMILIES))
def test_attention_keeps_whole_heads(tmp_path: Path, teachers: dict[str, Path], name: str, elements: str) -> None:
    """Each stack's q rows of a student layer are the rows of the teacher heads its `<stack>.heads[i]` kept, each
    head's `head_dim` rows together, and its columns the kept `hidden` indices."""
    family, out = FAMILIES[name], tmp_path / "student"
    options = wsel.PlanOptions(elements=elements)
    plan = wsel.build_plan(wsel.open_teacher(teachers[name]), sets=family.student, options=options)
    result = run_cli("init", "-t", teachers[name], "-o", out, "-q", "--elements", elements, *set_args(family.student))
    assert result.exit_code == 0, result.stderr
    student, teacher = load_file(out / "model.safetensors"), load_file(teachers[name] / "model.safetensors")
    hidden = torch.tensor(kept(plan, "hidden"))
    for stack, heads_key in family.heads.items():
        t_heads, s_heads = family.teacher[heads_key], family.student[heads_key]
        for layer in (0, 1):
            heads = kept(plan, f"{stack}.heads[{layer}]")
            assert len(heads) == s_heads and heads == sorted(set(heads))
            q = family.q_weight[stack].format(layer=layer)
            t_q = teacher[q].view(t_heads, -1, teacher[q].shape[1])  # [heads, head_dim, hidden]
            expected = t_q[torch.tensor(heads)][:, :, hidden].flatten(0, 1)
            assert torch.equal(student[q], expected), (q, heads)
    if elements == "uniform":
        assert kept(plan, "encoder.heads[0]") == [0, 2]


# ------------------------------------------------------------------------ 4. T5's relative position bias


def test_t5_relative_attention_bias_keeps_buckets_and_follows_heads(tmp_path: Path, teachers: dict[str, Path]) -> None:
    out = tmp_path / "student"
    options = wsel.PlanOptions(elements="random", seed=3)
    plan = wsel.build_plan(wsel.open_teacher(teachers["t5"]), sets=T5.student, options=options)
    result = run_cli("init", "-t", teachers["t5"], "-o", out, "-q", "--elements", "random", "--seed", "3",
                     *set_args(T5.student))  # fmt: skip
    assert result.exit_code == 0, result.stderr
    student, teacher = load_file(out / "model.safetensors"), load_file(teachers["t5"] / "model.safetensors")
    for stack in ("encoder", "decoder"):
        name = f"{stack}.block.0.layer.0.SelfAttention.relative_attention_bias.weight"
        heads = kept(plan, f"{stack}.heads[0]")
        assert teacher[name].shape == (32, 4) and student[name].shape == (32, 2)
        assert torch.equal(student[name], teacher[name][:, heads])  # every bucket, the kept heads' columns
        entry = next(t for t in plan.written if t.name == name)
        assert [str(a) for a in entry.axes] == ["buckets", f"{stack}.heads[0]"]
    assert not any("relative_attention_bias" in n and ".block.1." in n for n in student)
    load_clean(T5.model_class, out)


# ------------------------------------------------------------------- 5. Whisper's front end and positions


def test_whisper_front_end_follows_hidden_and_positions_are_truncated(
    tmp_path: Path, teachers: dict[str, Path]
) -> None:
    """conv1 [hidden, mel bins, 3]: output channels follow `hidden`, every mel bin and kernel tap kept; conv2
    [hidden, hidden, 3] on both; each stack's positions are the teacher's first rows."""
    out = tmp_path / "student"
    result = run_cli("init", "-t", teachers["whisper"], "-o", out, "-q", *set_args(WHISPER.student))
    assert result.exit_code == 0, result.stderr
    student, teacher = load_file(out / "model.safetensors"), load_file(teachers["whisper"] / "model.safetensors")
    hidden = torch.arange(0, 24, 2)
    p = "model.encoder."
    assert torch.equal(student[p + "conv1.weight"], teacher[p + "conv1.weight"][hidden])  # [12, 8, 3]
    assert torch.equal(student[p + "conv1.bias"], teacher[p + "conv1.bias"][hidden])
    assert torch.equal(student[p + "conv2.weight"], teacher[p + "conv2.weight"][hidden][:, hidden])  # [12, 12, 3]
    positions = {"model.encoder.embed_positions.weight": 15, "model.decoder.embed_positions.weight": 10}
    for name, rows in positions.items():
        assert torch.equal(student[name], teacher[name][:rows, hidden]), name
    # vocabulary and mel bins are never subsampled: a student that changes either is refused, writing nothing
    for key, axis in (("vocab_size", "vocab"), ("num_mel_bins", "channels")):
        refused = run_cli("init", "-t", teachers["whisper"], "-o", tmp_path / key, "--set", f"{key}=4")
        assert refused.exit_code != 0
        assert f"student {axis} ({key}) is 4 but the teacher's is" in refused.stderr
        assert not (tmp_path / key).exists()


def test_t5_first_layer_takes_the_relative_attention_bias_under_any_layer_map(
    tmp_path: Path, teachers: dict[str, Path]
) -> None:
    """Only each stack's first block holds the bias (used by every block): a student whose first layer reads
    teacher layer 2 (`--layers last`) still takes it, from the teacher's first block, its columns those heads."""
    out = tmp_path / "student"
    result = run_cli("init", "-t", teachers["t5"], "-o", out, "-q", "--layers", "last", *set_args(T5.student))
    assert result.exit_code == 0, result.stderr
    load_clean(T5.model_class, out)
    student, teacher = load_file(out / "model.safetensors"), load_file(teachers["t5"] / "model.safetensors")
    for stack in ("encoder", "decoder"):
        name = f"{stack}.block.0.layer.0.SelfAttention.relative_attention_bias.weight"
        assert torch.equal(student[name], teacher[name][:, 0::2])
        q = f"{stack}.block.0.layer.0.SelfAttention.q.weight"  # student block 0 is teacher block 2
        t_q = teacher[f"{stack}.block.2.layer.0.SelfAttention.q.weight"].view(4, 6, 24)
        assert torch.equal(student[q], t_q[0::2, :, 0::2].flatten(0, 1))
    assert run_cli("verify", "--teacher", teachers["t5"], "--student", out).exit_code == 0
