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
