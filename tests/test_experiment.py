"""The weight-selection experiment (examples/minilm/experiment.py) runs end to end in its reduced mode: every
init's student loads in transformers with no missing or unexpected tensors, and the plot and tables are written."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from transformers import AutoModel

SCRIPT = Path(__file__).parent.parent / "examples" / "minilm" / "experiment.py"
INITS = [
    "uniform (paper)",
    "whole-head (default)",
    "first",
    "random-consistent",
    "magnitude",
    "random-inconsistent",
    "random init",
]


def test_experiment_quick_mode(tmp_path: Path) -> None:
    out, work = tmp_path / "results", tmp_path / "students"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    options = ["--quick", "--steps", "2", "--repeats", "2", "--out", str(out), "--work", str(work)]
    command = [sys.executable, str(SCRIPT), *options]
    run = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]

    # Every init's student is a complete checkpoint of the same architecture: 7 for seed 0, and for seed 1 the
    # 3 that depend on the seed (random-consistent, random-inconsistent, random init).
    folders = sorted(p.parent for p in work.glob("seed-*/*/model.safetensors"))
    assert len(folders) == len(INITS) + 3
    shapes = None
    for folder in folders:
        model, info = AutoModel.from_pretrained(folder, output_loading_info=True)
        assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"], folder
        got = {name: tuple(p.shape) for name, p in model.state_dict().items()}
        assert shapes is None or got == shapes, folder
        shapes = got
    assert shapes is not None and shapes["embeddings.word_embeddings.weight"] == (30522, 192)

    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    summary = json.loads((out / "results.json").read_text())
    assert {"schema", "command", "quick", "config", "data", "inits", "timing", "wall_seconds", "machine"} <= set(
        summary
    )
    assert summary["quick"] is True and summary["config"]["steps"] == 2 and summary["config"]["seeds"] == [0, 1]
    assert list(summary["inits"]) == INITS
    for name, result in summary["inits"].items():
        assert [run["seed"] for run in result["runs"]] == [0, 1]
        for run in result["runs"]:
            assert run["loading"] == {"missing_keys": [], "unexpected_keys": [], "mismatched_keys": []}, name
            assert len(run["train_loss"]) == 2
            assert run["curve"]["steps"] == [0, 2]
        assert {"cosine", "retrieval_top1", "similarity_spearman"} <= set(result["final"])
        assert -1 <= result["final"]["cosine"] <= 1 and len(result["final_per_seed"]["cosine"]) == 2
    # The inits really differ: the selected students are not all the same tensors.
    assert len({round(r["step0"]["similarity_spearman"], 6) for r in summary["inits"].values()}) > 1

    table = (out / "results.md").read_text()
    rows = [line for line in table.splitlines() if line.startswith("| ") and not line.startswith("| init ")]
    assert [row.split(" | ")[0].removeprefix("| ") for row in rows] == INITS


LM_SCRIPT = Path(__file__).parent.parent / "examples" / "lm" / "experiment.py"
LM_INITS = [
    "whole-head (default)",
    "flat (paper)",
    "first",
    "random-consistent",
    "magnitude",
    "rescale",
    "layers uniform",
    "random-inconsistent",
    "random init",
]
LM_SEEDED = ["random-consistent", "random-inconsistent", "random init"]


def test_lm_experiment_quick_mode(tmp_path: Path) -> None:
    """examples/lm/experiment.py in its reduced mode: 2 steps on pydoc_data.topics (shipped with Python, so CI
    installs nothing), the real SmolLM2 GGUF teacher, every init of both seeds, the extra runs and the outputs."""
    from transformers import AutoModelForCausalLM

    out, work = tmp_path / "results", tmp_path / "students"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    options = ["--quick", "--steps", "2", "--out", str(out), "--work", str(work)]
    run = subprocess.run([sys.executable, str(LM_SCRIPT), *options], env=env, capture_output=True, text=True,
                         timeout=900)  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]

    # Every init's student is a complete checkpoint of one architecture: 9 for seed 0, and for seed 1 the 3 that
    # depend on the seed. (work/teacher/ is the whole teacher, dequantized by wsel: the ablation's source.)
    folders = sorted(p.parent for p in work.glob("*/model.safetensors") if p.parent.name != "teacher")
    assert len(folders) == len(LM_INITS) + len(LM_SEEDED)
    shapes = None
    for folder in folders:
        model, info = AutoModelForCausalLM.from_pretrained(folder, output_loading_info=True)
        assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"], folder
        got = {name: tuple(p.shape) for name, p in model.state_dict().items()}
        assert shapes is None or got == shapes, folder
        shapes = got
    assert shapes is not None and shapes["model.embed_tokens.weight"] == (49152, 288)
    assert shapes["model.layers.14.self_attn.q_proj.weight"] == (384, 288)  # 6 heads of 64
    assert shapes["model.layers.14.self_attn.k_proj.weight"] == (128, 288)  # 2 key/value heads of 64

    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    summary = json.loads((out / "results.json").read_text())
    assert {"schema", "command", "quick", "config", "data", "inits", "extra_runs", "scale_at_init", "timing",
            "wall_seconds", "machine"} <= set(summary)  # fmt: skip
    assert summary["quick"] is True and summary["config"]["steps"] == 2 and summary["config"]["seeds"] == [0, 1]
    assert summary["data"]["corpus"] == "topics"
    assert list(summary["inits"]) == LM_INITS
    for name, result in summary["inits"].items():
        assert [r["seed"] for r in result["runs"]] == [0, 1]
        for r in result["runs"]:
            assert r["loading"] == {"missing_keys": [], "unexpected_keys": [], "mismatched_keys": []}, name
            assert len(r["train_loss"]) == 2 and r["curve"]["steps"] == [0, 2]
        assert 0 < result["zero_shot"] < 100 and set(result["at"]) == {"25%", "50%", "100%"}
        assert len(result["steps_to_reference_final_per_seed"]) == 2
    # The inits really differ: their zero-shot losses are not all the same.
    assert len({round(r["zero_shot"], 4) for r in summary["inits"].values()}) == len(LM_INITS)
    kinds = [run["kind"] for run in summary["extra_runs"].values()]
    assert kinds == ["second learning rate"] * 3 + ["warm-up"] * 2 + ["embeddings"] * 2
    assert set(LM_INITS) < set(summary["scale_at_init"])

    table = (out / "results.md").read_text()
    rows = [line for line in table.splitlines() if line.startswith("| ")]
    first_table = rows[1 : 1 + len(LM_INITS)]
    assert [row.split(" | ")[0].removeprefix("| ") for row in first_table] == LM_INITS
