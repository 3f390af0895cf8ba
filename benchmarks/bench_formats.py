"""PyTorch teachers: `wsel init` from a sharded pytorch_model.bin folder against the same teacher as safetensors and
against loading every .bin shard with torch.load, in the same session.

    python benchmarks/bench_formats.py --runs 3     # the 2gb teacher, cold and warm (make bench-formats)
    python benchmarks/bench_formats.py --quick      # the tiny teacher, one run; asserts equality and the bound

The size's synthetic Llama teacher (benchmarks/teachers.py) is generated once in --data-dir as safetensors and as a
PyTorch folder with the same tensors (`torch.save` of each shard's state dict, `pytorch_model.bin.index.json`).
Then, alternating, each program runs as its own process (benchmarks/measure.py) on a cold page cache (both
teachers evicted) and on a warm one (its own teacher read just before):

- wsel-pt      `python -m wsel init -t PT_FOLDER ... --attention flat` (the paper's rule everywhere)
- wsel-st      the same from the safetensors folder
- baseline-pt  benchmarks/baseline.py on the PT folder: torch.load(weights_only=True, mmap=False) of every shard,
               the paper's uniform_element_selection, save_file

Checked: wsel-pt's output equals wsel-st's and baseline-pt's, every tensor byte for byte, and wsel-pt's peak RSS
stays within bench.py's bound (python+torch + MEMORY_ALLOWANCE); the run exits non-zero otherwise.
Reported: medians, and the ratios wsel-pt / baseline-pt and wsel-pt / wsel-st. See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the modules beside this script (also under PYTHONSAFEPATH)

import bench  # noqa: E402
import measure  # noqa: E402
import planning  # noqa: E402
import teachers  # noqa: E402
from bench import MIB, gb, log  # noqa: E402

TOOLS = ("wsel-pt", "wsel-st", "baseline-pt")
FULL_SIZES = ("2gb",)
QUICK_SIZES = ("tiny",)
EQUAL_PAIRS = (("wsel-pt", "wsel-st"), ("wsel-pt", "baseline-pt"))  # outputs compared byte for byte
RATIOS = (("wsel-pt", "baseline-pt"), ("wsel-pt", "wsel-st"))  # reported: time and peak RSS


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="the tiny teacher, one run, assert equality and memory (CI)")
    p.add_argument(
        "--sizes", help=f"comma-separated, from {', '.join(teachers.SIZES)} (default: {','.join(FULL_SIZES)})"
    )
    p.add_argument("--runs", type=int, help="measured runs per program and cache state (default 3; --quick 1)")
    p.add_argument("--cache", default="cold,warm", help="cache states to measure: cold, warm or both (default)")
    p.add_argument("--tools", help=f"programs to run (default: {','.join(TOOLS)})")
    p.add_argument("--data-dir", type=Path, help="teachers and outputs (default: benchmarks/out/data)")
    p.add_argument("--json", type=Path, help="write the results as JSON here")
    p.add_argument("--markdown", type=Path, help="write the results as Markdown here")
    p.add_argument("--render", type=Path, metavar="JSON", help="only re-render the tables of a results JSON")
    return p.parse_args(argv)


def ensure_teachers(name: str, data: Path) -> dict[str, Any]:
    """The size's teacher as safetensors (bench.py's, shared) and as a PyTorch folder, generated if missing."""
    size = teachers.SIZES[name]
    st, pt = data / "teachers" / name, data / "teachers" / f"{name}-pt"
    generated: dict[str, float | None] = {}
    for layout, folder, cached, ensure in (
        ("safetensors", st, teachers.is_cached, teachers.ensure_teacher),
        ("pytorch", pt, teachers.is_torch_cached, teachers.ensure_torch_teacher),
    ):
        started = time.perf_counter()
        fresh = not cached(folder, size)
        if fresh:
            log(f"{name}: generating the {layout} teacher ({size.teacher.nbytes() / 1e9:.2f} GB) in {folder}")
        ensure(folder, size, log=log)
        generated[layout] = time.perf_counter() - started if fresh else None
    return {"safetensors": st, "pytorch": pt, "generated_seconds": generated}


def teacher_record(folder: Path, generated: float | None) -> dict[str, Any]:
    files = teachers.teacher_files(folder)
    return {
        "path": str(folder),
        "files": [f.name for f in files],
        "bytes": sum(f.stat().st_size for f in files),
        "generated_seconds": generated,
    }


def bench_size(args: argparse.Namespace, name: str, data: Path, tools: list[str], caches: list[str]) -> dict[str, Any]:
    size = teachers.SIZES[name]
    made = ensure_teachers(name, data)
    st, pt = made["safetensors"], made["pytorch"]
    needs = {"st": planning.needs(st, size.sets(), attention="flat"), "pt": planning.needs(pt, size.sets())}
    work, out = data / "work" / f"{name}-formats", data / "out" / f"{name}-formats"
    planning.write_inputs(needs["st"], work)  # the baseline's tensor list (names are the same in both layouts)
    teacher_of = {"wsel-pt": pt, "wsel-st": st, "baseline-pt": pt}
    argv = {
        "wsel-pt": bench.wsel_command(size, pt, out / "wsel-pt", "--attention", "flat"),
        "wsel-st": bench.wsel_command(size, st, out / "wsel-st", "--attention", "flat"),
        "baseline-pt": bench.baseline_command(pt, work, out / "baseline-pt"),
    }
    files = {tool: teachers.teacher_files(teacher_of[tool]) for tool in tools}
    every = teachers.teacher_files(st) + teachers.teacher_files(pt)  # cold: neither teacher in the page cache
    runs = args.runs or (1 if args.quick else 3)
    log(
        f"{name}: pytorch teacher {sum(f.stat().st_size for f in teachers.teacher_files(pt)) / 1e9:.2f} GB in "
        f"{len(teachers.teacher_files(pt))} shards; the plan reads {needs['pt'].read_bytes / 1e9:.2f} GB of it; "
        f"{runs} runs x {caches} x {tools}"
    )
    records: list[dict[str, Any]] = []
    equal: dict[str, Any] = {}
    for r in range(runs):
        for cache in caches:
            for tool in bench.rotated(tools, r):
                log_path = work / f"{tool}.log"
                records.append(bench.measure_tool(r, tool, argv[tool], out / tool, cache, every, files[tool], log_path))
            if r == 0 and cache == caches[0]:
                equal = check_equal(out, tools)
    for tool in tools:
        shutil.rmtree(out / tool, ignore_errors=True)
    return {
        "teachers": {
            "config": size.teacher.config(),
            "safetensors": teacher_record(st, made["generated_seconds"]["safetensors"]),
            "pytorch": teacher_record(pt, made["generated_seconds"]["pytorch"]),
        },
        "student": {"set": size.sets(), "tensors": len(needs["pt"].tensors), "bytes": needs["pt"].write_bytes},
        "plan": {
            layout: {"read_bytes": n.read_bytes, "read_ranges": len(n.reads), "span_bytes": n.span_bytes}
            for layout, n in (("pytorch", needs["pt"]), ("safetensors", needs["st"]))
        },
        "equal": equal,
        "runs": records,
        "summary": bench.summarize(records),
    }


def check_equal(out: Path, tools: list[str]) -> dict[str, Any]:
    """wsel-pt's output against wsel-st's and baseline-pt's, every tensor byte for byte."""
    found = {}
    for a, b in EQUAL_PAIRS:
        if a in tools and b in tools:
            problems = planning.same_tensors(out / a, out / b)
            log(f"  {a} output equals {b}'s, bit for bit" if not problems else f"  DIFFERENT: {problems[:5]}")
            found[f"{a}/{b}"] = {"equal": not problems, "problems": problems[:20]}
    return found


