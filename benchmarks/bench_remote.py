"""Remote teachers over a slow link: `wsel init --teacher hf://...` against "download the whole teacher with
huggingface_hub, then `wsel init` the local copy", the same student, in one run.

    python benchmarks/bench_remote.py                 # make bench-remote: the 2gb teacher, 100 MB/s, 20 ms
    python benchmarks/bench_remote.py --size tiny --rate 20e6 --latency 0.005 --connections 8

The link is tests/hubserver.py on 127.0.0.1 (the Hub's routes, the CDN redirect of tensor files): it
paces every byte it sends through one shared budget of `--rate` bytes per second and waits `--latency`
seconds before each answer, like a round trip. Each program is its own process (benchmarks/measure.py: wall
time, peak RSS), with a fresh, empty Hub cache. Measured: wall time, bytes over the link (counted by the
server), requests, peak RSS; then wsel again with 1, 2, 4, 8 and 16 connections (how the default was chosen).
Targets: bytes over the link within 1.05x of what the plan needs (its ranges and each file's first request);
wall time within 1.3x of (those bytes / link rate); at least 4x faster than download-then-slice.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the modules beside this script
sys.path.insert(1, str(Path(__file__).resolve().parent.parent / "tests"))  # the Hub-like server

import measure  # noqa: E402
import teachers  # noqa: E402
from hubserver import HubServer, needed_bytes  # noqa: E402

import wsel  # noqa: E402

FIRST_READ = 64 << 10  # wsel.sources.http.FIRST_READ_BYTES
MB = 10**6
KEYS = ("wall", "link_bytes", "requests", "peak_rss")  # what the tables show of each measured run


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", default="2gb", choices=sorted(teachers.SIZES))
    p.add_argument(
        "--layers",
        type=int,
        default=2,
        help="student depth (default 2: with the size's half width, the plan needs about a fifth of the 2gb teacher)",
    )
    p.add_argument("--rate", type=float, default=100e6, help="link rate, bytes per second (default 100e6)")
    p.add_argument("--latency", type=float, default=0.02, help="seconds before each answer (default 0.02)")
    p.add_argument("--runs", type=int, default=3, help="runs of each program (the median is reported)")
    p.add_argument("--connections", type=int, nargs="*", default=[1, 2, 4, 8, 16], help="the sweep")
    p.add_argument("--data-dir", type=Path, default=Path("benchmarks/out/data"))
    p.add_argument("--json", type=Path, help="write the results here")
    p.add_argument("--markdown", type=Path, help="write the tables here")
    return p.parse_args(argv)


def planned_bytes(teacher: str, folder: Path, sets: list[str]) -> tuple[int, int, int]:
    """(the bytes of the rows the student keeps, as a local plan reads them; the remote plan's bytes; the bytes
    a remote run needs: the remote plan's ranges and each file's first request)."""
    kept = sum(n for _, _, n in wsel.read_schedule(wsel.build_plan(folder, sets=sets)))
    plan = wsel.build_plan(wsel.open_teacher(teacher), sets=sets)  # over the network, small dropped rows are read
    ranges = [(f.name, o, n) for f, o, n in wsel.read_schedule(plan)]
    sizes = {p.name: p.stat().st_size for p in folder.glob("*.safetensors")}
    return kept, sum(n for _, _, n in ranges), needed_bytes(ranges, sizes, FIRST_READ)


def measure_one(hub: HubServer, argv: list[str], work: Path, env: dict[str, str]) -> dict[str, Any]:
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    hub.reset_counts()
    result = measure.run(argv, work / "log.txt", env=env | {"HF_HUB_CACHE": str(work / "cache")})
    if result["returncode"] != 0:
        raise SystemExit(f"{' '.join(argv)} failed:\n{(work / 'log.txt').read_text()[-3000:]}")
    return {**result, "link_bytes": hub.total_sent(), "requests": len(hub.requests)}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    size = teachers.SIZES[args.size]
    folder = teachers.ensure_teacher(args.data_dir / args.size, size, log=lambda m: print(m, file=sys.stderr))
    teacher_bytes = sum(p.stat().st_size for p in folder.iterdir() if p.is_file())
    student = [f"{k}={v}" for k, v in (size.student | {"num_hidden_layers": args.layers}).items()]
    sets = [a for s in student for a in ("--set", s)]
    hub = HubServer(rate=args.rate, latency=args.latency).start()
    hub.add_repo("bench/teacher", folder)
    os.environ |= {"HF_ENDPOINT": hub.url, "HF_HUB_CACHE": str(args.data_dir / "remote-plan-cache")}
    kept_bytes, plan_bytes, needed = planned_bytes("hf://bench/teacher", folder, student)
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")} | {"HF_ENDPOINT": hub.url}
    env |= {"HF_HUB_DISABLE_TELEMETRY": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1"}
    work = args.data_dir / "remote-work"
    download = (
        "import os, subprocess, sys, huggingface_hub as h\n"
        "path = h.snapshot_download('bench/teacher', endpoint=os.environ['HF_ENDPOINT'], "
        "cache_dir=os.environ['HF_HUB_CACHE'])\n"
        "sys.exit(subprocess.call([sys.executable, '-m', 'wsel', 'init', '-t', path, '-q', *sys.argv[1:]]))\n"
    )
    programs = {
        "wsel (remote)": [sys.executable, "-m", "wsel", "init", "-t", "hf://bench/teacher", "-q", *sets],
        "download, then wsel": [sys.executable, "-c", download, *sets],
    }
    results: dict[str, list[dict[str, Any]]] = {name: [] for name in programs}
    for run in range(args.runs):  # alternating, so that drift of the machine hits both alike
        for name, command in programs.items():
            out = work / "out"
            results[name].append(measure_one(hub, [*command, "-o", f"{out}/"], work, env))
            print(f"run {run + 1}: {name}: {results[name][-1]['wall']:.2f} s", file=sys.stderr)
    sweep = {}
    for n in args.connections:
        command = [*programs["wsel (remote)"], "--connections", str(n), "-o", f"{work / 'out'}/"]
        sweep[n] = measure_one(hub, command, work, env)
        print(f"connections {n}: {sweep[n]['wall']:.2f} s", file=sys.stderr)
    hub.stop()
    shutil.rmtree(work, ignore_errors=True)

    doc = summarize(args, size, (kept_bytes, plan_bytes, needed), teacher_bytes, results, sweep)
    doc["student"] = student
    text = markdown(doc)
    print(text)
    if args.json:
        args.json.write_text(json.dumps(doc, indent=2) + "\n")
    if args.markdown:
        args.markdown.write_text(text)
    return 0 if all(t["met"] for t in doc["targets"]) else 1


def summarize(
    args: argparse.Namespace,
    size: teachers.Size,
    planned: tuple[int, int, int],
    teacher_bytes: int,
    results: dict[str, list[dict[str, Any]]],
    sweep: dict[int, dict[str, Any]],
) -> dict[str, Any]:
    kept_bytes, plan_bytes, needed = planned

    def median(rows: list[dict[str, Any]], key: str) -> float:
        return statistics.median(r[key] for r in rows)

    table = {name: {key: median(rows, key) for key in KEYS} for name, rows in results.items()}
    remote, download = table["wsel (remote)"], table["download, then wsel"]
    ideal = needed / args.rate
    link, wall, slow = remote["link_bytes"], remote["wall"], download["wall"]
    targets = [
        {
            "target": "bytes over the link <= 1.05x what the plan needs",
            "met": link <= 1.05 * needed,
            "numbers": f"{link / MB:.1f} MB for {needed / MB:.1f} MB ({link / needed:.3f}x)",
        },
        {
            "target": "wall time <= 1.3x (needed bytes / link rate)",
            "met": wall <= 1.3 * ideal,
            "numbers": f"{wall:.2f} s vs {ideal:.2f} s ({wall / ideal:.2f}x)",
        },
        {
            "target": "at least 4x faster than download-then-slice",
            "met": slow >= 4 * wall,
            "numbers": f"{slow:.2f} s vs {wall:.2f} s ({slow / wall:.1f}x)",
        },
    ]
    return {
        "size": size.name,
        "teacher_bytes": teacher_bytes,
        "kept_bytes": kept_bytes,
        "plan_bytes": plan_bytes,
        "needed_bytes": needed,
        "rate": args.rate,
        "latency": args.latency,
        "runs": args.runs,
        "programs": table,
        "raw": results,
        "connections": {str(n): {k: r[k] for k in KEYS} for n, r in sweep.items()},
        "targets": targets,
        "versions": {"wsel": wsel.__version__, "python": sys.version.split()[0], "commit": _commit()},
    }  # fmt: skip


def _commit() -> str:
    done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False)
    return done.stdout.strip() or "unknown"


def markdown(doc: dict[str, Any]) -> str:
    lines = [
        f"Teacher `{doc['size']}`: {doc['teacher_bytes'] / MB:.0f} MB. "
        f"A local plan reads {doc['kept_bytes'] / MB:.0f} MB; "
        f"the remote plan {doc['plan_bytes'] / MB:.0f} MB ({100 * doc['plan_bytes'] / doc['teacher_bytes']:.0f}%: "
        f"dropped rows under 256 KiB are fetched through), {doc['needed_bytes'] / MB:.1f} MB with the headers. "
        f"Student: `{' '.join(doc['student'])}`. "
        f"Link: {doc['rate'] / MB:.0f} MB/s, {1000 * doc['latency']:.0f} ms per answer. Median of {doc['runs']} runs "
        f"(wsel {doc['versions']['wsel']}, commit {doc['versions']['commit']}).",
        "",
        "| program | wall s | over the link MB | requests | peak RSS MiB |",
        "|---|---|---|---|---|",
    ]
    for name, row in doc["programs"].items():
        lines.append(
            f"| {name} | {row['wall']:.2f} | {row['link_bytes'] / MB:.1f} | {row['requests']:.0f} | "
            f"{row['peak_rss'] / (1 << 20):.0f} |"
        )
    lines += ["", "wsel (remote) by `--connections`:", "", "| connections | wall s | requests | peak RSS MiB |",
              "|---|---|---|---|"]  # fmt: skip
    for n, row in doc["connections"].items():
        lines.append(f"| {n} | {row['wall']:.2f} | {row['requests']} | {row['peak_rss'] / (1 << 20):.0f} |")
    lines += ["", "| target | met | numbers |", "|---|---|---|"]
    lines += [f"| {t['target']} | {'yes' if t['met'] else 'NO'} | {t['numbers']} |" for t in doc["targets"]]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
