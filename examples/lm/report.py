"""Summaries, the plot and the tables of the language-model experiment (results.json, results.md, curves.png)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

STYLE = {"random-inconsistent": ":", "random init": "--"}
FRACTIONS = (0.25, 0.5, 1.0)


def at_fraction(steps: list[int], total: int, fraction: float) -> int:
    """The evaluated step nearest to `fraction` of the run (the lower one on a tie)."""
    target = fraction * total
    return min(steps[1:], key=lambda s: (abs(s - target), s))


def aggregate(runs: list[dict]) -> dict:
    """Mean curve over the seeds of one init, each seed's zero-shot and final loss, and the runs themselves."""
    steps = runs[0]["curve"]["steps"]
    losses = np.array([r["curve"]["loss"] for r in runs])  # [seeds, evals]
    return {
        "curve": {
            "steps": steps,
            "loss": losses.mean(0).tolist(),
            "min": losses.min(0).tolist(),
            "max": losses.max(0).tolist(),
        },  # fmt: skip
        "zero_shot": float(losses[:, 0].mean()),
        "zero_shot_per_seed": losses[:, 0].tolist(),
        "final": float(losses[:, -1].mean()),
        "final_per_seed": losses[:, -1].tolist(),
        "runs": runs,
    }


def steps_to_reach(steps: list[int], losses: list[float], level: float) -> int | None:
    """The first evaluated step (after 0) whose held-out loss is at or below `level`; None if never."""
    return next((s for s, loss in zip(steps[1:], losses[1:], strict=True) if loss <= level), None)


def add_comparisons(results: dict, reference: str, total: int) -> None:
    """For every init: the loss at 25, 50 and 100 % of the steps (mean and per seed), the difference of the final
    loss from the reference's, and the steps it needs to reach the reference's final loss, seed by seed (each seed
    against the reference's run of the same seed) and on the mean curves."""
    ref = results[reference]
    for r in results.values():
        steps = r["curve"]["steps"]
        r["at"] = {}
        for fraction in FRACTIONS:
            step = at_fraction(steps, total, fraction)
            i = steps.index(step)
            r["at"][f"{fraction:.0%}"] = {
                "step": step,
                "loss": r["curve"]["loss"][i],
                "per_seed": [run["curve"]["loss"][i] for run in r["runs"]],
            }
        r["delta_final_vs_reference"] = r["final"] - ref["final"]
        r["steps_to_reference_final"] = steps_to_reach(steps, r["curve"]["loss"], ref["final"])
        r["steps_to_reference_final_per_seed"] = [
            steps_to_reach(steps, run["curve"]["loss"], ref_run["curve"]["loss"][-1])
            for run, ref_run in zip(r["runs"], ref["runs"], strict=True)
        ]


def _seeds(values: list[float], fmt: str = "{:.3f}") -> str:
    return " / ".join(fmt.format(v) for v in values)


def _reach(values: list[int | None]) -> str:
    return " / ".join("not reached" if v is None else str(v) for v in values)


