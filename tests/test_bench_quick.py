"""The benchmark in --quick mode (tiny Llama teachers): `benchmarks/bench.py` asserts that wsel's output
(--attention flat) equals the load-everything baseline's bit for bit and that wsel's peak RSS, mapped
pages included, stays within python+torch + 512 MiB; it exits non-zero otherwise."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "benchmarks" / "bench.py"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="measures through /proc and posix_fadvise")
def test_bench_quick(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    cmd = [sys.executable, str(BENCH), "--quick", "--data-dir", str(tmp_path / "data"), "--json", str(out)]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-4000:] + result.stdout[-4000:]
    doc = json.loads(out.read_text())
    checks = {t["target"]: t for t in doc["targets"]}
    for size in ("tiny", "tiny-deep"):
        assert checks[f"{size}: output equals the baseline's"]["met"]
        assert checks[f"{size}: wsel peak RSS <= python+torch + 512 MiB"]["met"]
        runs = doc["sizes"][size]["runs"]
        assert {(r["tool"], r["cache"]) for r in runs} >= {("wsel", "cold"), ("baseline", "warm"), ("floor", "cold")}
        assert all(r["peak_rss"] > 0 and r["wall"] > 0 for r in runs)
