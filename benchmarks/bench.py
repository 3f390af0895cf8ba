"""Speed and memory of `wsel init` against the load-everything baseline and the I/O floor.

    python benchmarks/bench.py                      # 2gb, 2gb-deep, 16gb; cold and warm (make bench)
    python benchmarks/bench.py --quick              # tiny teachers, asserts; for CI (make bench-quick)
    python benchmarks/bench.py --sizes 2gb --runs 5 --json out.json

For each size a synthetic Llama teacher is generated (once; cached in --data-dir), then, alternating,
each program runs as its own process on a cold page cache (teacher files evicted) and on a warm one:

- wsel            `python -m wsel init ... --attention flat` (the paper's rule, so output = baseline's)
- wsel-structured `python -m wsel init ...` (the default: whole heads and GQA groups)
- baseline        benchmarks/baseline.py: load_file every shard, uniform_element_selection, save_file
- floor           benchmarks/floor.py: read the ranges the plan needs, write the output bytes, fsync

See benchmarks/README.md for what is measured and how.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

# The modules beside this script, also when PYTHONSAFEPATH=1 (as under `make test`) leaves its folder off sys.path.
sys.path.insert(0, str(Path(__file__).resolve().parent))

import measure  # noqa: E402
import planning  # noqa: E402
import teachers  # noqa: E402

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
MIB = 1 << 20
MEMORY_ALLOWANCE = 512 * MIB  # the bound: interpreter + torch, plus this
SPEED_TARGET_BYTES = 10**9  # speed targets are judged on teachers of at least this size
TOOLS = ("wsel", "baseline", "floor", "wsel-structured")
QUICK_TOOLS = ("wsel", "baseline", "floor")
FULL_SIZES = ("2gb", "2gb-deep", "16gb")
QUICK_SIZES = ("tiny", "tiny-deep")
DEPTH_PAIRS = (("2gb", "2gb-deep"),)  # same student, the second teacher twice as deep


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="tiny teachers, one run, assert equality and memory (CI)")
    p.add_argument(
        "--sizes", help=f"comma-separated, from {', '.join(teachers.SIZES)} (default: {','.join(FULL_SIZES)})"
    )
    p.add_argument(
        "--runs",
        action="append",
        default=[],
        metavar="N|SIZE=N",
        help="measured runs per program and cache state (default 3; --quick 1); SIZE=N for one size",
    )
    p.add_argument("--cache", default="cold,warm", help="cache states to measure: cold, warm or both (default)")
    p.add_argument("--tools", help=f"programs to run (default: {','.join(TOOLS)}; --quick: {','.join(QUICK_TOOLS)})")
    p.add_argument("--data-dir", type=Path, help="teachers and outputs (default: benchmarks/out/data)")
    p.add_argument("--json", type=Path, help="write the results as JSON here")
    p.add_argument("--markdown", type=Path, help="write the results table as Markdown here")
    p.add_argument("--render", type=Path, metavar="JSON", help="only re-render the tables of a results JSON")
    p.add_argument("--keep-teachers", action="store_true", help="keep generated teachers (default: keep, except 16gb)")
    return p.parse_args(argv)


def runs_for(args: argparse.Namespace, size: str) -> int:
    runs = 1 if args.quick else 3
    for item in args.runs:
        if "=" in item:
            name, n = item.split("=", 1)
            if name == size:
                return int(n)
        else:
            runs = int(item)
    return runs


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def wsel_command(size: teachers.Size, teacher: Path, output: Path, *options: str) -> list[str]:
    """`wsel init` of the size's student from `teacher` into the folder `output`."""
    sets = [a for s in size.sets() for a in ("--set", s)]
    return [sys.executable, "-m", "wsel", "init", "-t", str(teacher), "-q", *sets, *options, "-o", f"{output}/"]


def baseline_command(teacher: Path, work: Path, output: Path) -> list[str]:
    """benchmarks/baseline.py on `teacher` (safetensors or .bin shards), the student's tensors as `work`'s
    list (planning.write_inputs), into the folder `output`."""
    tensors = work / "baseline-tensors.json"
    return [sys.executable, str(HERE / "baseline.py"), str(teacher), str(tensors), str(output / "model.safetensors")]


