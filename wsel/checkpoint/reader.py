"""Reading the selected part of one teacher tensor, in bounded blocks, without loading the rest.

Data is read with pread() into short-lived buffers: resident memory is bounded by the block size,
not by the tensor or the checkpoint, and no file pages stay mapped into the process.
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

DEFAULT_BLOCK_BYTES = 64 << 20  # the working buffer: one read never exceeds this (unless a single row does)
MIN_SKIP_ROW_BYTES = 16 << 10  # rows at least this large that a selection drops are not read at all


class TensorReader:
    """Reads teacher bytes through one open file descriptor per shard. Use as a context manager."""

    def __init__(self, block_bytes: int = DEFAULT_BLOCK_BYTES) -> None:
        self.block_bytes = block_bytes
        self.bytes_read = 0
        self._fds: dict[Path, int] = {}

    def __enter__(self) -> TensorReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()

    def read(self, file: Path, offset: int, length: int) -> bytes:
        """Exactly `length` bytes at `offset`; a short read means the file changed under us."""
        fd = self._fds.get(file)
        if fd is None:
            try:
                fd = self._fds[file] = os.open(file, os.O_RDONLY)
            except OSError as e:
                raise CheckpointError(f"{file}: cannot open: {e.strerror or e}") from None
        parts = []
        done = 0
        while done < length:
            try:
                chunk = os.pread(fd, length - done, offset + done)
            except OSError as e:
                raise CheckpointError(f"{file}: cannot read at byte {offset + done}: {e.strerror or e}") from None
            if not chunk:
                raise CheckpointError(f"{file}: ended at byte {offset + done} while reading; was it truncated?")
            parts.append(chunk)
            done += len(chunk)
        self.bytes_read += length
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def iter_selected(self, info: TensorInfo, selections: Sequence[Selection]) -> Iterator[bytes]:
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
    ) -> Iterator[bytes]:
        row_bytes = esize * math.prod(shape[1:])  # one index along dim 0
        kept = sels[0].indices()
        if row_bytes > self.block_bytes and len(shape) > 1:
            # One row alone exceeds the buffer: descend into each kept row.
            for i in kept.tolist():
                yield from self._select(file, offset + i * row_bytes, shape[1:], esize, sels[1:])
            return
        inner = [(dim, s.indices()) for dim, s in enumerate(sels[1:], start=1) if not s.is_identity]
        rows_per_block = max(1, self.block_bytes // row_bytes)
        for block in _row_blocks(kept, rows_per_block, runs_only=row_bytes >= MIN_SKIP_ROW_BYTES):
            first, span = int(block[0]), int(block[-1] - block[0] + 1)
            data = self.read(file, offset + first * row_bytes, span * row_bytes)
            rows = np.frombuffer(data, dtype=np.uint8).reshape((span, *shape[1:], esize))  # [span, ..., esize]
            if len(block) != span:
                rows = rows[block - first]  # [len(block), ..., esize]
            for dim, idx in inner:
                rows = np.take(rows, idx, axis=dim)
            yield np.ascontiguousarray(rows).tobytes()


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
