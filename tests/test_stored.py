"""Selections of tensors stored in another order than their own C order (`Stored`): a window of a stored array,
dims permuted, dim-0 rows mapped, values offset. Read by the real reader from a real file, compared with numpy."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from wsel.checkpoint.header import Stored, TensorInfo
from wsel.checkpoint.reader import TensorReader, read_ranges
from wsel.select import Selection, from_indices, identity
from wsel.sources.local import LocalFile

PREFIX = 24  # bytes before the stored array: its start is no multiple of anything


def _file(tmp_path: Path, array: np.ndarray) -> LocalFile:
    path = tmp_path / "stored.bin"
    path.write_bytes(b"\x07" * PREFIX + array.tobytes() + b"\x09" * 16)
    return LocalFile(path)


def _read(info: TensorInfo, sels: list[Selection], block_bytes: int = 1 << 20) -> bytes:
    with TensorReader(block_bytes=block_bytes, readahead_bytes=0) as reader:
        return b"".join(bytes(c) for c in reader.iter_selected(info, sels))


def _expected(tensor: np.ndarray, sels: list[Selection]) -> bytes:
    for dim, s in enumerate(sels):
        tensor = np.take(tensor, s.indices(), axis=dim)
    return np.ascontiguousarray(tensor).tobytes()


SELECTIONS = {
    "copy": lambda n: identity(n),
    "stride": lambda n: Selection(n, 0, 2, (n + 1) // 2),
    "explicit": lambda n: from_indices(n, sorted({0, n // 3, n - 1})),
}


@pytest.mark.parametrize("rule", sorted(SELECTIONS))
@pytest.mark.parametrize("block_bytes", [64, 1 << 20])
def test_transposed_window_of_a_stored_array(tmp_path: Path, rule: str, block_bytes: int) -> None:
    stored = np.arange(6 * 10 * 4, dtype=np.float32).reshape(6, 10, 4)  # [6, 10, 4] in the file
    tensor = stored[:5, :7, :].transpose(2, 0, 1)  # [4, 5, 7]: stored dim 2 first, a window of dims 0 and 1
    info = TensorInfo("t", "F32", (4, 5, 7), _file(tmp_path, stored), PREFIX, PREFIX + stored.nbytes,
                      Stored(shape=(6, 10, 4), order=(2, 0, 1)))  # fmt: skip
    sels = [SELECTIONS[rule](n) for n in tensor.shape]
    assert _read(info, sels, block_bytes) == _expected(tensor, sels)


@pytest.mark.parametrize("rule", sorted(SELECTIONS))
def test_rows_mapped_and_windowed_without_reorder(tmp_path: Path, rule: str) -> None:
    stored = np.arange(8 * 6, dtype=np.int16).reshape(8, 6)
    rows = (3, 0, 7, 1, 6, 2, 5, 4)  # tensor row i is stored row rows[i]
    tensor = stored[list(rows), :5]
    info = TensorInfo("t", "I16", (8, 5), _file(tmp_path, stored), PREFIX, PREFIX + stored.nbytes,
                      Stored(shape=(8, 6), order=(0, 1), rows=rows))  # fmt: skip
    sels = [SELECTIONS[rule](n) for n in tensor.shape]
    assert _read(info, sels) == _expected(tensor, sels)
    # only the needed stored rows are read: each kept row's 6 elements (12 bytes) in one range per row run
    needed = sorted(rows[i] for i in sels[0].indices())
    first, last = needed[0], needed[-1]
    assert list(read_ranges(info, sels)) == [(PREFIX + first * 12, (last - first + 1) * 12)]  # small rows: one read


def test_a_window_in_storage_order_streams_in_blocks(tmp_path: Path) -> None:
    stored = np.arange(64 * 32, dtype=np.float32).reshape(64, 32)
    info = TensorInfo("t", "F32", (64, 16), _file(tmp_path, stored), PREFIX, PREFIX + stored.nbytes,
                      Stored(shape=(64, 32), order=(0, 1)))  # fmt: skip
    sels = [identity(64), identity(16)]
    with TensorReader(block_bytes=1024, readahead_bytes=0) as reader:
        chunks = [bytes(c) for c in reader.iter_selected(info, sels)]
    assert b"".join(chunks) == stored[:, :16].tobytes()
    assert len(chunks) > 1  # no gather: nothing to put in order


def test_offset_decodes_to_float32(tmp_path: Path) -> None:
    stored = torch.linspace(-2, 2, 12, dtype=torch.bfloat16).reshape(3, 4)
    raw = stored.view(torch.uint16).numpy()
    info = TensorInfo("norm", "F32", (3, 4), _file(tmp_path, raw), PREFIX, PREFIX + raw.nbytes,
                      Stored(shape=(3, 4), order=(0, 1), offset=-1.0, dtype="BF16"))  # fmt: skip
    sels = [from_indices(3, [0, 2]), identity(4)]
    expected = (stored.to(torch.float32) - 1.0)[[0, 2]].numpy().tobytes()
    assert _read(info, sels) == expected