def commands(size: teachers.Size, teacher: Path, work: Path, out: Path) -> dict[str, list[str]]:
    return {
        "wsel": wsel_command(size, teacher, out / "wsel", "--attention", "flat"),
        "wsel-structured": wsel_command(size, teacher, out / "wsel-structured"),
        "baseline": baseline_command(teacher, work, out / "baseline"),
        "floor": [
            sys.executable,
            str(HERE / "floor.py"),
            str(work / "floor-reads.json"),
            str(out / "floor" / "model.safetensors"),
        ],
    }


def measure_tool(
    run: int, tool: str, argv: list[str], output: Path, cache: str, evict: list[Path], warm: list[Path], log_path: Path
) -> dict[str, Any]:
    """Run `run` of `tool`, its output folder `output` removed first, on a cold page cache (the files `evict`
    dropped from it) or a warm one (the files `warm` read just before). Exits if the program fails."""
    shutil.rmtree(output, ignore_errors=True)
    if cache == "cold":
        measure.evict(evict)
    else:
        measure.prewarm(warm)
    resident = measure.cached_fraction(warm)
    result = measure.run(argv, log_path)
    result.update(tool=tool, cache=cache, run=run, teacher_cached_before=resident)
    log(
        f"  run {run} {cache:4s} {tool:15s} {result['wall']:7.2f} s (+{result['sync']:.2f} s sync)  "
        f"peak RSS {result['peak_rss'] / MIB:7.0f} MiB (anon {result['peak_anon'] / MIB:.0f}, file "
        f"{result['peak_file'] / MIB:.0f})  disk read {result['read_bytes'] / MIB:.0f} MiB  "
        f"rc={result['returncode']}"
    )
    if result["returncode"] != 0:
        log(log_path.read_text()[-3000:])
        raise SystemExit(f"{tool} failed with exit code {result['returncode']}: {' '.join(argv)}")
    return result


def rotated(tools: list[str], run: int) -> list[str]:
    """The programs in run `run`'s order: who goes first alternates from run to run."""
    return tools[run % len(tools) :] + tools[: run % len(tools)]


def reference_programs(data: Path, runs: int) -> dict[str, Any]:
    """Peak RSS and start-up time of the interpreter alone, with torch, and of `wsel --version`."""
    programs = {
        "python": [sys.executable, "-c", "pass"],
        "python+torch": [sys.executable, "-c", "import torch, safetensors, numpy"],
        "wsel --version": [sys.executable, "-m", "wsel", "--version"],
    }
    out = {}
    for name, argv in programs.items():
        results = [measure.run(argv, data / "reference.log") for _ in range(runs)]
        out[name] = {
            "wall": statistics.median(r["wall"] for r in results),
            "peak_rss": statistics.median(r["peak_rss"] for r in results),
            "peak_anon": statistics.median(r["peak_anon"] for r in results),
            "peak_file": statistics.median(r["peak_file"] for r in results),
        }
        log(f"  {name:16s} {out[name]['wall']:.2f} s  peak RSS {out[name]['peak_rss'] / MIB:.0f} MiB")
    return out


def bench_size(args: argparse.Namespace, name: str, data: Path, tools: list[str], caches: list[str]) -> dict[str, Any]:
    size = teachers.SIZES[name]
    folder = data / "teachers" / name
    started = time.perf_counter()
    cached = teachers.is_cached(folder, size)
    if not cached:
        log(f"{name}: generating the teacher ({size.teacher.nbytes() / 1e9:.2f} GB) in {folder}")
    teachers.ensure_teacher(folder, size, log=log)
    generated = None if cached else time.perf_counter() - started
    files = teachers.teacher_files(folder)
    needs = planning.needs(folder, size.sets(), attention="flat")
    work, out = data / "work" / name, data / "out" / name
    planning.write_inputs(needs, work)
    argv = commands(size, folder, work, out)
    runs = runs_for(args, name)
    log(
        f"{name}: teacher {sum(f.stat().st_size for f in files) / 1e9:.2f} GB in {len(files)} shards; plan reads "
        f"{needs.read_bytes / 1e9:.2f} GB, writes {needs.write_bytes / 1e9:.2f} GB; {runs} runs x {caches} x {tools}"
    )
    records: list[dict[str, Any]] = []
    equal: dict[str, Any] = {}
    for r in range(runs):
        for cache in caches:
            for tool in rotated(tools, r):
                records.append(measure_tool(r, tool, argv[tool], out / tool, cache, files, files, work / f"{tool}.log"))
            if r == 0 and cache == caches[0]:
                equal = check_equal(out, tools)
    for tool in tools:
        shutil.rmtree(out / tool, ignore_errors=True)
    result = {
        "teacher": {
            "path": str(folder),
            "config": size.teacher.config(),
            "files": len(files),
            "bytes": sum(f.stat().st_size for f in files),
            "generated_seconds": generated,
        },
        "student": {"set": size.sets(), "tensors": len(needs.tensors), "bytes": needs.write_bytes},
        "plan": {
            "read_bytes": needs.read_bytes,
            "read_ranges": len(needs.reads),
            "span_bytes": needs.span_bytes,
            "write_bytes": needs.write_bytes,
        },
        "equal": equal,
        "runs": records,
        "summary": summarize(records),
    }
    if name == "16gb" and not args.keep_teachers:
        log(f"{name}: removing the teacher (pass --keep-teachers to keep it)")
        shutil.rmtree(folder)
    return result


