"""The read schedule and readahead: `read_ranges` names exactly the reads `iter_selected` makes, the reader
asks the kernel for them ahead of time (in pieces, within its window, never for skipped rows), and a run
announces every read it makes. Kept rows of at least 16 KiB are gathered into one block, one read per run."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from conftest import random_state, run_cli, save, write_manifest
from test_roundtrip import expected_selection, random_bytes, write_file

from wsel.checkpoint.header import TensorInfo, read_header
from wsel.checkpoint.reader import MIN_SKIP_ROW_BYTES, TensorReader, read_ranges
from wsel.select import Selection, from_indices, identity, uniform

ROW = MIN_SKIP_ROW_BYTES  # F32 rows of 4096 elements: rows the reader skips when dropped
PIECE = 1 << 20


class Syscalls:
    """Records preadv (offset, length) and posix_fadvise (offset, length, advice) calls, in order."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.events: list[tuple[str, int, int]] = []
        real_preadv, real_fadvise = os.preadv, os.posix_fadvise

        def preadv(fd: int, buffers: Sequence[memoryview], offset: int) -> int:
            got = real_preadv(fd, buffers, offset)
            self.events.append(("read", offset, got))
            return got

        def fadvise(fd: int, offset: int, length: int, advice: int) -> None:
            assert advice == os.POSIX_FADV_WILLNEED
            self.events.append(("advise", offset, length))
            real_fadvise(fd, offset, length, advice)

        monkeypatch.setattr(os, "preadv", preadv)
        monkeypatch.setattr(os, "posix_fadvise", fadvise)

    def of(self, kind: str) -> list[tuple[int, int]]:
        return [(o, n) for k, o, n in self.events if k == kind]


def tensor(tmp_path: Path, shape: tuple[int, ...], seed: int = 0) -> tuple[TensorInfo, bytes]:
    data = random_bytes(int(np.prod(shape)) * 4, seed)
    return read_header(write_file(tmp_path / "t.safetensors", {"w": ("F32", shape, data)}, {})).tensors[0], data