def ratios(summary: dict[str, dict[str, dict[str, float]]]) -> dict[str, dict[str, dict[str, float]]]:
    """Per cache state and pair (a, b): a's median wall time and peak RSS divided by b's."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for cache, by_tool in summary.items():
        for a, b in RATIOS:
            if a in by_tool and b in by_tool:
                x, y = by_tool[a], by_tool[b]
                out.setdefault(cache, {})[f"{a}/{b}"] = {
                    "wall": x["wall"] / y["wall"],
                    "peak_rss": x["peak_rss"] / y["peak_rss"],
                }
    return out


def targets(sizes: dict[str, Any], reference: dict[str, Any]) -> list[dict[str, Any]]:
    """Equality and the memory bound (enforced), and wsel-pt against the baseline's time (reported)."""
    bound = bench.memory_bound(reference)
    checks: list[dict[str, Any]] = []
    for size, res in sizes.items():
        for pair, eq in res["equal"].items():
            a, b = pair.split("/")
            checks.append(
                {
                    "target": f"{size}: {a} output equals {b}'s",
                    "met": eq["equal"],
                    "detail": "every tensor, byte for byte",
                }
            )
        peaks = [s["wsel-pt"]["peak_rss"] for s in res["summary"].values() if "wsel-pt" in s]
        if peaks:
            peak = max(peaks)
            checks.append(
                {
                    "target": f"{size}: wsel-pt peak RSS <= python+torch + {bench.MEMORY_ALLOWANCE // MIB} MiB",
                    "met": peak <= bound,
                    "detail": f"{peak / MIB:.0f} MiB <= {bound / MIB:.0f} MiB (the maximum over all runs)",
                }
            )
        for cache, s in res["summary"].items():
            if "wsel-pt" in s and "baseline-pt" in s:
                w, b = s["wsel-pt"]["wall"], s["baseline-pt"]["wall"]
                checks.append(
                    {
                        "target": f"{size} {cache}: wsel-pt never slower than baseline-pt",
                        "met": w <= b,
                        "detail": f"{w:.2f} s vs {b:.2f} s",
                    }
                )
    return checks


