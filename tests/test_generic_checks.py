"""The config-driven generic path checks what it writes against the student's own config: a family wsel has
no data for (mT5, mBART, OWL-ViT, Cohere2: T5's, BART's and CLIP's layouts) is either written so that
transformers loads it with no missing, unexpected or mismatched keys, or refused in one line before anything
is written."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
import transformers
from conftest import load_clean, run_cli, set_args
from safetensors import safe_open

import wsel
from wsel.arch import for_model_type
from wsel.layers import find_layer


def _mt5() -> Any:  # T5's layout (wsel's t5.json claims t5 only), with T5's ReLU MLP and tied lm_head
    return transformers.MT5ForConditionalGeneration(
        transformers.MT5Config(
            vocab_size=64,
            d_model=24,
            d_kv=6,
            d_ff=40,
            num_layers=4,
            num_decoder_layers=4,
            num_heads=4,
            feed_forward_proj="relu",
            tie_word_embeddings=True,
        )
    )


def _mbart() -> Any:  # BART's layout and keys, with a final norm per stack (wsel's bart.json claims bart only)
    return transformers.MBartForConditionalGeneration(
        transformers.MBartConfig(
            vocab_size=64,
            d_model=24,
            encoder_layers=4,
            decoder_layers=4,
            encoder_attention_heads=4,
            decoder_attention_heads=4,
            encoder_ffn_dim=40,
            decoder_ffn_dim=40,
            max_position_embeddings=20,
        )
    )


def _owlvit() -> Any:  # CLIP's layout (wsel's clip.json claims clip only)
    text = {
        "vocab_size": 64,
        "hidden_size": 24,
        "intermediate_size": 40,
        "num_hidden_layers": 4,
        "num_attention_heads": 4,
        "max_position_embeddings": 16,
    }
    vision = {
        "hidden_size": 24,
        "intermediate_size": 40,
        "num_hidden_layers": 4,
        "num_attention_heads": 4,
        "image_size": 32,
        "patch_size": 8,
    }
    return transformers.OwlViTModel(
        transformers.OwlViTConfig(text_config=text, vision_config=vision, projection_dim=20)
    )


def _cohere2() -> Any:
    return transformers.Cohere2ForCausalLM(
        transformers.Cohere2Config(
            vocab_size=64,
            hidden_size=24,
            intermediate_size=40,
            num_hidden_layers=4,
            num_attention_heads=4,
            num_key_value_heads=2,
            head_dim=6,
            sliding_window=8,
            max_position_embeddings=64,
        )
    )


TEACHERS = {"mt5": _mt5, "mbart": _mbart, "owlvit": _owlvit, "cohere2": _cohere2}

# Half-size students by --set: half the width, heads and depth of every stack.
STUDENTS: dict[str, dict[str, Any]] = {
    "mt5": {"d_model": 12, "d_ff": 20, "num_heads": 2, "num_layers": 2, "num_decoder_layers": 2},
    "mbart": {
        "d_model": 12,
        "encoder_ffn_dim": 20,
        "decoder_ffn_dim": 20,
        "encoder_attention_heads": 2,
        "decoder_attention_heads": 2,
        "encoder_layers": 2,
        "decoder_layers": 2,
    },
    "owlvit": {
        f"{stack}_config.{key}": value
        for stack in ("text", "vision")
        for key, value in (
            ("hidden_size", 12),
            ("intermediate_size", 20),
            ("num_attention_heads", 2),
            ("num_hidden_layers", 2),
        )
    },
    "cohere2": {
        "hidden_size": 12,
        "intermediate_size": 20,
        "num_attention_heads": 2,
        "num_key_value_heads": 1,
        "num_hidden_layers": 2,
    },
}


@pytest.fixture(scope="module")
def teachers(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folders = {}
    for name, build in TEACHERS.items():
        assert for_model_type(name) is None, f"{name} has architecture data now: pick a family without"
        torch.manual_seed(0)
        folders[name] = tmp_path_factory.mktemp(name)
        build().save_pretrained(folders[name])
    return folders


def load_cleanly(folder: Path) -> torch.nn.Module:
    config = transformers.AutoConfig.from_pretrained(folder)
    return load_clean(getattr(transformers, config.architectures[0]), folder)


def refused(result: Any, out: Path, message: str) -> None:
    assert result.exit_code == 1
    assert result.stderr == f"wsel: error: {message}\n"
    assert not out.exists()


@pytest.mark.parametrize("name", list(TEACHERS))
def test_half_size_student_of_a_family_without_data_loads(tmp_path: Path, teachers: dict[str, Path], name: str) -> None:
    out = tmp_path / "student"
    result = run_cli("init", "-t", teachers[name], "-o", out, "--json", "-q", *set_args(STUDENTS[name]))
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["path"] == "generic"
    model = load_cleanly(out)
    assert all(torch.isfinite(p).all() for p in model.parameters())
    with safe_open(out / "model.safetensors", "pt") as f:
        names = list(f.keys())
    refs = [find_layer(n) for n in names]
    assert {r.index for r in refs if r is not None} == {0, 1}  # no layer beyond the student's depth, any stack


def test_mt5_encoder_and_decoder_take_their_own_depths(tmp_path: Path, teachers: dict[str, Path]) -> None:
    out = tmp_path / "student"
    sets = {"d_model": 12, "d_ff": 20, "num_heads": 2, "num_layers": 1, "num_decoder_layers": 3}
    assert run_cli("init", "-t", teachers["mt5"], "-o", out, "-q", *set_args(sets)).exit_code == 0
    load_cleanly(out)
    with safe_open(out / "model.safetensors", "pt") as f:
        blocks = {".".join(n.split(".")[:3]) for n in f.keys() if ".block." in n}
    assert blocks == {"encoder.block.0", "decoder.block.0", "decoder.block.1", "decoder.block.2"}


def test_per_layer_config_lists_follow_the_kept_layers(tmp_path: Path, teachers: dict[str, Path]) -> None:
    out = tmp_path / "student"
    sets = STUDENTS["cohere2"] | {"num_hidden_layers": 3}
    result = run_cli("init", "-t", teachers["cohere2"], "-o", out, "-q", "--layers", "last", *set_args(sets))
    assert result.exit_code == 0, result.stderr
    teacher_types = json.loads((teachers["cohere2"] / "config.json").read_text())["layer_types"]
    assert json.loads((out / "config.json").read_text())["layer_types"] == teacher_types[1:]
    load_cleanly(out)


def test_checks_name_what_was_checked(teachers: dict[str, Path]) -> None:
    plan = wsel.build_plan(wsel.open_teacher(teachers["cohere2"]), sets=STUDENTS["cohere2"])
    total = sum(len(t.shape) for t in plan.written)
    assert plan.checks == (
        f"dims: {total} of {total} equal a config value (or heads × a per-head size) and take the student's; "
        "0 are stated by no config value and are kept at the teacher's size, unchecked",
        "layers: model.layers keeps 2 of 4 (num_hidden_layers = 2)",
        "config: layer_types follows the kept layers (2 of 4)",
    )
    plan = wsel.build_plan(wsel.open_teacher(teachers["owlvit"]), sets=STUDENTS["owlvit"])
    assert plan.checks[1:] == (
        "layers: text_model.encoder.layers keeps 2 of 4 (text_config.num_hidden_layers = 2)",
        "layers: vision_model.encoder.layers keeps 2 of 4 (vision_config.num_hidden_layers = 2)",
    )
    assert plan.checks[0].endswith("are kept at the teacher's size, unchecked")


def test_refuses_a_dim_two_config_values_size_differently(tmp_path: Path, teachers: dict[str, Path]) -> None:
    out = tmp_path / "student"
    sets = {"d_model": 12, "d_ff": 20, "num_layers": 2, "num_decoder_layers": 2}  # num_heads*d_kv stays 24
    result = run_cli("init", "-t", teachers["mt5"], "-o", out, *set_args(sets))
    source = f"{teachers['mt5'] / 'config.json'} with --set d_model=12 d_ff=20 num_layers=2 num_decoder_layers=2"
    refused(
        result,
        out,
        f"{source}: student tensor 'decoder.block.0.layer.0.SelfAttention.k.weight' dim 0 is 24 in the teacher, "
        "as are d_model and num_heads*d_kv, but the student makes them 12 and 24; pass --set d_kv=3 so that "
        "num_heads*d_kv = d_model, or give a shape manifest",
    )


def test_refuses_a_head_dim_whose_heads_no_longer_fill_hidden(tmp_path: Path, teachers: dict[str, Path]) -> None:
    out = tmp_path / "student"
    sets = {
        "hidden_size": 12,
        "intermediate_size": 20,
        "num_attention_heads": 2,
        "num_key_value_heads": 1,
        "head_dim": 3,
    }
    result = run_cli("init", "-t", teachers["cohere2"], "-o", out, *set_args(sets))
    source = f"{teachers['cohere2'] / 'config.json'} with --set " + " ".join(f"{k}={v}" for k, v in sets.items())
    refused(
        result,
        out,
        f"{source}: student tensor 'model.embed_tokens.weight' dim 1 is 24 in the teacher, as are hidden_size and "
        "num_attention_heads*head_dim, but the student makes them 12 and 6; pass --set head_dim=6 so that "
        "num_attention_heads*head_dim = hidden_size, or give a shape manifest",
    )


def test_refuses_a_stack_deeper_than_the_teacher(tmp_path: Path, teachers: dict[str, Path]) -> None:
    out = tmp_path / "student"
    result = run_cli("init", "-t", teachers["mbart"], "-o", out, "--set", "decoder_layers=6")
    source = f"{teachers['mbart'] / 'config.json'} with --set decoder_layers=6"
    refused(
        result,
        out,
        f"{source}: student decoder_layers is 6 but the teacher has 4 layers in 'model.decoder.layers'; a student "
        "cannot be deeper than its teacher: pass --set decoder_layers=4 or less",
    )


def test_report_says_which_checks_passed(tmp_path: Path, teachers: dict[str, Path]) -> None:
    out = tmp_path / "student"
    result = run_cli("init", "-t", teachers["mt5"], "-o", out, "--json", *set_args(STUDENTS["mt5"]))
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["checks"] == [
        "dims: 82 of 82 equal a config value (or heads × a per-head size) and take the student's; 0 are stated "
        "by no config value and are kept at the teacher's size, unchecked",
        "layers: decoder.block keeps 2 of 4 (num_decoder_layers = 2)",
        "layers: encoder.block keeps 2 of 4 (num_layers = 2)",
    ]
    table = run_cli("inspect", "-t", teachers["mt5"], *set_args(STUDENTS["mt5"])).stderr
    assert "checked: layers: decoder.block keeps 2 of 4 (num_decoder_layers = 2)\n" in table