def check_equal(out: Path, tools: list[str]) -> dict[str, Any]:
    """wsel --attention flat against the baseline, every tensor byte for byte."""
    if "wsel" not in tools or "baseline" not in tools:
        return {}
    problems = planning.same_tensors(out / "wsel", out / "baseline" / "model.safetensors")
    log("  wsel output equals the baseline's, bit for bit" if not problems else f"  DIFFERENT: {problems[:5]}")
    return {"equal": not problems, "problems": problems[:20]}


def paired_depth(
    args: argparse.Namespace, small: str, deep: str, data: Path, caches: list[str]
) -> dict[str, dict[str, list[float]]]:
    """wsel on `small` and on `deep` (twice the layers, same student), alternating run by run, so that both
    meet the same disk: runs of one size minutes after the other's can differ by more than the effect."""
    runs = max(runs_for(args, small), runs_for(args, deep))
    walls: dict[str, dict[str, list[float]]] = {cache: {small: [], deep: []} for cache in caches}
    log(f"{small} vs {deep}: wsel alternating, {runs} runs x {caches}")
    for r in range(runs):
        for cache in caches:
            for name in (small, deep) if r % 2 == 0 else (deep, small):
                size, folder = teachers.SIZES[name], data / "teachers" / name
                files, out = teachers.teacher_files(folder), data / "out" / name / "wsel"
                shutil.rmtree(out, ignore_errors=True)
                measure.evict(files) if cache == "cold" else measure.prewarm(files)
                argv = commands(size, folder, data / "work" / name, data / "out" / name)["wsel"]
                result = measure.run(argv, data / "work" / name / "wsel-paired.log")
                if result["returncode"] != 0:
                    raise SystemExit(f"{name}: wsel failed with exit code {result['returncode']}")
                walls[cache][name].append(result["wall"])
                log(f"  run {r} {cache:4s} {name:9s} {result['wall']:7.2f} s")
                shutil.rmtree(out, ignore_errors=True)
    return walls


