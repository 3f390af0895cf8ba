"""Architecture data files: every shipped file loads, and malformed data fails loudly."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

from wsel.arch import all_architectures, for_model_type, supported_model_types
from wsel.arch.families import load_family
from wsel.errors import ArchDataError, SpecError
from wsel.hfconfig import apply_sets, evaluate, parse_set, read_sizes

LLAMA = json.loads((resources.files("wsel.arch") / "llama.json").read_text())


def test_every_shipped_file_loads_and_claims_its_model_types() -> None:
    names = {a.name for a in all_architectures()}
    assert names == {"bert", "gemma", "gpt2", "llama", "phi3", "qwen3", "vit"}
    assert supported_model_types() == [
        "bert", "gemma", "gemma2", "gemma3_text", "gpt2", "llama", "mistral", "phi3", "qwen2", "qwen3", "vit",
    ]  # fmt: skip
    assert getattr(for_model_type("mistral"), "name", None) == "llama"
    assert for_model_type("mamba") is None


def _write(tmp_path: Path, doc: dict[str, Any]) -> Path:
    path = tmp_path / "x.json"
    path.write_text(json.dumps(doc))
    return path


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        # A typo in a top-level field fails instead of being ignored.
        ({"tensor": {}}, "unknown fields ['tensor'], missing fields []"),
        ({"tied": None}, "tied has the wrong type"),
        # Unknown axes in sizes or in a dim expression.
        ({"sizes": {**LLAMA["sizes"], "hiden": ["hidden_size"]}}, "sizes: unknown axis 'hiden'; known: "),
        ({"tensors": {"{p}norm.weight": ["hiden"]}}, "tensors.{p}norm.weight: unknown axis 'hiden' in dim 'hiden'"),
        # Size expressions are arithmetic only: never code.
        ({"sizes": {**LLAMA["sizes"], "hidden": ["__import__('os').getcwd()"]}}, "sizes.hidden: "),
        ({"sizes": {**LLAMA["sizes"], "hidden": []}}, "sizes.hidden: expected a non-empty list of expressions"),
        ({"sizes": {k: v for k, v in LLAMA["sizes"].items() if k != "heads"}}, "sizes must define ['heads']"),
        ({"rope": {"theta": ["rope_theta"]}}, "rope: expected exactly ['partial_rotary_factor']"),
        (
            {"tied": {"lm_head.weight": "nothing"}},
            "tied: 'lm_head.weight' → 'nothing' must both be tensors of this file",
        ),
        (
            {"tensors": {"{p}norm.weight": ["2*hidden"]}},
            "tensors.{p}norm.weight: integer literals cannot be multiplied",
        ),
    ],
)
def test_malformed_data_fails(tmp_path: Path, change: dict[str, Any], problem: str) -> None:
    path = _write(tmp_path, {**LLAMA, **change})
    with pytest.raises(ArchDataError) as exc:
        load_family(path)
    assert str(exc.value).startswith(f"{path}: {problem}")


@pytest.mark.parametrize(
    ("expression", "config", "value"),
    [
        ("hidden_size / num_attention_heads", {"hidden_size": 64, "num_attention_heads": 8}, 8),
        ("4 * n_embd", {"n_embd": 32}, 128),
        ("(image_size / patch_size) ** 2 + 1", {"image_size": 224, "patch_size": 16}, 197),
        ("rope_parameters.partial_rotary_factor", {"rope_parameters": {"partial_rotary_factor": 0.5}}, 0.5),
        ("len(id2label)", {"id2label": {"0": "a", "1": "b", "2": "c"}}, 3),
    ],
)
def test_size_expressions(expression: str, config: dict[str, Any], value: float) -> None:
    assert evaluate(expression, config) == value


def test_sizes_take_the_first_alternative_present() -> None:
    sizes = {"kv_heads": ("num_key_value_heads", "num_attention_heads"), "mlp": ("n_inner", "4 * n_embd")}
    assert read_sizes(sizes, {"num_attention_heads": 8, "n_inner": None, "n_embd": 16}, "c") == {
        "kv_heads": 8,
        "mlp": 64,
    }
    with pytest.raises(SpecError) as exc:
        read_sizes({"head_dim": ("hidden_size / heads",)}, {"hidden_size": 10, "heads": 4}, "cfg.json")
    assert str(exc.value) == "cfg.json: hidden_size / heads gives head_dim = 2.5, expected a whole number"


def test_set_parses_json_values_and_dotted_keys() -> None:
    assert parse_set("num_hidden_layers=16") == ("num_hidden_layers", 16)
    assert parse_set("tie_word_embeddings=false") == ("tie_word_embeddings", False)
    assert parse_set("hidden_act=gelu") == ("hidden_act", "gelu")
    config = apply_sets({"rope_parameters": {"rope_theta": 1.0}}, [("rope_parameters.rope_theta", 5.0)])
    assert config == {"rope_parameters": {"rope_theta": 5.0}}
    with pytest.raises(SpecError) as exc:
        parse_set("num_hidden_layers")
    assert str(exc.value) == "--set 'num_hidden_layers': expected KEY=VALUE, e.g. --set num_hidden_layers=16"
