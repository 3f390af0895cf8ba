"""The PyTorch-teacher benchmark in --quick mode (the tiny Llama teacher, also saved as sharded pytorch_model.bin
files): `benchmarks/bench_formats.py` asserts that wsel's output from the .bin shards (--attention flat) equals
its output from the same teacher as safetensors and the torch.load baseline's, bit for bit, and that its peak RSS
stays within python+torch + 512 MiB; it exits non-zero otherwise."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "benchmarks" / "bench_formats.py"
PROGRAMS = ("wsel-pt", "wsel-st", "baseline-pt")


def test_bench_formats_quick(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    cmd = [sys.executable, str(BENCH), "--quick", "--data-dir", str(tmp_path / "data"), "--json", str(out)]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-4000:] + result.stdout[-4000:]
    doc = json.loads(out.read_text())
    checks = {t["target"]: t for t in doc["targets"]}
    assert checks["tiny: wsel-pt output equals wsel-st's"]["met"]
    assert checks["tiny: wsel-pt output equals baseline-pt's"]["met"]
    assert checks["tiny: wsel-pt peak RSS <= python+torch + 512 MiB"]["met"]
    runs = doc["sizes"]["tiny"]["runs"]
    assert {(r["tool"], r["cache"]) for r in runs} == {(p, c) for p in PROGRAMS for c in ("cold", "warm")}
    assert all(r["peak_rss"] > 0 and r["wall"] > 0 for r in runs)
    assert set(doc["sizes"]["tiny"]["ratios"]["cold"]) == {"wsel-pt/baseline-pt", "wsel-pt/wsel-st"}