def summarize(records: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, float]]]:
    """Per cache state and program: the median of times and I/O counters, the maximum of memory."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for rec in records:
        out.setdefault(rec["cache"], {}).setdefault(rec["tool"], {})
    for cache, by_tool in out.items():
        for tool in by_tool:
            rs = [r for r in records if r["cache"] == cache and r["tool"] == tool]
            s: dict[str, float] = {"runs": len(rs)}
            for key in ("wall", "wall_synced", "sync", "cpu_user", "cpu_sys", "rchar", "wchar", "read_bytes"):
                s[key] = statistics.median(r[key] for r in rs)
            s["wall_min"] = min(r["wall"] for r in rs)
            s["wall_max"] = max(r["wall"] for r in rs)
            s["write_bytes"] = statistics.median(r["write_bytes"] for r in rs)
            for key in ("peak_rss", "peak_anon", "peak_file"):
                s[key] = max(r[key] for r in rs)
            by_tool[tool] = s
    return out


def targets(results: dict[str, Any], reference: dict[str, Any], depth: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's targets, each with the numbers it was judged on."""
    bound = memory_bound(reference)
    checks: list[dict[str, Any]] = []

    def add(name: str, ok: bool, detail: str) -> None:
        checks.append({"target": name, "met": bool(ok), "detail": detail})

    for size, res in results.items():
        summ = res["summary"]
        timed = res["teacher"]["bytes"] >= SPEED_TARGET_BYTES  # on tiny teachers the floor is start-up only
        if res["equal"]:
            add(f"{size}: output equals the baseline's", res["equal"]["equal"], "every tensor, byte for byte")
        peak = max((s["wsel"]["peak_rss"] for s in summ.values() if "wsel" in s), default=None)
        if peak is not None:
            add(
                f"{size}: wsel peak RSS <= python+torch + 512 MiB",
                peak <= bound,
                f"{peak / MIB:.0f} MiB <= {bound / MIB:.0f} MiB",
            )
        for cache, s in summ.items():  # at every size: start-up counts
            if "wsel" in s and "baseline" in s:
                w, b = s["wsel"]["wall"], s["baseline"]["wall"]
                add(f"{size} {cache}: wsel never slower than the baseline", w <= b, f"{w:.2f} s vs {b:.2f} s")
        if not timed:
            continue
        cold = summ.get("cold", {})
        if "wsel" in cold and "floor" in cold:
            w, f = cold["wsel"]["wall"], cold["floor"]["wall"]
            add(f"{size} cold: wsel within 1.3x the I/O floor", w <= 1.3 * f, f"{w:.2f} s = {w / f:.2f}x {f:.2f} s")
        if size == "16gb" and "wsel" in cold and "baseline" in cold:
            w, b = cold["wsel"]["wall"], cold["baseline"]["wall"]
            add("16gb cold: wsel at most 0.55x the baseline", w <= 0.55 * b, f"{w:.2f} s = {w / b:.2f}x {b:.2f} s")
        if "wsel" in cold:
            got, planned = cold["wsel"]["rchar"], res["plan"]["read_bytes"]
            extra = got - planned  # the interpreter's modules and the headers are read too
            add(
                f"{size}: wsel reads only the planned bytes (skipped rows of >= 16 KiB not read)",
                0 <= extra <= max(64 * MIB, 0.01 * planned),
                f"read() {got / MIB:.0f} MiB for a plan of {planned / MIB:.0f} MiB "
                f"(spans without row skipping: {res['plan']['span_bytes'] / MIB:.0f} MiB; teacher "
                f"{res['teacher']['bytes'] / MIB:.0f} MiB); from disk, with the kernel's read-ahead: "
                f"{cold['wsel']['read_bytes'] / MIB:.0f} MiB",
            )
    peaks = {s: max(x["wsel"]["peak_rss"] for x in r["summary"].values() if "wsel" in x) for s, r in results.items()}
    if "2gb" in peaks and "16gb" in peaks:
        a, b = peaks["2gb"], peaks["16gb"]
        add("wsel peak RSS flat from 2gb to 16gb", b - a <= 128 * MIB, f"{a / MIB:.0f} MiB -> {b / MIB:.0f} MiB")
    for pair, walls in depth.items():
        small, deep = pair.split("/")
        for cache, by_size in walls.items():
            a, b = statistics.median(by_size[small]), statistics.median(by_size[deep])
            add(
                f"{deep} {cache}: 2x teacher depth, same student, about the same time",
                b <= 1.25 * a,
                f"{b:.2f} s vs {a:.2f} s ({b / a:.2f}x), medians of {len(by_size[deep])} runs alternating the two",
            )
    return checks


# --- rendering ----------------------------------------------------------------------------------------

COLUMNS = ("program", "wall s", "min–max s", "wall+sync s")  # then "÷ X" per program compared with, and:
MEMORY_COLUMNS = ("peak RSS MiB", "anon MiB", "file MiB", "disk read MiB", "read() MiB", "written MiB")


def table(cache: str, by_tool: dict[str, dict[str, float]], divisors: tuple[str, ...]) -> list[str]:
    """Markdown lines of one cache state's summary: a row per program, its wall time also divided by each of
    the `divisors` programs' (blank where one was not run)."""
    runs = max(int(s["runs"]) for s in by_tool.values())
    columns = (*COLUMNS, *(f"÷ {d}" for d in divisors), *MEMORY_COLUMNS)
    lines = [f"{cache} cache, median of {runs} runs:", ""]
    lines += ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for tool, s in by_tool.items():
        row = [f"`{tool}`", f"{s['wall']:.2f}", f"{s['wall_min']:.2f}–{s['wall_max']:.2f}", f"{s['wall_synced']:.2f}"]
        row += [f"{s['wall'] / by_tool[d]['wall']:.2f}" if d in by_tool else "" for d in divisors]
        row += [f"{s[k] / MIB:.0f}" for k in ("peak_rss", "peak_anon", "peak_file", "read_bytes", "rchar", "wchar")]
        lines.append("| " + " | ".join(row) + " |")
    return [*lines, ""]