def covered(ranges: Sequence[tuple[int, int]]) -> set[int]:
    """Every 4 KiB page start touched by the ranges (advice is page-granular, so compare pages)."""
    return {p for o, n in ranges for p in range(o // 4096 * 4096, o + n, 4096)}


CASES = {
    # rows >= 16 KiB, every other one kept: one read per run, up to a block of kept rows at a time
    "skipped-rows": ((40, ROW // 4), [uniform(40, 20), uniform(ROW // 4, 1000)], 4 * ROW),
    # runs of two and three rows
    "runs": ((40, ROW // 4), [from_indices(40, [0, 1, 5, 6, 7, 20, 39]), identity(ROW // 4)], 3 * ROW),
    # small rows: one span per block, rows picked from it
    "spans": ((200, 16), [uniform(200, 60), uniform(16, 5)], 1000),
    # a row larger than the block: descend into it
    "large-rows": ((4, 64, 64), [uniform(4, 2), uniform(64, 20), identity(64)], 4096),
    "identity": ((50, 64), [identity(50), identity(64)], 3000),
}


@pytest.mark.parametrize(("shape", "sels", "block"), CASES.values(), ids=CASES.keys())
def test_read_ranges_are_the_reads_made(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, shape: tuple[int, ...], sels: list[Selection], block: int
) -> None:
    info, data = tensor(tmp_path, shape)
    calls = Syscalls(monkeypatch)
    with TensorReader(block, readahead_bytes=0) as reader:
        got = b"".join(reader.iter_selected(info, sels))
    assert got == expected_selection(data, shape, 4, sels)
    planned = list(read_ranges(info, sels, block))
    assert calls.of("read") == planned
    assert calls.of("advise") == []  # readahead off: no hints


def test_kept_rows_are_read_run_by_run_into_one_block(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # 10 rows of 16 KiB, rows 0, 2, 3, 4, 8 kept, a block of 4 rows: [0, 2, 3, 4] then [8].
    info, data = tensor(tmp_path, (10, ROW // 4))
    sels = [from_indices(10, [0, 2, 3, 4, 8]), uniform(ROW // 4, 100)]
    calls = Syscalls(monkeypatch)
    with TensorReader(4 * ROW, readahead_bytes=0) as reader:
        chunks = list(reader.iter_selected(info, sels))
    assert [len(c) for c in chunks] == [4 * 100 * 4, 1 * 100 * 4]
    assert b"".join(chunks) == expected_selection(data, (10, ROW // 4), 4, sels)
    base = info.start
    assert calls.of("read") == [(base, ROW), (base + 2 * ROW, 3 * ROW), (base + 8 * ROW, ROW)]


def test_readahead_asks_for_the_announced_reads_ahead_in_pieces(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 64 rows of 64 KiB (4 MiB), every other row kept: 32 reads of 64 KiB; a window of 1 MiB ahead.
    shape = (64, 4 * ROW // 4)
    info, data = tensor(tmp_path, shape)
    sels = [uniform(64, 32), identity(shape[1])]
    block, window = 4 * 4 * ROW, PIECE
    planned = list(read_ranges(info, sels, block))
    calls = Syscalls(monkeypatch)
    with TensorReader(block, readahead_bytes=window) as reader:
        reader.expect((info.file, o, n) for o, n in planned)
        got = b"".join(reader.iter_selected(info, sels))
    assert got == expected_selection(data, shape, 4, sels)
    advised = calls.of("advise")
    assert advised == planned  # each range once, in order; none of the dropped rows
    assert all(n <= PIECE for _, n in advised)
    # Before each read, its own bytes and up to `window` more were advised, but not much beyond that.
    advised_bytes = read_bytes = 0
    for kind, _, n in calls.events:
        if kind == "advise":
            advised_bytes += n
        else:
            assert advised_bytes >= min(read_bytes + n, sum(n for _, n in planned))
            assert advised_bytes <= read_bytes + block + window + 4 * ROW
            read_bytes += n


def test_large_ranges_are_advised_in_pieces(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    info, _ = tensor(tmp_path, (3 * PIECE // 4 + 100,))  # 3 MiB + 400 bytes, read whole
    calls = Syscalls(monkeypatch)
    with TensorReader(8 * PIECE) as reader:
        reader.expect([(info.file, info.start, info.nbytes)])
        b"".join(reader.iter_selected(info, [identity(info.shape[0])]))
    s = info.start
    assert calls.of("advise") == [(s, PIECE), (s + PIECE, PIECE), (s + 2 * PIECE, PIECE), (s + 3 * PIECE, 400)]
    assert calls.of("read") == [(s, info.nbytes)]


def test_a_run_announces_every_read_it_makes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`wsel init` advises exactly the pages it reads: readahead never fetches rows the student drops."""
    shapes = {"embed.weight": (300, ROW // 4), "norm.weight": (ROW // 4,)}
    shapes |= {f"layers.{i}.mlp.weight": (64, ROW // 4) for i in range(3)}
    teacher = save(tmp_path / "teacher.safetensors", random_state(shapes))
    student = {"embed.weight": (150, 1000), "norm.weight": (1000,)}
    student |= {f"layers.{i}.mlp.weight": (16, 1000) for i in range(2)}
    manifest = write_manifest(tmp_path / "student.json", student)
    calls = Syscalls(monkeypatch)
    result = run_cli("init", "-t", teacher, "-s", manifest, "-o", tmp_path / "out.safetensors", "-q")
    assert result.exit_code == 0, result.stderr
    data_start = read_header(teacher).tensors[0].start
    reads = [(o, n) for o, n in calls.of("read") if o >= data_start]  # tensor data, not the header
    assert sum(n for _, n in reads) == (150 + 2 * 16) * ROW + ROW  # kept rows only, and the norm's span
    assert covered(calls.of("advise")) == covered(reads)


def test_quiet_runs_do_not_import_rich(tmp_path: Path) -> None:
    """Start-up counts: a quiet run (pipelines, CI) never pays for rich."""
    teacher = save(tmp_path / "teacher.safetensors", random_state({"w": (8, 8)}))
    manifest = write_manifest(tmp_path / "student.json", {"w": (4, 4)})
    code = (
        "import sys\nfrom wsel.cli import main\n"
        "try:\n    main()\nfinally:\n    print(sorted(m for m in sys.modules if m.split('.')[0] == 'rich'))"
    )
    argv = ["init", "-t", str(teacher), "-s", str(manifest), "-o", str(tmp_path / "out.safetensors"), "-q"]
    done = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, check=False)
    assert (done.returncode, done.stdout, done.stderr) == (0, "[]\n", "")