def table(summary: dict) -> str:
    """The main table: one row per init, at the first learning rate, over the seeds."""
    inits = summary["inits"]
    total = summary["config"]["steps"]
    seeds = "/".join(map(str, summary["config"]["seeds"]))
    ref = inits["random init"]
    at = {k: v["step"] for k, v in ref["at"].items()}
    lines = [
        f"| init | zero-shot loss | loss, step {at['25%']} (25 %) | loss, step {at['50%']} (50 %) "
        f"| loss, step {at['100%']} (seeds {seeds}) | Δ vs random init | steps to random init's final loss "
        f"(seeds {seeds}; of {total}) |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, r in inits.items():
        lines.append(
            f"| {name} | {r['zero_shot']:.2f} | {r['at']['25%']['loss']:.3f} | {r['at']['50%']['loss']:.3f} "
            f"| **{r['final']:.3f}** ({_seeds(r['final_per_seed'])}) | {r['delta_final_vs_reference']:+.3f} "
            f"| {_reach(r['steps_to_reference_final_per_seed'])} |"
        )
    return "\n".join(lines)


def extra_table(summary: dict) -> str:
    """The second learning rate and the diagnostic runs (first seed), against the same init's main run."""
    inits, total = summary["inits"], summary["config"]["steps"]
    lines = [
        "| run (first seed) | zero-shot loss | loss at 25 % | 50 % | final | same init, main run: final |",
        "|---|---|---|---|---|---|",
    ]
    for label, run in summary["extra_runs"].items():
        steps, loss = run["curve"]["steps"], run["curve"]["loss"]
        cells = [loss[steps.index(at_fraction(steps, total, f))] for f in FRACTIONS]
        base = next((n for n in inits if label.startswith(n)), None)
        main = f"{inits[base]['runs'][0]['curve']['loss'][-1]:.3f}" if base and run["kind"] != "embeddings" else ""
        lines.append(f"| {label} | {loss[0]:.2f} | {cells[0]:.3f} | {cells[1]:.3f} | **{cells[2]:.3f}** | {main} |")
    return "\n".join(lines)


def scale_table(summary: dict) -> str:
    """Diagnostics at init, on held-out sequences (float32): how large the student's activations and logits are."""
    scale = summary["scale_at_init"]
    zero = {name: r["zero_shot_per_seed"][0] for name, r in summary["inits"].items()}
    zero.update({label: run["curve"]["loss"][0] for label, run in summary["extra_runs"].items()})
    massive = summary["teacher_massive_dims"]
    dims = ", ".join(str(d["dim"]) for d in massive["dims"])
    lines = [
        "| model at init | held-out loss | logits std | entropy (nats) | residual RMS after layer 1 / middle / last "
        f"| after the final norm | teacher dims {dims} kept |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, s in scale.items():
        rms = s["residual_rms"]
        loss = s.get("zero_shot", zero.get(name))
        kept = s.get("massive_dims_kept")
        kept_text = " / ".join("yes" if k else "no" for k in kept) if kept else ("" if "zero_shot" in s else "n/a")
        lines.append(
            f"| {name} | {loss:.2f} | {s['logits_std']:.2f} | {s['entropy']:.2f} "
            f"| {rms[0]:.2f} / {rms[len(rms) // 2]:.2f} / {rms[-1]:.2f} | {s['final_norm_rms']:.2f} | {kept_text} |"
        )
    top = "; ".join(f"dim {d['dim']}: {d['rms']:.1f}" for d in massive["dims"])
    lines.append(
        f"\nThe teacher's residual dims with the largest RMS after its layer {massive['after_layer']} "
        f'(counting from 0: the last layer a first-N student takes), on held-out text: {top}. "Kept": whether '
        "the init's residual-stream selection (wsel's provenance record) includes the dim; n/a for inits that are "
        "not one selection per axis."
    )
    return "\n".join(lines)


def plot(summary: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    inits, config = summary["inits"], summary["config"]
    fig, axes = plt.subplots(2, 2, figsize=(15, 10))
    (full, zoom), (extra, scale) = axes
    colors = dict(zip(inits, plt.get_cmap("tab10").colors, strict=False))
    seeds = len(config["seeds"])
    for name, r in inits.items():
        steps, curve = r["curve"]["steps"], r["curve"]
        kw = {"color": colors[name], "label": name, "lw": 1.6, "ls": STYLE.get(name, "-")}
        for ax in (full, zoom):
            ax.plot(steps, curve["loss"], marker="o", ms=2.5, **kw)
            if seeds > 1:  # the spread over the seeds
                ax.fill_between(steps, curve["min"], curve["max"], color=colors[name], alpha=0.15, lw=0)
    half = [s for s in inits["random init"]["curve"]["steps"] if s >= config["steps"] / 2]
    band = [v for r in inits.values() for s, v in zip(r["curve"]["steps"], r["curve"]["max"], strict=True) if s in half]
    low = min(v for r in inits.values() for v in r["curve"]["min"])
    zoom.set_xlim(half[0] - 0.5 if half else 0, config["steps"] + 0.5)
    zoom.set_ylim(low - 0.05, max(band) + 0.05 if band else None)
    title = f"mean of {seeds} seeds (band: min to max)" if seeds > 1 else "one seed"
    full.set(xlabel="step", ylabel="held-out loss (nats/token)", title=f"lr {config['lr']:g}: {title}")
    zoom.set(xlabel="step", ylabel="held-out loss", title="the second half of the steps, enlarged")
    full.axhline(np.log(49152), color="grey", lw=0.8, ls=":")
    full.text(config["steps"], np.log(49152), "ln(vocab): uniform prediction", ha="right", va="bottom", fontsize=8)
    full.legend(fontsize=8, loc="upper right")

    seed = config["seeds"][0]
    for name in ("random init", "whole-head (default)"):
        run = inits[name]["runs"][0]["curve"]
        extra.plot(run["steps"], run["loss"], color=colors[name], lw=2.2, label=f"{name}, lr {config['lr']:g}")
    # Colour: the init a run starts from (the embedding swaps their own); line style: what changed.
    styles = {"second learning rate": "--", "warm-up": ":", "embeddings": "-."}
    swaps = iter(("black", "tab:brown", "tab:cyan", "tab:pink"))
    for label, run in summary["extra_runs"].items():
        base = next((n for n in inits if label.startswith(n)), None)
        color = next(swaps) if run["kind"] == "embeddings" or base is None else colors[base]
        curve = run["curve"]
        extra.plot(curve["steps"], curve["loss"], color=color, lw=1.4, ls=styles[run["kind"]], label=label)
    extra.set(xlabel="step", ylabel="held-out loss", title=f"second learning rate and diagnostic runs (seed {seed})")
    extra.legend(fontsize=7, loc="upper right")

    for name, s in summary["scale_at_init"].items():
        rms = s["residual_rms"]
        depth = np.arange(1, len(rms) + 1) / len(rms)
        kw = {"color": colors.get(name, "black"), "ls": STYLE.get(name, "-"), "lw": 1.4 if name in inits else 1.0}
        if name not in inits:
            kw.update(color="black" if name.startswith("teacher") else "grey", ls="-." if "+" in name else "-")
        scale.plot(depth, rms, marker=".", label=name, **kw)
    scale.set_yscale("log")
    scale.set(xlabel="depth (layer / layers)", ylabel="RMS of the residual stream",
              title="scale of activations at init (held-out text, float32)")  # fmt: skip
    scale.legend(fontsize=7, loc="lower right")
    for ax in axes.flat:
        ax.grid(alpha=0.3)
    mode = " (REDUCED MODE)" if summary["quick"] else ""
    fig.suptitle(
        f"SmolLM2-135M-Instruct -> 15 layers x 288 ({config['parameters'] / 1e6:.1f}M parameters): next-token "
        f"training, {config['steps']} steps of {config['tokens_per_step']} tokens, same batches for every init{mode}"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def write_markdown(summary: dict, path: Path) -> None:
    c, d, m = summary["config"], summary["data"], summary["machine"]
    mode = " REDUCED MODE (a test of the code, not a result)." if summary["quick"] else ""
    student = ", ".join(f"{k} {v}" for k, v in c["student"].items())
    how = "\n".join(f"| {name} | {r['how']} | `{r['runs'][0]['command']}` |" for name, r in summary["inits"].items())
    text = f"""# Weight selection vs random init on a language model: SmolLM2-135M-Instruct -> 15 x 288
{mode}
`{summary["command"]}`: {summary["wall_seconds"] / 60:.1f} min on {m["cpus"]} CPU threads ({m["cpu"]}; torch
{m["torch"]}, transformers {m["transformers"]}; 1-minute load average {m["load_average_1min"]["start"]} at the
start, {m["load_average_1min"]["end"]} at the end).

Student: {student} ({c["parameters"]:,} parameters, tied embeddings). Training: {c["steps"]} steps of
{c["batch_size"]} sequences of {c["length"]} tokens, {c["optimizer"]}, lr {c["lr"]:g}, {c["warmup"]} warm-up steps
then linear decay to 0, {c["precision"]}; for each seed the same batches in the same order for every init.
Data: {d["source"]}; {d["documents"]} documents ({d["characters"]:,} characters), split by document into
{d["train_tokens"]:,} train and {d["held_out_tokens"]:,} held-out tokens; the held-out loss is the mean over
{d["held_out_tokens_scored"]:,} predictions in {c["held_out_sequences"]} sequences spread over the held-out
documents, before training (zero-shot) and every {c["eval_every"]} steps. Seeds {c["seeds"]}. Licence of the text:
{d["licence"]}.

## Held-out loss (nats per token; lower is better), lr {c["lr"]:g}

{table(summary)}

"Steps to random init's final loss": the first evaluated step at which the init's held-out loss is at or below
the final loss of random init's run with the same seed (evaluated every {c["eval_every"]} steps).

![curves](curves.png)

## Second learning rate ({c["lr2"]:g}) and diagnostic runs (seed {c["seeds"][0]})

{extra_table(summary)}

## Scale at init

{scale_table(summary)}

## How each init was made

| init | what | command (seed {c["seeds"][0]}) |
|---|---|---|
{how}
"""
    path.write_text(text)


def rounded(x: object) -> object:
    """Floats to 5 significant digits, for a readable results.json."""
    if isinstance(x, float):
        return float(f"{x:.5g}")
    if isinstance(x, dict):
        return {k: rounded(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [rounded(v) for v in x]
    return x


def load_average() -> float | None:
    return round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None