def machine_line(doc: dict[str, Any]) -> str:
    """The machine, its disk and the software versions, as one Markdown paragraph."""
    m, d = doc["machine"], doc["disk"]
    return (
        f"Machine: {m.get('cores')} cores ({m.get('cpu', '?')}), {m.get('memory_bytes', 0) / 2**30:.0f} GiB RAM, "
        f"disk {d.get('name', '?')} ({'rotational' if d.get('rotational') else 'non-rotational'} as reported, "
        f"read-ahead {d.get('read_ahead_kb', '?')} KiB), Linux {m.get('kernel')}, Python {m.get('python')}, "
        f"{', '.join(f'{k} {v}' for k, v in doc['versions'].items())}."
    )


def reference_line(ref: dict[str, Any]) -> str:
    return (
        "Reference processes (warm): "
        + "; ".join(f"`{k}` {v['wall']:.2f} s, peak RSS {v['peak_rss'] / MIB:.0f} MiB" for k, v in ref.items())
        + f". Memory bound for wsel: {memory_bound(ref) / MIB:.0f} MiB."
    )


def memory_bound(reference: dict[str, Any]) -> int:
    """The bound on wsel's peak RSS: python+torch's (the interpreter and the libraries) plus MEMORY_ALLOWANCE."""
    return int(reference["python+torch"]["peak_rss"]) + MEMORY_ALLOWANCE


def gb(n: float) -> str:
    return f"{n / 1e9:.2f} GB" if n >= 1e9 else f"{n / 1e6:.1f} MB"


def markdown(doc: dict[str, Any]) -> str:
    lines = [machine_line(doc), "", f"Command: `{doc['command']}`", "", reference_line(doc["reference"]), ""]
    for size, res in doc["sizes"].items():
        t, st, plan = res["teacher"], res["student"], res["plan"]
        c = t["config"]
        lines += [
            f"### {size}: teacher {gb(t['bytes'])}, student {gb(st['bytes'])}",
            "",
            f"Teacher: Llama, hidden {c['hidden_size']}, {c['num_hidden_layers']} layers, {c['num_attention_heads']} "
            f"heads / {c['num_key_value_heads']} kv, intermediate {c['intermediate_size']}, vocab {c['vocab_size']}, "
            f"BF16, {t['files']} shards. Student: `{' '.join('--set ' + s for s in st['set'])}`. "
            f"The plan reads {gb(plan['read_bytes'])} of the teacher in {plan['read_ranges']} ranges "
            f"({gb(plan['span_bytes'] - plan['read_bytes'])} of skipped rows of at least 16 KiB are not read). "
            + (
                "wsel's output equals the baseline's bit for bit."
                if res["equal"].get("equal")
                else ("Outputs DIFFER." if res["equal"] else "")
            ),
            "",
        ]
        for cache, by_tool in res["summary"].items():
            lines += table(cache, by_tool, ("baseline", "floor"))
    for pair, walls in doc.get("depth", {}).items():
        small, deep = pair.split("/")
        lines += [f"### {small} vs {deep}: wsel, the two alternating run by run", ""]
        lines += ["| cache | teacher | median s | runs s |", "|---|---|---|---|"]
        for cache, by_size in walls.items():
            for name in (small, deep):
                runs = " ".join(f"{w:.2f}" for w in by_size[name])
                lines.append(f"| {cache} | {name} | {statistics.median(by_size[name]):.2f} | {runs} |")
        lines.append("")
    lines += ["### Targets", "", "| target | met | numbers |", "|---|---|---|"]
    lines += [f"| {t['target']} | {'yes' if t['met'] else '**no**'} | {t['detail']} |" for t in doc["targets"]]
    return "\n".join(lines) + "\n"


