"""The students: one architecture (a quarter of SmolLM2-135M), initialized nine ways.

Seven come from `wsel init` on the GGUF teacher (run as `python -m wsel`, the installed wsel); the other two are
built here: transformers' own random init, and the paper's random-*inconsistent* ablation.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import shared  # examples/shared.py: experiment.py puts examples/ on the path
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from transformers import AutoConfig, AutoModelForCausalLM

# 15 of 30 layers, half the width (576 -> 288), 6 of 9 query heads and 2 of 3 key/value heads, each head still 64
# wide (RoPE pairs whole), MLP 1536 -> 768; vocabulary (49152) and tied embeddings kept: 28.5M of 134.5M parameters.
STUDENT = {
    "num_hidden_layers": 15,
    "hidden_size": 288,
    "num_attention_heads": 6,
    "num_key_value_heads": 2,
    "head_dim": 64,
    "intermediate_size": 768,
}
TEACHER_ALL_LAYERS = {"num_hidden_layers": 30}  # the whole teacher as float32 safetensors (nothing shrinks)

# name -> (how it is made, extra `wsel init` options, or None when this module builds it)
INITS: dict[str, tuple[str, list[str] | None]] = {
    "whole-head (default)": ("wsel default: uniform rule, whole heads and GQA groups, RoPE pairs kept", []),
    "flat (paper)": ("wsel --attention flat: the paper's per-dim rule on every dim", ["--attention", "flat"]),
    "first": ("wsel --elements first: leading slice of every axis", ["--elements", "first"]),
    "random-consistent": (
        "wsel --elements random: one seeded random set per axis",
        ["--elements", "random", "--seed", "{seed}"],
    ),
    "magnitude": ("wsel --elements magnitude: largest sum of squares per axis index", ["--elements", "magnitude"]),
    "rescale": ("wsel --rescale: default, weights with a shrunk input dim times sqrt(T/S)", ["--rescale"]),
    "layers uniform": ("wsel --layers uniform: teacher layers spread over the depth", ["--layers", "uniform"]),
    "random-inconsistent": ("script: own random index set per tensor and dim (the paper's ablation)", None),
    "random init": ("transformers' own init (AutoModelForCausalLM.from_config)", None),
}
SEEDED = {"random-consistent", "random-inconsistent", "random init"}  # the inits that differ between seeds


def sets(values: dict[str, int]) -> list[str]:
    return [x for key, value in values.items() for x in ("--set", f"{key}={value}")]


def wsel_init(teacher: Path, out: Path, options: list[str], values: dict[str, int] = STUDENT) -> list[str]:
    """Run `wsel init` (the installed one, through this Python) and return the command as a user would type it."""
    argv = ["init", "--teacher", str(teacher), "-o", f"{out}/", "-q", "--force", *sets(values), *options]
    subprocess.run([sys.executable, "-m", "wsel", *argv], check=True)
    return ["wsel", *argv]


def wsel_init_magnitude(teacher: Path, twin: Path, out: Path, options: list[str]) -> str:
    """`--elements magnitude` straight from the GGUF file; if that fails, from its float32 safetensors twin.

    At wsel c7ef2f0 the importance pre-pass reads a GGUF teacher past the end of the file ("ended at byte
    98362432 while reading; was it truncated?"), while selection alone reads it fine. The twin, written by
    `wsel init --set num_hidden_layers=30` (nothing shrinks: every tensor dequantized as it is, equal bit for bit to
    transformers' GGUF loader, tests/test_gguf_teacher.py), holds the same values, so the importance scores and the
    selected student are the same as the GGUF teacher's would be."""
    argv = ["init", "--teacher", str(teacher), "-o", f"{out}/", "-q", "--force", *sets(STUDENT), *options]
    run = subprocess.run([sys.executable, "-m", "wsel", *argv], capture_output=True, text=True)
    if run.returncode == 0:
        return " ".join(["wsel", *argv])
    if not (twin / "model.safetensors").exists():
        wsel_init(teacher, twin, [], TEACHER_ALL_LAYERS)
    command = wsel_init(twin, out, options)
    first = run.stderr.strip().splitlines()[-1] if run.stderr.strip() else f"exit {run.returncode}"
    return (
        f"wsel init --teacher <teacher.gguf> -o {twin}/ --set num_hidden_layers=30  &&  {' '.join(command)}"
        f"  (from the GGUF file directly: {first})"
    )


def random_inconsistent(source: Path, out: Path, seed: int, shapes: dict[str, tuple[int, ...]], config: Path) -> str:
    """The paper's inconsistent ablation. `source` holds the whole teacher as float32 safetensors (written by
    `wsel init --set num_hidden_layers=30`: the GGUF teacher dequantized, q/k rows in Hugging Face order); student
    layer i reads teacher layer i, as in the first-N inits. Every dim of every tensor that shrinks keeps
    its own index set, sorted(numpy default_rng([seed, crc32(tensor name), dim]).choice(T, S, replace=False)):
    the residual stream keeps different dims in the embeddings, in each projection and in each norm; q, k and v
    keep different rows (heads and RoPE pairs mixed); a row set of o_proj is not the column set of the next q."""
    out.mkdir(parents=True, exist_ok=True)
    tensors = {}
    with safe_open(source / "model.safetensors", "pt") as teacher:
        for name, shape in sorted(shapes.items()):
            tensors[name] = shared.select_inconsistently(teacher.get_tensor(name), name, shape, seed)
    save_file(tensors, str(out / "model.safetensors"), metadata={"format": "pt"})
    shutil.copy(config, out / "config.json")
    return f"random_inconsistent(seed={seed}) in examples/lm/students.py"


def random_init(config: Path, out: Path, seed: int) -> str:
    """The same architecture with transformers' Llama init: normal(0, 0.02) weights and embeddings, norms 1."""
    torch.manual_seed(seed)
    AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(config.parent)).save_pretrained(out)
    return f"torch.manual_seed({seed}); AutoModelForCausalLM.from_config(student config)"


def shapes_of(folder: Path) -> dict[str, tuple[int, ...]]:
    with safe_open(folder / "model.safetensors", "pt") as f:
        return {name: tuple(f.get_slice(name).get_shape()) for name in f.keys()}


def folder_name(name: str) -> str:
    return re.sub(r"[^a-z]+", "-", name).strip("-")


def build(teacher: Path, work: Path, seed: int, done: dict[str, Path]) -> dict[str, dict]:
    """Every init's student for one seed, under work/. An init that does not depend on the seed is built once
    (`done` maps its command to its folder) and shared by the seeds."""
    built: dict[str, dict] = {}
    reference = work / "whole-head-default"
    for name, (how, options) in INITS.items():
        key = name if name not in SEEDED else f"{name} seed {seed}"
        folder = work / (folder_name(name) + (f"-seed-{seed}" if name in SEEDED else ""))
        if key not in done:
            if name == "magnitude":
                command = wsel_init_magnitude(teacher, work / "teacher", folder, options or [])
            elif options is not None:
                command = " ".join(wsel_init(teacher, folder, [o.format(seed=seed) for o in options]))
            elif name == "random-inconsistent":
                source = work / "teacher"
                if not (source / "model.safetensors").exists():
                    wsel_init(teacher, source, [], TEACHER_ALL_LAYERS)
                command = random_inconsistent(source, folder, seed, shapes_of(reference), reference / "config.json")
            else:
                command = random_init(reference / "config.json", folder, seed)
            done[key] = folder
            (folder / "command.txt").write_text(command + "\n")
        folder = done[key]
        command = (folder / "command.txt").read_text().strip()
        command = command.replace(str(teacher), "<teacher.gguf>").replace(str(work), "WORK")
        built[name] = {"how": how, "folder": folder, "command": command}
    return built


def load(folder: Path) -> tuple[torch.nn.Module, dict[str, list[str]]]:
    """Load with transformers; every tensor must come from the checkpoint (nothing missing or left over)."""
    model, info = AutoModelForCausalLM.from_pretrained(folder, output_loading_info=True, dtype=torch.float32)
    loading = {k: sorted(map(str, info.get(k, ()))) for k in ("missing_keys", "unexpected_keys", "mismatched_keys")}
    if any(loading.values()):
        raise RuntimeError(f"{folder}: does not load cleanly: {loading}")
    return model, loading


def kept_hidden(folder: Path) -> list[int] | None:
    """The teacher's residual-stream dims a wsel student kept (from its provenance record), or None (not wsel's)."""
    with safe_open(folder / "model.safetensors", "pt") as f:
        record = (f.metadata() or {}).get("wsel.provenance")
    if record is None:
        return None
    axes = json.loads(record)["axes"]
    axis = axes.get("hidden") or axes.get(f"576→{STUDENT['hidden_size']}")  # architecture path / flat (by size)
    if axis is None:
        return None
    if "indices" in axis:
        return [int(i) for i in axis["indices"]]
    return [axis["start"] + axis["step"] * i for i in range(axis["student"])]