# --- rendering ----------------------------------------------------------------------------------------


def markdown(doc: dict[str, Any]) -> str:
    ref = doc["reference"]
    lines = [bench.machine_line(doc), "", f"Command: `{doc['command']}`", "", bench.reference_line(ref), ""]
    for size, res in doc["sizes"].items():
        ts, st, c = res["teachers"], res["student"], res["teachers"]["config"]
        plan = res["plan"]["pytorch"]
        equal = res["equal"]
        lines += [
            f"### {size}: teacher {gb(ts['pytorch']['bytes'])} as .bin shards, student {gb(st['bytes'])}",
            "",
            f"Teacher: Llama, hidden {c['hidden_size']}, {c['num_hidden_layers']} layers, {c['num_attention_heads']} "
            f"heads / {c['num_key_value_heads']} kv, intermediate {c['intermediate_size']}, vocab {c['vocab_size']}, "
            f"BF16: {len(ts['pytorch']['files'])} `torch.save` shards ({gb(ts['pytorch']['bytes'])}) and the same "
            f"tensors as {len(ts['safetensors']['files'])} safetensors shards ({gb(ts['safetensors']['bytes'])}). "
            f"Student: `{' '.join('--set ' + s for s in st['set'])} --attention flat`. "
            f"From the .bin shards the plan reads {gb(plan['read_bytes'])} in {plan['read_ranges']} ranges. "
            + (
                "wsel-pt's output equals wsel-st's and baseline-pt's, bit for bit."
                if equal and all(e["equal"] for e in equal.values())
                else ("Outputs DIFFER." if equal else "")
            ),
            "",
        ]
        for cache, by_tool in res["summary"].items():
            lines += bench.table(cache, by_tool, ("baseline-pt", "wsel-st"))
        lines += ["Ratios (medians of wall time; peak RSS, the maximum over runs):", ""]
        lines += ["| cache | ratio | wall time | peak RSS |", "|---|---|---|---|"]
        for cache, by_pair in ratios(res["summary"]).items():
            for pair, r in by_pair.items():
                lines.append(f"| {cache} | {pair.replace('/', ' / ')} | {r['wall']:.2f}x | {r['peak_rss']:.2f}x |")
        lines.append("")
    lines += ["### Targets", "", "| target | met | numbers |", "|---|---|---|"]
    lines += [f"| {t['target']} | {'met' if t['met'] else '**missed**'} | {t['detail']} |" for t in doc["targets"]]
    return "\n".join(lines) + "\n"


def finish(args: argparse.Namespace, doc: dict[str, Any]) -> int:
    """Print and save the results; print each target met/missed; the exit status says whether the hard ones hold."""
    bench.save(args, doc, markdown(doc))
    for t in doc["targets"]:
        log(f"{'met' if t['met'] else 'MISSED'}: {t['target']}: {t['detail']}")
    failed = bench.hard_failures(doc)
    if args.quick and not any("equals" in t["target"] for t in doc["targets"]):
        log("FAILED: --quick must compare wsel-pt with wsel-st and baseline-pt (keep them in --tools)")
        return 1
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.render:
        doc = json.loads(args.render.read_text())
        for res in doc["sizes"].values():
            res["ratios"] = ratios(res["summary"])
        doc["targets"] = targets(doc["sizes"], doc["reference"])
        return finish(args, doc)
    sizes = args.sizes.split(",") if args.sizes else list(QUICK_SIZES if args.quick else FULL_SIZES)
    unknown = [s for s in sizes if s not in teachers.SIZES]
    if unknown:
        raise SystemExit(f"unknown size(s) {unknown}; choose from {list(teachers.SIZES)}")
    tools = args.tools.split(",") if args.tools else list(TOOLS)
    if [t for t in tools if t not in TOOLS]:
        raise SystemExit(f"unknown tool(s) in {tools}; choose from {list(TOOLS)}")
    caches = args.cache.split(",")
    data = (args.data_dir or bench.HERE / "out" / "data").resolve()
    data.mkdir(parents=True, exist_ok=True)
    command = "python benchmarks/bench_formats.py " + " ".join(sys.argv[1:] if argv is None else argv)
    log(f"wsel formats benchmark: sizes {sizes}, tools {tools}, caches {caches}, data in {data}")
    bench.byte_compile_wsel()
    reference = bench.reference_programs(data, 1 if args.quick else 3)
    results = {name: bench_size(args, name, data, tools, caches) for name in sizes}
    for res in results.values():
        res["ratios"] = ratios(res["summary"])
    doc = {
        "schema": 1,
        "command": command.strip(),
        "machine": measure.machine(),
        "disk": measure.disk(data),
        "versions": bench.versions(),
        "reference": reference,
        "memory_bound": bench.memory_bound(reference),
        "sizes": results,
    }
    doc["targets"] = targets(results, reference)
    return finish(args, doc)


if __name__ == "__main__":
    sys.exit(main())