def byte_compile_wsel() -> None:
    """Byte-compile the wsel being measured, as `pip install` does: an environment with
    PYTHONDONTWRITEBYTECODE (or an editable install that never ran) would otherwise charge every measured
    run ~50 ms for compiling wsel's modules, which no installed copy pays."""
    import compileall

    import wsel

    compileall.compile_dir(Path(wsel.__file__).parent, quiet=1)


def versions() -> dict[str, str]:
    """Package versions; for wsel also where it was imported from and its git commit."""
    from importlib.metadata import version

    import wsel

    out = {p: version(p) for p in ("wsel", "torch", "safetensors", "numpy")}
    src = Path(wsel.__file__).resolve().parent.parent
    stamp = src / "COMMIT"  # a snapshot made with `git archive` (see benchmarks/README.md)
    if stamp.is_file():  # the commit, then anything said about the snapshot (e.g. that it has uncommitted changes)
        commit, _, note = stamp.read_text().strip().partition(" ")
        out["wsel"] += f" ({commit[:7]}{' ' + note if note else ''}, snapshot in {src})"
        return out
    try:
        commit = subprocess.run(["git", "-C", str(src), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
        dirty = subprocess.run(["git", "-C", str(src), "status", "--porcelain", "wsel"], capture_output=True, text=True)
        if commit.returncode == 0:
            out["wsel"] += f" ({commit.stdout.strip()}{', modified' if dirty.stdout.strip() else ''})"
    except OSError:
        pass
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.render:
        doc = json.loads(args.render.read_text())
        doc["targets"] = targets(doc["sizes"], doc["reference"], doc.get("depth", {}))
        return finish(args, doc)
    sizes = args.sizes.split(",") if args.sizes else list(QUICK_SIZES if args.quick else FULL_SIZES)
    unknown = [s for s in sizes if s not in teachers.SIZES]
    if unknown:
        raise SystemExit(f"unknown size(s) {unknown}; choose from {list(teachers.SIZES)}")
    tools = args.tools.split(",") if args.tools else list(QUICK_TOOLS if args.quick else TOOLS)
    if [t for t in tools if t not in TOOLS]:
        raise SystemExit(f"unknown tool(s) in {tools}; choose from {list(TOOLS)}")
    caches = args.cache.split(",")
    data = (args.data_dir or HERE / "out" / "data").resolve()
    data.mkdir(parents=True, exist_ok=True)
    command = "python benchmarks/bench.py " + " ".join(sys.argv[1:] if argv is None else argv)
    log(f"wsel benchmark: sizes {sizes}, tools {tools}, caches {caches}, data in {data}")
    byte_compile_wsel()
    reference = reference_programs(data, 1 if args.quick else 3)
    results = {name: bench_size(args, name, data, tools, caches) for name in sizes}
    depth = {
        f"{small}/{deep}": paired_depth(args, small, deep, data, caches)
        for small, deep in DEPTH_PAIRS
        if small in results and deep in results and "wsel" in tools
    }
    doc = {
        "schema": 1,
        "command": command.strip(),
        "machine": measure.machine(),
        "disk": measure.disk(data),
        "versions": versions(),
        "reference": reference,
        "memory_bound": memory_bound(reference),
        "sizes": results,
        "depth": depth,
    }
    doc["targets"] = targets(results, reference, depth)
    return finish(args, doc)


def save(args: argparse.Namespace, doc: dict[str, Any], text: str) -> None:
    """Print the Markdown `text`; write it and `doc` where --markdown and --json say."""
    print(text)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(doc, indent=2, default=str) + "\n")
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(text)


def hard_failures(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """The targets missed that fail the run: correctness and the memory bound (speed targets are reported only)."""
    return [t for t in doc["targets"] if ("equals" in t["target"] or "RSS <=" in t["target"]) and not t["met"]]


def finish(args: argparse.Namespace, doc: dict[str, Any]) -> int:
    """Print and save the results; the exit status says whether the hard targets hold."""
    save(args, doc, markdown(doc))
    hard = hard_failures(doc)
    for t in hard:
        log(f"FAILED: {t['target']}: {t['detail']}")
    if args.quick and not any("equals" in t["target"] for t in doc["targets"]):
        log("FAILED: --quick must compare wsel with the baseline (keep both in --tools)")
        return 1
    return 1 if hard else 0


if __name__ == "__main__":
    sys.exit(main())
