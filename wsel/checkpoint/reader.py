"""Reading the selected part of one teacher tensor, in bounded blocks, without loading the rest.

Data is read with pread() into one reused buffer: resident memory is bounded by the block size, not by
the tensor or the checkpoint, and no file pages stay mapped into the process. Elements are viewed as
one unsigned integer each (any dtype of 1, 2, 4 or 8 bytes), strides are numpy slices (views), so each
block is copied once, into the chunk that is yielded.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from wsel.checkpoint.dtypes import element_size
from wsel.checkpoint.header import TensorInfo
from wsel.errors import CheckpointError
from wsel.select import Selection

DEFAULT_BLOCK_BYTES = 16 << 20  # the working buffer: one read never exceeds this (unless a single row does)
MIN_SKIP_ROW_BYTES = 16 << 10  # rows at least this large that a selection drops are not read at all
Chunk = bytes | memoryview  # a piece of a tensor's bytes, in order; each one is the consumer's to keep


class TensorReader:
    """Reads teacher bytes through one open file descriptor per shard. Use as a context manager."""

    def __init__(self, block_bytes: int = DEFAULT_BLOCK_BYTES) -> None:
        self.block_bytes = block_bytes
        self.bytes_read = 0
        self._fds: dict[Path, int] = {}
        self._buffer = np.empty(0, dtype=np.uint8)  # grown on first use, reused by every block

    def __enter__(self) -> TensorReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()

    def _fd(self, file: Path) -> int:
        fd = self._fds.get(file)
        if fd is None:
            try:
                fd = self._fds[file] = os.open(file, os.O_RDONLY)
            except OSError as e:
                raise CheckpointError(f"{file}: cannot open: {e.strerror or e}") from None
        return fd

    def _read_into(self, file: Path, offset: int, length: int) -> np.ndarray:
        """`length` bytes at `offset` into the reused buffer (a view of it, valid until the next call)."""
        if len(self._buffer) < length:
            self._buffer = np.empty(max(length, self.block_bytes), dtype=np.uint8)
        view = self._buffer.data[:length]
        fd, done = self._fd(file), 0
        while done < length:
            try:
                got = os.preadv(fd, [view[done:]], offset + done)
            except OSError as e:
                raise CheckpointError(f"{file}: cannot read at byte {offset + done}: {e.strerror or e}") from None
            if got == 0:
                raise CheckpointError(f"{file}: ended at byte {offset + done} while reading; was it truncated?")
            done += got
        self.bytes_read += length
        return self._buffer[:length]

    def read(self, file: Path, offset: int, length: int) -> bytes:
        """Exactly `length` bytes at `offset`, as the caller's own copy; a short read means the file
        changed under us."""
        return self._read_into(file, offset, length).tobytes()

    def iter_selected(self, info: TensorInfo, selections: Sequence[Selection]) -> Iterator[Chunk]:
        """The selected sub-tensor of `info`, as C-order byte chunks of at most about one block."""
        if all(s.is_identity for s in selections):
            for offset in range(info.start, info.end, self.block_bytes):
                yield self.read(info.file, offset, min(self.block_bytes, info.end - offset))
            return
        esize = element_size(info.dtype)
        if esize is None:  # the plan refuses this; guard the invariant
            raise CheckpointError(f"{info.file}: tensor {info.name!r}: packed {info.dtype} cannot be selected")
        if math.prod(s.size for s in selections) == 0:
            return
        yield from self._select(info.file, info.start, info.shape, esize, selections)

    def _select(
        self, file: Path, offset: int, shape: tuple[int, ...], esize: int, sels: Sequence[Selection]
    ) -> Iterator[memoryview]:
        row_bytes = esize * math.prod(shape[1:])  # one index along dim 0
        kept = sels[0].indices()
        if row_bytes > self.block_bytes and len(shape) > 1:
            # One row alone exceeds the buffer: descend into each kept row.
            for i in kept.tolist():
                yield from self._select(file, offset + i * row_bytes, shape[1:], esize, sels[1:])
            return
        inner = tuple(_index(s) for s in sels[1:])  # per dim: a slice (a view) or an index array
        fancy = [(dim, idx) for dim, idx in enumerate(inner, start=1) if isinstance(idx, np.ndarray)]
        basic = tuple(slice(None) if isinstance(idx, np.ndarray) else idx for idx in inner)
        item = _ITEM.get(esize)
        element_shape = shape[1:] if item is not None else (*shape[1:], esize)
        rows_per_block = max(1, self.block_bytes // row_bytes)
        for block in _row_blocks(kept, rows_per_block, runs_only=row_bytes >= MIN_SKIP_ROW_BYTES):
            first, span = int(block[0]), int(block[-1] - block[0] + 1)
            data = self._read_into(file, offset + first * row_bytes, span * row_bytes)
            rows = (data.view(item) if item is not None else data).reshape((span, *element_shape))  # [span, ...]
            if len(block) != span:
                steps = np.diff(block)
                rows = rows[:: int(steps[0])] if (steps == steps[0]).all() else rows[block - first]
            rows = rows[(slice(None), *basic)]
            for dim, idx in fancy:
                rows = np.take(rows, idx, axis=dim)
            chunk = np.ascontiguousarray(rows)
            if np.may_share_memory(chunk, self._buffer):  # nothing was selected: never yield the reused buffer
                chunk = chunk.copy()
            yield chunk.data.cast("B")


_ITEM = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}  # one element as one integer


def _index(selection: Selection) -> slice | np.ndarray:
    """A selection as numpy indexing: a slice when it is a stride (a view, no copy), else the indices."""
    if selection.is_identity:
        return slice(None)
    if selection.explicit is None:
        return slice(selection.start, selection.start + selection.step * (selection.count - 1) + 1, selection.step)
    return selection.indices()


def _row_blocks(kept: np.ndarray, rows_per_block: int, runs_only: bool) -> Iterator[np.ndarray]:
    """Split sorted kept rows into blocks whose span fits the buffer.

    With `runs_only`, blocks are also split at every gap, so dropped rows are never read.
    """
    n = len(kept)
    # Positions in `kept` where a new run of consecutive rows begins.
    run_starts = np.flatnonzero(np.diff(kept) != 1) + 1 if runs_only else np.empty(0, dtype=np.int64)
    start = 0
    while start < n:
        end = int(np.searchsorted(kept, kept[start] + rows_per_block, side="left"))
        next_run = int(np.searchsorted(run_starts, start, side="right"))
        if next_run < len(run_starts):
            end = min(end, int(run_starts[next_run]))
        yield kept[start:end]
        start = end
