"""Architecture data files: every shipped file loads, and malformed data fails loudly."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
from conftest import random_state, run_cli, save, write_manifest

from wsel.arch import all_architectures, all_name_sets, data, for_model_type, supported_model_types
from wsel.arch.families import load_family
from wsel.arch.namesets import load_name_set
from wsel.errors import ArchDataError, SpecError
from wsel.hfconfig import apply_sets, evaluate, parse_set, read_sizes

LLAMA = json.loads((resources.files("wsel.arch") / "llama.json").read_text())


def test_every_shipped_file_loads_and_claims_its_model_types() -> None:
    names = {a.name for a in all_architectures()}
    assert names == {
        "bart", "bert", "clip", "deepseek", "gemma", "gpt2", "gpt_neox", "llama", "mixtral", "olmo2", "olmoe", "opt",
        "phi3", "qwen2_moe", "qwen3", "qwen3_moe", "siglip", "t5", "vit", "whisper",
    }  # fmt: skip
    assert supported_model_types() == [
        "bart", "bert", "clip", "deepseek_v2", "deepseek_v3", "gemma", "gemma2", "gemma3_text", "gpt2", "gpt_neox",
        "llama", "mistral", "mixtral", "olmo2", "olmoe", "opt", "phi3", "qwen2", "qwen2_moe", "qwen3", "qwen3_moe",
        "siglip", "t5", "vit", "whisper",
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
        ({"rope": {"theta": ["x"]}}, "rope: expected ['partial_rotary_factor'], and optionally ['interleaved']"),
        (
            {"rope": {"partial_rotary_factor": ["1"], "interleaved": "1"}},
            "rope.interleaved: expected a list of strings",
        ),
        # Groups of blocks inside a product: balanced, whole factors, over known axes.
        (
            {"tensors": {"{p}norm.weight": ["heads*(head_dim | hidden"]}},
            "tensors.{p}norm.weight: unbalanced parentheses in dim 'heads*(head_dim | hidden'",
        ),
        (
            {"tensors": {"{p}norm.weight": ["heads*(head_dim)hidden"]}},
            "tensors.{p}norm.weight: a group must be a whole factor, in parentheses: '(head_dim)hidden'",
        ),
        (
            {"tensors": {"{p}norm.weight": ["heads*(head_dim | hiden)"]}},
            "tensors.{p}norm.weight: unknown axis 'hiden' in dim 'heads*(head_dim | hiden)'",
        ),
        ({"derived_keys": {"qk_head_dim": "open('x')"}}, "derived_keys.qk_head_dim: only len(key) may be called"),
        ({"derived_keys": {"qk_head_dim": 3}}, "derived_keys.qk_head_dim: expected an expression (a string)"),
        ({"in_memory": {"{p}norm.weight": ["nothing"]}}, "in_memory.{p}norm.weight: expected a list of tensors"),
        (
            {"in_memory": {"{p}norm.weight": ["{p}layers.{layer}.mlp.up_proj.weight", "lm_head.weight"]}},
            "in_memory.{p}norm.weight: its parts must all name {expert} (then its first dim is experts) or none, one "
            "per row block",
        ),
        ({"dense_layers": {"count": 3}}, 'dense_layers: expected {"count": KEY} or {"list": KEY, "sparse_step": KEY}'),
        ({"dense_layers": {"list": "a", "set": {"b": 1}}}, "dense_layers: expected"),
        (
            {"tied": {"lm_head.weight": "nothing"}},
            "tied: 'lm_head.weight' → 'nothing' must both be tensors of this file",
        ),
        (
            {"tensors": {"{p}norm.weight": ["2*hidden"]}},
            "tensors.{p}norm.weight: integer literals cannot start or end a product",
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


# ------------------------------------------------------------------------------------------- name sets

VIT_NAMES = json.loads((resources.files("wsel.arch") / "names" / "timm_vit.json").read_text())


def test_every_shipped_name_set_loads() -> None:
    assert [n.name for n in all_name_sets()] == [
        "timm_convnext",
        "timm_resnet_basic",
        "timm_resnet_bottleneck",
        "timm_vit",
    ]


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"tensor": {}}, "unknown fields ['tensor'], missing fields []"),
        ({"doc": None}, "doc has the wrong type"),
        ({"tensors": []}, "tensors has the wrong type"),
        ({"tensors": {"norm.weight": "hidden"}}, "tensors.norm.weight: expected a list of strings"),
        ({"tensors": {"norm.weight": ["hiden"]}}, "tensors.norm.weight: unknown axis 'hiden'"),
        (
            {"tensors": {"norm.weight": ["hidden@stage"]}},
            "tensors.norm.weight: 'hidden@stage' needs {stage} in the name",
        ),
    ],
)
def test_malformed_name_set_fails(tmp_path: Path, change: dict[str, Any], problem: str) -> None:
    path = _write(tmp_path, {**VIT_NAMES, **change})
    with pytest.raises(ArchDataError) as exc:
        load_name_set(path)
    assert str(exc.value) == f"{path}: {problem}"


# ------------------------------------------------------------------------------ missing packaged data


@pytest.fixture
def package_without_name_sets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A copy of wsel's packaged data whose `names/` folder is missing, as in a wheel that lost it."""
    package = tmp_path / "stripped_arch"
    package.mkdir()
    (package / "__init__.py").write_text("")
    for source in resources.files("wsel.arch").iterdir():
        if source.name.endswith(".json"):
            (package / source.name).write_bytes(source.read_bytes())
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(data, "PACKAGE", "stripped_arch")
    all_name_sets.cache_clear()
    yield package
    all_name_sets.cache_clear()
    sys.modules.pop("stripped_arch", None)  # the next test's copy lives in another folder


def test_missing_name_sets_are_an_error_not_an_empty_list(package_without_name_sets: Path) -> None:
    with pytest.raises(ArchDataError) as exc:
        all_name_sets()
    assert str(exc.value) == (
        f"{package_without_name_sets / 'names'}: no data files; this installation of wsel is incomplete: reinstall wsel"
    )


def test_init_refuses_to_run_without_its_name_sets(tmp_path: Path, package_without_name_sets: Path) -> None:
    """The CLI gives that one line and exit 1, instead of silently taking the generic path."""
    teacher = save(tmp_path / "t.safetensors", random_state({"blocks.0.mlp.fc1.weight": (8, 4)}))
    student = write_manifest(tmp_path / "s.json", {"blocks.0.mlp.fc1.weight": (4, 4)})
    result = run_cli("init", "-t", teacher, "-s", student, "-o", tmp_path / "out.safetensors")
    assert result.exit_code == 1
    assert result.stderr == (
        f"wsel: error: {package_without_name_sets / 'names'}: no data files; "
        "this installation of wsel is incomplete: reinstall wsel\n"
    )
    assert not (tmp_path / "out.safetensors").exists()
